// What may be sent again (Go's net/http rule): a request that is not idempotent only when it is certain that
// none of it was written; an idempotent one (by method, Idempotency-Key or callOptions) after the idle-close
// race too, at once, free of budget and without blaming the endpoint.
import { afterEach, describe, expect, it } from 'vitest';
import { callOptions, createMesh, TransportError, type Mesh } from 'meshfetch';
import { startIdleCloseServer, type IdleCloseServer } from '../support/idle-close-server.js';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const closers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(closers.splice(0).map((s) => s.close()));
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A retry budget that is always empty: only what is free of budget can be resent. */
const emptyBudget = { budget: { minRetriesPerSec: 0, percentCanRetry: 0 } };

async function idleClose(mode: 'reset' | 'fin'): Promise<IdleCloseServer> {
  const s = await startIdleCloseServer({ idleMs: 40, mode });
  closers.push(s);
  return s;
}

function failuresOf(m: Mesh): number {
  return m.snapshot().services[0]!.endpoints.reduce((n, e) => n + (e as { failures: number }).failures, 0);
}

/** A warm-up call, then a call after the connection has sat idle long enough for the server to close it. */
async function afterIdle(m: Mesh, method: string, id: string, headers: Record<string, string> = {}) {
  await (await m.request('http://svc/warm', { headers: { 'x-id': `warm-${id}` } })).body.text();
  await sleep(80);
  return m.request('http://svc/', {
    method,
    body: method === 'GET' ? undefined : 'payload',
    headers: { 'x-id': id, ...headers },
  });
}

describe('the idle-close race', () => {
  for (const mode of ['reset', 'fin'] as const) {
    const how = mode === 'reset' ? 'ECONNRESET' : '"other side closed"';
    it(`a GET that meets the close (${how}) is resent at once on a fresh connection, free of budget, and the endpoint is not blamed`, async () => {
      const s = await idleClose(mode);
      mesh = createMesh({ services: { svc: { endpoints: [s.address], retries: emptyBudget } } });
      const res = await afterIdle(mesh, 'GET', 'g1');
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok');
      expect(s.closedOnRequest).toBe(1);
      expect(s.received.filter((r) => r.id === 'g1')).toHaveLength(2);
      expect(failuresOf(mesh)).toBe(0);
    });

    it(`a POST that meets the close (${how}) is not resent: a TransportError with retryable false`, async () => {
      const s = await idleClose(mode);
      mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
      const err = await afterIdle(mesh, 'POST', 'p1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransportError);
      expect((err as TransportError).retryable).toBe(false);
      expect(s.received.filter((r) => r.id === 'p1')).toHaveLength(1);
    });
  }

  it('a POST with an Idempotency-Key header is resent like a GET', async () => {
    const s = await idleClose('reset');
    mesh = createMesh({ services: { svc: { endpoints: [s.address], retries: emptyBudget } } });
    const res = await afterIdle(mesh, 'POST', 'k1', { 'idempotency-key': 'order-42' });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(s.received.filter((r) => r.id === 'k1')).toHaveLength(2);
  });

  it('a POST marked callOptions({ idempotent: true }) is resent; a GET marked idempotent: false is not', async () => {
    const s = await idleClose('reset');
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const ok = await afterIdle(mesh, 'POST', 'i1', callOptions({ idempotent: true }));
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
    const err = await afterIdle(mesh, 'GET', 'i2', callOptions({ idempotent: false })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    expect(s.received.filter((r) => r.id === 'i2')).toHaveLength(1);
  });
});

describe('a POST on a reused connection that the server drops after reading it', () => {
  it('reaches the server once: the caller gets a TransportError with retryable false', async () => {
    const s: TestServer = await startServer((req, res) => {
      if (req.method === 'POST') setTimeout(() => req.socket.destroy(), 30);
      else res.end('ok');
    });
    closers.push(s);
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    await (await mesh.request('http://svc/warm')).body.text();
    await sleep(20); // the kept-alive connection is idle again (undici reuses it only then)
    const err = await mesh
      .request('http://svc/orders', { method: 'POST', body: 'one order' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).retryable).toBe(false);
    expect(s.received.filter((r) => r.method === 'POST')).toHaveLength(1);
  });

  it('a POST to an endpoint that refuses connections is still resent (nothing was written)', async () => {
    const s = await startServer();
    closers.push(s);
    const refused = await startServer();
    const dead = refused.address;
    await refused.close();
    mesh = createMesh({
      services: { svc: { endpoints: [dead, s.address], balancer: 'round-robin' } },
    });
    for (let i = 0; i < 4; i++) {
      const r = await mesh.request('http://svc/p', { method: 'POST', body: 'x' });
      expect(r.statusCode).toBe(200);
      await r.body.text();
    }
    expect(s.received.filter((r) => r.method === 'POST')).toHaveLength(4);
  });
});
