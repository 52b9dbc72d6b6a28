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
 * A service that can run its caller's continuation inside its own last promise reaction.
 * `callMapped(req, ctx, map, onError)` settles exactly as `call(req, ctx).then(map, onError)` would: `map`
 * gets the response, `onError` (when given) the failure, and a throw from `map` is not handed to `onError`.
 * Neither runs before the service's own reaction. A chain of such services (a stack's inline filters, the
 * router, the concrete destination, the balancer leaf) thus settles a call in one reaction over the
 * transport's promise instead of one per level: this is how `Stack.build` and the levels keep the hot path
 * short without any caller knowing (docs/architecture.md, "the hot path"). Call it through
 * {@link callMapped}, which falls back to `then` for a plain service.
 */
export interface MappingService extends Service {
  callMapped<T>(req: MeshRequest, ctx: CallContext, map: OnAnswer<T>, onError?: OnFailure<T>): Promise<T>;
}

/**
 * `service.call(req, ctx).then(map, onError)`, with `map` and `onError` run in the service's own reaction
 * when it is a {@link MappingService} (no promise hop of the caller's). A call that throws becomes a
 * rejection, as with {@link settledCall}.
 *
 * @example
 * ```ts
 * return callMapped(this.next, req, ctx, (res) => this.count(res), (err) => this.blame(err));
 * ```
 */
export function callMapped<T>(
  service: Service,
  req: MeshRequest,
  ctx: CallContext,
  map: OnAnswer<T>,
  onError?: OnFailure<T>,
): Promise<T> {
  if ((service as Partial<MappingService>).callMapped !== undefined) {
    try {
      return (service as MappingService).callMapped(req, ctx, map, onError);
    } catch (err) {
      return Promise.reject(err).then(map, onError);
    }
  }
  return settledCall(service, req, ctx).then(map, onError);
}

/**
 * For a {@link MappingService}: hands what its own hook made of the outcome (a response, or a promise of one
 * such as a retry's) on to the caller's continuation.
 */
export function handOn<T>(
  out: MeshResponse | Promise<MeshResponse>,
  map: OnAnswer<T>,
  onError: OnFailure<T> | undefined,
): T | PromiseLike<T> {
  return out instanceof Promise ? out.then(map, onError) : map(out);
}

/** For a {@link MappingService}: hands an error its own hook threw to the caller's `onError`, or rethrows it. */
export function handOnError<T>(err: unknown, onError: OnFailure<T> | undefined): T | PromiseLike<T> {
  if (onError === undefined) throw err;
  return onError(err);
}

/** The continuation of a plain `call`: the response as it is. */
export function same(res: MeshResponse): MeshResponse {
  return res;
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
   * `call(req, ctx).then(map, onError)` in one reaction with the service below (see {@link MappingService}).
   * A subclass that overrides `call` is called as it is, and mapped with `then`.
   */
  callMapped<T>(req: MeshRequest, ctx: CallContext, map: OnAnswer<T>, onError?: OnFailure<T>): Promise<T> {
    if (this.call !== InlineFilter.prototype.call) return settledCall(this, req, ctx).then(map, onError);
    let early: Promise<MeshResponse> | undefined;
    try {
      early = this.enter(req, ctx);
    } catch (err) {
      return Promise.reject(err).then(map, onError);
    }
    if (early !== undefined) return early.then(map, onError);
    return callMapped(
      this.next,
      req,
      ctx,
      (res) => hookThen(this, false, res, req, ctx, map, onError),
      (err: unknown) => hookThen(this, true, err, req, ctx, map, onError),
    );
  }

  /** The rest of `call` once entered: the service below, then `exit` or `fail` in one reaction. */
  protected sendBelow(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return callMapped(
      this.next,
      req,
      ctx,
      (res) => this.exit(res, req, ctx),
      (err: unknown) => this.fail(err, req, ctx),
    );
  }
}

/** An inline filter's `exit` (or `fail`) on an outcome, then the caller's continuation on what it gives. */
function hookThen<T>(
  f: InlineFilter,
  failed: boolean,
  outcome: unknown,
  req: MeshRequest,
  ctx: CallContext,
  map: OnAnswer<T>,
  onError: OnFailure<T> | undefined,
): T | PromiseLike<T> {
  let out: MeshResponse | Promise<MeshResponse>;
  try {
    out = failed ? f.fail(outcome, req, ctx) : f.exit(outcome as MeshResponse, req, ctx);
  } catch (err) {
    return handOnError(err, onError);
  }
  return handOn(out, map, onError);
}
