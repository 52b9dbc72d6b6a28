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
  callThen,
  continueWhenSettled,
  Filter,
  InlineFilter,
  RunExit,
  SAME,
  type Continuation,
  type MappingService,
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
    return this.callThen(req, ctx, SAME);
  }

  /**
   * `call(req, ctx)` continued with `k` without a promise hop of its own: `k` runs after the run's exits, in
   * the reaction of the service below (see `MappingService`).
   */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
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
    if (entered === 0) return k === SAME ? (early as Promise<T>) : continueWhenSettled(early!, k);
    const exits = new RunExit(run, entered, req, ctx, k);
    // The service below runs the exits in its own reaction when it can (a MappingService): one reaction
    // for the whole call, whatever the levels below.
    if (early !== undefined) return continueWhenSettled(early, exits);
    // Called here rather than through the shared `callThen`, so that this call site sees only the services
    // that sit below runs (the router, the balancer leaf) and V8 can inline them.
    const below = this.below as Partial<MappingService>;
    if (below.callThen === undefined) return callThen(this.below, req, ctx, exits);
    try {
      return below.callThen(req, ctx, exits);
    } catch (err) {
      return continueWhenSettled(Promise.reject(err), exits);
    }
  }
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
