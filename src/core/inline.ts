/**
 * The composition of adjacent inline filters, done once when a stack is built (`Stack.build`). A run of
 * {@link InlineFilter}s at the top of a stack becomes one service, {@link InlineRun}, whose `call` enters them
 * in order, calls the service below the run, and runs their exits (innermost first) in one promise reaction,
 * the reaction of the service below when that is a `MappingService` (core/service.ts): each filter of the
 * run costs a call no promise hop of its own. The filters keep their own `next` and their
 * own `call`, so a filter that sends the rest of a call itself (its `enter` returns that promise) or a caller
 * holding one of them sees nothing different; the same hooks run in the same order as when each filter runs
 * its own `call` (test/core/inline-run.test.ts compares the two).
 *
 * tower keeps one `Service` trait and puts every optimisation inside a layer; Finagle's `Stack` builds its
 * modules into one `ServiceFactory`. This is the same rule: no caller and no module runs an interpreter of
 * the hooks; the stack build hands back one ordinary service.
 */
import type { CallContext } from './context.js';
import type { MeshRequest, MeshResponse } from './message.js';
import {
  callMapped,
  Filter,
  handOn,
  handOnError,
  InlineFilter,
  type MappingService,
  type OnAnswer,
  type OnFailure,
  type Service,
} from './service.js';

/**
 * Adjacent inline filters (outermost first) run as one service over `below`, the first service under them.
 * Made by `Stack.build`; `next` is the outermost filter of the run, so walking a chain (`findFilter`) and
 * `close` go through the filters as before.
 *
 * @example
 * ```ts
 * const run = new InlineRun([deadline, logicalSpan, retries], router);
 * await run.call(req, ctx);
 * ```
 */
export class InlineRun extends Filter implements MappingService {
  constructor(
    /** The filters, outermost first (at least two). */
    readonly filters: readonly InlineFilter[],
    /** The service below the last filter. */
    readonly below: Service,
  ) {
    super(filters[0]!);
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.send(req, ctx, undefined);
  }

  /**
   * `call(req, ctx).then(map, onError)` without a promise hop of its own: `map` (or `onError`) runs after the
   * run's exits, in the reaction of the service below (see `MappingService`).
   */
  callMapped<T>(req: MeshRequest, ctx: CallContext, map: OnAnswer<T>, onError?: OnFailure<T>): Promise<T> {
    return this.send(req, ctx, map, onError);
  }

  private send<T>(
    req: MeshRequest,
    ctx: CallContext,
    map: OnAnswer<T> | undefined,
    onError?: OnFailure<T>,
  ): Promise<T> {
    const run = this.filters;
    let entered = 0;
    let early: Promise<MeshResponse> | undefined;
    try {
      // A filter whose `enter` returns a promise (its whole result) or throws ends the run there: the ones
      // above it exit (or fail) with that result, as when each runs its own `call`.
      for (; entered < run.length; entered++) {
        early = run[entered]!.enter(req, ctx);
        if (early !== undefined) break;
      }
    } catch (err) {
      early = Promise.reject(err);
    }
    if (entered === 0) return map === undefined ? (early as Promise<T>) : early!.then(map, onError);
    const exits: OnAnswer<T> =
      map === undefined
        ? (res) => exitRun(run, entered, req, ctx, false, res) as T | Promise<T>
        : (res) => mapped(run, entered, req, ctx, false, res, map, onError);
    const fails: OnFailure<T> =
      map === undefined
        ? (err) => exitRun(run, entered, req, ctx, true, err) as T | Promise<T>
        : (err) => mapped(run, entered, req, ctx, true, err, map, onError);
    // The service below runs the exits in its own reaction when it can (a MappingService): one reaction
    // for the whole call, whatever the levels below.
    return early === undefined ? callMapped(this.below, req, ctx, exits, fails) : early.then(exits, fails);
  }
}

/** The exits of a run on an outcome (see {@link exitRun}), then `map` or `onError` on what they give. */
function mapped<T>(
  run: readonly InlineFilter[],
  n: number,
  req: MeshRequest,
  ctx: CallContext,
  failed: boolean,
  outcome: unknown,
  map: OnAnswer<T>,
  onError: OnFailure<T> | undefined,
): T | PromiseLike<T> {
  let out: MeshResponse | Promise<MeshResponse>;
  try {
    out = exitRun(run, n, req, ctx, failed, outcome);
  } catch (err) {
    return handOnError(err, onError);
  }
  return handOn(out, map, onError);
}

/**
 * Runs the exits of the first `n` filters of a run on an outcome, innermost first: `exit` on a response,
 * `fail` on an error. A hook that throws passes its error to the next one's `fail`; a `fail` that recovers
 * passes its response to the next one's `exit`. One that returns a promise (a retry loop) hands the rest of
 * the exits to that promise.
 */
function exitRun(
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
    if (out instanceof Promise) {
      if (i === 0) return out;
      return out.then(
        (res) => exitRun(run, i, req, ctx, false, res),
        (err: unknown) => exitRun(run, i, req, ctx, true, err),
      );
    }
    failed = false;
    outcome = out;
  }
  if (failed) throw outcome;
  return outcome as MeshResponse;
}

/**
 * Composes the run of inline filters at the top of a built chain: `top` itself when it is not an inline
 * filter or is the only one, otherwise an {@link InlineRun} of the inline filters down to the first service
 * that is not one.
 *
 * @example
 * ```ts
 * const service = composeInlineTop(deadline); // InlineRun [deadline, logical-span, retries] over the router
 * ```
 */
export function composeInlineTop(top: Service): Service {
  const run: InlineFilter[] = [];
  let s = top;
  while (s instanceof InlineFilter && run.length < 64) {
    run.push(s);
    s = s.below;
  }
  return run.length < 2 ? top : new InlineRun(run, s);
}
