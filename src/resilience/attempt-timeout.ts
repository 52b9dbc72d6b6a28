/**
 * The per-attempt timeout: how long one attempt may wait for response headers. Once headers arrive it stops
 * (the total deadline still covers the body). It sits at the endpoint level, just above the pool and below
 * failure accrual, so a timed-out attempt is judged against the endpoint that was slow, and the retry filter
 * above can send the next attempt elsewhere (when `retryTimeouts` allows it).
 *
 * It links the call's signal by hand (one listener, removed when the attempt's body closes) rather than with
 * `AbortSignal.any`, which leaks with long-lived signals (nodejs/node#55351).
 */
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { whenBodyDone } from '../core/body-done.js';
import { MeshError, type MeshErrorDetails } from '../core/errors.js';
import { duration } from '../core/validate.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { defineParam } from '../core/params.js';
import { Filter, type Service } from '../core/service.js';
import { CallSignal } from '../core/signal.js';
import type { StackModule } from '../core/stack.js';

/**
 * An attempt got no response headers within the per-attempt timeout.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof AttemptTimeoutError) console.log(e.endpoint, e.timeoutMs); }
 * ```
 */
export class AttemptTimeoutError extends MeshError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, details: MeshErrorDetails) {
    super(
      'MESH_ATTEMPT_TIMEOUT',
      `No response headers from ${details.endpoint} within ${timeoutMs} ms (service "${details.service}")`,
      {
        ...details,
        phase: 'headers',
        retryable: true,
      },
    );
    this.timeoutMs = timeoutMs;
  }
}

/** The per-attempt timeout of a service in ms (`Infinity`: none, the default). */
export const AttemptTimeoutParam = defineParam<number>('attemptTimeoutMs', Infinity);

/** The option and its default (none), declared once. */
const attemptTimeoutMs = duration({ min: 0, exclusiveMin: true, infinity: true, default: Infinity });

/**
 * Validates `attemptTimeoutMs`.
 *
 * @example
 * ```ts
 * resolveAttemptTimeout(100, 'services.users.attemptTimeoutMs'); // 100
 * ```
 */
export function resolveAttemptTimeout(v: unknown, path: string): number {
  return attemptTimeoutMs.resolve(v, path);
}

/**
 * Fails an attempt that has no headers within `timeoutMs`.
 *
 * @example
 * ```ts
 * new AttemptTimeoutFilter(next, 100, clock);
 * ```
 */
export class AttemptTimeoutFilter extends Filter {
  constructor(
    next: Service,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
  ) {
    super(next);
  }

  async call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    const parent = ctx.attemptSignal;
    if (parent?.aborted) throw parent.reason;
    const ac = new CallSignal();
    const onParentAbort = (): void => ac.abort(parent!.reason);
    parent?.addEventListener('abort', onParentAbort, { once: true });
    const timer = this.clock.setTimeout(() => {
      ac.abort(
        new AttemptTimeoutError(this.timeoutMs, {
          service: ctx.service,
          endpoint: ctx.attempt.endpoint,
          attempts: ctx.attempt.number,
        }),
      );
    }, this.timeoutMs);
    const unlink = (): void => parent?.removeEventListener('abort', onParentAbort);
    let res: MeshResponse;
    // The attempt's own signal, in its record: the layers below (the transport) observe it.
    ctx.attempt.signal = ac;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      this.clock.clearTimeout(timer);
      unlink();
      if (ac.aborted && !parent?.aborted) throw ac.reason;
      throw err;
    }
    this.clock.clearTimeout(timer);
    // The body still follows the call's signal (its deadline) until it closes.
    if (parent !== undefined) whenBodyDone(res.body, unlink);
    return res;
  }
}

/**
 * The `attempt-timeout` stack module (endpoint level, just above the pool).
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: [...], attemptTimeoutMs: 100 } } });
 * ```
 */
export const attemptTimeoutModule: StackModule = {
  role: 'attempt-timeout',
  description: 'Per-attempt timeout until response headers (the total deadline covers the body)',
  params: [AttemptTimeoutParam],
  make: (next, env) => {
    const ms = env.params.get(AttemptTimeoutParam);
    return ms === Infinity ? next : new AttemptTimeoutFilter(next, ms, env.clock);
  },
};
