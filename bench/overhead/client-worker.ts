/**
 * One overhead-benchmark client in a process of its own. A service that uses meshfetch has one mesh with one
 * configuration: running a dozen variants (bare undici, fetch, several meshes with different stacks, the
 * OpenTelemetry SDK) in one process makes their call sites megamorphic and shares one heap and garbage
 * collector among them, which charged every variant for the others (the isolated CPU profiles of
 * bench/overhead/profile.ts disagreed with the in-process numbers by several µs per call). The parent
 * (index.ts) alternates the variants within each round, so slow drift of the machine hits them alike, and
 * starts a fresh process per variant for every round, which runs its warm-up and its cells back to back and
 * exits (an idle process gets V8's memory-reducing collections, which threw its optimized code away: idle.ts):
 * a process's own state (JIT decisions, heap layout, the core it runs on) moves its CPU per call by several µs
 * for as long as it lives (in one run, the HAProxy
 * client, which runs the same `Pool.request` code as the reference, spent 11 µs more per call at
 * concurrency 1 over all eight rounds), so one process per variant for a whole run is a bias; a fresh one per
 * round is noise that the per-round medians absorb.
 *
 * Protocol (IPC): the parent sends `{ type: 'run', concurrency, durationMs, record }`, the worker answers
 * with a {@link RunResult} (a run with `record: false` is a warm-up; a measured one carries every latency, so
 * the parent can merge the rounds of different processes into one histogram); `{ type: 'close' }` closes the
 * client and exits.
 *
 * No forced GC between cells: each process collects its own garbage as a service would. A `gc()` after each
 * warm-up (done until 2026-11-25) made V8 throw away optimized code that embedded objects the collection
 * found dead (`--trace-deopt`: "marking dependent code ... reason: weak objects", processTicksAndRejections,
 * nextTick, Readable.read, Socket._write among them); the re-optimized code cost the mesh variants 4 to 6 µs
 * more per call from the third round on while bare `Pool.request` kept its figure (docs/benchmarks.md, "The
 * forced GC"). A service never runs a full collection after every burst of calls.
 *
 * Started by index.ts; not meant to be run by hand.
 */
import { closedLoop } from '../lib/load.js';
import { summarize } from '../lib/stats.js';
import { BASELINE_ENV, BASELINE_PREFIX, baselineClient } from './baseline.js';
import type { Client, Upstreams } from './variants.js';

/** What one measured cell gives back. */
export interface RunResult {
  type: 'result';
  count: number;
  errors: number;
  firstError: string | null;
  elapsedMs: number;
  /** This process's CPU time (user + system) over the measured loop. */
  cpuUs: number;
  /** The system (kernel) part of {@link RunResult.cpuUs}. */
  sysUs: number;
  p50Us: number;
  p99Us: number;
  /** Every successful call's latency (ns), for a measured cell; the parent merges them across processes. */
  samplesNs: number[] | null;
}

/** Messages the parent sends. */
export type WorkerCommand =
  { type: 'run'; concurrency: number; durationMs: number; record: boolean } | { type: 'close' };

async function main(): Promise<void> {
  const [id = '', serverPort, haproxyPort] = process.argv.slice(2);
  const up: Upstreams = {
    serverPort: Number(serverPort),
    haproxyPort: haproxyPort ? Number(haproxyPort) : undefined,
  };
  // A baseline client (--baseline, baseline.ts) loads the other build alone: variants.ts, which imports this
  // build, undici and OpenTelemetry, is imported only for the current clients.
  let client: Client;
  if (id.startsWith(BASELINE_PREFIX)) {
    client = await baselineClient(id.slice(BASELINE_PREFIX.length), process.env[BASELINE_ENV], up);
  } else {
    const { findVariant, makeClient } = await import('./variants.js');
    const v = findVariant(id);
    if (!v) throw new Error(`unknown variant ${id}`);
    client = makeClient(v, up);
  }
  // One variant per process: a variant that registers global providers (the OTel SDK) keeps them.
  client.enter?.();
  const send = (m: unknown): void => void process.send!(m);
  process.on('message', (m: WorkerCommand) => {
    void (async () => {
      if (m.type === 'run') {
        const samplesNs: number[] | undefined = m.record ? [] : undefined;
        const cpu0 = process.cpuUsage();
        const res = await closedLoop(client.call, {
          concurrency: m.concurrency,
          durationMs: m.durationMs,
          ...(samplesNs ? { samplesNs } : {}),
        });
        const cpu = process.cpuUsage(cpu0);
        const s = summarize(res.histogram);
        const out: RunResult = {
          type: 'result',
          count: res.count,
          errors: res.errors,
          firstError: res.firstError ?? null,
          elapsedMs: res.elapsedMs,
          cpuUs: cpu.user + cpu.system,
          sysUs: cpu.system,
          p50Us: s.p50Us,
          p99Us: s.p99Us,
          samplesNs: samplesNs ?? null,
        };
        send(out);
      } else if (m.type === 'close') {
        client.leave?.();
        await client.close();
        process.disconnect();
      }
    })().catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  });
  // Fails loudly here if the variant is broken, then says it is ready.
  await client.call();
  send({ type: 'ready' });
  process.once('disconnect', () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
