/**
 * The simplest load metric: outstanding requests (Finagle's least-loaded, tower's `PendingRequests`).
 */
import type { LoadMetric } from './types.js';

/**
 * Load = requests in flight.
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
