// diagnostics_channel events, without OpenTelemetry: they fire in order, with the documented payloads, and
// mesh.snapshot() shows per-endpoint counters and the recent success rate during and after a discovery change.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterEach, expect, it } from 'vitest';
import {
  CHANNELS,
  createMesh,
  staticDiscovery,
  type DiscoveryUpdateEvent,
  type Mesh,
  type RequestEvent,
} from 'meshfetch';
import { CHANNEL_PREFIX } from 'meshfetch/extend';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
const subs: Array<[string, (m: unknown) => void]> = [];

afterEach(async () => {
  for (const [name, fn] of subs.splice(0)) unsubscribe(name, fn);
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function record(): Array<{ name: string; message: Record<string, unknown> }> {
  const log: Array<{ name: string; message: Record<string, unknown> }> = [];
  for (const name of Object.values(CHANNELS)) {
    const fn = (message: unknown): void =>
      void log.push({ name, message: message as Record<string, unknown> });
    subscribe(name, fn);
    subs.push([name, fn]);
  }
  return log;
}

it('names every channel under the documented prefix', () => {
  for (const name of Object.values(CHANNELS)) expect(name.startsWith(CHANNEL_PREFIX)).toBe(true);
});

it('fires in order: discovery and endpoints, request start and end, breaker and accrual, discovery change', async () => {
  const bad = await startServer((_req, res) => {
    res.statusCode = 500;
    res.end('no');
  });
  const good = await startServer();
  servers.push(bad, good);
  const log = record();
  const d = staticDiscovery([bad.address]);
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
  const res = await mesh.request('http://users/v1?x=1', { headers: { authorization: 'Bearer SECRET' } });
  expect(res.statusCode).toBe(500);
  await res.body.text();
  await new Promise((r) => setImmediate(r));
  d.set([good.address]);

  expect(log.map((e) => e.name)).toEqual([
    CHANNELS.endpointAdded,
    CHANNELS.discoveryUpdate,
    CHANNELS.requestStart,
    CHANNELS.endpointBusy,
    CHANNELS.breakerState,
    CHANNELS.requestEnd,
    // One discovery change: its endpoint events (in either order), then the update that sums them up.
    expect.stringMatching(/^meshfetch:endpoint:(added|removed)$/),
    expect.stringMatching(/^meshfetch:endpoint:(added|removed)$/),
    CHANNELS.discoveryUpdate,
  ]);
  expect(new Set([log[6]!.name, log[7]!.name])).toEqual(
    new Set([CHANNELS.endpointAdded, CHANNELS.endpointRemoved]),
  );
  const start = log[2]!.message as unknown as RequestEvent;
  expect(log[5]!.message).toBe(start); // the same object, completed
  expect(start).toMatchObject({
    service: 'users',
    method: 'GET',
    authority: 'users',
    path: '/v1?x=1',
    statusCode: 500,
    attempts: 1,
    endpoint: bad.address,
  });
  expect(start.durationMs).toBeGreaterThanOrEqual(0);
  expect(log[3]!.message).toMatchObject({ service: 'users', endpoint: bad.address, to: 'busy' });
  expect(log[4]!.message).toMatchObject({
    service: 'users',
    destination: 'primary',
    from: 'closed',
    to: 'open',
  });
  const update = log[8]!.message as unknown as DiscoveryUpdateEvent;
  expect(update).toMatchObject({
    service: 'users',
    state: 'bound',
    endpoints: 1,
    stale: false,
    added: [good.address],
    removed: [bad.address],
  });
  // Payloads hold no secret (the request's headers are not in them).
  for (const e of log) {
    const { context: _ctx, ...rest } = e.message as { context?: unknown };
    expect(JSON.stringify(rest)).not.toContain('SECRET');
  }
});

it('a failed call ends with its error', async () => {
  const log = record();
  mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:1'], retries: false } } });
  await expect(mesh.request('http://users/')).rejects.toThrow();
  const end = log.find((e) => e.name === CHANNELS.requestEnd)!.message as unknown as RequestEvent;
  expect(end.statusCode).toBeUndefined();
  expect((end.error as { code?: string }).code).toBe('MESH_TRANSPORT');
});

it('snapshot: per-endpoint requests, failures and recent success rate, during and after a discovery change', async () => {
  let fail = true;
  const a = await startServer((_req, res) => {
    res.statusCode = fail ? 500 : 200;
    res.end('x');
  });
  const b = await startServer();
  servers.push(a, b);
  const d = staticDiscovery([a.address]);
  mesh = createMesh({
    services: { users: { discovery: d, retries: false, failureAccrual: false, circuitBreaker: false } },
  });
  await (await mesh.request('http://users/')).body.text();
  fail = false;
  await (await mesh.request('http://users/')).body.text();
  const open = await mesh.request('http://users/', { headers: { authorization: 'Bearer SECRET' } });
  const during = mesh.snapshot().services[0]!;
  expect(during.endpoints).toEqual([
    expect.objectContaining({ address: a.address, inflight: 1, requests: 3, failures: 1 }),
  ]);
  expect(during.endpoints[0]!.successRate).toBeCloseTo(2 / 3);
  expect(during.endpoints[0]!.accrual).toBeUndefined(); // counted without failure accrual
  d.set([a.address, b.address]);
  const changed = mesh.snapshot().services[0]!;
  expect(changed.discovery).toMatchObject({ kind: 'static', state: 'bound', stale: false });
  expect(changed.endpoints.map((e) => [e.address, e.requests, e.successRate])).toEqual([
    [a.address, 3, expect.closeTo(2 / 3)],
    [b.address, 0, null],
  ]);
  await open.body.text();
  await new Promise((r) => setImmediate(r)); // 'close' follows 'end'
  const after = mesh.snapshot();
  expect(after.services[0]!.endpoints[0]!.inflight).toBe(0);
  const json = JSON.stringify(after);
  expect(JSON.parse(json)).toEqual(after);
  expect(json).not.toContain('SECRET');
});
