/**
 * The total deadline of a logical call: one timer per call that covers every attempt and the reading of the
 * response body. It links the caller's AbortSignal by hand (one listener, removed when the call ends) rather
 * than with `AbortSignal.any`, which leaks when one of its inputs is long-lived (nodejs/node#55351, #54614).
 *
 * Placement: first in the logical stack, so that everything below (retries, routing, balancing, every
 * attempt) runs inside the budget, and so that a call whose deadline has already passed fails here without
 * touching the network.
 */
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { whenBodyDone } from '../core/body-done.js';
import { DeadlineExceededError, type Phase } from '../core/errors.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { Filter, type Service } from '../core/service.js';
import { CallSignal } from '../core/signal.js';
import type { StackModule } from '../core/stack.js';

/**
 * Enforces `ctx.deadline` over the whole call, body included.
 *
 * @example
 * ```ts
 * const s = new DeadlineFilter(next, systemClock);
 * ```
 */
export class DeadlineFilter extends Filter {
  constructor(
    next: Service,
    private readonly clock: Clock,
  ) {
    super(next);
  }

  async call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    const deadline = ctx.deadline;
    if (deadline === Infinity) return this.next.call(req, ctx);
    const clock = this.clock;
    const remaining = deadline - clock.now();
    const budget = deadline - ctx.startedAt;
    const caller = ctx.callerSignal;
    if (caller?.aborted) throw caller.reason;
    if (remaining <= 0) throw new DeadlineExceededError(ctx.service, budget, 'route');

    const ac = new CallSignal();
    let phase: Phase = 'headers';
    const onCallerAbort = (): void => ac.abort(caller!.reason);
    caller?.addEventListener('abort', onCallerAbort, { once: true });
    const timer = clock.setTimeout(() => {
      ac.abort(
        new DeadlineExceededError(ctx.service, budget, phase, {
          endpoint: ctx.endpoint,
          attempts: ctx.attempt,
        }),
      );
    }, remaining);
    const cleanup = (): void => {
      clock.clearTimeout(timer);
      caller?.removeEventListener('abort', onCallerAbort);
    };
    ctx.signal = ac;
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      cleanup();
      // A deadline that fired surfaces as the DeadlineExceededError, whatever the layer below threw.
      if (ac.aborted && !caller?.aborted) throw ac.reason;
      throw err;
    }
    phase = 'body';
    whenBodyDone(res.body, cleanup);
    return res;
  }
}

/**
 * The `deadline` stack module (logical level).
 *
 * @example
 * ```ts
 * Stack.of('logical', [deadlineModule]);
 * ```
 */
export const deadlineModule: StackModule = {
  role: 'deadline',
  description:
    'Total deadline over all attempts and the response body; links the caller signal without AbortSignal.any',
  make: (next, env) => new DeadlineFilter(next, env.clock),
};
