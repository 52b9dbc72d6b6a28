/**
 * The total deadline of a logical call, covering every attempt and the reading of the response body. Its
 * timer is an entry in the clock's {@link TimerQueue} (one real timer for all calls), not a `setTimeout` per
 * call. It links the caller's AbortSignal by hand (one listener, removed when the call ends) rather
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
import { InlineFilter, type Service } from '../core/service.js';
import { CallSignal, type CancelSignal } from '../core/signal.js';
import { timerQueue, type QueuedTimer, type TimerList, type TimerQueue } from '../core/timer-queue.js';
import type { StackModule } from '../core/stack.js';

/**
 * One call's deadline: the call's signal (the filters below see it as `ctx.signal`), its entry in the clock's
 * {@link TimerQueue}, and its body-done hook, in one object per call.
 */
class DeadlineCall extends CallSignal implements QueuedTimer {
  dueAt = 0;
  qPrev: QueuedTimer | undefined = undefined;
  qNext: QueuedTimer | undefined = undefined;
  qList: TimerList | undefined = undefined;
  /** What the call was waiting for when the deadline passed. */
  phase: Phase = 'headers';
  private readonly onCallerAbort: (() => void) | undefined;

  constructor(
    private readonly queue: TimerQueue,
    /** The call's context (the filter finds its call by it: `ctx.signal`). */
    readonly ctx: CallContext,
    private readonly budget: number,
    private readonly caller: CancelSignal | undefined,
  ) {
    super();
    if (caller !== undefined) {
      this.onCallerAbort = () => this.abort(caller.reason);
      caller.addEventListener('abort', this.onCallerAbort, { once: true });
    }
  }

  /** The deadline passed. */
  fire(): void {
    const ctx = this.ctx;
    this.unlinkCaller();
    this.abort(
      new DeadlineExceededError(ctx.service, this.budget, this.phase, {
        endpoint: ctx.endpoint,
        attempts: ctx.attempt,
      }),
    );
  }

  /** The call is over (its body is done, or it failed before a response). */
  onBodyDone(): void {
    this.queue.remove(this);
    this.unlinkCaller();
  }

  private unlinkCaller(): void {
    if (this.onCallerAbort !== undefined) this.caller!.removeEventListener('abort', this.onCallerAbort);
  }

  /** The call answered: the deadline now covers the body. */
  answered(res: MeshResponse): MeshResponse {
    this.phase = 'body';
    whenBodyDone(res.body, this);
    return res;
  }

  /** The call failed before an answer. */
  failed(err: unknown): never {
    this.onBodyDone();
    // A deadline that fired surfaces as the DeadlineExceededError, whatever the layer below threw.
    if (this.aborted && !this.caller?.aborted) throw this.reason;
    throw err;
  }
}

/** The call's deadline, when this call has one (the filter set it as `ctx.signal` on entry). */
function deadlineOf(ctx: CallContext): DeadlineCall | undefined {
  const s = ctx.signal;
  return s instanceof DeadlineCall && s.ctx === ctx ? s : undefined;
}

/**
 * Enforces `ctx.deadline` over the whole call, body included. The timer is an entry in the clock's shared
 * {@link TimerQueue} rather than a `setTimeout` per call.
 *
 * @example
 * ```ts
 * const s = new DeadlineFilter(next, systemClock);
 * ```
 */
export class DeadlineFilter extends InlineFilter {
  private readonly queue: TimerQueue;

  constructor(
    next: Service,
    private readonly clock: Clock,
  ) {
    super(next);
    this.queue = timerQueue(clock);
  }

  /**
   * Run by the entry point, which enters the inline filters at the top of the stack in the same turn as it
   * read the clock for `ctx.startedAt`: that reading stands for "now" (one clock read fewer per call).
   */
  enter(_req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    return this.begin(ctx, ctx.startedAt);
  }

  /** Anywhere else in a stack (something may have waited above it): the clock read now. */
  override call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.begin(ctx, this.clock.now()) ?? this.sendBelow(req, ctx);
  }

  private begin(ctx: CallContext, now: number): Promise<MeshResponse> | undefined {
    const deadline = ctx.deadline;
    if (deadline === Infinity) return undefined;
    const remaining = deadline - now;
    // Rounded to the nanosecond: (start + 100) - start is not always 100 in floating point, and the error
    // reports the budget the caller set.
    const budget = Math.round((deadline - ctx.startedAt) * 1e6) / 1e6;
    const caller = ctx.callerSignal;
    if (caller?.aborted) return Promise.reject(caller.reason);
    if (remaining <= 0) return Promise.reject(new DeadlineExceededError(ctx.service, budget, 'route'));

    const call = new DeadlineCall(this.queue, ctx, budget, caller);
    this.queue.add(call, remaining, now);
    ctx.signal = call;
    return undefined;
  }

  exit(res: MeshResponse, _req: MeshRequest, ctx: CallContext): MeshResponse {
    const call = deadlineOf(ctx);
    return call === undefined ? res : call.answered(res);
  }

  fail(err: unknown, _req: MeshRequest, ctx: CallContext): never {
    const call = deadlineOf(ctx);
    if (call === undefined) throw err;
    return call.failed(err);
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
