/**
 * Finagle's core abstraction in TypeScript: a {@link Service} turns a request into a promised response and
 * has a status; a {@link Filter} wraps a service and is itself a service. Filters are classes rather than
 * closures so the per-call path allocates nothing for the composition itself.
 */
import type { CallContext } from './context.js';
import type { MeshRequest, MeshResponse } from './message.js';

/**
 * The health of a service or endpoint. Named apart from breaker states (`closed | open | half-open`) so the
 * two cannot be confused: `ready` takes traffic, `busy` is avoided (failure accrual, probing), `down` is
 * closed or gone.
 */
export type ServiceStatus = 'ready' | 'busy' | 'down';

/**
 * Something that answers requests.
 *
 * @example
 * ```ts
 * const hello: Service = {
 *   status: 'ready',
 *   async call(req, ctx) { return someResponse; },
 *   async close() {},
 * };
 * ```
 */
export interface Service<Req = MeshRequest, Res = MeshResponse> {
  call(req: Req, ctx: CallContext): Promise<Res>;
  readonly status: ServiceStatus;
  close(): Promise<void>;
}

/**
 * A service that wraps another. Subclasses override `call` and usually delegate to `this.next.call`.
 * The first filter of a stack sees the request first (tower's order).
 *
 * @example
 * ```ts
 * class AddHeader extends Filter {
 *   call(req: MeshRequest, ctx: CallContext) {
 *     req.headers['x-hello'] = 'world';
 *     return this.next.call(req, ctx);
 *   }
 * }
 * ```
 */
export abstract class Filter<Req = MeshRequest, Res = MeshResponse> implements Service<Req, Res> {
  constructor(protected readonly next: Service<Req, Res>) {}
  abstract call(req: Req, ctx: CallContext): Promise<Res>;
  get status(): ServiceStatus {
    return this.next.status;
  }
  close(): Promise<void> {
    return this.next.close();
  }
}

/**
 * Calls `service` and returns its promise; a call that throws instead of returning a rejected promise becomes
 * a rejection, so a filter chaining `then` on it has one path for every failure.
 *
 * @example
 * ```ts
 * return settledCall(this.next, req, ctx).then(onResponse, onError);
 * ```
 */
export function settledCall<Req, Res>(service: Service<Req, Res>, req: Req, ctx: CallContext): Promise<Res> {
  try {
    return service.call(req, ctx);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** A continuation of a call: what the caller would pass to `then`. */
export type OnAnswer<T> = (res: MeshResponse) => T | PromiseLike<T>;
/** A continuation of a call's failure: what the caller would pass as `then`'s second argument. */
export type OnFailure<T> = (err: unknown) => T | PromiseLike<T>;

/**
 * What a caller does with the outcome of a call, as one object: `then`'s two arguments. `failed` handles the
 * error or throws it (the call's promise then rejects with what it threw). A level keeps its per-call state
 * for the way back in its continuation's fields: one object per level and call, no closures.
 */
export interface Continuation<T> {
  answered(res: MeshResponse): T | PromiseLike<T>;
  failed(err: unknown): T | PromiseLike<T>;
}

/**
 * A service that can run its caller's continuation inside its own last promise reaction.
 * `callThen(req, ctx, k)` settles exactly as `call(req, ctx).then((r) => k.answered(r), (e) => k.failed(e))`
 * would: `answered` gets the response, `failed` the failure, and a throw from `answered` is not handed to
 * `failed`. Neither runs before the service's own reaction. A chain of such services (a stack's inline
 * filters, the router, the concrete destination, the balancer leaf, failure accrual) thus settles a call in
 * one reaction over the transport's promise instead of one per level: this is how `Stack.build` and the
 * levels keep the hot path short without any caller knowing (docs/architecture.md, "the hot path"). Call it
 * through {@link callThen}, which falls back to `then` for a plain service.
 */
export interface MappingService extends Service {
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T>;
}

/**
 * `service.call(req, ctx)` continued with `k`, in the service's own reaction when it is a
 * {@link MappingService} (no promise hop of the caller's), otherwise with one `then`. A call that throws
 * becomes a rejection, as with {@link settledCall}.
 *
 * @example
 * ```ts
 * return callThen(this.next, req, ctx, new CountOutcome(this, k));
 * ```
 */
export function callThen<T>(
  service: Service,
  req: MeshRequest,
  ctx: CallContext,
  k: Continuation<T>,
): Promise<T> {
  if ((service as Partial<MappingService>).callThen !== undefined) {
    try {
      return (service as MappingService).callThen(req, ctx, k);
    } catch (err) {
      return continueWhenSettled(Promise.reject(err), k);
    }
  }
  return continueWhenSettled(settledCall(service, req, ctx), k);
}

/** `promise` continued with `k`: the one place a continuation becomes a promise reaction. */
export function continueWhenSettled<T>(promise: Promise<MeshResponse>, k: Continuation<T>): Promise<T> {
  return promise.then(
    (res) => k.answered(res),
    (err: unknown) => k.failed(err),
  );
}

/**
 * `service.call(req, ctx).then(map, onError)`, with `map` and `onError` run in the service's own reaction
 * when it is a {@link MappingService}: the function-style {@link callThen}, for an entry point.
 *
 * @example
 * ```ts
 * return callMapped(svc.stack, req, ctx, toResponseData);
 * ```
 */
export function callMapped<T>(
  service: Service,
  req: MeshRequest,
  ctx: CallContext,
  map: OnAnswer<T>,
  onError?: OnFailure<T>,
): Promise<T> {
  return callThen(service, req, ctx, new Mapped(map, onError));
}

/** A continuation made of `then`'s two functions. */
class Mapped<T> implements Continuation<T> {
  constructor(
    readonly answered: OnAnswer<T>,
    private readonly onError: OnFailure<T> | undefined,
  ) {}
  failed(err: unknown): T | PromiseLike<T> {
    if (this.onError === undefined) throw err;
    return this.onError(err);
  }
}

/** The continuation of a plain `call`: the response as it is, the error rethrown. */
export const SAME: Continuation<MeshResponse> = {
  answered: (res) => res,
  failed: (err) => {
    throw err;
  },
};

/**
 * For a {@link MappingService}: hands what its own hook made of the outcome (a response, or a promise of one
 * such as a retry's) on to the caller's continuation.
 */
export function handOn<T>(out: MeshResponse | Promise<MeshResponse>, k: Continuation<T>): T | PromiseLike<T> {
  return out instanceof Promise ? continueWhenSettled(out, k) : k.answered(out);
}

/**
 * A filter whose work around the call below is synchronous: {@link InlineFilter.enter} before the call goes
 * on, {@link InlineFilter.exit} or {@link InlineFilter.fail} when it settles. Its own `call` chains one
 * promise reaction, as any filter does; but when a stack is built, adjacent inline filters at its top are
 * composed into one service (src/core/inline.ts) that enters them in order, calls the first service below
 * them, and runs their exits (innermost first) inside one reaction. Each such filter then costs the call no
 * promise hop of its own (the deadline, the logical span and the retries' first attempt;
 * docs/architecture.md, "the hot path").
 *
 * Contract: the three hooks must not depend on being run by `call`. `enter` returns `undefined` to go on, or a
 * promise that is this filter's whole result (it sent the rest of the call itself, or failed it); it may also
 * throw. The filters above it still exit, or fail, with that result. `exit` and `fail` return the response
 * (or a native Promise of one, such as a retry's) or throw; their per-call state lives on the context.
 *
 * @example
 * ```ts
 * class Stamp extends InlineFilter {
 *   enter(req: MeshRequest) {
 *     req.headers['x-stamp'] = '1';
 *     return undefined;
 *   }
 *   exit(res: MeshResponse) {
 *     return res;
 *   }
 *   fail(err: unknown): never {
 *     throw err;
 *   }
 * }
 * ```
 */
export abstract class InlineFilter extends Filter {
  /** Before the call goes below: `undefined` to go on, or a promise that is this filter's whole result. */
  abstract enter(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined;
  /** The call below answered with `res`. */
  abstract exit(res: MeshResponse, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse>;
  /** The call below failed with `err`: throw (mapped or not), or recover. */
  abstract fail(err: unknown, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse>;

  private run: readonly InlineFilter[] | undefined = undefined;

  /** This filter as a run of one. */
  private asRun(): readonly InlineFilter[] {
    return (this.run ??= [this]);
  }

  /** The service this filter wraps (for the composition of a run, which calls the last one's directly). */
  get below(): Service {
    return this.next;
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    let early: Promise<MeshResponse> | undefined;
    try {
      early = this.enter(req, ctx);
    } catch (err) {
      return Promise.reject(err);
    }
    if (early !== undefined) return early;
    return this.sendBelow(req, ctx);
  }

  /**
   * `call(req, ctx)` continued with `k` in one reaction with the service below (see {@link MappingService}).
   * A subclass that overrides `call` is called as it is, and continued with `then`.
   */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    if (this.call !== InlineFilter.prototype.call) return continueWhenSettled(settledCall(this, req, ctx), k);
    let early: Promise<MeshResponse> | undefined;
    try {
      early = this.enter(req, ctx);
    } catch (err) {
      return continueWhenSettled(Promise.reject(err), k);
    }
    if (early !== undefined) return continueWhenSettled(early, k);
    return callThen(this.next, req, ctx, new RunExit(this.asRun(), 1, req, ctx, k));
  }

  /** The rest of `call` once entered: the service below, then `exit` or `fail` in one reaction. */
  protected sendBelow(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return callThen(this.next, req, ctx, new RunExit(this.asRun(), 1, req, ctx, SAME));
  }
}

/**
 * @internal The way back through inline filters: the exits of the first `n` filters of `run` (innermost
 * first, see {@link exitRun}) on the outcome below, then the caller's continuation on what they give.
 */
export class RunExit<T> implements Continuation<T> {
  constructor(
    private readonly run: readonly InlineFilter[],
    private readonly n: number,
    private readonly req: MeshRequest,
    private readonly ctx: CallContext,
    private readonly k: Continuation<T>,
  ) {}

  answered(res: MeshResponse): T | PromiseLike<T> {
    return this.exit(false, res);
  }

  failed(err: unknown): T | PromiseLike<T> {
    return this.exit(true, err);
  }

  private exit(failed: boolean, outcome: unknown): T | PromiseLike<T> {
    let out: MeshResponse | Promise<MeshResponse>;
    try {
      out = exitRun(this.run, this.n, this.req, this.ctx, failed, outcome);
    } catch (err) {
      return this.k.failed(err);
    }
    return handOn(out, this.k);
  }
}

/**
 * @internal Runs the exits of the first `n` filters of a run on an outcome, innermost first: `exit` on a
 * response, `fail` on an error. A hook that throws passes its error to the next one's `fail`; a `fail` that
 * recovers passes its response to the next one's `exit`. One that returns a promise (a retry loop) hands the
 * rest of the exits to that promise.
 */
export function exitRun(
  run: readonly InlineFilter[],
  n: number,
  req: MeshRequest,
  ctx: CallContext,
  failed: boolean,
  outcome: unknown,
): MeshResponse | Promise<MeshResponse> {
  for (let i = n - 1; i >= 0; i--) {
    const f = run[i]!;
    let out: MeshResponse | Promise<MeshResponse>;
    try {
      out = failed ? f.fail(outcome, req, ctx) : f.exit(outcome as MeshResponse, req, ctx);
    } catch (err) {
      failed = true;
      outcome = err;
      continue;
    }
    if (out instanceof Promise) return i === 0 ? out : exitRestWhenSettled(out, run, i, req, ctx);
    failed = false;
    outcome = out;
  }
  if (failed) throw outcome;
  return outcome as MeshResponse;
}

/**
 * The exits of the first `n` filters of a run, once `out` settles. A function of its own: closures in
 * {@link exitRun}'s loop would make it allocate a context for every filter of every call.
 */
function exitRestWhenSettled(
  out: Promise<MeshResponse>,
  run: readonly InlineFilter[],
  n: number,
  req: MeshRequest,
  ctx: CallContext,
): Promise<MeshResponse> {
  return out.then(
    (res) => exitRun(run, n, req, ctx, false, res),
    (err: unknown) => exitRun(run, n, req, ctx, true, err),
  );
}
