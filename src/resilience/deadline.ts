/**
 * The total deadline of a logical call, covering every attempt and the reading of the response body. Its
 * timer is an entry in the clock's {@link TimerQueue} (one real timer for all calls), not a `setTimeout` per
 * call. It links the caller's AbortSignal by hand (one listener, removed when the call ends) rather
 * than with `AbortSignal.any`, which leaks when one of its inputs is long-lived (nodejs/node#55351, #54614).
 *
 * Placement: first in the logical stack, so that everything below (retries, routing, balancing, every
 * attempt) runs inside the budget, and so that a call whose deadline has already passed fails here without
 * touching the network.
 *
 * The whole of a call's deadline lives here: reading the per-call `mesh-deadline-ms` header
 * ({@link takeDeadlineHeader}), merging it with the service's timeout and an incoming request's deadline
 * ({@link callDeadline}: the effective deadline is min(incoming, local), as gRPC and Finagle do), deciding
 * whether the next hop is told ({@link propagatesDeadline}) and telling it ({@link writeDeadlineHeader}, for
 * each attempt as it is sent), and enforcing it ({@link DeadlineFilter}).
 */
import { DEADLINE_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { whenBodyDone } from '../core/body-done.js';
import { DeadlineExceededError, InvalidRequestError, type Phase } from '../core/errors.js';
import type { HeaderRecord, MeshRequest, MeshResponse } from '../core/message.js';
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

  constructor(
    private readonly queue: TimerQueue,
    /** The call's context (the filter finds its call by it: `ctx.signal`). */
    readonly ctx: CallContext,
    private readonly budget: number,
    private readonly caller: CancelSignal | undefined,
  ) {
    super();
    // This object is the caller's listener itself (handleEvent): no closure per call.
    caller?.addEventListener('abort', this, { once: true });
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.abort(this.caller!.reason);
  }

  /** The deadline passed. */
  fire(): void {
    const ctx = this.ctx;
    this.unlinkCaller();
    this.abort(
      new DeadlineExceededError(ctx.service, this.budget, this.phase, {
        endpoint: ctx.attempt.endpoint,
        attempts: ctx.attempt.number,
      }),
    );
  }

  /** The call is over (its body is done, or it failed before a response). */
  onBodyDone(): void {
    this.queue.remove(this);
    this.unlinkCaller();
  }

  private unlinkCaller(): void {
    this.caller?.removeEventListener('abort', this);
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

  enter(_req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    const deadline = ctx.deadline;
    if (deadline === Infinity) return undefined;
    const now = this.clock.now();
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
 * Takes a call's own deadline out of its headers (`mesh-deadline-ms`, which `callOptions({ deadlineMs })`
 * writes): the budget in ms, or undefined when the call set none. The header is removed, so it never leaves
 * as it came (the next hop is told the time remaining instead). A value that is not an integer number of
 * milliseconds is the caller's mistake: an {@link InvalidRequestError}.
 *
 * @example
 * ```ts
 * takeDeadlineHeader({ 'mesh-deadline-ms': '250' }); // 250, and the header is gone
 * ```
 */
export function takeDeadlineHeader(headers: HeaderRecord): number | undefined {
  const raw = headers[DEADLINE_HEADER];
  if (raw === undefined) return undefined;
  const ms = parseDeadlineHeader(raw);
  if (ms === undefined)
    throw new InvalidRequestError(`headers.${DEADLINE_HEADER}`, raw, 'an integer number of milliseconds');
  delete headers[DEADLINE_HEADER];
  return ms;
}

/**
 * A new call's absolute deadline (mesh clock, ms; `Infinity` for none): the smaller of the service's
 * `timeoutMs` and the call's own budget, from `now`, and never later than the deadline of the incoming request
 * being served (`Infinity` when none).
 *
 * @example
 * ```ts
 * callDeadline(1000, 30_000, 250, Infinity); // 1250
 * ```
 */
export function callDeadline(
  now: number,
  timeoutMs: number,
  own: number | undefined,
  incoming: number,
): number {
  const budget = own !== undefined && own < timeoutMs ? own : timeoutMs;
  const deadline = budget === Infinity ? Infinity : now + budget;
  return incoming < deadline ? incoming : deadline;
}

/**
 * Whether a call's deadline goes to the next hop (`ctx.propagateDeadline`): when someone chose it (a
 * configured `timeoutMs`, the call's own budget, an incoming request's deadline). The built-in default is
 * enforced, not sent, as gRPC and Finagle send no deadline unless one was set.
 *
 * @example
 * ```ts
 * propagatesDeadline(false, undefined, Infinity); // false: only the built-in default applies
 * ```
 */
export function propagatesDeadline(
  timeoutConfigured: boolean,
  own: number | undefined,
  incoming: number,
): boolean {
  return timeoutConfigured || own !== undefined || incoming !== Infinity;
}

/**
 * Tells the next hop the time that remains (`mesh-deadline-ms`, relative ms, so clock skew does not matter)
 * when the call's deadline is to be propagated ({@link propagatesDeadline}). The balancer leaf calls it for
 * each attempt at the moment it sends it, `now` being the time it read then.
 *
 * @example
 * ```ts
 * writeDeadlineHeader(req, ctx, clock.now()); // req.headers['mesh-deadline-ms'] = '742'
 * ```
 */
export function writeDeadlineHeader(req: MeshRequest, ctx: CallContext, now: number): void {
  if (ctx.propagateDeadline && ctx.deadline !== Infinity)
    req.headers[DEADLINE_HEADER] = String(Math.max(0, Math.floor(ctx.deadline - now)));
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
