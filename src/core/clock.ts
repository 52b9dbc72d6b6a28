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
  /**
   * Schedules `fn` after `ms` milliseconds. Real timers are unref'ed: a pending timer never keeps a process
   * alive on its own; a call that waits on one is kept alive by the mesh's {@link ProcessHold}.
   */
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

/**
 * Keeps the process alive while calls are waiting, whatever they wait for (a deadline, a retry backoff, a
 * Retry-After, discovery's first answer): the mesh's own timers are unref'ed, so that background work
 * (discovery loops, window rotation, probes nobody waits for) never holds a process open, and undici unrefs
 * idle sockets. A call in progress must keep the process alive until it settles, exactly as undici's own
 * request does (DESIGN.md, "Timers"), or a one-shot script's `await` is dropped when its loop empties (exit
 * code 13 in ESM, a silent exit in CommonJS).
 *
 * One ref'ed handle per holder, never fired: `acquire` when the count of waiting calls goes from 0 to 1,
 * `release` when it goes back to 0, so the cost is one ref/unref pair per idle-to-busy transition and
 * nothing per call at concurrency. It is a real timer whatever the mesh's clock, since what it holds is the
 * event loop, not time; unref'ed when idle, it never keeps a process alive on its own.
 *
 * @example
 * ```ts
 * const hold = new ProcessHold();
 * hold.acquire();
 * await somethingOnUnrefedTimers();
 * hold.release();
 * ```
 */
export class ProcessHold {
  private count = 0;
  private handle: ReturnType<typeof setInterval> | undefined = undefined;
  private disposing = false;

  /** Calls holding the process now. */
  get holders(): number {
    return this.count;
  }

  acquire(): void {
    if (this.count++ === 0) {
      if (this.handle === undefined) this.handle = setInterval(noop, 0x7fffffff);
      else this.handle.ref();
    }
  }

  release(): void {
    if (this.count > 0 && --this.count === 0) {
      if (this.disposing) this.dispose();
      else this.handle?.unref();
    }
  }

  /** Drops the handle at once, whoever holds it; a later `acquire` makes a new one. */
  dispose(): void {
    if (this.handle !== undefined) clearInterval(this.handle);
    this.handle = undefined;
    this.count = 0;
    this.disposing = false;
  }

  /**
   * Releases one hold (the caller's) and drops the handle once no other holder is left: the holder is
   * closing, but the calls it still holds for have not all settled.
   */
  disposeWhenIdle(): void {
    this.disposing = true;
    if (this.count <= 1) this.dispose();
    else this.count--;
  }
}

function noop(): void {}
