/**
 * Open-loop load for the tail benchmark: send times are computed up front (a fixed rate, evenly spaced), a
 * request is sent at its time whether or not earlier ones have answered, and its latency is measured from its
 * *scheduled* send time to the end of its body. A late send (the generator's own event loop was busy) is
 * therefore charged to the request, never hidden: this is what keeps the measurement free of coordinated
 * omission (Gil Tene; wrk2 measures the same way). The generator's own lateness is recorded too, to show it
 * kept up.
 *
 * The schedule is a warm-up (sent, not recorded) followed by the measured part, without a gap. Hooks fire at
 * given offsets of the measured part (the benchmark degrades and heals a backend with them). After the last
 * send it waits for the calls in flight, at most `drainMs`, and counts what is left as unfinished. Bounded:
 * it always stops by itself.
 */
import type { RecordableHistogram } from 'node:perf_hooks';
import { newHistogram, recordMs } from '../lib/stats.js';

/** Options of {@link openLoop}. */
export interface OpenLoopOptions {
  ratePerSec: number;
  warmupMs: number;
  durationMs: number;
  /** Longest wait for calls in flight after the last send. */
  drainMs: number;
  /** Number of backends (for the per-second response counts). */
  backends: number;
  /** Called at `atMs` into the measured part (0 = its start), in order, before the sends due then. */
  hooks: ReadonlyArray<{ atMs: number; run: () => void }>;
}

/** What one run measured. */
export interface OpenLoopResult {
  sent: number;
  ok: number;
  errors: number;
  firstError: string | undefined;
  /** Calls still in flight when the drain time ran out. */
  unfinished: number;
  /** Successful calls' latency from the scheduled send time, ns. */
  histogram: RecordableHistogram;
  /** The same, per second of the measured part (by scheduled send time). */
  perSecond: RecordableHistogram[];
  /** Successful responses per backend per second (by the `x-backend` header of the answer). */
  responses: number[][];
  /** How late the generator sent, ns (actual send minus scheduled). */
  lateness: RecordableHistogram;
  /** Wall time of the measured part, from its first scheduled send to the last completion (ms). */
  elapsedMs: number;
}

/**
 * Runs `send` on the schedule; see the file comment.
 *
 * @example
 * ```ts
 * const r = await openLoop(client.send, { ratePerSec: 500, warmupMs: 2_000, durationMs: 60_000, drainMs: 5_000,
 *   backends: 11, hooks: [] });
 * ```
 */
export function openLoop(send: () => Promise<number>, o: OpenLoopOptions): Promise<OpenLoopResult> {
  const interval = 1000 / o.ratePerSec;
  const warmN = Math.round((o.warmupMs / 1000) * o.ratePerSec);
  const n = warmN + Math.round((o.durationMs / 1000) * o.ratePerSec);
  const seconds = Math.ceil(o.durationMs / 1000);
  const histogram = newHistogram();
  const lateness = newHistogram();
  const perSecond = Array.from({ length: seconds }, () => newHistogram());
  const responses = Array.from({ length: o.backends }, () => new Array<number>(seconds).fill(0));
  const hooks = [...o.hooks].sort((a, b) => a.atMs - b.atMs);
  let nextHook = 0;
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let inflight = 0;
  let lastEnd = 0;
  const start = performance.now() + 20;
  const measuredStart = start + warmN * interval;

  return new Promise((resolve) => {
    let sendingDone = false;
    let finished = false;
    let drainTimer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (drainTimer) clearTimeout(drainTimer);
      resolve({
        sent,
        ok,
        errors,
        firstError,
        unfinished: inflight,
        histogram,
        perSecond,
        responses,
        lateness,
        elapsedMs: (inflight === 0 ? lastEnd : performance.now()) - measuredStart,
      });
    };
    const fire = (i: number, scheduled: number): void => {
      const measured = i >= warmN;
      if (measured) {
        sent++;
        recordMs(lateness, performance.now() - scheduled);
      }
      inflight++;
      send().then(
        (backend) => {
          const end = performance.now();
          inflight--;
          lastEnd = end;
          if (measured && !finished) {
            ok++;
            const ms = end - scheduled;
            recordMs(histogram, ms);
            const s = Math.min(seconds - 1, Math.floor((scheduled - measuredStart) / 1000));
            recordMs(perSecond[s]!, ms);
            const row = responses[backend];
            if (row) row[s]!++;
          }
          if (sendingDone && inflight === 0) finish();
        },
        (err: unknown) => {
          inflight--;
          lastEnd = performance.now();
          if (measured && !finished) {
            errors++;
            firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          }
          if (sendingDone && inflight === 0) finish();
        },
      );
    };
    let i = 0;
    const tick = (): void => {
      const now = performance.now();
      while (i < n) {
        const scheduled = start + i * interval;
        if (scheduled > now) break;
        while (nextHook < hooks.length && measuredStart + hooks[nextHook]!.atMs <= scheduled) {
          hooks[nextHook++]!.run();
        }
        fire(i, scheduled);
        i++;
      }
      if (i < n) {
        setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
        return;
      }
      while (nextHook < hooks.length) hooks[nextHook++]!.run();
      sendingDone = true;
      if (inflight === 0) finish();
      else drainTimer = setTimeout(finish, o.drainMs);
    };
    setTimeout(tick, Math.max(0, start - performance.now()));
  });
}
