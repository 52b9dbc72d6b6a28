/**
 * A manual clock for deterministic tests: time moves only when the test calls {@link FakeClock.advance},
 * and timers fire in deadline order (ties in scheduling order) as it passes them.
 */
import type { Clock, TimerHandle } from '../core/clock.js';

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A {@link Clock} driven by hand.
 *
 * @example
 * ```ts
 * const clock = new FakeClock();
 * let fired = false;
 * clock.setTimeout(() => (fired = true), 100);
 * clock.advance(99);  // fired === false
 * clock.advance(1);   // fired === true
 * ```
 */
export class FakeClock implements Clock {
  private t: number;
  private readonly wallOffset: number;
  private seq = 0;
  private timers: FakeTimer[] = [];

  /** @param start monotonic start time (ms); @param wallStart wall-clock epoch ms at `start`. */
  constructor(start = 0, wallStart = 1_700_000_000_000) {
    this.t = start;
    this.wallOffset = wallStart - start;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.t + this.wallOffset;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) (handle as FakeTimer).cancelled = true;
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const x of this.timers) {
        if (x.cancelled || x.at > target) continue;
        if (!next || x.at < next.at || (x.at === next.at && x.seq < next.seq)) next = x;
      }
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next && !x.cancelled);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = target;
  }
}
