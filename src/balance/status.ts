/**
 * Cheap bookkeeping of how many nodes are not ready, for panic mode (Envoy's panic threshold: when too few
 * hosts are healthy, balance over all of them rather than pile every request onto the few that are left).
 *
 * A node's `status` is a live getter that can change at any time (failure accrual, a breaker), and there is no
 * change event, so an exact count would need a scan of every node per pick. Instead:
 *
 * - every node's last seen status is cached in a byte array, with a running count of the not-ready ones;
 * - the count is recomputed from scratch by one O(n) scan on `update()` and then at most once every
 *   `refreshMs` of clock time (default 100 ms), on the first pick after the interval has passed;
 * - between scans, every status a pick reads anyway (P2C's two candidates, round robin's next node) refreshes
 *   that node's cache entry and the count in O(1).
 *
 * - a distributor that adds or removes nodes incrementally (`Distributor.apply`) appends and swap-removes
 *   entries in O(1), reading only the added and updated nodes' statuses.
 *
 * So a pick costs O(1), plus an amortised n / (picks per `refreshMs`) status reads: for 100 endpoints at 1,000
 * requests per second, one status read per pick. Panic mode starts at most `refreshMs` after the statuses
 * changed (sooner when picks happen to sample the changed nodes), which is far below the seconds that failure
 * accrual keeps a node busy.
 */
import type { ServiceStatus } from '../core/service.js';
import type { BalancerNode } from './types.js';

const READY = 0;
const BUSY = 1;
const DOWN = 2;

/**
 * The rank of a status: 0 for `ready`, 1 for `busy`, 2 for `down` (lower is better, as in Finagle's
 * `Status.best`).
 *
 * @example
 * ```ts
 * statusRank('busy'); // 1
 * ```
 */
export function statusRank(status: ServiceStatus): number {
  return status === 'ready' ? READY : status === 'busy' ? BUSY : DOWN;
}

/**
 * The cached statuses of one node set and the count of nodes that are not ready. Entry `i` belongs to the
 * distributor's node `i`; a distributor that changes its set incrementally keeps the entries in step with
 * {@link StatusTracker.push} (a node appended) and {@link StatusTracker.swapRemove} (node `i` removed and the
 * last node moved into its place), both O(1) amortised.
 *
 * @example
 * ```ts
 * const t = new StatusTracker(100);
 * t.scan(nodes, clock.now());
 * t.refresh(nodes, clock.now()); // rescans only when 100 ms have passed
 * t.panic(0.5);                  // fewer than half ready?
 * t.push(added.status);          // a node appended at index t.size
 * t.swapRemove(3);               // node 3 removed, the last one moved to 3
 * ```
 */
export class StatusTracker {
  /** Cached status ranks; entries at and beyond `n` are spare capacity. */
  private codes = new Uint8Array(0);
  private n = 0;
  private scannedAt = 0;
  /** Nodes whose cached status is not `ready`. */
  notReady = 0;
  /** Nodes whose cached status is `down`. */
  down = 0;

  constructor(private readonly refreshMs: number) {}

  /** Number of nodes tracked. */
  get size(): number {
    return this.n;
  }

  /** Reads every node's status: O(n). Returns true when any cached status changed. */
  scan(nodes: readonly BalancerNode[], now: number): boolean {
    const n = nodes.length;
    let changed = false;
    if (this.n !== n) {
      this.reserve(n);
      // Entries past the old size hold stale codes: make them differ from anything read below.
      this.codes.fill(255, this.n, n);
      this.n = n;
      changed = true;
    }
    const codes = this.codes;
    let notReady = 0;
    let down = 0;
    for (let i = 0; i < n; i++) {
      const code = statusRank(nodes[i]!.status);
      if (code !== codes[i]) {
        codes[i] = code;
        changed = true;
      }
      if (code !== READY) notReady++;
      if (code === DOWN) down++;
    }
    this.notReady = notReady;
    this.down = down;
    this.scannedAt = now;
    return changed;
  }

  /** True when `refreshMs` has passed since the last scan (or the clock went backwards). */
  due(now: number): boolean {
    const elapsed = now - this.scannedAt;
    return elapsed >= this.refreshMs || elapsed < 0;
  }

  /** Rescans when {@link StatusTracker.due}. Returns true when any cached status changed. */
  refresh(nodes: readonly BalancerNode[], now: number): boolean {
    return this.due(now) ? this.scan(nodes, now) : false;
  }

  /** Records a status read for node `i` in O(1). Returns true when it differs from the cached one. */
  note(i: number, status: ServiceStatus): boolean {
    if (i >= this.n) return false;
    const code = statusRank(status);
    const old = this.codes[i]!;
    if (old === code) return false;
    this.codes[i] = code;
    this.notReady += (code !== READY ? 1 : 0) - (old !== READY ? 1 : 0);
    this.down += (code === DOWN ? 1 : 0) - (old === DOWN ? 1 : 0);
    return true;
  }

  /** Appends an entry for a node added at index {@link StatusTracker.size}, with its status: O(1) amortised. */
  push(status: ServiceStatus): void {
    this.reserve(this.n + 1);
    const code = statusRank(status);
    this.codes[this.n++] = code;
    if (code !== READY) this.notReady++;
    if (code === DOWN) this.down++;
  }

  /** Drops node `i`'s entry and moves the last entry into its place (the distributor's swap-remove): O(1). */
  swapRemove(i: number): void {
    if (i >= this.n) return;
    const code = this.codes[i]!;
    if (code !== READY) this.notReady--;
    if (code === DOWN) this.down--;
    const last = --this.n;
    this.codes[i] = this.codes[last]!;
  }

  /** The cached status rank of node `i`. */
  cached(i: number): number {
    return i < this.n ? this.codes[i]! : DOWN;
  }

  /**
   * True when the share of ready nodes is below `threshold` (Envoy's `healthy_panic_threshold` as a fraction:
   * 0.5 means panic when more than half are not ready; 0 disables panic mode).
   */
  panic(threshold: number): boolean {
    const n = this.n;
    return n > 0 && n - this.notReady < threshold * n;
  }

  /** Grows the code array to hold at least `n` entries (doubling, so appends are O(1) amortised). */
  private reserve(n: number): void {
    if (n <= this.codes.length) return;
    const next = new Uint8Array(Math.max(n, this.codes.length * 2, 8));
    next.set(this.codes.subarray(0, this.n));
    this.codes = next;
  }
}
