/**
 * One attempt of a call, and what the levels below learn about it: the per-attempt result.
 *
 * A call is the logical request the caller made; an attempt is one trip of it down to an endpoint. A module
 * that starts attempts (retries, backup requests; the entry point starts the first one) makes an `Attempt`,
 * hands it down in `ctx.attempt`, and reads it back when the attempt's outcome returns. The levels below
 * write what they learn into that record only: the router the destination, the circuit breaker the state it
 * met, the balancer the endpoint. Nothing below writes into the call's own fields (see CallContext), and
 * two attempts in flight at once never share a record. This is the per-request state Envoy keeps per upstream
 * request (its `UpstreamInfo`), as opposed to per downstream request.
 *
 * A class with fixed fields keeps it one hidden class for V8.
 */
import type { Clock } from './clock.js';
import type { CancelSignal } from './signal.js';

/** The circuit breaker state an attempt met. */
export type BreakerStateSeen = 'closed' | 'open' | 'half-open';

/**
 * The record of one attempt (see the file comment).
 *
 * @example
 * ```ts
 * class LogEndpoint extends Filter {
 *   async call(req: MeshRequest, ctx: CallContext) {
 *     const res = await this.next.call(req, ctx);
 *     const a = ctx.attempt; // what the levels below learned about this attempt
 *     console.log(ctx.service, 'answered by', a.endpoint, 'on attempt', a.number);
 *     return res;
 *   }
 * }
 * ```
 */
export class Attempt {
  /** The attempt number, 1 for the first attempt of a call (a backup request shares its original's). */
  readonly number: number;
  /** True for a backup request's attempt (sent while the original still runs). */
  readonly backup: boolean;

  /** The concrete destination the router chose (set at the concrete level). */
  destination: string | undefined = undefined;
  /**
   * True when the router found a route that splits over several destinations, so that another attempt
   * could reach another one: only then is an attempt refused by an open circuit worth retrying.
   */
  rerouteable = false;
  /** The circuit breaker state this attempt met (set by the circuit-breaker module). */
  breakerState: BreakerStateSeen | undefined = undefined;
  /** The endpoint (host:port) the balancer picked (set by the balancer leaf). */
  endpoint: string | undefined = undefined;
  /** The kind of balancer that picked the endpoint (set by the balancer leaf). */
  balancer: string | undefined = undefined;
  /**
   * True when the endpoint answered with a `Retry-After` and the balancer leaf took it out of the draw until
   * then while another endpoint is ready: a retry need not wait for it.
   */
  retryAfterHeld = false;
  /**
   * A signal of this attempt's own, which aborts when the call's does or when the attempt alone must end (set
   * by a per-attempt timeout); undefined when the attempt observes the call's signal. Read it through
   * `ctx.attemptSignal`.
   */
  signal: CancelSignal | undefined = undefined;

  /**
   * @internal The outcome (a response or an error) that was classified, the classifier that judged it and its
   * classification: the modules that count an attempt (failure accrual, endpoint stats, the breaker, retries)
   * share one classification instead of each running the classifier (`classifyAttempt`).
   */
  classifiedOutcome: unknown = undefined;
  /** @internal */
  classifiedBy: unknown = undefined;
  /** @internal */
  classification: unknown = undefined;
  /**
   * @internal When the attempt's outcome (its response head, or its error) came back, on the mesh clock:
   * read once, by the first module that needs it ({@link Attempt.outcomeTime}).
   */
  settledAt: number | undefined = undefined;

  constructor(number: number, backup = false) {
    this.number = number;
    this.backup = backup;
  }

  /**
   * Takes what another record learned (a backup request's winning attempt, reported into the record of the
   * attempt the backup filter was handed), except its number, backup flag and own signal.
   */
  /**
   * When this attempt's outcome came back: the modules that judge one outcome in its reaction (failure
   * accrual's window, the balancer's latency sample) share one clock read.
   */
  outcomeTime(clock: Clock): number {
    return (this.settledAt ??= clock.now());
  }

  learnFrom(other: Attempt): void {
    this.destination = other.destination;
    this.rerouteable ||= other.rerouteable;
    this.breakerState = other.breakerState;
    this.endpoint = other.endpoint;
    this.balancer = other.balancer;
    this.retryAfterHeld = other.retryAfterHeld;
    this.classifiedOutcome = other.classifiedOutcome;
    this.classifiedBy = other.classifiedBy;
    this.classification = other.classification;
  }
}
