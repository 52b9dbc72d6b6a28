/**
 * meshfetch's metric instruments, on the meter of the registered OpenTelemetry `MeterProvider` (none
 * registered: nothing is made and nothing is recorded). Three kinds of source feed them:
 *
 * - per attempt and per call, the span modules record durations and counts (`http.client.request.duration`,
 *   `meshfetch.call.duration`, retries, budget exhausted, backup requests);
 * - rare events (breaker transitions, endpoints marked busy, discovery updates and errors) come from the
 *   diagnostics channels of events.ts, subscribed while a mesh is open or instruments exist; each event is
 *   counted on the instruments of the meter registered when it arrives (a meter provider registered after
 *   the mesh was made counts from then on, not from the mesh's first call), so the code that publishes them
 *   needs no metrics of its own;
 * - state (endpoints per status, in flight per endpoint, discovery age, breaker state, retry budget) is read
 *   at collection time from the snapshot of every open mesh, by one batch observable callback: nothing is
 *   kept per call for it.
 *
 * Attributes are bounded: the logical service, the destination, the endpoint address (bounded by discovery),
 * the method, the status code or status class, an error type; never the URL or its path.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type {
  Attributes,
  BatchObservableResult,
  Counter,
  Histogram,
  Meter,
  Observable,
  ObservableGauge,
} from '@opentelemetry/api';
import {
  CHANNELS,
  type BreakerEvent,
  type DiscoveryErrorEvent,
  type DiscoveryUpdateEvent,
  type EndpointStateEvent,
} from './events.js';
import { ATTR } from './attributes.js';
import { activeMeter, meterGenerationNow } from './otel.js';

/**
 * The metric names, all but the semantic conventions' own under the `meshfetch.` prefix.
 *
 * @example
 * ```ts
 * resourceMetrics.scopeMetrics[0].metrics.find((m) => m.descriptor.name === METRICS.callDuration);
 * ```
 */
export const METRICS = Object.freeze({
  /** Histogram, s: one attempt on the wire, until response headers (semantic conventions). */
  attemptDuration: 'http.client.request.duration',
  /** Histogram, s: one logical call, all attempts and the response body. */
  callDuration: 'meshfetch.call.duration',
  /** Counter, {retry}: retries scheduled, by reason. */
  retries: 'meshfetch.retries',
  /** Counter, {call}: calls whose wanted retry the budget refused. */
  budgetExhausted: 'meshfetch.retry.budget_exhausted',
  /** Observable gauge, {retry}: retries the budget of a service allows now. */
  retryBudget: 'meshfetch.retry.budget',
  /** Counter, {request}: backup requests sent. */
  backupSent: 'meshfetch.backup.sent',
  /** Counter, {request}: backup requests whose answer won the race. */
  backupWon: 'meshfetch.backup.won',
  /** Counter, {transition}: circuit breaker state changes, by the state entered. */
  breakerTransitions: 'meshfetch.breaker.transitions',
  /** Observable gauge, 1: 1 for the state a breaker is in, 0 for the others. */
  breakerState: 'meshfetch.breaker.state',
  /** Counter, {transition}: endpoints marked busy by failure accrual, by reason. */
  endpointBusy: 'meshfetch.endpoint.busy',
  /** Observable gauge, {endpoint}: endpoints of a service per status (ready, busy, down). */
  endpoints: 'meshfetch.endpoints',
  /** Observable gauge, {request}: requests in flight per endpoint. */
  endpointInflight: 'meshfetch.endpoint.inflight',
  /** Counter, {update}: discovery answers applied. */
  discoveryUpdates: 'meshfetch.discovery.updates',
  /** Counter, {error}: discovery queries that failed. */
  discoveryErrors: 'meshfetch.discovery.errors',
  /** Observable gauge, s: how long ago discovery last confirmed a service's endpoint set. */
  discoveryAge: 'meshfetch.discovery.age',
});

/**
 * The semantic conventions' advised buckets for `http.client.request.duration` (seconds); used for
 * `meshfetch.call.duration` too.
 *
 * @example
 * ```ts
 * DURATION_BUCKETS[0]; // 0.005
 * ```
 */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
]);

/**
 * What the observable instruments read: a mesh (its `snapshot()`).
 *
 * @example
 * ```ts
 * const sub = observeMesh(mesh);
 * sub.dispose();
 * ```
 */
export interface SnapshotSource {
  snapshot(): ObservedSnapshot;
}

/**
 * The part of a mesh's snapshot (`mesh.snapshot()`, src/client/snapshot.ts) the observable instruments
 * read. Declared here, so that telemetry depends on no upper layer: the mesh's snapshot has this shape.
 */
export interface ObservedSnapshot {
  readonly services: ReadonlyArray<{
    readonly name: string;
    readonly endpoints: ReadonlyArray<{
      readonly address: string;
      readonly status: 'ready' | 'busy' | 'down';
      readonly inflight: number;
    }>;
    readonly discovery: { readonly kind: string; readonly stale: boolean; readonly ageMs: number | null };
    readonly breaker: string | null;
    readonly retryBudget: number | null;
  }>;
}

const sources = new Set<SnapshotSource>();

/**
 * Adds a mesh to those the observable instruments read (the mesh does it when it is made, and disposes of
 * it when it closes). Also makes the instruments if a meter is registered now.
 *
 * @example
 * ```ts
 * const sub = observeMesh(mesh);
 * await mesh.close();
 * sub.dispose();
 * ```
 */
export function observeMesh(source: SnapshotSource): { dispose(): void } {
  sources.add(source);
  syncFeeds();
  meshInstruments();
  return {
    dispose: () => {
      sources.delete(source);
      syncFeeds();
    },
  };
}

/** The rare events that feed counters, each counted on the instruments current when it arrives. */
const FEEDS: ReadonlyArray<readonly [string, (m: unknown) => void]> = [
  [CHANNELS.breakerState, (m) => meshInstruments()?.countBreaker(m as BreakerEvent)],
  [CHANNELS.endpointBusy, (m) => meshInstruments()?.countEndpointBusy(m as EndpointStateEvent)],
  [CHANNELS.discoveryUpdate, (m) => meshInstruments()?.countDiscoveryUpdate(m as DiscoveryUpdateEvent)],
  [CHANNELS.discoveryError, (m) => meshInstruments()?.countDiscoveryError(m as DiscoveryErrorEvent)],
];
let feeding = false;

/**
 * Subscribes the counters' feeds while a mesh is open or instruments exist (a stack used without a mesh
 * still counts once a call has made them), and unsubscribes them after, so publishers build no event when
 * nothing can count it. Subscribed before a mesh builds its services, so the first discovery update counts.
 */
function syncFeeds(): void {
  const want = sources.size > 0 || current !== undefined;
  if (want === feeding) return;
  feeding = want;
  for (const [name, fn] of FEEDS) (want ? subscribe : unsubscribe)(name, fn);
}

const STATUSES = ['ready', 'busy', 'down'] as const;
const BREAKER_STATES = ['closed', 'open', 'half-open'] as const;

/**
 * The instruments made from one meter.
 *
 * @example
 * ```ts
 * meshInstruments()?.retries.add(1, { 'meshfetch.service': 'users', 'meshfetch.retry.reason': '503' });
 * ```
 */
export class MeshInstruments {
  readonly attemptDuration: Histogram;
  readonly callDuration: Histogram;
  readonly retries: Counter;
  readonly budgetExhausted: Counter;
  readonly backupSent: Counter;
  readonly backupWon: Counter;
  private readonly breakerTransitions: Counter;
  private readonly endpointBusy: Counter;
  private readonly discoveryUpdates: Counter;
  private readonly discoveryErrors: Counter;
  private readonly endpoints: ObservableGauge;
  private readonly endpointInflight: ObservableGauge;
  private readonly discoveryAge: ObservableGauge;
  private readonly breakerState: ObservableGauge;
  private readonly retryBudget: ObservableGauge;
  private readonly observables: Observable[];

  constructor(private readonly meter: Meter) {
    const advice = { explicitBucketBoundaries: [...DURATION_BUCKETS] };
    this.attemptDuration = meter.createHistogram(METRICS.attemptDuration, {
      description: 'Duration of HTTP client requests (one attempt on the wire, until response headers).',
      unit: 's',
      advice,
    });
    this.callDuration = meter.createHistogram(METRICS.callDuration, {
      description:
        'Duration of logical calls through the mesh: all attempts, backoffs and the response body.',
      unit: 's',
      advice,
    });
    this.retries = meter.createCounter(METRICS.retries, {
      description: 'Retries scheduled, by reason.',
      unit: '{retry}',
    });
    this.budgetExhausted = meter.createCounter(METRICS.budgetExhausted, {
      description: 'Calls that wanted a retry the retry budget refused.',
      unit: '{call}',
    });
    this.backupSent = meter.createCounter(METRICS.backupSent, {
      description: 'Backup requests sent.',
      unit: '{request}',
    });
    this.backupWon = meter.createCounter(METRICS.backupWon, {
      description: 'Backup requests whose answer won the race.',
      unit: '{request}',
    });
    this.breakerTransitions = meter.createCounter(METRICS.breakerTransitions, {
      description: 'Circuit breaker state changes, by the state entered.',
      unit: '{transition}',
    });
    this.endpointBusy = meter.createCounter(METRICS.endpointBusy, {
      description: 'Endpoints marked busy by failure accrual, by reason.',
      unit: '{transition}',
    });
    this.discoveryUpdates = meter.createCounter(METRICS.discoveryUpdates, {
      description: 'Discovery answers applied by a destination.',
      unit: '{update}',
    });
    this.discoveryErrors = meter.createCounter(METRICS.discoveryErrors, {
      description: 'Discovery queries that failed.',
      unit: '{error}',
    });
    this.endpoints = meter.createObservableGauge(METRICS.endpoints, {
      description: 'Endpoints of a service per status (ready, busy, down).',
      unit: '{endpoint}',
    });
    this.endpointInflight = meter.createObservableGauge(METRICS.endpointInflight, {
      description: 'Requests in flight per endpoint (until their response bodies end).',
      unit: '{request}',
    });
    this.discoveryAge = meter.createObservableGauge(METRICS.discoveryAge, {
      description: "How long ago discovery last confirmed a service's endpoint set.",
      unit: 's',
    });
    this.breakerState = meter.createObservableGauge(METRICS.breakerState, {
      description: 'Circuit breaker state: 1 for the state it is in, 0 for the others.',
      unit: '1',
    });
    this.retryBudget = meter.createObservableGauge(METRICS.retryBudget, {
      description: 'Retries the retry budget of a service allows now.',
      unit: '{retry}',
    });
    this.observables = [
      this.endpoints,
      this.endpointInflight,
      this.discoveryAge,
      this.breakerState,
      this.retryBudget,
    ];
    meter.addBatchObservableCallback(this.observe, this.observables);
  }

  /** Stops feeding these instruments (their meter was replaced). */
  dispose(): void {
    this.meter.removeBatchObservableCallback(this.observe, this.observables);
  }

  /** @internal Counts a breaker transition (from its diagnostics event). */
  countBreaker(e: BreakerEvent): void {
    this.breakerTransitions.add(1, {
      [ATTR.service]: e.service,
      [ATTR.destination]: e.destination,
      [ATTR.breakerState]: e.to,
    });
  }

  /** @internal Counts an endpoint marked busy (from its diagnostics event). */
  countEndpointBusy(e: EndpointStateEvent): void {
    const attrs: Attributes = { [ATTR.service]: e.service, [ATTR.accrualReason]: e.reason };
    if (e.endpoint !== undefined) attrs[ATTR.endpoint] = e.endpoint;
    this.endpointBusy.add(1, attrs);
  }

  /** @internal Counts a discovery answer applied (from its diagnostics event). */
  countDiscoveryUpdate(e: DiscoveryUpdateEvent): void {
    this.discoveryUpdates.add(1, {
      [ATTR.service]: e.service,
      [ATTR.discoveryState]: e.state,
      [ATTR.discoveryStale]: e.stale,
    });
  }

  /** @internal Counts a failed discovery query (from its diagnostics event). */
  countDiscoveryError(e: DiscoveryErrorEvent): void {
    this.discoveryErrors.add(1, {
      [ATTR.service]: e.service,
      [ATTR.discoveryKind]: e.kind,
      [ATTR.discoveryErrorKind]: e.errorKind,
    });
  }

  private readonly observe = (r: BatchObservableResult): void => {
    for (const source of sources) {
      let snap: ObservedSnapshot;
      try {
        snap = source.snapshot();
      } catch {
        continue;
      }
      for (const s of snap.services) {
        const service = s.name;
        const counts = { ready: 0, busy: 0, down: 0 };
        for (const e of s.endpoints) {
          counts[e.status]++;
          r.observe(this.endpointInflight, e.inflight, {
            [ATTR.service]: service,
            [ATTR.endpoint]: e.address,
          });
        }
        for (const st of STATUSES)
          r.observe(this.endpoints, counts[st], { [ATTR.service]: service, [ATTR.endpointStatus]: st });
        if (s.discovery.ageMs !== null) {
          r.observe(this.discoveryAge, s.discovery.ageMs / 1000, {
            [ATTR.service]: service,
            [ATTR.discoveryKind]: s.discovery.kind,
            [ATTR.discoveryStale]: s.discovery.stale,
          });
        }
        if (s.breaker !== null) {
          for (const st of BREAKER_STATES)
            r.observe(this.breakerState, st === s.breaker ? 1 : 0, {
              [ATTR.service]: service,
              [ATTR.breakerState]: st,
            });
        }
        if (s.retryBudget !== null) r.observe(this.retryBudget, s.retryBudget, { [ATTR.service]: service });
      }
    }
  };
}

let current: MeshInstruments | undefined;
let generation = -1;

/**
 * The instruments on the registered meter, or `undefined` when no meter provider is registered. Cheap to
 * call per request: one global read while the provider stays the same.
 *
 * @example
 * ```ts
 * const inst = meshInstruments();
 * inst?.callDuration.record(0.012, { 'meshfetch.service': 'users' });
 * ```
 */
export function meshInstruments(): MeshInstruments | undefined {
  const meter = activeMeter();
  const g = meterGenerationNow();
  if (g !== generation) {
    generation = g;
    current?.dispose();
    current = meter === undefined ? undefined : new MeshInstruments(meter);
    syncFeeds();
  }
  return current;
}
