/**
 * meshfetch with OpenTelemetry: the spans and metrics of a small workload, printed to the console.
 *
 * The OpenTelemetry SDK is the application's (here: sdk-trace-base with a span processor that prints each
 * span as it ends, sdk-metrics with a reader collected at the end, the AsyncLocalStorage context manager and
 * the W3C propagator); meshfetch itself uses only `@opentelemetry/api`. Two local backends stand behind the
 * logical service `users`; the second call meets a 503 and is retried, so its trace shows the logical span
 * with two attempt spans under it, and the backend prints the `traceparent` header it received.
 *
 * Run: npx tsx --conditions=meshfetch-source examples/otel/index.ts
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { context, metrics, propagation, trace, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { createMesh } from 'meshfetch';

/** Prints one line per span: indentation by parent, kind, name, the attributes that matter here. */
class PrintingExporter implements SpanExporter {
  export(spans: ReadableSpan[], done: (r: { code: number }) => void): void {
    for (const s of spans) {
      const kind =
        s.kind === SpanKind.CLIENT ? 'CLIENT  ' : s.kind === SpanKind.INTERNAL ? 'INTERNAL' : 'OTHER   ';
      const ms = (s.duration[0] * 1e3 + s.duration[1] / 1e6).toFixed(1);
      const attrs = Object.entries(s.attributes)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(' ');
      const indent = s.kind === SpanKind.CLIENT ? '    ' : '  ';
      console.log(
        `${indent}${kind} "${s.name}" ${ms} ms trace=${s.spanContext().traceId.slice(0, 8)} ${attrs}`,
      );
    }
    done({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

function backend(name: string, failFirst: boolean): Promise<Server> {
  let n = 0;
  const server = createServer((req, res) => {
    console.log(`  [${name}] ${req.method} ${req.url} traceparent=${req.headers.traceparent ?? '-'}`);
    res.statusCode = failFirst && n++ === 0 ? 503 : 200;
    res.end(JSON.stringify({ from: name }));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main(): Promise<void> {
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(new PrintingExporter())],
  });
  const reader = new OnDemandReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);

  const a = await backend('a', false);
  const b = await backend('b', true);
  const addr = (s: Server): string => `127.0.0.1:${(s.address() as AddressInfo).port}`;
  const mesh = createMesh({
    services: {
      users: { endpoints: [addr(a), addr(b)], balancer: 'round-robin', retries: { backoff: { baseMs: 5 } } },
    },
    unknownHosts: 'reject',
  });

  console.log(
    '# spans (printed as they end; an attempt ends at headers, the logical call at the end of the body)',
  );
  for (let i = 0; i < 4; i++) {
    console.log(`call ${i + 1}: GET http://users/v1/users/${i}`);
    const res = await mesh.request(`http://users/v1/users/${i}`);
    await res.body.text();
    await new Promise((r) => setImmediate(r)); // let the body's close end the logical span before the next call
  }

  console.log('\n# metrics');
  const { resourceMetrics } = await reader.collect();
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      console.log(`${m.descriptor.name} (${m.descriptor.unit || '-'})`);
      for (const p of m.dataPoints as DataPoint<number | Histogram>[]) {
        const v =
          typeof p.value === 'number'
            ? p.value
            : `count=${p.value.count} sum=${(p.value.sum ?? 0).toFixed(4)}`;
        console.log(`  ${v}  ${JSON.stringify(p.attributes)}`);
      }
    }
  }

  console.log('\n# snapshot');
  console.log(JSON.stringify(mesh.snapshot().services[0]!.endpoints, null, 2));

  await mesh.close();
  await new Promise<void>((r) => a.close(() => r()));
  await new Promise<void>((r) => b.close(() => r()));
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
