/**
 * The only place that reads ambient time. Every algorithm in meshfetch takes a {@link Clock} so that tests
 * can drive time by hand (linkerd2-proxy bans the ambient clock by lint; Finagle and tower take a timer
 * "for deterministic tests"). The lint config forbids `Date.now`, `performance.now` and bare timers
 * everywhere else in `src/`.
 */

/** An opaque timer handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = { unref?: () => unknown } | object;

/**
 * Time source and timer factory.
 *
 * @example
 * ```ts
 * const t0 = clock.now();
 * const h = clock.setTimeout(() => console.log('elapsed', clock.now() - t0), 100);
 * clock.clearTimeout(h);
 * ```
 */
export interface Clock {
  /** Monotonic milliseconds (fractional). Only differences are meaningful. */
  now(): number;
  /** Wall-clock milliseconds since the epoch, for HTTP dates (Retry-After) and log lines. */
  wallNow(): number;
  /** Schedules `fn` after `ms` milliseconds. Real timers are unref'ed: a pending timer never keeps a process alive. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer made by {@link Clock.setTimeout}; a handle that already fired is ignored. */
  clearTimeout(handle: TimerHandle | undefined): void;
}

/**
 * The process clock: `performance.now()` for monotonic time, `Date.now()` for wall time.
 *
 * @example
 * ```ts
 * import { systemClock } from 'meshfetch';
 * const started = systemClock.now();
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    if (handle !== undefined) clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
