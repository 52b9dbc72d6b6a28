/**
 * A ruler for the host's speed: a fixed piece of work (floating-point arithmetic over a small array and
 * string-keyed Map inserts, about 1.5 ms on a 2-vCPU AMD EPYC guest) timed a few times, the median returned.
 *
 * Why: the benchmark machines are virtual CPUs on a shared host. A guest cannot see another guest's load
 * (steal time reads 0 and /proc/stat shows the vCPU busy only with our own work), yet the same fixed work runs
 * up to 40 % slower for tens of seconds at a time, on one vCPU and not the other (docs/benchmarks.md,
 * "The host's slow windows"); bench/overhead/host-windows.ts shows it with this ruler. (Used as a per-cell
 * check inside the overhead benchmark, it proved too noisy: in a client process that has just run a cell,
 * its own garbage collection moves the reading by 20 to 40 %; the benchmark interleaves its clients instead.)
 */
import { performance } from 'node:perf_hooks';

const data = new Float64Array(4096);

function unit(): number {
  let x = 0;
  for (let k = 0; k < 80; k++) {
    for (let i = 0; i < data.length; i++) {
      data[i] = data[i]! * 1.0000001 + i;
      x += data[i]!;
    }
  }
  const m = new Map<string, number>();
  for (let i = 0; i < 8000; i++) m.set('k' + i, i);
  return x + m.size;
}

let sink = 0;

/** Runs the ruler's fixed work `n` times and returns the median time of one, in ms. */
export function ruler(n = 5): number {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    sink += unit();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[n >> 1]!;
}

/** Warms the ruler's code up (call once at start, so the first reading is not the interpreter's). */
export function warmRuler(): void {
  for (let i = 0; i < 10; i++) sink += unit();
  if (sink === -1) console.log(sink);
}
