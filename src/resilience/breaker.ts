/**
 * Circuit breaker, one per concrete destination: when the failure rate of a destination over a rolling window
 * passes a threshold, calls to it fail at once with a {@link CircuitOpenError} (and its status turns `down`, so
 * the router fails over) instead of piling onto something that is already failing; after a reset time one
 * trial call decides whether it closes again (Nygard, "Release It!", ch. 5; Netflix Hystrix's
 * `HystrixCircuitBreaker`; Fowler, "CircuitBreaker").
 *
 * The state machine, the rolling window and the open decision are opossum's (nodeshift/opossum 9,
 * lib/circuit.js and lib/status.js); this file adapts it to the mesh where opossum's model does not fit:
 *
 * - opossum counts a resolved promise as a success, but a 503 is a resolved response. The function given to
 *   opossum classifies the response (status line and headers only, with the shared {@link Classifier}) and,
 *   for a failure, rejects with an internal wrapper that holds the response; {@link CircuitBreakerFilter.call}
 *   unwraps it and returns the response untouched, body unread. Real errors pass through as they are.
 * - `ignored` outcomes (caller abort, passed deadline, back-pressure) are filtered with opossum's
 *   `errorFilter`, which counts them as successes; they are taken back out of the window, so the breaker
 *   counts exactly what the classifier says. An ignored half-open trial proves nothing, so the breaker opens
 *   again rather than closing on it (Hystrix's `markNonSuccess` on a cancelled trial).
 * - Time belongs to the deadline module: `timeout: false`, and never opossum's breaker-wide AbortController
 *   (one timeout would abort every call in flight: nodeshift/opossum#780, #861).
 * - One bucket rotation for all breakers: opossum's `rotateBucketController` replaces its per-breaker
 *   `setInterval` with a shared emitter, which {@link BucketRotation} drives from the mesh clock. Snapshots
 *   (another interval per breaker) are off.
 * - opossum keeps the window's counts when it closes, so the failures that opened it would open it again on
 *   the first failure after recovery; the window is reset on close, as Hystrix does (`resetStream`).
 * - In the closed state a call does not go through opossum's `fire` (a promise, clock reads and event emissions per call):
 *   a success is counted straight into opossum's current bucket, and any other outcome is handed to `fire`
 *   already settled, so opossum's own code counts the failure and decides whether to open. Half-open trials
 *   go through `fire` as they are.
 * - opossum stores every call's latency in the window even with percentiles off; those arrays are replaced by
 *   a sink (percentiles are off, so nothing reads them).
 *
 * What is left of opossum's own timers: its `resetTimeout` timer (one unref'ed `setTimeout` per open breaker,
 * cleared when the breaker closes or shuts down). opossum has no public way to half-open a breaker, so that
 * one timer runs on real time rather than the mesh clock. opossum also reads `Date.now()` for latencies that
 * nothing here uses.
 *
 * Defaults are Hystrix's (`circuitBreaker.errorThresholdPercentage` 50, `requestVolumeThreshold` 20,
 * `sleepWindowInMilliseconds` 5000, `metrics.rollingStats` 10 s in 10 buckets); opossum's own defaults
 * (volume 0, reset 30 s) open on a single failure and stay open long. See docs/resilience.md.
 */
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { ConfigError, MeshClosedError, MeshError, type MeshErrorDetails } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { defineParam } from '../core/params.js';
import { settledCall, Filter, type Service, type ServiceStatus } from '../core/service.js';
import type { ModuleEnv, StackModule } from '../core/stack.js';
import { ClassifierParam, classifyAttempt, type Classification, type Classifier } from './classifier.js';
import { breakerStateChannel } from '../telemetry/events.js';
import { BreakerSection, exposing } from '../telemetry/snapshot.js';

// ---------------------------------------------------------------------------------------------------------
// Options

/**
 * Settings of the circuit breaker of one concrete destination.
 *
 * @example
 * ```ts
 * const strict: CircuitBreakerOptions = { ...defaultCircuitBreakerOptions, volumeThreshold: 50 };
 * ```
 */
export interface CircuitBreakerOptions {
  /**
   * The breaker opens when the failure percentage over the window is strictly above this (opossum compares
   * with `>`), once the window holds at least {@link CircuitBreakerOptions.volumeThreshold} requests.
   * In `[0, 100)`. Default 50.
   */
  readonly errorThresholdPercentage: number;
  /** Requests the window must hold before the breaker may open (an integer >= 0). Default 20. */
  readonly volumeThreshold: number;
  /** Length of the rolling window (ms). Default 10000. */
  readonly windowMs: number;
  /** Buckets the window is divided into; it slides one bucket at a time (an integer >= 1). Default 10. */
  readonly windowBuckets: number;
  /** How long the breaker stays open before it lets one trial call through (ms). Default 5000. */
  readonly resetTimeoutMs: number;
}

/**
 * The defaults: Hystrix's (50 % over 10 s in 10 buckets, at least 20 requests, 5 s open).
 *
 * @example
 * ```ts
 * defaultCircuitBreakerOptions.volumeThreshold; // 20
 * ```
 */
export const defaultCircuitBreakerOptions: Readonly<CircuitBreakerOptions> = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 20,
  windowMs: 10_000,
  windowBuckets: 10,
  resetTimeoutMs: 5_000,
});

const OPTION_KEYS: readonly (keyof CircuitBreakerOptions)[] = [
  'errorThresholdPercentage',
  'volumeThreshold',
  'windowMs',
  'windowBuckets',
  'resetTimeoutMs',
];

/** The largest delay a Node timer takes; a longer one silently becomes 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

function numberIn(
  record: Record<string, unknown>,
  key: keyof CircuitBreakerOptions,
  path: string,
  ok: (v: number) => boolean,
  expected: string,
): number {
  const v = record[key];
  if (v === undefined) return defaultCircuitBreakerOptions[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    throw new ConfigError(`${path}.${key}`, v, expected);
  return v;
}

/**
 * Validates circuit breaker settings and fills in the defaults. `undefined` and `true` give the defaults,
 * `false` disables the breaker; an object may set any subset of {@link CircuitBreakerOptions}. A wrong
 * value, or an unknown key, is a {@link ConfigError} naming `path.field` and the value.
 *
 * @example
 * ```ts
 * resolveCircuitBreakerOptions({ resetTimeoutMs: 10_000 }, 'services.users.circuitBreaker');
 * // { errorThresholdPercentage: 50, volumeThreshold: 20, windowMs: 10000, windowBuckets: 10, resetTimeoutMs: 10000 }
 * resolveCircuitBreakerOptions({ volumeThreshold: -1 }, 'services.users.circuitBreaker');
 * // throws ConfigError at services.users.circuitBreaker.volumeThreshold
 * ```
 */
export function resolveCircuitBreakerOptions(
  input: unknown,
  path = 'circuitBreaker',
): CircuitBreakerOptions | false {
  if (input === false) return false;
  if (input === undefined || input === true) return defaultCircuitBreakerOptions;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(path, input, 'false, true or an options object');
  }
  const record = input as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(`${path}.${key}`, record[key], `a known option (${OPTION_KEYS.join(', ')})`);
    }
  }
  const errorThresholdPercentage = numberIn(
    record,
    'errorThresholdPercentage',
    path,
    (v) => v >= 0 && v < 100,
    'a number in [0, 100)',
  );
  const volumeThreshold = numberIn(
    record,
    'volumeThreshold',
    path,
    (v) => Number.isInteger(v) && v >= 0,
    'an integer >= 0',
  );
  const windowMs = numberIn(
    record,
    'windowMs',
    path,
    (v) => v > 0 && v <= MAX_TIMER_MS,
    `a number of milliseconds in (0, ${MAX_TIMER_MS}]`,
  );
  const windowBuckets = numberIn(
    record,
    'windowBuckets',
    path,
    (v) => Number.isInteger(v) && v >= 1 && v <= 1000,
    'an integer in [1, 1000]',
  );
  if (windowMs / windowBuckets < 1) {
    throw new ConfigError(`${path}.windowBuckets`, windowBuckets, `at most windowMs (${windowMs}) buckets`);
  }
  const resetTimeoutMs = numberIn(
    record,
    'resetTimeoutMs',
    path,
    (v) => v > 0 && v <= MAX_TIMER_MS,
    `a number of milliseconds in (0, ${MAX_TIMER_MS}]`,
  );
  return { errorThresholdPercentage, volumeThreshold, windowMs, windowBuckets, resetTimeoutMs };
}

/**
 * The per-service circuit breaker setting: resolved options, or `false` to build no breaker for the
 * service. Unset, it reads as the defaults (or as the options given to {@link createCircuitBreakerModule}).
 *
 * @example
 * ```ts
 * const params = Params.empty.with(CircuitBreakerParam, resolveCircuitBreakerOptions({ volumeThreshold: 50 }));
 * const off = Params.empty.with(CircuitBreakerParam, false);
 * ```
 */
export const CircuitBreakerParam = defineParam<CircuitBreakerOptions | false>(
  'circuitBreaker',
  defaultCircuitBreakerOptions,
);

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
// The shared bucket rotation

/**
 * One timer on the mesh clock that slides the rolling windows of every breaker with the same bucket length:
 * it emits opossum's `rotate` event on the emitter given to opossum as `rotateBucketController` (instead of
 * one `setInterval` per breaker), then runs the breakers' after-rotation hooks. It runs only while at least
 * one breaker uses it. Ticks are scheduled from the previous due time, so they do not drift, and a late timer
 * catches up with zero-delay ticks.
 */
class BucketRotation {
  /** The emitter opossum listens on (one listener per breaker: no max-listeners limit). */
  readonly controller = new EventEmitter().setMaxListeners(0);
  private readonly hooks = new Set<() => void>();
  private timer: TimerHandle | undefined;
  private due = 0;

  constructor(
    private readonly clock: Clock,
    readonly intervalMs: number,
    private readonly onIdle: (r: BucketRotation) => void,
  ) {}

  get size(): number {
    return this.hooks.size;
  }

  add(hook: () => void): void {
    this.hooks.add(hook);
    if (this.timer === undefined) {
      this.due = this.clock.now() + this.intervalMs;
      this.timer = this.clock.setTimeout(this.tick, this.intervalMs);
    }
  }

  remove(hook: () => void): void {
    if (!this.hooks.delete(hook) || this.hooks.size > 0) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.onIdle(this);
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.controller.emit('rotate');
    for (const hook of this.hooks) hook();
    if (this.hooks.size === 0) return;
    this.due += this.intervalMs;
    this.timer = this.clock.setTimeout(this.tick, Math.max(0, this.due - this.clock.now()));
  };
}

const rotations = new WeakMap<Clock, Map<number, BucketRotation>>();

/** The shared rotation for `clock` and this bucket length (one per distinct length, per clock). */
function rotationFor(clock: Clock, intervalMs: number): BucketRotation {
  let byInterval = rotations.get(clock);
  if (byInterval === undefined) rotations.set(clock, (byInterval = new Map()));
  let r = byInterval.get(intervalMs);
  if (r === undefined) {
    r = new BucketRotation(clock, intervalMs, (idle) => {
      if (byInterval.get(idle.intervalMs) === idle) byInterval.delete(idle.intervalMs);
    });
    byInterval.set(intervalMs, r);
  }
  return r;
}

/**
 * How many shared bucket rotations are running on `clock`, and how many breakers they serve. For tests and
 * diagnostics: after every mesh using `clock` is closed, both are 0.
 *
 * @example
 * ```ts
 * await mesh.close();
 * bucketRotationStats(mesh.clock); // { timers: 0, breakers: 0 }
 * ```
 */
export function bucketRotationStats(clock: Clock): { timers: number; breakers: number } {
  const byInterval = rotations.get(clock);
  let breakers = 0;
  for (const r of byInterval?.values() ?? []) breakers += r.size;
  return { timers: byInterval?.size ?? 0, breakers };
}

// ---------------------------------------------------------------------------------------------------------
// The filter

type Kind = Classification['kind'];

/** What a classified non-success response travels through opossum as (not an Error: no stack to capture). */
class ClassifiedResponse {
  constructor(
    readonly res: MeshResponse,
    readonly kind: Exclude<Kind, 'success'>,
  ) {}
}

/** opossum's Status internals this file relies on (opossum 9, lib/status.js). */
interface OpossumStatusInternals {
  /** Pops the oldest bucket and starts a fresh one. */
  rotateBucket?: () => void;
}

/** Stands in for a bucket's per-call latency array: percentiles are off, so nothing reads it. */
const LATENCY_SINK = Object.freeze({ push: () => 0 }) as unknown as number[];

type Action = (
  req: MeshRequest,
  ctx: CallContext,
  settled: Promise<MeshResponse> | undefined,
) => Promise<MeshResponse>;

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
export class CircuitBreakerFilter extends Filter {
  readonly service: string;
  readonly destination: string;
  readonly options: Readonly<CircuitBreakerOptions>;
  /** @internal The opossum breaker (exposed for tests; do not drive it directly). */
  readonly opossum: CircuitBreaker<
    [MeshRequest, CallContext, Promise<MeshResponse> | undefined],
    MeshResponse
  >;
  private readonly classifier: Classifier;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly rotation: BucketRotation;
  private readonly listeners = new Set<(change: CircuitStateChange) => void>();
  private current: CircuitState = 'closed';
  private shut = false;
  /** The destination below settles the closed state's outcomes (see fuseWithBelow). */
  private fused = false;
  /** Set by the error filter for an `ignored` outcome, read by the `success` listener that opossum runs next. */
  private ignoringPending = false;
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
    this.rotation = rotationFor(env.clock, options.windowMs / options.windowBuckets);
    const action: Action = this.attempt.bind(this);
    // A fresh options object: opossum writes its defaults into the one it is given.
    this.opossum = new CircuitBreaker(action, {
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
      errorFilter: this.errorFilter,
    });
    const b = this.opossum;
    // Runs before opossum's own `success` listeners (the count, and "close if half-open").
    b.prependListener('success', this.onSuccessFirst);
    b.on('open', () => this.transition('open'));
    b.on('halfOpen', () => this.transition('half-open'));
    b.on('close', () => {
      this.resetWindow();
      this.transition('closed');
    });
    this.sinkLatencies(false);
    this.rotation.add(this.afterRotate);
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

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    if (this.shut) return Promise.reject(new MeshClosedError());
    if (this.opossum.closed) {
      ctx.breakerState = 'closed';
      return this.closedCall(req, ctx);
    }
    const b = opossumGate(this.opossum);
    ctx.breakerState = b ?? this.current; // for telemetry: the state this attempt met
    // opossum's own test (lib/circuit.js `call`), made here so that a fast failure allocates one typed error
    // and does not enter opossum's window (rejections would otherwise count as requests there).
    if (b !== undefined) {
      this.rejectedCount++;
      return Promise.reject(
        new CircuitOpenError(this.service, this.destination, b, { attempts: ctx.attempt }),
      );
    }
    // Half-open with the trial slot free: the trial goes through opossum, which closes or reopens on it.
    return this.opossum.fire(req, ctx, undefined).then(undefined, this.unwrap);
  }

  /**
   * The closed state's path, without `fire` (its promise, three `Date.now()` and five event emissions per
   * call; docs/benchmarks.md measures what each module costs). A success is counted straight into opossum's current bucket, as its `fire` and `success`
   * listeners would (Status `increment`); an `ignored` outcome is not counted (opossum's path adds it and
   * this file takes it back out); anything else is handed to opossum's `fire` already settled, so opossum's
   * own code counts the failure and decides whether to open, before the caller sees the outcome.
   */
  private closedCall(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    // Fused with the destination below (it runs closedResponse / closedError in its own reaction).
    if (this.fused) {
      try {
        return this.next.call(req, ctx);
      } catch (err) {
        return this.closedError(req, ctx, err);
      }
    }
    const pending = settledCall(this.next, req, ctx);
    return pending.then(
      (res) => this.closedResponse(req, ctx, res),
      (err: unknown) => this.closedError(req, ctx, err),
    );
  }

  /**
   * @internal Called once, when the service below is the destination and it will hand every outcome of a call
   * that met the closed state (`ctx.breakerState === 'closed'`) to {@link CircuitBreakerFilter.closedResponse}
   * or {@link CircuitBreakerFilter.closedError} itself, at the end of its own reaction (routing/concrete.ts):
   * the same work in the same order, one promise hop and two closures fewer per call.
   */
  fuseWithBelow(): void {
    this.fused = true;
  }

  /** @internal The closed state's handling of a response (see {@link CircuitBreakerFilter.fuseWithBelow}). */
  closedResponse(
    req: MeshRequest,
    ctx: CallContext,
    res: MeshResponse,
  ): MeshResponse | Promise<MeshResponse> {
    let kind: Kind;
    try {
      kind = classifyAttempt(this.classifier, req, ctx, res, undefined).kind;
    } catch (err) {
      this.logger.warn(
        { err, service: this.service, destination: this.destination },
        'classifier threw; response counted as a success',
      );
      kind = 'success';
    }
    if (kind === 'success') {
      this.countSuccess();
      return res;
    }
    if (kind === 'ignored') {
      this.ignoredCount++;
      return res;
    }
    if (!this.opossum.closed) return res;
    return this.opossum
      .fire(req, ctx, Promise.reject(new ClassifiedResponse(res, kind)))
      .then(undefined, this.unwrap);
  }

  /** @internal The closed state's handling of a failure (see {@link CircuitBreakerFilter.fuseWithBelow}). */
  closedError(req: MeshRequest, ctx: CallContext, err: unknown): Promise<never> {
    if (!this.opossum.closed) return Promise.reject(err);
    // opossum's error filter classifies it, as it would have on the slow path.
    return this.opossum.fire(req, ctx, Promise.reject(err)).then(undefined, this.unwrap) as Promise<never>;
  }

  /** What opossum's Status does on `fire` and then `success`, for a call that did not go through `fire`. */
  private countSuccess(): void {
    const bucket = this.opossum.status.window[0];
    if (bucket === undefined) return;
    bucket.fires++;
    bucket.successes++;
  }

  /**
   * The function opossum runs: the rest of the stack, then the classification of the response; or, from the
   * closed state's path, an outcome that is already known (`settled`).
   */
  private async attempt(
    req: MeshRequest,
    ctx: CallContext,
    settled: Promise<MeshResponse> | undefined,
  ): Promise<MeshResponse> {
    if (settled !== undefined) return settled;
    const res = await this.next.call(req, ctx);
    let c: Classification;
    try {
      c = classifyAttempt(this.classifier, req, ctx, res, undefined);
    } catch (err) {
      this.logger.warn(
        { err, service: this.service, destination: this.destination },
        'classifier threw; response counted as a success',
      );
      return res;
    }
    if (c.kind === 'success') return res;
    throw new ClassifiedResponse(res, c.kind);
  }

  /** opossum's `errorFilter`: true when the rejection is not a failure (opossum then emits `success`). */
  private readonly errorFilter = (err: unknown, req?: MeshRequest, ctx?: CallContext): boolean => {
    let kind: Kind;
    if (err instanceof ClassifiedResponse) kind = err.kind;
    else if (req === undefined || ctx === undefined) kind = 'failure';
    else {
      try {
        kind = classifyAttempt(this.classifier, req, ctx, undefined, err).kind;
      } catch (e) {
        this.logger.warn(
          { err: e, service: this.service, destination: this.destination },
          'classifier threw; error counted as a failure',
        );
        kind = 'failure';
      }
    }
    if (kind === 'failure') return false;
    // opossum calls the error filter and then, synchronously, emits `success` for a filtered rejection.
    if (kind === 'ignored') this.ignoringPending = true;
    return true;
  };

  /**
   * First `success` listener. For an ignored outcome: takes it back out of the window (opossum counted the
   * `fire` and is about to count a success; both go in the current bucket), and a half-open breaker opens
   * again rather than close on a trial that proved nothing.
   */
  private readonly onSuccessFirst = (): void => {
    if (!this.ignoringPending) return;
    this.ignoringPending = false;
    this.ignoredCount++;
    const bucket = this.opossum.status.window[0];
    if (bucket !== undefined) {
      bucket.fires--;
      bucket.successes--;
    }
    if (this.opossum.halfOpen) this.opossum.open();
  };

  /** Returns a classified response to the caller; maps opossum's own rejections; rethrows the rest as is. */
  private readonly unwrap = (err: unknown): MeshResponse => {
    if (err instanceof ClassifiedResponse) return err.res;
    if (typeof err === 'object' && err !== null && CircuitBreaker.isOurError(err as Error)) {
      const code = (err as { code?: unknown }).code;
      if (code === 'EOPENBREAKER') {
        this.rejectedCount++;
        throw new CircuitOpenError(
          this.service,
          this.destination,
          this.current === 'closed' ? 'open' : this.current,
        );
      }
      if (code === 'ESHUTDOWN') throw new MeshClosedError();
    }
    throw err;
  };

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
    const stats = this.opossum.stats;
    return {
      service: this.service,
      destination: this.destination,
      state: this.current,
      requests: Math.max(0, stats.fires),
      successes: Math.max(0, stats.successes),
      failures: Math.max(0, stats.failures),
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
      this.rotation.remove(this.afterRotate);
      this.listeners.clear();
    }
    return this.next.close();
  }

  private readonly afterRotate = (): void => this.sinkLatencies(true);

  /** Replaces the latency arrays of the newest bucket (or of all buckets) with the sink. */
  private sinkLatencies(newestOnly: boolean): void {
    const window = this.opossum.status.window;
    const n = newestOnly ? Math.min(1, window.length) : window.length;
    for (let i = 0; i < n; i++) window[i]!.latencyTimes = LATENCY_SINK;
  }

  /** Empties the window (Hystrix resets its counts when a breaker closes). */
  private resetWindow(): void {
    const rotate = (this.opossum.status as unknown as OpossumStatusInternals).rotateBucket;
    if (typeof rotate !== 'function') return;
    for (let i = 0; i < this.options.windowBuckets; i++) rotate();
    this.sinkLatencies(false);
  }
}

/** `undefined` when opossum would let a call through now, else the state a refused call reports. */
function opossumGate(b: CircuitBreaker<any, any>): Exclude<CircuitState, 'closed'> | undefined {
  if (b.closed || b.pendingClose) return undefined;
  return b.halfOpen ? 'half-open' : 'open';
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
