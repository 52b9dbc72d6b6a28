// The real OpenTelemetry SDK for tests: in-memory span exporter, a metric reader collected on demand, the
// AsyncLocalStorage context manager and the W3C trace context propagator, registered globally and removed
// again by shutdown().
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';

/** A reader whose collect() the test calls. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface TestOtel {
  readonly spans: InMemorySpanExporter;
  /** All metrics collected now, by name. */
  collect(): Promise<Map<string, MetricData>>;
  shutdown(): Promise<void>;
}

export function setupOtel(options: { traces?: boolean; metrics?: boolean } = {}): TestOtel {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  if (options.traces !== false) trace.setGlobalTracerProvider(tracerProvider);
  if (options.metrics !== false) metrics.setGlobalMeterProvider(meterProvider);
  return {
    spans,
    async collect() {
      const { resourceMetrics } = await reader.collect();
      const out = new Map<string, MetricData>();
      for (const sm of resourceMetrics.scopeMetrics)
        for (const m of sm.metrics) out.set(m.descriptor.name, m);
      return out;
    },
    async shutdown() {
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
    },
  };
}

/** The spans of meshfetch, finished so far. */
export function meshSpans(otel: TestOtel): ReadableSpan[] {
  return otel.spans.getFinishedSpans().filter((s) => s.instrumentationScope.name === 'meshfetch');
}

/** The data points of a metric whose attributes include `attrs`. */
export function points<T>(m: MetricData | undefined, attrs: Record<string, unknown> = {}): DataPoint<T>[] {
  if (m === undefined) return [];
  return (m.dataPoints as DataPoint<T>[]).filter((p) =>
    Object.entries(attrs).every(([k, v]) => p.attributes[k] === v),
  );
}

/** Sum of the counts of the histogram points matching `attrs`. */
export function histogramCount(m: MetricData | undefined, attrs: Record<string, unknown> = {}): number {
  return points<Histogram>(m, attrs).reduce((n, p) => n + p.value.count, 0);
}

/** Sum of the values of the counter/gauge points matching `attrs`. */
export function sum(m: MetricData | undefined, attrs: Record<string, unknown> = {}): number {
  return points<number>(m, attrs).reduce((n, p) => n + p.value, 0);
}
