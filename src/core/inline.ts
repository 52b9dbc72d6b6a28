/**
 * The composition of adjacent inline filters, done once when a stack is built (`Stack.build`). A run of
 * {@link InlineFilter}s at the top of a stack becomes one service, {@link InlineRun}, whose `call` enters them
 * in order, calls the service below the run, and runs their exits (innermost first) in one promise reaction:
 * each filter of the run costs a call no promise hop of its own. The filters keep their own `next` and their
 * own `call`, so a filter that sends the rest of a call itself (its `enter` returns that promise) or a caller
 * holding one of them sees nothing different; the same hooks run in the same order as when each filter runs
 * its own `call` (test/client/inline.test.ts compares the two).
 *
 * tower keeps one `Service` trait and puts every optimisation inside a layer; Finagle's `Stack` builds its
 * modules into one `ServiceFactory`. This is the same rule: no caller and no module runs an interpreter of
 * the hooks; the stack build hands back one ordinary service.
 */
import type { CallContext } from './context.js';
import type { MeshRequest, MeshResponse } from './message.js';
import { Filter, InlineFilter, settledCall, type Service } from './service.js';

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
export class InlineRun extends Filter {
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
   * `call`, with `map` applied to the answer inside the run's own reaction: an entry point's conversion of
   * the response (to its own shape) without a promise hop of its own. With `onError`, a failure is handed to
   * it in that same reaction too, and what it returns resolves the promise.
   */
  callMapped<T>(
    req: MeshRequest,
    ctx: CallContext,
    map: (res: MeshResponse) => T,
    onError?: (err: unknown) => T,
  ): Promise<T> {
    return this.send(req, ctx, map, onError);
  }

  private send<T>(
    req: MeshRequest,
    ctx: CallContext,
    map: ((res: MeshResponse) => T) | undefined,
    onError?: (err: unknown) => T,
  ): Promise<T> {
    const run = this.filters;
    let entered = 0;
    let pending: Promise<MeshResponse> | undefined;
    try {
      // A filter whose `enter` returns a promise (its whole result) or throws ends the run there: the ones
      // above it exit (or fail) with that result, as when each runs its own `call`.
      for (; entered < run.length; entered++) {
        pending = run[entered]!.enter(req, ctx);
        if (pending !== undefined) break;
      }
      pending ??= this.below.call(req, ctx);
    } catch (err) {
      pending = Promise.reject(err);
    }
    if (entered === 0) return map === undefined ? (pending as Promise<T>) : pending.then(map, onError);
    if (map === undefined)
      return pending.then(
        (res) => exitRun(run, entered, req, ctx, false, res),
        (err: unknown) => exitRun(run, entered, req, ctx, true, err),
      ) as Promise<T>;
    return pending.then(
      (res) => mapped(run, entered, req, ctx, false, res, map, onError),
      (err: unknown) => mapped(run, entered, req, ctx, true, err, map, onError),
    );
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
  map: (res: MeshResponse) => T,
  onError: ((err: unknown) => T) | undefined,
): T | Promise<T> {
  let out: MeshResponse | Promise<MeshResponse>;
  try {
    out = exitRun(run, n, req, ctx, failed, outcome);
  } catch (err) {
    if (onError === undefined) throw err;
    return onError(err);
  }
  return out instanceof Promise ? out.then(map, onError) : map(out);
}

/**
 * Calls `service` and maps its answer with `map` (and, when given, its failure with `onError`): in the
 * service's own reaction when it is an {@link InlineRun}, otherwise with one `then`.
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
  map: (res: MeshResponse) => T,
  onError?: (err: unknown) => T,
): Promise<T> {
  if (service instanceof InlineRun) return service.callMapped(req, ctx, map, onError);
  return settledCall(service, req, ctx).then(map, onError);
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
