/**
 * The one place that talks to the OpenTelemetry API's globals. meshfetch depends on `@opentelemetry/api`
 * only (the SDK is the application's choice), and must cost nearly nothing when no SDK is registered:
 *
 * - the tracer and the meter are looked up lazily, on each call, by the identity of the registered provider
 *   (one global read), and cached per provider, so an SDK registered after the mesh was made is picked up,
 *   and one unregistered (`trace.disable()`) is dropped;
 * - with no tracer provider registered, {@link activeTracer} returns `undefined` and the span modules skip
 *   span creation, attribute building and `context.with` altogether; the API's `ProxyTracerProvider` exposes
 *   its delegate, and the API's no-op provider is a singleton we can compare with;
 * - with no meter provider registered, {@link activeMeter} returns `undefined` (the API's no-op meter is a
 *   singleton: `createNoopMeter()`), and no instrument is made or recorded.
 */
import {
  createNoopMeter,
  metrics,
  ProxyTracerProvider,
  trace,
  type Meter,
  type MeterProvider,
  type TextMapSetter,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { HeaderRecord } from '../core/message.js';

/**
 * The instrumentation scope name of meshfetch's tracer and meter.
 *
 * @example
 * ```ts
 * spans.filter((s) => s.instrumentationScope.name === INSTRUMENTATION_NAME);
 * ```
 */
export const INSTRUMENTATION_NAME = 'meshfetch';

/**
 * The instrumentation scope version (the package version; a test keeps them equal).
 *
 * @example
 * ```ts
 * trace.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
 * ```
 */
export const INSTRUMENTATION_VERSION = '0.1.0';

const NOOP_TRACER_PROVIDER: TracerProvider = new ProxyTracerProvider().getDelegate();
const NOOP_METER: Meter = createNoopMeter();

/**
 * Where `@opentelemetry/api` 1.x keeps what an SDK registered (api's internal/global-utils.ts: a symbol on
 * the global object named after the API's major version). Nothing registered there, or no `trace` /
 * `metrics` entry in it, means the API answers with its no-op: checked first, so a process without an SDK
 * pays one property read per call instead of the API's version-checked global lookups on every call of the
 * two span modules.
 */
const API_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/**
 * Whether anything (a tracer or meter provider, a propagator) was ever registered with the OpenTelemetry API
 * 1.x in this process: one global read. False means every lookup below answers "nothing".
 *
 * @example
 * ```ts
 * if (!otelRegistered()) return next.call(req, ctx); // no SDK: skip spans and metrics altogether
 * ```
 */
export function otelRegistered(): boolean {
  return (globalThis as Record<symbol, unknown>)[API_GLOBAL] !== undefined;
}

function registered(kind: 'trace' | 'metrics' | 'propagation'): boolean {
  const g = (globalThis as Record<symbol, Record<string, unknown> | undefined>)[API_GLOBAL];
  return g !== undefined && g[kind] !== undefined;
}

/**
 * Whether a global propagator is registered. Without one, `propagation.inject` runs the API's no-op
 * propagator: the span modules skip the call (and `context.active()`) on the hot path.
 *
 * @example
 * ```ts
 * if (propagatorRegistered()) propagation.inject(context.active(), req.headers, headerSetter);
 * ```
 */
export function propagatorRegistered(): boolean {
  return registered('propagation');
}

let tracerKey: TracerProvider | undefined;
let tracer: Tracer | undefined;

/**
 * meshfetch's tracer, or `undefined` when no tracer provider is registered (then tracing costs nothing).
 *
 * @example
 * ```ts
 * const t = activeTracer();
 * if (t !== undefined) t.startSpan('work').end();
 * ```
 */
export function activeTracer(): Tracer | undefined {
  if (!registered('trace')) return undefined;
  const p = trace.getTracerProvider();
  // A ProxyTracerProvider of another copy of the API fails instanceof: treat it as registered (its tracer
  // still returns non-recording spans when it has no delegate, which the span modules check).
  const d = p instanceof ProxyTracerProvider ? p.getDelegate() : p;
  if (d !== tracerKey) {
    tracerKey = d;
    tracer =
      d === NOOP_TRACER_PROVIDER ? undefined : d.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
  }
  return tracer;
}

let meterKey: MeterProvider | undefined;
let meter: Meter | undefined;
let meterGeneration = 0;

/**
 * meshfetch's meter, or `undefined` when no meter provider is registered.
 *
 * @example
 * ```ts
 * activeMeter()?.createCounter('my.counter').add(1);
 * ```
 */
export function activeMeter(): Meter | undefined {
  if (!registered('metrics')) {
    if (meterKey !== undefined) {
      // The provider was removed (`metrics.disable()`): a new generation, with no meter.
      meterKey = undefined;
      meter = undefined;
      meterGeneration++;
    }
    return undefined;
  }
  const p = metrics.getMeterProvider();
  if (p !== meterKey) {
    meterKey = p;
    const m = p.getMeter(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
    meter = m === NOOP_METER ? undefined : m;
    meterGeneration++;
  }
  return meter;
}

/**
 * Bumped whenever {@link activeMeter} changes: instruments made from an older meter must be remade.
 *
 * @example
 * ```ts
 * if (cachedGeneration !== meterGenerationNow()) rebuild();
 * ```
 */
export function meterGenerationNow(): number {
  return meterGeneration;
}

/**
 * Writes propagation headers (`traceparent`, `tracestate`, `baggage`) into a request's header record: a
 * constant, so an injection allocates no setter.
 *
 * @example
 * ```ts
 * propagation.inject(context.active(), req.headers, headerSetter);
 * ```
 */
export const headerSetter: TextMapSetter<HeaderRecord> = {
  set(carrier, key, value) {
    carrier[key.toLowerCase()] = value;
  },
};

/**
 * For the undici auto-instrumentation's `ignoreRequestHook`: true for a request that already carries a
 * `traceparent` header, which is what every request the mesh sends carries while a tracer is registered
 * (the mesh's attempt span injected it). Ignoring them avoids a second CLIENT span per attempt and a second
 * `traceparent` header on the wire; pass-through calls (hosts outside the mesh) are still traced by undici.
 *
 * @example
 * ```ts
 * new UndiciInstrumentation({ ignoreRequestHook: isMeshRequest });
 * ```
 */
export function isMeshRequest(request: { headers?: unknown }): boolean {
  const h = request.headers;
  if (typeof h === 'string') return /(^|\r\n)traceparent:/i.test(h);
  if (Array.isArray(h)) {
    for (let i = 0; i < h.length; i++) {
      const v = h[i];
      if (typeof v === 'string' && (v.toLowerCase() === 'traceparent' || /^traceparent:/i.test(v)))
        return true;
      if (Buffer.isBuffer(v) && v.toString('latin1').toLowerCase() === 'traceparent') return true;
    }
  }
  return false;
}
