// Per-call control headers are never taken from an untrusted caller: an edge service that forwards its
// incoming headers on an outgoing call must not let a client mark that call idempotent (turning one POST into
// several at the backend) or cut or break its deadline.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, meshHandler, type Mesh, type MeshHandlerOptions } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(closers.splice(0).map((c) => c()));
});

/** An edge that forwards its incoming headers on a POST to the backend and relays the answer. */
async function edge(
  backend: TestServer,
  options: MeshHandlerOptions,
): Promise<{ url: string; seen: Array<Record<string, unknown>> }> {
  mesh = createMesh({ services: { backend: { endpoints: [backend.address] } } });
  const m = mesh;
  const seen: Array<Record<string, unknown>> = [];
  const server: Server = createServer(
    meshHandler(async (req, res) => {
      seen.push({ ...req.headers });
      const headers = { ...req.headers };
      delete headers.host;
      delete headers['content-length'];
      delete headers.connection;
      try {
        const r = await m.request('http://backend/orders', { method: 'POST', headers, body: 'one order' });
        res.writeHead(r.statusCode);
        res.end(await r.body.text());
      } catch (err) {
        res.writeHead(500);
        res.end((err as Error).name);
      }
    }, options),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen };
}

async function backend(handler: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const s = await startServer(handler);
  closers.push(() => s.close());
  return s;
}

describe('meshHandler with trust: () => false', () => {
  it("a client's mesh-idempotent: true does not make the edge's forwarded POST retried (the backend sees it once)", async () => {
    const b = await backend((_req, res) => void res.writeHead(503).end('down'));
    const e = await edge(b, { trust: () => false });
    const r = await fetch(e.url, { headers: { 'mesh-idempotent': 'true' } });
    expect(r.status).toBe(503);
    await r.text();
    expect(b.received.filter((x) => x.method === 'POST')).toHaveLength(1);
    expect(e.seen[0]!['mesh-idempotent']).toBeUndefined();
  });

  it("a client's mesh-deadline-ms: 1 neither cuts the edge's outgoing call nor reaches the backend", async () => {
    const b = await backend(async (_req, res) => {
      await new Promise((r) => setTimeout(r, 50));
      res.end('done');
    });
    const e = await edge(b, { trust: () => false });
    const r = await fetch(e.url, { headers: { 'mesh-deadline-ms': '1', 'grpc-timeout': '1m' } });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('done');
    expect(e.seen[0]!['mesh-deadline-ms']).toBeUndefined();
    expect(e.seen[0]!['grpc-timeout']).toBeUndefined();
    expect(b.received[0]!.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it("a client's malformed mesh-deadline-ms does not break the edge's outgoing call", async () => {
    const b = await backend((_req, res) => void res.end('done'));
    const e = await edge(b, { trust: () => false });
    const r = await fetch(e.url, { headers: { 'mesh-deadline-ms': 'soon' } });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('done');
  });
});

describe('meshHandler with a trusted caller', () => {
  it('applies the incoming deadline once (the outgoing call forwards what remains) and removes the header from req.headers', async () => {
    const b = await backend((_req, res) => void res.end('done'));
    const e = await edge(b, {});
    const r = await fetch(e.url, { headers: { 'mesh-deadline-ms': '5000', 'mesh-idempotent': 'true' } });
    expect(r.status).toBe(200);
    await r.text();
    expect(e.seen[0]!['mesh-deadline-ms']).toBeUndefined();
    // mesh-idempotent is never taken from an incoming request, trusted or not.
    expect(e.seen[0]!['mesh-idempotent']).toBeUndefined();
    const forwarded = Number(b.received[0]!.headers['mesh-deadline-ms']);
    expect(forwarded).toBeGreaterThan(3_000);
    expect(forwarded).toBeLessThanOrEqual(5_000);
  });

  it('a trusted deadline can only shorten: mesh-deadline-ms: 30 cuts the outgoing call to a slow backend', async () => {
    const b = await backend(async (_req, res) => {
      await new Promise((r) => setTimeout(r, 500));
      if (!res.destroyed) res.end('late');
    });
    const e = await edge(b, {});
    const r = await fetch(e.url, { headers: { 'mesh-deadline-ms': '30' } });
    expect(r.status).toBe(500);
    expect(await r.text()).toBe('DeadlineExceededError');
  });
});
