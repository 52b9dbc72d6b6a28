/**
 * Closed-loop load: N workers, each sending its next request as soon as the previous one has finished (so
 * concurrency is exactly N and the client is never idle). Bounded both by time and by count. Latency is
 * measured per call from just before the call to the end of the response body.
 */
import type { RecordableHistogram } from 'node:perf_hooks';
import { newHistogram, recordMs } from './stats.js';

/** What one loop measured. */
export interface LoopResult {
  /** Calls that completed successfully. */
  count: number;
  errors: number;
  firstError: string | undefined;
  /** From the first call's start to the last call's end. */
  elapsedMs: number;
  histogram: RecordableHistogram;
}

/** Options of {@link closedLoop}. */
export interface LoopOptions {
  concurrency: number;
  durationMs: number;
  /** Hard cap on calls started, whatever the time (default 10 million). */
  maxCalls?: number;
  /** Also pushes each successful call's latency (ns) here, e.g. to merge runs in another process. */
  samplesNs?: number[];
}

/**
 * Runs `call` from `concurrency` workers until `durationMs` have passed (calls in flight then finish and
 * count), then resolves.
 *
 * @example
 * ```ts
 * const r = await closedLoop(() => doOneRequest(), { concurrency: 64, durationMs: 3_000 });
 * console.log(r.count / (r.elapsedMs / 1e3), 'req/s');
 * ```
 */
export async function closedLoop(call: () => Promise<void>, opts: LoopOptions): Promise<LoopResult> {
  const h = newHistogram();
  const max = opts.maxCalls ?? 10_000_000;
  let started = 0;
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const end = t0 + opts.durationMs;
  const worker = async (): Promise<void> => {
    for (;;) {
      const s = performance.now();
      if (s >= end || started >= max) return;
      started++;
      try {
        await call();
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        continue;
      }
      const ms = performance.now() - s;
      recordMs(h, ms);
      opts.samplesNs?.push(Math.max(1, Math.round(ms * 1e6)));
      count++;
    }
  };
  const workers: Array<Promise<void>> = [];
  for (let i = 0; i < opts.concurrency; i++) workers.push(worker());
  await Promise.all(workers);
  return { count, errors, firstError, elapsedMs: performance.now() - t0, histogram: h };
}
