/**
 * Per-endpoint request and failure counters and a recent success rate, kept for every endpoint whatever the
 * stack (failure accrual keeps its own window only while it is on, and resets it on each state change), so
 * that `mesh.snapshot()` can always say how an endpoint is doing. Outcomes are classified by the service's
 * classifier, so the snapshot agrees with retries, accrual and the breaker on what a failure is; `ignored`
 * outcomes (the caller gave up, back-pressure) count as requests but neither way in the rate.
 */
import { OutcomeWindow } from '../core/outcome-window.js';

/** How far back the recent success rate looks (ms): Finagle's and failure accrual's 30 s. */
export const RECENT_WINDOW_MS = 30_000;

/**
 * A JSON-serialisable view of {@link EndpointStats}.
 *
 * @example
 * ```ts
 * const s: EndpointStatsSnapshot = { requests: 10, failures: 1, successRate: 0.9 };
 * ```
 */
export interface EndpointStatsSnapshot {
  /** Attempts sent to the endpoint since discovery named it. */
  readonly requests: number;
  /** Of those, the ones classified as failures. */
  readonly failures: number;
  /** Successes / (successes + failures) over the last 30 s; null when there were none. */
  readonly successRate: number | null;
}

/**
 * The counters of one endpoint.
 *
 * @example
 * ```ts
 * const stats = new EndpointStats();
 * stats.record('success', clock.now());
 * stats.snapshot(clock.now()); // { requests: 1, failures: 0, successRate: 1 }
 * ```
 */
export class EndpointStats {
  requests = 0;
  failures = 0;
  private readonly window = new OutcomeWindow(RECENT_WINDOW_MS);

  /** Counts one attempt's outcome at `now` (mesh clock, ms). */
  record(kind: 'success' | 'failure' | 'ignored', now: number): void {
    this.requests++;
    if (kind === 'ignored') return;
    const ok = kind === 'success';
    if (!ok) this.failures++;
    this.window.record(ok, now);
  }

  /** A view at `now`. */
  snapshot(now: number): EndpointStatsSnapshot {
    const n = this.window.total(now);
    return {
      requests: this.requests,
      failures: this.failures,
      successRate: n === 0 ? null : this.window.successRate(now),
    };
  }
}
