/**
 * Circuit breaker, one per concrete destination: when the failure rate of a destination over a rolling window
 * passes a threshold, calls to it fail at once with a {@link CircuitOpenError} (and its status turns `down`, so
 * the router fails over) instead of piling onto something that is already failing; after a reset time one
 * trial call decides whether it closes again (Nygard, "Release It!", ch. 5; Netflix Hystrix's
 * `HystrixCircuitBreaker`; Fowler, "CircuitBreaker").
 *
 * The state machine is opossum's (nodeshift/opossum 10, lib/circuit.js), used through its public API: its
 * `open`, `halfOpen` and `close` events are the breaker's transitions; `closed`, `halfOpen` and `pendingClose`
 * are its gate; its `resetTimeout` timer is the time spent open; `fire` runs the half-open trial, which closes
 * the breaker when it resolves and opens it again when it rejects; `open()` opens it; `shutdown()` ends it.
 *
 * What this file adds, and why:
 * - Classification. opossum takes a resolved promise for a success, and a 503 is a resolved response. The
 *   trial classifies the response (status line and headers, with the shared {@link Classifier}) and rejects
 *   with a wrapper that holds it, unwrapped for the caller with its body untouched. An `ignored` trial (the
 *   caller aborted it, its deadline passed) rejects too: it proves nothing, so the breaker opens again rather
 *   than close on it (Hystrix's `markNonSuccess`). opossum's `errorFilter` passes an error the classifier
 *   called a success.
 * - The closed state's counts. opossum's window is fed only through `fire` (a promise, two clock reads and two
 *   events per call), and it keeps a latency sample for every call it counts, even with percentiles off. The
 *   breaker is on every call, so while closed it counts requests and failures itself, in buckets like
 *   opossum's (Hystrix's `HystrixRollingNumber`), applies opossum's rule on each failure (at least
 *   `volumeThreshold` requests, failures strictly above `errorThresholdPercentage` percent) and calls opossum's
 *   `open()`. `ignored` outcomes are not counted. The counts start afresh when opossum closes, as Hystrix's
 *   `resetStream` does.
 * - Time. Both windows slide on the mesh clock, one timer for all breakers with the same bucket length, which
 *   also drives opossum's `rotateBucketController` (so opossum starts no interval of its own; its snapshots
 *   are off). opossum's reset timer (one unref'ed `setTimeout` while open, cleared on close and on shutdown)
 *   runs on real time: opossum takes no clock and has no public way to half-open. Its `timeout` is off: time
 *   belongs to the deadline and attempt-timeout modules, and its breaker-wide AbortController would abort
 *   every call in flight (nodeshift/opossum#780, #861).
 *
 * Defaults are Hystrix's (breaker-options.ts). See docs/resilience.md.
 */
import CircuitBreaker from 'opossum';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { ConfigError, MeshClosedError, MeshError, type MeshErrorDetails } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { InlineFilter, type Service, type ServiceStatus } from '../core/service.js';
import type { ModuleEnv, StackModule } from '../core/stack.js';
import { breakerStateChannel } from '../telemetry/events.js';
import {
  CircuitBreakerParam,
  resolveCircuitBreakerOptions,
  type CircuitBreakerOptions,
} from './breaker-options.js';
import { rotationFor, RollingCounts, type BucketRotation } from './breaker-window.js';
import { ClassifierParam, classifyAttempt, type Classification, type Classifier } from './classifier.js';
import { BreakerSection, exposing } from '../telemetry/snapshot.js';

export {
  CircuitBreakerParam,
  defaultCircuitBreakerOptions,
  resolveCircuitBreakerOptions,
  type CircuitBreakerOptions,
} from './breaker-options.js';
export { bucketRotationStats } from './breaker-window.js';

// ---------------------------------------------------------------------------------------------------------
// Errors, states, events

/**
 * A breaker's state (named apart from {@link ServiceStatus}: `ready | busy | down`).
 *
 * @example
 * ```ts
 * const failingFast = (s: CircuitState) => s !== 'closed';
 * ```
 */
export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * The destination's circuit breaker is open (or half-open with its one trial call in flight): the call failed
 * at once without touching the network. `retryable` is true, since nothing was sent: a router treats it as
 * "this destination is unavailable" and fails over, a retry goes elsewhere.
 *
 * @example
 * ```ts
 * try { await mesh.request('http://users/v1/me'); }
 * catch (e) { if (e instanceof CircuitOpenError) console.log(e.service, e.destination, e.state); }
 * ```
 */
export class CircuitOpenError extends MeshError {
  /** The concrete destination whose breaker refused the call. */
  readonly destination: string;
  /** `open`, or `half-open` when the one trial call is already in flight. */
  readonly state: Exclude<CircuitState, 'closed'>;
  constructor(
    service: string,
    destination: string,
    state: Exclude<CircuitState, 'closed'>,
    details: MeshErrorDetails = {},
  ) {
    super(
      'MESH_CIRCUIT_OPEN',
      `Circuit breaker of service "${service}" destination "${destination}" is ${state}: failing fast`,
      { ...details, phase: 'route', retryable: true, service },
    );
    this.destination = destination;
    this.state = state;
  }
}

/**
 * One state transition of a breaker.
 *
 * @example
 * ```ts
 * breaker.onStateChange((c: CircuitStateChange) => log.warn(c, `breaker ${c.from} -> ${c.to}`));
 * ```
 */
export interface CircuitStateChange {
  readonly service: string;
  readonly destination: string;
  readonly from: CircuitState;
  readonly to: CircuitState;
  /** Mesh clock time of the transition (ms). */
  readonly at: number;
}

/**
 * Stops a {@link CircuitBreakerFilter.onStateChange} subscription; also usable with `using`.
 *
 * @example
 * ```ts
 * const sub = breaker.onStateChange(console.log);
 * sub.unsubscribe();
 * ```
 */
export interface CircuitSubscription extends Disposable {
  unsubscribe(): void;
}

/**
 * A read-only view of a breaker, for snapshots and metrics.
 *
 * @example
 * ```ts
 * const s: CircuitBreakerSnapshot = breaker.snapshot();
 * if (s.state !== 'closed') console.log(`${s.destination}: ${s.failures}/${s.requests} failed`);
 * ```
 */
export interface CircuitBreakerSnapshot {
  readonly service: string;
  readonly destination: string;
  readonly state: CircuitState;
  /** Calls counted in the rolling window (started; ignored outcomes and fast failures excluded). */
  readonly requests: number;
  /** Calls classified `success` in the window. */
  readonly successes: number;
  /** Calls classified `failure` in the window. */
  readonly failures: number;
  /** Calls failed fast with {@link CircuitOpenError}, since the breaker was built. */
  readonly rejected: number;
  /** Calls classified `ignored` (not counted either way), since the breaker was built. */
  readonly ignored: number;
  /** How many times the breaker has opened, since it was built. */
  readonly opened: number;
  /** The options in force. */
  readonly options: Readonly<CircuitBreakerOptions>;
}

// ---------------------------------------------------------------------------------------------------------
// The filter

type Kind = Classification['kind'];

/** A non-success response on its way through opossum as a rejection (not an Error: no stack to capture). */
class ClassifiedResponse {
  constructor(readonly res: MeshResponse) {}
}

/**
 * The circuit breaker of one concrete destination, over the rest of the concrete stack (the balancer).
 * Its `status` is `down` while it is open (or half-open with its trial in flight) and `busy` while it waits
 * for a trial call, so a router prefers other destinations.
 *
 * @example
 * ```ts
 * const breaker = new CircuitBreakerFilter(balancer, env, defaultCircuitBreakerOptions, defaultClassifier);
 * const sub = breaker.onStateChange((c) => console.log(c.destination, c.from, '->', c.to));
 * breaker.snapshot().state; // 'closed'
 * ```
 */
export class CircuitBreakerFilter extends InlineFilter {
  readonly service: string;
  readonly destination: string;
  readonly options: Readonly<CircuitBreakerOptions>;
  /** @internal The opossum breaker (exposed for tests; do not drive it directly). */
  readonly opossum: CircuitBreaker<[MeshRequest, CallContext], MeshResponse>;
  private readonly classifier: Classifier;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly rotation: BucketRotation;
  private readonly counts: RollingCounts;
  private readonly listeners = new Set<(change: CircuitStateChange) => void>();
  private current: CircuitState = 'closed';
  private shut = false;
  private rejectedCount = 0;
  private ignoredCount = 0;
  private openedCount = 0;

  constructor(
    next: Service,
    env: Pick<ModuleEnv<'concrete'>, 'target' | 'clock' | 'logger'>,
    options: Readonly<CircuitBreakerOptions>,
    classifier: Classifier,
  ) {
    super(next);
    this.service = env.target.service;
    this.destination = env.target.destination;
    this.options = options;
    this.classifier = classifier;
    this.clock = env.clock;
    this.logger = env.logger;
    this.counts = new RollingCounts(options.windowBuckets);
    this.rotation = rotationFor(env.clock, options.windowMs / options.windowBuckets);
    // A fresh options object: opossum writes its defaults into the one it is given.
    const b = (this.opossum = new CircuitBreaker(
      (req: MeshRequest, ctx: CallContext) => this.trial(req, ctx),
      {
        name: `${this.service}/${this.destination}`,
        timeout: false,
        resetTimeout: options.resetTimeoutMs,
        errorThresholdPercentage: options.errorThresholdPercentage,
        volumeThreshold: options.volumeThreshold,
        rollingCountTimeout: options.windowMs,
        rollingCountBuckets: options.windowBuckets,
        rollingPercentilesEnabled: false,
        enableSnapshots: false,
        rotateBucketController: this.rotation.controller,
        allowWarmUp: false,
        // A rejected trial is a failure unless the classifier called that error a success.
        errorFilter: (err: unknown, _req?: MeshRequest, ctx?: CallContext) =>
          ctx !== undefined &&
          ctx.attempt.classifiedOutcome === err &&
          ctx.attempt.classifiedBy === this.classifier &&
          (ctx.attempt.classification as Classification).kind === 'success',
      },
    ));
    b.on('open', () => this.transition('open'));
    b.on('halfOpen', () => this.transition('half-open'));
    b.on('close', () => {
      this.counts.reset();
      this.transition('closed');
    });
    this.rotation.add(this.rotate);
  }

  /** The breaker's state. */
  get state(): CircuitState {
    return this.current;
  }

  override get status(): ServiceStatus {
    if (this.shut) return 'down';
    const b = this.opossum;
    if (b.closed) return this.next.status;
    if (b.pendingClose) return this.next.status === 'down' ? 'down' : 'busy';
    return 'down';
  }

  /** Closed: the call goes on. Open: a fast failure. Half-open: the trial, through opossum, when it is free. */
  enter(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    if (this.shut) return Promise.reject(new MeshClosedError());
    const b = this.opossum;
    if (b.closed) {
      ctx.attempt.breakerState = 'closed';
      return undefined;
    }
    // opossum's own gate (lib/circuit.js `call`), tested here so that a fast failure is one typed error that
    // never enters opossum's window.
    if (!b.pendingClose) {
      const state = b.halfOpen ? 'half-open' : 'open';
      ctx.attempt.breakerState = state; // for telemetry: the state this attempt met
      this.rejectedCount++;
      return Promise.reject(
        new CircuitOpenError(this.service, this.destination, state, { attempts: ctx.attempt.number }),
      );
    }
    ctx.attempt.breakerState = 'half-open';
    return b.fire(req, ctx).then(undefined, unwrap);
  }

  /** A response to a call that met the closed state: counted, and handed on untouched. */
  exit(res: MeshResponse, req: MeshRequest, ctx: CallContext): MeshResponse {
    this.count(this.kindOf(req, ctx, res, undefined));
    return res;
  }

  /** An error of a call that met the closed state: counted, and thrown on unchanged. */
  fail(err: unknown, req: MeshRequest, ctx: CallContext): never {
    this.count(this.kindOf(req, ctx, undefined, err));
    throw err;
  }

  /** The function opossum runs for the half-open trial: the rest of the stack, then the classification. */
  private async trial(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      this.count(this.kindOf(req, ctx, undefined, err));
      throw err;
    }
    const kind = this.kindOf(req, ctx, res, undefined);
    this.count(kind);
    if (kind === 'success') return res;
    throw new ClassifiedResponse(res);
  }

  /** The classifier's answer; one that throws counts a response as a success and an error as a failure. */
  private kindOf(req: MeshRequest, ctx: CallContext, res: MeshResponse | undefined, err: unknown): Kind {
    try {
      return classifyAttempt(this.classifier, req, ctx, res, err).kind;
    } catch (e) {
      const kind = res !== undefined ? 'success' : 'failure';
      this.logger.warn(
        { err: e, service: this.service, destination: this.destination },
        `classifier threw; ${res !== undefined ? 'response' : 'error'} counted as a ${kind}`,
      );
      return kind;
    }
  }

  /** Counts an outcome; while closed, a failure that takes the window past opossum's rule opens opossum. */
  private count(kind: Kind): void {
    if (kind === 'ignored') {
      this.ignoredCount++;
      return;
    }
    const c = this.counts;
    const failed = kind === 'failure';
    c.add(failed);
    if (!failed || !this.opossum.closed || c.requestSum < this.options.volumeThreshold) return;
    if ((c.failureSum / c.requestSum) * 100 > this.options.errorThresholdPercentage) this.opossum.open();
  }

  private transition(to: CircuitState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    if (to === 'open') this.openedCount++;
    const change: CircuitStateChange = {
      service: this.service,
      destination: this.destination,
      from,
      to,
      at: this.clock.now(),
    };
    if (breakerStateChannel.hasSubscribers) breakerStateChannel.publish(change);
    const fields = { service: this.service, destination: this.destination, from, to };
    if (to === 'open') this.logger.warn(fields, 'circuit breaker opened');
    else this.logger.info(fields, `circuit breaker ${to}`);
    // opossum emits from inside its promise handlers: a listener that throws must not become an unhandled
    // rejection or stop the other listeners.
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.logger.warn({ err, ...fields }, 'circuit breaker state listener threw');
      }
    }
  }

  /**
   * Calls `listener` after every state transition (`closed -> open`, `open -> half-open`,
   * `half-open -> closed | open`). Returns a subscription that stops it (also a `Disposable`).
   *
   * @example
   * ```ts
   * using sub = breaker.onStateChange((c) => metrics.record(c.to));
   * ```
   */
  onStateChange(listener: (change: CircuitStateChange) => void): CircuitSubscription {
    const listeners = this.listeners;
    listeners.add(listener);
    const unsubscribe = (): void => void listeners.delete(listener);
    return { unsubscribe, [Symbol.dispose]: unsubscribe };
  }

  /**
   * A read-only view of the breaker: its state, the window's counts and cumulative counters.
   *
   * @example
   * ```ts
   * const { state, failures, requests } = breaker.snapshot();
   * ```
   */
  snapshot(): CircuitBreakerSnapshot {
    const c = this.counts;
    return {
      service: this.service,
      destination: this.destination,
      state: this.current,
      requests: c.requestSum,
      successes: c.requestSum - c.failureSum,
      failures: c.failureSum,
      rejected: this.rejectedCount,
      ignored: this.ignoredCount,
      opened: this.openedCount,
      options: this.options,
    };
  }

  /** Shuts the opossum breaker down (its reset timer with it) and leaves the shared rotation. */
  override close(): Promise<void> {
    if (!this.shut) {
      this.shut = true;
      this.opossum.shutdown();
      this.rotation.remove(this.rotate);
      this.listeners.clear();
    }
    return this.next.close();
  }

  private readonly rotate = (): void => this.counts.rotate();
}

/** Hands a classified response back to the caller; rethrows anything else as it is. */
function unwrap(err: unknown): MeshResponse {
  if (err instanceof ClassifiedResponse) return err.res;
  throw err;
}

// ---------------------------------------------------------------------------------------------------------
// The stack module

/**
 * A `circuit-breaker` module whose breakers use `options` unless a service sets {@link CircuitBreakerParam}.
 * The options are validated here, so a bad value fails when the module is made.
 *
 * @example
 * ```ts
 * const breaker = createCircuitBreakerModule({ volumeThreshold: 50, resetTimeoutMs: 10_000 });
 * createMesh({ services, stack: (s) => ({ ...s, concrete: s.concrete.prepend(breaker) }) });
 * ```
 */
export function createCircuitBreakerModule(options?: Partial<CircuitBreakerOptions> | boolean): StackModule {
  const fallback = resolveCircuitBreakerOptions(options, 'circuitBreaker');
  return {
    role: 'circuit-breaker',
    description:
      'Per concrete destination: opens on the failure rate over a rolling window (opossum); fails fast with CircuitOpenError',
    params: [CircuitBreakerParam, ClassifierParam],
    make(next: Service, env: ModuleEnv): Service {
      if (env.level !== 'concrete') {
        throw new ConfigError(
          `stack.${env.level}`,
          'circuit-breaker',
          'the circuit breaker in the concrete stack',
        );
      }
      const set = env.params.has(CircuitBreakerParam);
      // Params may be set by hand: validate again (idempotent for resolved options).
      const options = set
        ? resolveCircuitBreakerOptions(
            env.params.get(CircuitBreakerParam),
            `services.${env.target.service}.circuitBreaker`,
          )
        : fallback;
      if (options === false) return next;
      const breaker = new CircuitBreakerFilter(next, env, options, env.params.get(ClassifierParam));
      return exposing(env, BreakerSection, breaker, (b) => b.state);
    },
  };
}

/**
 * The `circuit-breaker` module (concrete level) with the defaults; a service's {@link CircuitBreakerParam}
 * overrides them or, with `false`, turns the breaker off.
 *
 * Placement: in the concrete stack, so below the router and the retries (each attempt passes the breaker
 * once, and an open breaker makes the router fail over to another destination); above the balancer (one
 * breaker per destination, not per endpoint: endpoints have failure accrual); below admission, so that
 * admission's own rejections never count as failures of the destination.
 *
 * @example
 * ```ts
 * createMesh({ services, stack: (s) => ({ ...s, concrete: s.concrete.prepend(circuitBreakerModule) }) });
 * ```
 */
export const circuitBreakerModule: StackModule = createCircuitBreakerModule();
