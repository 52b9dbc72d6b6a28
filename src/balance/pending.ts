/**
 * The simplest load metric: outstanding requests (Finagle's least-loaded `P2CLeastLoaded`, tower's
 * `load::PendingRequests`). Blind to latency until slowness turns into queued requests, but cheap and free of
 * tuning; P2C over it is `p2cLeastLoaded`.
 */
import type { LoadMetric } from './types.js';

/**
 * Load = requests in flight. With weights, P2C compares `pending / weight` (the default of
 * {@link LoadMetric.weightedCost}).
 *
 * @example
 * ```ts
 * const m = new PendingLoad();
 * m.start(0); m.cost(0); // 1
 * ```
 */
export class PendingLoad implements LoadMetric {
  pending = 0;
  start(): void {
    this.pending++;
  }
  observe(): void {}
  end(): void {
    if (this.pending > 0) this.pending--;
  }
  cost(): number {
    return this.pending;
  }
}
