/**
 * The circuit breaker's rolling window on the mesh clock: the closed state's counts of requests and failures,
 * in buckets, and the timer that slides them. One timer serves every breaker with the same bucket length and
 * slides opossum's own window too, through opossum's `rotateBucketController` option (its documented way to
 * share one rotation among breakers), so a process with many breakers runs one timer, not an interval each.
 *
 * The shape is Hystrix's `HystrixRollingNumber` and opossum's Status window (nodeshift/opossum, lib/status.js):
 * a fixed number of buckets of `windowMs / windowBuckets` each; each rotation drops the oldest bucket and
 * starts a new one, so the window holds between `windowMs - windowMs / windowBuckets` and `windowMs` of calls.
 */
import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../core/clock.js';

/**
 * Requests and failures of the closed state in `buckets` buckets: the current one takes the counts, and each
 * rotation drops the oldest and starts a new one (the shape of opossum's Status window).
 */
export class RollingCounts {
  private readonly requests: Float64Array;
  private readonly failures: Float64Array;
  private head = 0;
  requestSum = 0;
  failureSum = 0;

  constructor(private readonly buckets: number) {
    this.requests = new Float64Array(buckets);
    this.failures = new Float64Array(buckets);
  }

  add(failed: boolean): void {
    this.requests[this.head]!++;
    this.requestSum++;
    if (!failed) return;
    this.failures[this.head]!++;
    this.failureSum++;
  }

  rotate(): void {
    const oldest = (this.head + 1) % this.buckets;
    this.requestSum -= this.requests[oldest]!;
    this.failureSum -= this.failures[oldest]!;
    this.requests[oldest] = 0;
    this.failures[oldest] = 0;
    this.head = oldest;
  }

  reset(): void {
    this.requests.fill(0);
    this.failures.fill(0);
    this.requestSum = 0;
    this.failureSum = 0;
  }
}

/**
 * One timer on the mesh clock that slides the rolling windows of every breaker with the same bucket length:
 * it emits opossum's `rotate` event on the emitter given to opossum as `rotateBucketController` (instead of
 * one `setInterval` per breaker), then runs the breakers' after-rotation hooks. It runs only while at least
 * one breaker uses it. Ticks are scheduled from the previous due time, so they do not drift, and a late timer
 * catches up with zero-delay ticks.
 */
export class BucketRotation {
  /** The emitter opossum listens on (one listener per breaker: no max-listeners limit). */
  readonly controller = new EventEmitter().setMaxListeners(0);
  private readonly hooks = new Set<() => void>();
  private timer: TimerHandle | undefined;
  private due = 0;

  constructor(
    private readonly clock: Clock,
    readonly intervalMs: number,
    private readonly onIdle: (r: BucketRotation) => void,
  ) {}

  get size(): number {
    return this.hooks.size;
  }

  add(hook: () => void): void {
    this.hooks.add(hook);
    if (this.timer === undefined) {
      this.due = this.clock.now() + this.intervalMs;
      this.timer = this.clock.setTimeout(this.tick, this.intervalMs);
    }
  }

  remove(hook: () => void): void {
    if (!this.hooks.delete(hook) || this.hooks.size > 0) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.onIdle(this);
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.controller.emit('rotate');
    for (const hook of this.hooks) hook();
    if (this.hooks.size === 0) return;
    this.due += this.intervalMs;
    this.timer = this.clock.setTimeout(this.tick, Math.max(0, this.due - this.clock.now()));
  };
}

const rotations = new WeakMap<Clock, Map<number, BucketRotation>>();

/** The shared rotation for `clock` and this bucket length (one per distinct length, per clock). */
export function rotationFor(clock: Clock, intervalMs: number): BucketRotation {
  let byInterval = rotations.get(clock);
  if (byInterval === undefined) rotations.set(clock, (byInterval = new Map()));
  let r = byInterval.get(intervalMs);
  if (r === undefined) {
    r = new BucketRotation(clock, intervalMs, (idle) => {
      if (byInterval.get(idle.intervalMs) === idle) byInterval.delete(idle.intervalMs);
    });
    byInterval.set(intervalMs, r);
  }
  return r;
}

/**
 * How many shared bucket rotations are running on `clock`, and how many breakers they serve. For tests and
 * diagnostics: after every mesh using `clock` is closed, both are 0.
 *
 * @example
 * ```ts
 * await mesh.close();
 * bucketRotationStats(mesh.clock); // { timers: 0, breakers: 0 }
 * ```
 */
export function bucketRotationStats(clock: Clock): { timers: number; breakers: number } {
  const byInterval = rotations.get(clock);
  let breakers = 0;
  for (const r of byInterval?.values() ?? []) breakers += r.size;
  return { timers: byInterval?.size ?? 0, breakers };
}
