/**
 * The host's slow windows, shown: the same fixed piece of work (bench/lib/ruler.ts) timed four times a second
 * in one process per vCPU (each pinned with taskset), with nothing else running, and the median per 5 s
 * window printed for each vCPU. On a 2-vCPU AMD EPYC guest the work ran up to 40 %
 * slower for tens of seconds at a time, on one vCPU and not the other, while the guest's /proc/stat showed
 * no steal and nothing else busy: another guest on the same host. That is why the overhead benchmark's
 * clients take turns in short slices (index.ts): a client and its reference must see the same windows.
 *
 * Run: npx tsx bench/overhead/host-windows.ts [--seconds 60]
 */
import { execFileSync, fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { numberFlag, parseFlags } from '../lib/cli.js';
import { ruler, warmRuler } from '../lib/ruler.js';

interface Reading {
  t: number;
  ms: number;
}

async function probe(seconds: number): Promise<Reading[]> {
  warmRuler();
  const out: Reading[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    out.push({ t: (performance.now() - t0) / 1000, ms: ruler(3) });
    await new Promise((r) => setTimeout(r, 250));
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const seconds = numberFlag(flags, 'seconds', 60);
  if (process.argv[2] === '--child') {
    process.send!(await probe(seconds));
    return;
  }
  const cpus = availableParallelism();
  const file = fileURLToPath(import.meta.url);
  const results = await Promise.all(
    Array.from({ length: cpus }, (_, cpu) => {
      const child = fork(file, ['--child', '--seconds', String(seconds)], {
        execArgv: process.execArgv,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      try {
        execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(child.pid)], { stdio: 'ignore' });
      } catch {
        console.log(`(taskset failed: vCPU ${cpu} is not pinned)`);
      }
      return new Promise<Reading[]>((resolve) => child.once('message', (m) => resolve(m as Reading[])));
    }),
  );
  const best = Math.min(...results.flat().map((r) => r.ms));
  console.log(
    `the ruler's fixed work: best ${best.toFixed(2)} ms; median per 5 s window, as a multiple of the best`,
  );
  for (const [cpu, rs] of results.entries()) {
    const windows: string[] = [];
    for (let w = 0; w < seconds; w += 5) {
      const xs = rs.filter((r) => r.t >= w && r.t < w + 5).map((r) => r.ms);
      if (xs.length > 0) windows.push((median(xs) / best).toFixed(2));
    }
    console.log(`vCPU ${cpu}: ${windows.join(' ')}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
