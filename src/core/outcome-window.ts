/**
 * Successes and failures over a sliding time window, in a fixed number of slices (Finagle's `WindowedAdder`):
 * failure accrual judges an endpoint's success rate with it, and the endpoint statistics of the snapshot
 * report recent outcomes with it.
 */

/** How many time slices an {@link OutcomeWindow} is cut into. */
const WINDOW_SLICES = 10;

/**
 * Successes and failures over a sliding time window, counted in {@link WINDOW_SLICES} slices of
 * `windowMs / 10` each (Finagle's `WindowedAdder`): recording and reading are O(1) amortised, memory is fixed.
 * The window at time `t` holds the outcomes recorded in the slice containing `t` and the nine before it, so
 * it spans between 90 % and 100 % of `windowMs`.
 *
 * @example
 * ```ts
 * const w = new OutcomeWindow(30_000);
 * w.record(true, clock.now());
 * w.record(false, clock.now());
 * w.total(clock.now());       // 2
 * w.successRate(clock.now()); // 0.5
 * ```
 */
export class OutcomeWindow {
  private readonly sliceMs: number;
  private readonly ok = new Float64Array(WINDOW_SLICES);
  private readonly bad = new Float64Array(WINDOW_SLICES);
  private head = -Infinity;
  private okSum = 0;
  private badSum = 0;

  constructor(windowMs: number) {
    this.sliceMs = windowMs / WINDOW_SLICES;
  }

  /** Counts one outcome at time `now` (ms). */
  record(success: boolean, now: number): void {
    const i = this.advance(now);
    if (success) {
      this.ok[i]!++;
      this.okSum++;
    } else {
      this.bad[i]!++;
      this.badSum++;
    }
  }

  /** Outcomes in the window at `now`. */
  total(now: number): number {
    this.advance(now);
    return this.okSum + this.badSum;
  }

  /** Failures in the window at `now`. */
  failures(now: number): number {
    this.advance(now);
    return this.badSum;
  }

  /** Successes / outcomes in the window at `now`; 1 when there are none. */
  successRate(now: number): number {
    this.advance(now);
    const n = this.okSum + this.badSum;
    return n === 0 ? 1 : this.okSum / n;
  }

  /** Forgets everything. */
  reset(): void {
    this.ok.fill(0);
    this.bad.fill(0);
    this.okSum = 0;
    this.badSum = 0;
    this.head = -Infinity;
  }

  /** Expires the slices that fell out of the window; returns the index of the slice for `now`. */
  private advance(now: number): number {
    const k = Math.floor(now / this.sliceMs);
    const head = this.head;
    if (k > head) {
      const steps = head === -Infinity ? WINDOW_SLICES : Math.min(k - head, WINDOW_SLICES);
      for (let s = 1; s <= steps; s++) {
        const j = mod(k - steps + s, WINDOW_SLICES);
        this.okSum -= this.ok[j]!;
        this.badSum -= this.bad[j]!;
        this.ok[j] = 0;
        this.bad[j] = 0;
      }
      this.head = k;
      return mod(k, WINDOW_SLICES);
    }
    // A clock that went backwards (it should not: the mesh clock is monotonic) counts into the newest slice.
    return mod(head, WINDOW_SLICES);
  }
}

function mod(a: number, n: number): number {
  const r = a % n;
  return r < 0 ? r + n : r;
}
