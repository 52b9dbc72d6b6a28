/**
 * The deadline scope of one incoming request: an absolute deadline on the mesh clock, one AbortController that
 * fires when the deadline passes (or a linked signal aborts), and the incoming-request context
 * (AsyncLocalStorage, src/core/incoming.ts) entered once around the handler, so that every mesh call the
 * handler makes inherits the deadline (min(incoming, local)) and the signal without the handler passing
 * anything along. The readers ({@link remainingMs}, {@link getIncomingDeadline}, {@link incomingSignal}) read
 * that context.
 *
 * Entering AsyncLocalStorage per incoming request is cheap enough; the mesh only reads it per outgoing call.
 * One timer (and at most one listener) per request, both released when the request is done, so nothing
 * accumulates on long-lived keep-alive sockets. Used by the handler wrapper (server.ts) and, through
 * {@link runWithDeadline}, by adapters for frameworks whose handlers are not node:http listeners.
 */
import { systemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { ConfigError, DeadlineExceededError, type Phase } from '../core/errors.js';
import { incomingContext, type IncomingContext } from '../core/incoming.js';
import { custom, isPlainObject, string } from '../core/validate.js';
import type { RouteOverrides } from '../routing/override.js';

/**
 * Options for {@link runWithDeadline}.
 *
 * @example
 * ```ts
 * runWithDeadline({ deadlineMs: 500 }, handle, { service: 'users', clock: mesh.clock });
 * ```
 */
export interface RunWithDeadlineOptions {
  /** Service name in the errors the signal aborts with. Default `'incoming'`. */
  service?: string;
  /** The mesh's clock. Default `systemClock`. */
  clock?: Clock;
}

/**
 * What {@link runWithDeadline} hands to its function.
 *
 * @example
 * ```ts
 * runWithDeadline({ deadlineMs: 500 }, (scope) => {
 *   res.on('close', scope.release);
 *   handle(req, res, scope.signal);
 * });
 * ```
 */
export interface DeadlineScope {
  /** Aborts with `DeadlineExceededError` when the deadline passes, or with the given signal's reason. */
  readonly signal: AbortSignal;
  /** Absolute deadline on the clock (ms); `Infinity` for none. */
  readonly deadline: number;
  /** Stops the timer and unlinks the given signal. Idempotent. Called for you when `fn` returns a promise that settles. */
  release(): void;
}

/** The store this module enters: the public shape plus what the budget helpers need. */
export interface ServerIncomingContext extends IncomingContext {
  readonly deadline: number;
  readonly signal: AbortSignal;
  readonly clock: Clock;
}

/** Arms one controller for one incoming request: a timer for the deadline and, optionally, a linked signal. */
export function arm(
  budgetMs: number | undefined,
  clock: Clock,
  service: string,
  phase: () => Phase,
  linked: AbortSignal | undefined,
): { store: ServerIncomingContext; controller: AbortController; release: () => void } {
  const controller = new AbortController();
  const now = clock.now();
  const deadline = budgetMs === undefined || budgetMs === Infinity ? Infinity : now + budgetMs;
  let timer: TimerHandle | undefined;
  let released = false;
  const onLinkedAbort = (): void => {
    release();
    controller.abort(linked!.reason);
  };
  const release = (): void => {
    if (released) return;
    released = true;
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    linked?.removeEventListener('abort', onLinkedAbort);
  };
  if (linked?.aborted) {
    released = true;
    controller.abort(linked.reason);
  } else if (deadline !== Infinity && budgetMs! <= 0) {
    released = true;
    controller.abort(new DeadlineExceededError(service, 0, phase()));
  } else {
    if (deadline !== Infinity) {
      timer = clock.setTimeout(() => {
        timer = undefined;
        release();
        controller.abort(new DeadlineExceededError(service, budgetMs!, phase()));
      }, budgetMs!);
    }
    linked?.addEventListener('abort', onLinkedAbort, { once: true });
  }
  return { store: { deadline, signal: controller.signal, clock }, controller, release };
}

/**
 * Runs `fn` inside the incoming-request context with a deadline `deadlineMs` from now, for frameworks whose
 * handlers are not plain node:http listeners (express, fastify, ...). Mesh calls made inside inherit the
 * deadline and the scope's signal. The scope's signal aborts with `DeadlineExceededError` when the deadline
 * passes, or with `signal`'s reason when the given signal aborts (pass one that aborts when the client goes
 * away). If `fn` returns a promise, the scope is released when it settles; otherwise call `scope.release()`
 * when the response is done (the timer is unref'ed and one-shot, but release it anyway).
 *
 * `deadlineMs` is relative (ms, >= 0; `undefined` or `Infinity` for none). A value of `0` runs `fn` with an
 * already-aborted signal: refuse such requests before calling it (see {@link parseIncomingDeadline}).
 *
 * @example
 * ```ts
 * import { parseIncomingDeadline, runWithDeadline } from 'meshfetch';
 *
 * app.use((req, res, next) => {
 *   const deadlineMs = parseIncomingDeadline(req.headers);
 *   if (deadlineMs === 0) return void res.status(504).end();
 *   runWithDeadline({ deadlineMs }, (scope) => {
 *     res.on('close', scope.release);
 *     next();
 *   });
 * });
 * ```
 */
export function runWithDeadline<T>(
  init: {
    deadlineMs?: number | undefined;
    signal?: AbortSignal | undefined;
    /** A routing override from a trusted caller (`readOverrideHeader(req.headers['mesh-dtab'])`). */
    overrides?: RouteOverrides | undefined;
  },
  fn: (scope: DeadlineScope) => T,
  options: RunWithDeadlineOptions = {},
): T {
  if (init === null || typeof init !== 'object') {
    throw new ConfigError('runWithDeadline.init', init, 'an object { deadlineMs?, signal? }');
  }
  if (typeof fn !== 'function') throw new ConfigError('runWithDeadline.fn', fn, 'a function');
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('runWithDeadline.options', options, 'an options object');
  }
  const d = init.deadlineMs;
  if (d !== undefined && (typeof d !== 'number' || Number.isNaN(d) || d < 0)) {
    throw new ConfigError('runWithDeadline.deadlineMs', d, 'a number of milliseconds >= 0 (or Infinity)');
  }
  const signal = init.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ConfigError('runWithDeadline.signal', signal, 'an AbortSignal');
  }
  const service = checkService('runWithDeadline.service', options.service);
  const clock = checkClock('runWithDeadline.clock', options.clock);
  const { store, release } = arm(d, clock, service, () => 'headers', signal);
  const scope: DeadlineScope = { signal: store.signal, deadline: store.deadline, release };
  let result: T;
  try {
    result = incomingContext.run(init.overrides ? { ...store, overrides: init.overrides } : store, fn, scope);
  } catch (err) {
    release();
    throw err;
  }
  if (isThenable(result)) result.then(release, release);
  return result;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/**
 * The absolute deadline (ms on the mesh clock) of the request being served, `Infinity` if it has none, or
 * `undefined` outside a handler run by {@link meshHandler} / {@link runWithDeadline}.
 *
 * @example
 * ```ts
 * const deadline = getIncomingDeadline();
 * if (deadline !== undefined && deadline !== Infinity) log(`answer by t=${deadline}`);
 * ```
 */
export function getIncomingDeadline(): number | undefined {
  return incomingContext.getStore()?.deadline;
}

/**
 * Milliseconds left (fractional, never negative) before the incoming request's deadline; `Infinity` when it has
 * none or outside a served request. Reads the clock the helper was given unless you pass one.
 *
 * @example
 * ```ts
 * if (remainingMs() < 50) return void res.writeHead(503).end(); // not enough time to do it properly
 * ```
 */
export function remainingMs(clock?: Clock): number {
  const store = incomingContext.getStore() as Partial<ServerIncomingContext> | undefined;
  const deadline = store?.deadline;
  if (deadline === undefined || deadline === Infinity) return Infinity;
  const c = clock ?? store?.clock ?? systemClock;
  return Math.max(0, deadline - c.now());
}

/**
 * The AbortSignal of the request being served (aborts when its deadline passes or the client goes away), or
 * `undefined` outside a served request. Pass it to work the mesh does not see (database queries, timers).
 *
 * @example
 * ```ts
 * await db.query(sql, { signal: incomingSignal() });
 * ```
 */
export function incomingSignal(): AbortSignal | undefined {
  return incomingContext.getStore()?.signal;
}

/** The service name errors carry (default `'incoming'`), declared once. */
const serviceName = string({ nonEmpty: true, default: 'incoming' });

/** The clock deadlines are read on (default the system's), declared once. */
const clockOption = custom(
  (v, path): Clock => {
    if (!isPlainObject(v) || ['now', 'setTimeout', 'clearTimeout'].some((m) => typeof v[m] !== 'function'))
      throw new ConfigError(path, v, 'a Clock { now, wallNow, setTimeout, clearTimeout }');
    return v as unknown as Clock;
  },
  { default: systemClock },
);

export function checkService(path: string, v: unknown): string {
  return serviceName.resolve(v, path);
}

export function checkClock(path: string, v: unknown): Clock {
  return clockOption.resolve(v, path);
}
