// Spans against real servers and the real OpenTelemetry SDK: names, kinds, parent/child links and attributes
// for a call that succeeds, one retried after a 503, one won by a backup request and one refused by an open
// breaker; the W3C traceparent the server receives; nothing when no SDK is registered.
import { afterEach, describe, expect, it } from 'vitest';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import {
  CircuitOpenError,
  createMesh,
  type Mesh,
  type MeshRequest,
  type MeshResponse,
  type StackModule,
} from 'meshfetch';
import { Filter, INSTRUMENTATION_VERSION, type CallContext } from 'meshfetch/extend';
import { readFileSync } from 'node:fs';
import { startServer, type TestServer } from '../support/servers.js';
import { meshSpans, setupOtel, type TestOtel } from './otel-sdk.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
let otel: TestOtel | undefined;

afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await otel?.shutdown();
  otel = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(handler?: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}

const parentId = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;

function split(spans: ReadableSpan[]): { logical: ReadableSpan[]; attempts: ReadableSpan[] } {
  return {
    logical: spans.filter((s) => s.kind === SpanKind.INTERNAL),
    attempts: spans.filter((s) => s.kind === SpanKind.CLIENT),
  };
}

describe('tracing', () => {
  it('a successful call: one logical span, one CLIENT attempt span under it, traceparent at the server', async () => {
    otel = setupOtel();
    const a = await server();
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const res = await mesh.request('http://users/v1/users/42?sig=secret&q=1');
    // The attempt span ends at headers; the logical span stays open until the body ends.
    expect(split(meshSpans(otel)).logical).toHaveLength(0);
    expect(split(meshSpans(otel)).attempts).toHaveLength(1);
    await res.body.text();
    await new Promise((r) => setImmediate(r));
    const { logical, attempts } = split(meshSpans(otel));
    expect(logical).toHaveLength(1);
    expect(attempts).toHaveLength(1);
    const [call, attempt] = [logical[0]!, attempts[0]!];
    expect(call.name).toBe('GET users');
    expect(attempt.name).toBe('GET');
    expect(parentId(attempt)).toBe(call.spanContext().spanId);
    expect(attempt.spanContext().traceId).toBe(call.spanContext().traceId);
    expect(call.instrumentationScope.version).toBe(INSTRUMENTATION_VERSION);
    expect(attempt.attributes).toMatchObject({
      'http.request.method': 'GET',
      'server.address': 'users',
      'server.port': 80,
      'url.full': 'http://users/v1/users/42?sig=REDACTED&q=1',
      'http.response.status_code': 200,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': a.port,
      'meshfetch.service': 'users',
      'meshfetch.endpoint': a.address,
      'meshfetch.attempt': 1,
      'meshfetch.balancer': 'p2c-peak-ewma',
      'meshfetch.breaker.state': 'closed',
    });
    expect(attempt.attributes['http.request.resend_count']).toBeUndefined();
    expect(attempt.attributes['error.type']).toBeUndefined();
    expect(call.attributes).toMatchObject({
      'meshfetch.service': 'users',
      'meshfetch.balancer': 'p2c-peak-ewma',
      'meshfetch.endpoint': a.address,
      'meshfetch.destination': 'primary',
      'meshfetch.attempts': 1,
      'meshfetch.breaker.state': 'closed',
      'http.response.status_code': 200,
    });
    expect(call.status.code).toBe(SpanStatusCode.UNSET);
    // The logical span ends after the attempt (it covers the body).
    const end = (s: ReadableSpan) => s.endTime[0] * 1e9 + s.endTime[1];
    expect(end(call)).toBeGreaterThanOrEqual(end(attempt));
    // W3C trace context of the attempt span reached the server.
    const tp = a.received[0]!.headers.traceparent;
    expect(tp).toBe(`00-${attempt.spanContext().traceId}-${attempt.spanContext().spanId}-01`);
  });

  it('a call retried after a 503: two attempt spans, the second a resend with its reason', async () => {
    otel = setupOtel();
    let n = 0;
    const a = await server((_req, res) => {
      res.statusCode = n++ === 0 ? 503 : 200;
      res.end('x');
    });
    mesh = createMesh({
      services: { users: { endpoints: [a.address], retries: { backoff: { baseMs: 1, maxMs: 1 } } } },
    });
    const res = await mesh.request('http://users/');
    expect(res.statusCode).toBe(200);
    await res.body.text();
    await new Promise((r) => setImmediate(r));
    const { logical, attempts } = split(meshSpans(otel));
    expect(logical).toHaveLength(1);
    expect(attempts).toHaveLength(2);
    const [first, second] = attempts.sort(
      (x, y) => Number(x.attributes['meshfetch.attempt']) - Number(y.attributes['meshfetch.attempt']),
    );
    for (const s of attempts) expect(parentId(s)).toBe(logical[0]!.spanContext().spanId);
    expect(first!.attributes).toMatchObject({ 'http.response.status_code': 503, 'error.type': '503' });
    expect(first!.status.code).toBe(SpanStatusCode.ERROR);
    expect(second!.attributes).toMatchObject({
      'http.response.status_code': 200,
      'http.request.resend_count': 1,
      'meshfetch.attempt': 2,
      'meshfetch.retry.reason': '503',
    });
    expect(logical[0]!.attributes).toMatchObject({
      'meshfetch.attempts': 2,
      'meshfetch.retry.count': 1,
      'meshfetch.retry.reason': '503',
      'http.response.status_code': 200,
    });
    expect(logical[0]!.attributes['meshfetch.retry.budget_left']).toEqual(expect.any(Number));
    // Each attempt carried its own traceparent.
    expect(a.received.map((r) => r.headers.traceparent)).toEqual(
      [first!, second!].map((s) => `00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`),
    );
  });

  it('a call won by a backup request: both attempts under the logical span, the backup marked', async () => {
    otel = setupOtel();
    let n = 0;
    const a = await server((_req, res) => {
      const i = n++;
      // Request 0 warms the latency window; request 1 (the original of the second call) hangs a while.
      setTimeout(() => res.end('x'), i === 1 ? 2_000 : 0);
    });
    mesh = createMesh({
      services: {
        users: { endpoints: [a.address], backupRequests: { minSamples: 1, maxDelayMs: 20 } },
      },
    });
    await (await mesh.request('http://users/warm')).body.text();
    await new Promise((r) => setImmediate(r)); // the warm call's body close ends its span
    otel.spans.reset();
    const res = await mesh.request('http://users/slow');
    await res.body.text();
    await new Promise((r) => setImmediate(r));
    const { logical, attempts } = split(meshSpans(otel));
    expect(logical).toHaveLength(1);
    expect(attempts).toHaveLength(2);
    for (const s of attempts) expect(parentId(s)).toBe(logical[0]!.spanContext().spanId);
    const backup = attempts.find((s) => s.attributes['meshfetch.backup'] === true);
    const original = attempts.find((s) => s.attributes['meshfetch.backup'] === undefined);
    expect(backup?.attributes['http.response.status_code']).toBe(200);
    // The original was cancelled when the backup won.
    expect(original?.status.code).toBe(SpanStatusCode.ERROR);
    expect(original?.attributes['error.type']).toEqual(expect.any(String));
    expect(logical[0]!.attributes).toMatchObject({
      'meshfetch.backup.sent': 1,
      'meshfetch.backup.won': true,
      'http.response.status_code': 200,
    });
  });

  it('a call refused by an open breaker: a failed logical span and no attempt span', async () => {
    otel = setupOtel();
    const a = await server((_req, res) => {
      res.statusCode = 500;
      res.end('no');
    });
    mesh = createMesh({
      services: {
        users: {
          endpoints: [a.address],
          retries: false,
          failureAccrual: false,
          circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
        },
      },
    });
    const first = await mesh.request('http://users/');
    await first.body.text();
    otel.spans.reset();
    await expect(mesh.request('http://users/')).rejects.toBeInstanceOf(CircuitOpenError);
    const { logical, attempts } = split(meshSpans(otel));
    expect(attempts).toHaveLength(0);
    expect(logical).toHaveLength(1);
    expect(logical[0]!.status.code).toBe(SpanStatusCode.ERROR);
    expect(logical[0]!.attributes).toMatchObject({
      'error.type': 'MESH_CIRCUIT_OPEN',
      'meshfetch.breaker.state': 'open',
      'meshfetch.service': 'users',
    });
  });

  it('the logical span is a child of the caller span, and fetch goes through the same spans', async () => {
    otel = setupOtel();
    const a = await server();
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const { trace } = await import('@opentelemetry/api');
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('handler', async (parent) => {
      const res = await mesh!.fetch('http://users/x', { method: 'POST', body: 'hi' });
      await res.text();
      parent.end();
    });
    await new Promise((r) => setImmediate(r));
    const all = otel.spans.getFinishedSpans();
    const handler = all.find((s) => s.name === 'handler')!;
    const { logical, attempts } = split(meshSpans(otel));
    expect(logical[0]!.name).toBe('POST users');
    expect(parentId(logical[0]!)).toBe(handler.spanContext().spanId);
    expect(attempts[0]!.spanContext().traceId).toBe(handler.spanContext().traceId);
    expect(a.received[0]!.headers.traceparent).toContain(handler.spanContext().traceId);
  });

  it('no trace header reaches a host outside the mesh', async () => {
    otel = setupOtel();
    const outside = await server();
    mesh = createMesh({ services: {} });
    const res = await mesh.request(`http://${outside.address}/`);
    await res.body.text();
    expect(outside.received[0]!.headers.traceparent).toBeUndefined();
  });

  it('with no SDK registered: no span, no traceparent, no call-end hook', async () => {
    const a = await server();
    const seen: boolean[] = [];
    class Probe extends Filter {
      call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
        seen.push(ctx.hasEndHooks, ctx.traceContext !== undefined);
        return this.next.call(req, ctx);
      }
    }
    const probe: StackModule = { role: 'probe', description: 'test', make: (next) => new Probe(next) };
    mesh = createMesh({
      services: { users: { endpoints: [a.address] } },
      stack: (d) => ({ ...d, logical: d.logical.append(probe) }),
    });
    const res = await mesh.request('http://users/');
    await res.body.text();
    expect(a.received[0]!.headers.traceparent).toBeUndefined();
    expect(seen).toEqual([false, false]);
  });

  it('the instrumentation version is the package version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(INSTRUMENTATION_VERSION).toBe(pkg.version);
  });
});
