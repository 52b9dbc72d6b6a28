// Metric values and units after a known workload, with the real OpenTelemetry metrics SDK: per-attempt
// http.client.request.duration, per-call meshfetch.call.duration, retries by reason, and the gauges read from
// the mesh's state (endpoints per status, in flight, discovery age, breaker state, retry budget).
import { afterEach, expect, it } from 'vitest';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { channel } from 'node:diagnostics_channel';
import { CHANNELS, createMesh, METRICS, staticDiscovery, type Mesh } from 'meshfetch';
import { DURATION_BUCKETS, meshInstruments } from 'meshfetch/extend';
import { startServer, type TestServer } from '../support/servers.js';
import { histogramCount, points, setupOtel, sum, type TestOtel } from './otel-sdk.js';

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

it('records durations, retries and state after 3 good calls and 1 retried after a 503', async () => {
  otel = setupOtel({ traces: false });
  let fail = false;
  const a = await startServer((_req, res) => {
    res.statusCode = fail ? 503 : 200;
    fail = false;
    res.end('ok');
  });
  servers.push(a);
  mesh = createMesh({
    services: { users: { endpoints: [a.address], retries: { backoff: { baseMs: 1, maxMs: 1 } } } },
  });
  for (let i = 0; i < 3; i++) await (await mesh.request('http://users/a/' + i)).body.text();
  fail = true;
  await (await mesh.request('http://users/b')).body.text();
  await new Promise((r) => setImmediate(r));

  const m = await otel.collect();
  const attempt = m.get(METRICS.attemptDuration);
  expect(attempt?.descriptor.unit).toBe('s');
  expect(histogramCount(attempt)).toBe(5);
  expect(histogramCount(attempt, { 'http.response.status_code': 200, 'meshfetch.service': 'users' })).toBe(4);
  expect(histogramCount(attempt, { 'http.response.status_code': 503, 'error.type': '503' })).toBe(1);
  const p = points<Histogram>(attempt)[0]!;
  expect(p.value.buckets.boundaries).toEqual([...DURATION_BUCKETS]);
  expect(p.attributes).toMatchObject({
    'http.request.method': 'GET',
    'server.address': 'users',
    'server.port': 80,
    'url.scheme': 'http',
    'meshfetch.endpoint': a.address,
  });
  // Bounded attributes: never the URL or its path.
  for (const q of points(attempt)) {
    expect(Object.keys(q.attributes)).not.toContain('url.full');
    expect(JSON.stringify(q.attributes)).not.toContain('/a/');
  }

  const call = m.get(METRICS.callDuration);
  expect(call?.descriptor.unit).toBe('s');
  expect(histogramCount(call, { 'meshfetch.service': 'users', 'meshfetch.status_class': '2xx' })).toBe(4);
  expect(sum(m.get(METRICS.retries), { 'meshfetch.service': 'users', 'meshfetch.retry.reason': '503' })).toBe(
    1,
  );
  expect(m.get(METRICS.retries)?.descriptor.unit).toBe('{retry}');

  // Gauges read from the mesh's state.
  expect(
    sum(m.get(METRICS.endpoints), { 'meshfetch.service': 'users', 'meshfetch.endpoint.status': 'ready' }),
  ).toBe(1);
  expect(sum(m.get(METRICS.endpoints), { 'meshfetch.endpoint.status': 'busy' })).toBe(0);
  expect(sum(m.get(METRICS.endpointInflight), { 'meshfetch.endpoint': a.address })).toBe(0);
  expect(points(m.get(METRICS.discoveryAge), { 'meshfetch.service': 'users' })).toHaveLength(1);
  expect(m.get(METRICS.discoveryAge)?.descriptor.unit).toBe('s');
  expect(sum(m.get(METRICS.breakerState), { 'meshfetch.breaker.state': 'closed' })).toBe(1);
  expect(sum(m.get(METRICS.breakerState), { 'meshfetch.breaker.state': 'open' })).toBe(0);
  expect(sum(m.get(METRICS.retryBudget), { 'meshfetch.service': 'users' })).toBeGreaterThan(0);
});

it('counts breaker transitions, endpoints marked busy and discovery updates from the events', async () => {
  otel = setupOtel({ traces: false });
  const a = await startServer((_req, res) => {
    res.statusCode = 500;
    res.end('no');
  });
  const b = await startServer();
  servers.push(a, b);
  const d = staticDiscovery([a.address]);
  mesh = createMesh({
    services: {
      users: {
        discovery: d,
        retries: false,
        failureAccrual: { consecutiveFailures: 1 },
        circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
      },
    },
  });
  await (await mesh.request('http://users/')).body.text();
  d.set([a.address, b.address]);
  const m = await otel.collect();
  expect(sum(m.get(METRICS.breakerTransitions), { 'meshfetch.breaker.state': 'open' })).toBe(1);
  expect(sum(m.get(METRICS.endpointBusy), { 'meshfetch.endpoint': a.address })).toBe(1);
  // Two discovery answers: the first (when the mesh built the service) and the change.
  expect(sum(m.get(METRICS.discoveryUpdates), { 'meshfetch.service': 'users' })).toBe(2);
  expect(sum(m.get(METRICS.endpoints), { 'meshfetch.endpoint.status': 'busy' })).toBe(1);
  expect(sum(m.get(METRICS.breakerState), { 'meshfetch.breaker.state': 'open' })).toBe(1);
});

it('counts events from when a meter provider is registered, before the mesh has made any call', async () => {
  const d = staticDiscovery(['127.0.0.1:1']);
  mesh = createMesh({ services: { users: { discovery: d } } });
  otel = setupOtel({ traces: false });
  d.set(['127.0.0.1:2']);
  const m = await otel.collect();
  expect(sum(m.get(METRICS.discoveryUpdates), { 'meshfetch.service': 'users' })).toBe(1);
  expect(
    sum(m.get(METRICS.endpoints), { 'meshfetch.service': 'users', 'meshfetch.endpoint.status': 'ready' }),
  ).toBe(1);
});

it('feeds the event counters only while a mesh is open or instruments exist', async () => {
  const ch = channel(CHANNELS.discoveryUpdate);
  expect(meshInstruments()).toBeUndefined(); // no provider now: drops an earlier test's instruments
  expect(ch.hasSubscribers).toBe(false);
  mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:1'] } } });
  expect(ch.hasSubscribers).toBe(true);
  await mesh.close({ gracePeriodMs: 0 });
  mesh = undefined;
  expect(ch.hasSubscribers).toBe(false);
});

it('records nothing and makes no instrument when no meter provider is registered', async () => {
  expect(meshInstruments()).toBeUndefined();
});
