/**
 * Failure accrual: per endpoint, decide from the outcomes of its own requests when to stop sending to it for
 * a while, and when to try it again. An endpoint that keeps failing is marked `busy` (not removed: discovery
 * still names it, and the balancer still falls back to it in panic mode), for a jittered backoff that grows
 * while it stays bad; after the backoff, single probe requests decide whether it is `ready` again.
 *
 * Sources and reference defaults:
 * - Finagle `FailureAccrualFactory.scala`: the Alive / Dead / ProbeOpen / ProbeClosed state machine (here
 *   `ready` / `busy` / `probing` with no probe in flight / `probing` with one), outcomes observed while dead
 *   that do not revive it, one successful probe that revives it, a failed probe that marks it dead for the
 *   next backoff of the same stream, and the stream reset on revival.
 * - Finagle `FailureAccrualPolicy.scala`: `consecutiveFailures(5, ...)` and
 *   `successRateWithinDuration(0.8, 30.seconds, ..., minRequestThreshold = 5)`; here both triggers run
 *   together (either marks the endpoint busy), as Linkerd 1 let users pick either (`io.l5d.consecutiveFailures`,
 *   `io.l5d.successRateWindowed`). Finagle counts the window in time slices (`WindowedAdder`); so does
 *   {@link OutcomeWindow}: no per-request array, O(1) per outcome.
 * - Finagle `Backoff.equalJittered(5.seconds, 300.seconds)`, the default "mark dead for" stream, and the
 *   "equal jitter" of the AWS Architecture Blog's "Exponential Backoff and Jitter": the n-th busy period lasts
 *   `b/2 + U(0, b/2)` with `b = min(300 s, 5 s * 2^n)`. Jitter keeps many clients from probing a recovering
 *   endpoint in lock step.
 *
 * What counts: only what the service's classifier (the shared `ClassifierParam`) calls a `failure`, decided on
 * the status line and headers (the body is never read or buffered here, and reaches the caller untouched), or
 * on the error (passed on unchanged). `ignored` outcomes (the caller's abort, a passed deadline,
 * back-pressure) neither count as failures nor reset the consecutive count, and an error that reaches this
 * filter after the caller's own signal aborted is ignored whatever the error is: the caller ended it.
 *
 * Placement: first of the endpoint stack, so that the status the balancer reads (`EndpointNode.status` reads
 * the outermost service of the endpoint stack) is this filter's, so that it sees every attempt's outcome
 * (including a per-attempt timeout placed below it), and so that it marks a probe in flight synchronously, in
 * the same turn as the balancer's pick: no other pick can see the endpoint `ready` in between.
 *
 * No timers: the end of a busy period is noticed lazily, on the next status read or call, from `clock.now()`.
 * Nothing is left running after `close()`.
 */
import type { Attempt } from '../core/attempt.js';
import { OutcomeWindow } from '../core/outcome-window.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import type { Logger } from '../core/logger.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import type { Rng } from '../core/rng.js';
import {
  callThen,
  Filter,
  SAME,
  type Continuation,
  type MappingService,
  type Service,
  type ServiceStatus,
} from '../core/service.js';
import type { StackModule } from '../core/stack.js';
import { FailureAccrualParam, type FailureAccrualEnv } from './accrual-options.js';
import { ClassifierParam, classifyAttempt, type Classification, type Classifier } from './classifier.js';
import { endpointBusyChannel, endpointReadyChannel } from '../telemetry/events.js';
import { AccrualSection, exposing } from '../telemetry/snapshot.js';

export {
  FailureAccrualParam,
  type FailureAccrualOptions,
  type ResolvedFailureAccrualOptions,
} from './accrual-options.js';

/**
 * The state of an endpoint as failure accrual sees it. `probing` is Finagle's ProbeOpen (no probe in flight:
 * the status is `ready`, so the balancer may send one) and ProbeClosed (a probe in flight: `busy`).
 *
 * @example
 * ```ts
 * const s: AccrualState = filter.accrualState; // 'ready' | 'busy' | 'probing'
 * ```
 */
export type AccrualState = 'ready' | 'busy' | 'probing';

/**
 * Why an endpoint changed state.
 *
 * - `consecutive-failures`, `success-rate`: a trigger marked a ready endpoint busy;
 * - `probe-failed`: a probe (or any request started while probing) failed: busy again, for the next backoff;
 * - `backoff-elapsed`: the busy period ended: probing;
 * - `probe-succeeded`: enough probes succeeded: ready, backoff reset.
 *
 * @example
 * ```ts
 * filter.onTransition((t) => { if (t.reason === 'probe-succeeded') console.log(t.endpoint, 'is back'); });
 * ```
 */
export type AccrualReason =
  'consecutive-failures' | 'success-rate' | 'probe-failed' | 'backoff-elapsed' | 'probe-succeeded';

/**
 * One state change, as given to {@link FailureAccrualFilter.onTransition} listeners.
 *
 * @example
 * ```ts
 * const t: AccrualTransition = { endpoint: '10.0.0.1:80', service: 'users', from: 'ready', to: 'busy', reason: 'consecutive-failures', at: 1234, busyForMs: 4100 };
 * ```
 */
export interface AccrualTransition {
  readonly service: string;
  readonly endpoint: string | undefined;
  readonly from: AccrualState;
  readonly to: AccrualState;
  readonly reason: AccrualReason;
  /** When it happened (mesh clock, ms). */
  readonly at: number;
  /** For a transition to `busy`: how long the endpoint stays busy (ms). */
  readonly busyForMs?: number;
}

/**
 * A JSON-serialisable, read-only view of one endpoint's failure accrual, for snapshots and debugging.
 *
 * @example
 * ```ts
 * const s: FailureAccrualSnapshot = filter.snapshot();
 * if (s.state === 'busy') console.log(`${s.endpoint} busy for another ${s.busyForMs} ms`);
 * ```
 */
export interface FailureAccrualSnapshot {
  readonly endpoint: string | undefined;
  readonly state: AccrualState;
  /** Failures in a row since the last success (counted only while ready). */
  readonly consecutiveFailures: number;
  /** Success rate over the window, or null when the window holds no counted outcome. */
  readonly successRate: number | null;
  /** Counted outcomes in the window. */
  readonly windowRequests: number;
  /** When the busy period ends (mesh clock, ms), or null when not busy. */
  readonly busyUntil: number | null;
  /** Time left in the busy period (ms), or null when not busy. */
  readonly busyForMs: number | null;
  /** How many busy periods in a row so far (the backoff step); 0 when ready. */
  readonly backoffStep: number;
  /** Whether a probe is in flight. */
  readonly probeInFlight: boolean;
  /** Successful probes counted towards `probeSuccesses` in this probing period. */
  readonly probeSuccesses: number;
  /** How many times this endpoint has been marked busy since it was created. */
  readonly timesMarkedBusy: number;
}

/**
 * A handle returned by event subscriptions: call `dispose()` to unsubscribe.
 *
 * @example
 * ```ts
 * const sub = filter.onTransition((t) => log(t));
 * sub.dispose();
 * ```
 */
export interface AccrualSubscription {
  dispose(): void;
}

const READY = 0;
const BUSY = 1;
const PROBING = 2;
const STATE_NAMES: readonly AccrualState[] = ['ready', 'busy', 'probing'];

/** Exponent cap: 2^52 times any base is far past any sane cap, and still exact. */
const MAX_SHIFT = 52;

/**
 * Failure accrual for one endpoint (see the file comment for the algorithm and its sources). Its `status` is
 * `busy` while the endpoint is marked busy or while a probe is in flight, otherwise the status of the service
 * below. It never rejects a call itself: the balancer decides where to send, and in panic mode it may still
 * send to a busy endpoint; such a call goes through, and its outcome does not change the state (Finagle's
 * Dead state), except while probing, where any call's outcome counts as a probe's.
 *
 * @example
 * ```ts
 * const filter = new FailureAccrualFilter(pool, {
 *   options: FAILURE_ACCRUAL_DEFAULTS, classifier: defaultClassifier,
 *   clock, rng, logger, service: 'users', endpoint: '10.0.0.1:80',
 * });
 * filter.status;     // 'ready'
 * filter.snapshot(); // { state: 'ready', consecutiveFailures: 0, ... }
 * ```
 */
export class FailureAccrualFilter extends Filter implements MappingService {
  private readonly options: FailureAccrualEnv['options'];
  private readonly classifier: Classifier;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly logger: Logger;
  private readonly service: string;
  private readonly endpoint: string | undefined;
  private readonly window: OutcomeWindow;
  private state = READY;
  /** Bumped on every state change: an outcome counts only for the state its request started in. */
  private generation = 0;
  private consecutive = 0;
  private busyUntil = 0;
  private step = 0;
  private probeInFlight = false;
  private probeOk = 0;
  private markedBusy = 0;
  private listeners: Array<(t: AccrualTransition) => void> = [];

  constructor(next: Service, env: FailureAccrualEnv) {
    super(next);
    this.options = env.options;
    this.classifier = env.classifier;
    this.clock = env.clock;
    this.rng = env.rng;
    this.logger = env.logger;
    this.service = env.service;
    this.endpoint = env.endpoint;
    this.window = new OutcomeWindow(env.options.successRateWindowMs);
  }

  /**
   * The worse of the status below and accrual's own: `busy` while marked busy or while a probe is in flight;
   * `ready` while probing with no probe in flight (so that a balancer sends exactly one).
   */
  override get status(): ServiceStatus {
    const below = this.next.status;
    if (below !== 'ready') return below;
    const state = this.state;
    if (state === READY) return 'ready';
    if (state === BUSY && !this.expire(this.clock.now())) return 'busy';
    return this.probeInFlight ? 'busy' : 'ready';
  }

  /** The accrual state now (`ready`, `busy` or `probing`). */
  get accrualState(): AccrualState {
    if (this.state === BUSY) this.expire(this.clock.now());
    return STATE_NAMES[this.state]!;
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.callThen(req, ctx, SAME);
  }

  /**
   * `call(req, ctx)` continued with `k`, the outcome counted first, in the one reaction of the service below
   * (`MappingService`): no async frame and no promise of its own.
   */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    // Probing with no probe in flight: this call takes the slot, in the same synchronous turn as the
    // balancer's pick (the destination calls the endpoint's stack right after it), so the next pick already
    // reads `busy`. The token is the generation the call started in, negative for the probe.
    if (this.state === BUSY) this.expire(this.clock.now());
    let token = this.generation;
    if (this.state === PROBING && !this.probeInFlight) {
      this.probeInFlight = true;
      token = -1 - token;
    }
    return callThen(this.next, req, ctx, new Counted(this, token, req, ctx, k));
  }

  /**
   * Subscribes to state changes (for telemetry and logs). Listeners run synchronously; one that throws is
   * logged and skipped.
   *
   * @example
   * ```ts
   * const sub = filter.onTransition((t) => console.log(t.endpoint, t.from, '->', t.to, t.reason));
   * sub.dispose();
   * ```
   */
  onTransition(listener: (t: AccrualTransition) => void): AccrualSubscription {
    this.listeners = [...this.listeners, listener];
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((l) => l !== listener);
      },
    };
  }

  /**
   * A read-only view of the state now.
   *
   * @example
   * ```ts
   * filter.snapshot().consecutiveFailures; // 2
   * ```
   */
  snapshot(): FailureAccrualSnapshot {
    const now = this.clock.now();
    if (this.state === BUSY) this.expire(now);
    const busy = this.state === BUSY;
    const n = this.window.total(now);
    return {
      endpoint: this.endpoint,
      state: STATE_NAMES[this.state]!,
      consecutiveFailures: this.consecutive,
      successRate: n === 0 ? null : this.window.successRate(now),
      windowRequests: n,
      busyUntil: busy ? this.busyUntil : null,
      busyForMs: busy ? Math.max(0, this.busyUntil - now) : null,
      backoffStep: this.step,
      probeInFlight: this.probeInFlight,
      probeSuccesses: this.probeOk,
      timesMarkedBusy: this.markedBusy,
    };
  }

  override close(): Promise<void> {
    this.listeners = [];
    return this.next.close();
  }

  /**
   * @internal Applies the outcome of a call (`c.token`: see {@link FailureAccrualFilter.callThen}). Does not
   * throw: a throwing classifier or transition listener is caught and logged.
   */
  settleAttempt(c: Counted<unknown>, res: MeshResponse | undefined, error: unknown): void {
    const token = c.token;
    const probe = token < 0;
    this.settle(this.classify(c.req, c.ctx, res, error), probe ? -1 - token : token, probe, c.ctx.attempt);
  }

  /** Runs the classifier; one that throws is logged and its outcome ignored (the response still goes back). */
  private classify(
    req: MeshRequest,
    ctx: CallContext,
    res: MeshResponse | undefined,
    error: unknown,
  ): Classification['kind'] {
    // The caller ended the call: whatever error that produced says nothing about the endpoint.
    if (res === undefined && ctx.callerSignal?.aborted) return 'ignored';
    try {
      return classifyAttempt(this.classifier, req, ctx, res, error).kind;
    } catch (err) {
      this.logger.warn(
        { err, service: this.service, endpoint: this.endpoint },
        'failure accrual: the classifier threw; outcome ignored',
      );
      return 'ignored';
    }
  }

  /** Applies one outcome of a request that started in `generation`. */
  private settle(kind: Classification['kind'], generation: number, probe: boolean, attempt: Attempt): void {
    if (generation !== this.generation) return;
    if (probe) this.probeInFlight = false;
    const state = this.state;
    // BUSY: outcomes of calls sent in panic mode neither revive nor extend (Finagle's Dead state).
    if (kind === 'ignored' || state === BUSY) return;
    const now = attempt.outcomeTime(this.clock);
    if (state === READY) {
      if (kind === 'success') {
        this.consecutive = 0;
        this.window.record(true, now);
        return;
      }
      this.consecutive++;
      this.window.record(false, now);
      const o = this.options;
      if (o.consecutiveFailures > 0 && this.consecutive >= o.consecutiveFailures) {
        this.markBusy(now, 'consecutive-failures');
      } else if (
        o.successRate > 0 &&
        this.window.total(now) >= o.minRequests &&
        this.window.successRate(now) < o.successRate
      ) {
        this.markBusy(now, 'success-rate');
      }
    } else if (kind === 'failure') {
      // PROBING: any call started while probing counts as a probe.
      this.markBusy(now, 'probe-failed');
    } else if (++this.probeOk >= this.options.probeSuccesses) {
      this.step = 0;
      this.transition(READY, 'probe-succeeded', now, undefined);
    }
  }

  private markBusy(now: number, reason: AccrualReason): void {
    const o = this.options;
    const b = Math.min(o.backoffMaxMs, o.backoffBaseMs * 2 ** Math.min(this.step, MAX_SHIFT));
    // Equal jitter: half fixed, half uniform, so the period is in [b/2, b].
    const duration = b / 2 + (this.rng.next() * b) / 2;
    this.step++;
    this.markedBusy++;
    this.busyUntil = now + duration;
    this.transition(BUSY, reason, now, duration);
  }

  /** Ends a busy period that is over. Returns true when the state is no longer busy. */
  private expire(now: number): boolean {
    if (now < this.busyUntil) return false;
    this.transition(PROBING, 'backoff-elapsed', now, undefined);
    return true;
  }

  private transition(to: number, reason: AccrualReason, now: number, busyForMs: number | undefined): void {
    const from = this.state;
    this.state = to;
    this.generation++;
    this.probeInFlight = false;
    this.probeOk = 0;
    if (to !== PROBING) {
      this.consecutive = 0;
      this.window.reset();
    }
    const t: AccrualTransition = {
      service: this.service,
      endpoint: this.endpoint,
      from: STATE_NAMES[from]!,
      to: STATE_NAMES[to]!,
      reason,
      at: now,
      ...(busyForMs !== undefined ? { busyForMs } : {}),
    };
    if (to === BUSY) {
      this.logger.info(
        { service: this.service, endpoint: this.endpoint, reason, busyForMs: Math.round(busyForMs ?? 0) },
        'failure accrual: endpoint marked busy',
      );
    } else if (to === READY) {
      this.logger.info(
        { service: this.service, endpoint: this.endpoint, reason },
        'failure accrual: endpoint ready again',
      );
    }
    // diagnostics_channel events (and the metrics fed from them): marked busy, and ready again.
    const ch = to === BUSY ? endpointBusyChannel : to === READY ? endpointReadyChannel : undefined;
    if (ch?.hasSubscribers) ch.publish(t);
    for (const l of this.listeners) {
      try {
        l(t);
      } catch (err) {
        this.logger.warn({ err, service: this.service }, 'failure accrual: a transition listener threw');
      }
    }
  }
}

/**
 * The `failure-accrual` stack module (endpoint level). Reads {@link FailureAccrualParam} (`false` leaves the
 * module out: `make` returns `next`) and the service's classifier (`ClassifierParam`).
 *
 * Placement: first of the endpoint stack (see the file comment): the balancer reads its status, it sees
 * every attempt's outcome including a per-attempt timeout below it, and it takes a probe in the same turn as
 * the pick.
 *
 * @example
 * ```ts
 * createMesh({
 *   services: { users: { endpoints: ['10.0.0.1:80', '10.0.0.2:80'] } },
 *   stack: (d) => ({ ...d, endpoint: d.endpoint.prepend(failureAccrualModule) }),
 * });
 * ```
 */
export const failureAccrualModule: StackModule<'endpoint'> = {
  role: 'failure-accrual',
  description:
    'Marks an endpoint busy after consecutive failures or a low success rate, for a jittered backoff; probes bring it back',
  params: [FailureAccrualParam, ClassifierParam],
  make(next, env) {
    const options = env.params.get(FailureAccrualParam);
    if (options === false) return next;
    const filter = new FailureAccrualFilter(next, {
      options,
      classifier: env.params.get(ClassifierParam),
      clock: env.clock,
      rng: env.rng,
      logger: env.logger,
      service: env.target.service,
      endpoint: env.target.address,
    });
    return exposing(env, AccrualSection, filter, (f) => f.snapshot());
  },
};

/**
 * The failure accrual filter of an endpoint stack, when it is the outermost service (its default place), for
 * snapshots: `failureAccrualOf(node.service)?.snapshot()`.
 *
 * @example
 * ```ts
 * const view = failureAccrualOf(endpointNode.service)?.snapshot();
 * ```
 */
export function failureAccrualOf(service: Service): FailureAccrualFilter | undefined {
  return service instanceof FailureAccrualFilter ? service : undefined;
}

/** A call's outcome counted by failure accrual, then handed to the caller's continuation. */
class Counted<T> implements Continuation<T> {
  constructor(
    private readonly filter: FailureAccrualFilter,
    readonly token: number,
    readonly req: MeshRequest,
    readonly ctx: CallContext,
    private readonly k: Continuation<T>,
  ) {}

  answered(res: MeshResponse): T | PromiseLike<T> {
    this.filter.settleAttempt(this, res, undefined);
    return this.k.answered(res);
  }

  failed(err: unknown): T | PromiseLike<T> {
    this.filter.settleAttempt(this, undefined, err);
    return this.k.failed(err);
  }
}
