// What one fetch through `mesh.dispatcher` puts on the wire with the default (full) stack: exactly one request
// per fetch (no retry, backup or replay of a body that was never there: the built-in fetch hands a GET's
// body to the dispatcher as null), and connections reused from one fetch to the next, so that a fetch whose
// response body has been read leaves its connection free for the next call.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function upstream(): Promise<{ s: TestServer; connections: () => number }> {
  const s = await startServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  servers.push(s);
  let opened = 0;
  s.server.on('connection', () => opened++);
  return { s, connections: () => opened };
}

// npm undici's Dispatcher type is not the one the global fetch's types name (undici-types).
const via = (m: Mesh): RequestInit => ({ dispatcher: m.dispatcher }) as unknown as RequestInit;

describe('the built-in fetch through mesh.dispatcher, default stack', () => {
  it('one GET sends exactly one request, without a body', async () => {
    const { s, connections } = await upstream();
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const res = await fetch('http://svc/one', via(mesh));
    expect(await res.json()).toEqual({ ok: true });
    expect(s.received).toHaveLength(1);
    expect(s.received[0]!.method).toBe('GET');
    expect(s.received[0]!.headers['content-length']).toBeUndefined();
    expect(s.received[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(s.received[0]!.body.length).toBe(0);
    expect(connections()).toBe(1);
  });

  it('fetches in sequence send one request each and reuse their connections', async () => {
    const { s, connections } = await upstream();
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`http://svc/seq/${i}`, via(mesh));
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(s.received.map((r) => r.url)).toEqual(Array.from({ length: 40 }, (_, i) => `/seq/${i}`));
    // undici's Pool may open a second connection when the next call is dispatched before the first
    // connection has reported itself free (Pool.request does the same); never one per call.
    expect(connections()).toBeLessThanOrEqual(2);
  });

  it('concurrent fetches send one request each, a POST body once', async () => {
    const { s } = await upstream();
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const init = { ...via(mesh!), method: 'POST', body: `payload-${i}` };
        const res = await fetch(`http://svc/c/${i}`, init);
        expect(res.status).toBe(200);
        await res.text();
      }),
    );
    expect(s.received).toHaveLength(16);
    const bodies = s.received.map((r) => `${r.url} ${r.body.toString()}`).sort();
    expect(bodies).toEqual(Array.from({ length: 16 }, (_, i) => `/c/${i} payload-${i}`).sort());
  });
});

describe('mesh.dispatcher, from one fetch to the next', () => {
  it('alternating origins each reach their own service, and header values that change reach fetch as sent', async () => {
    const made: TestServer[] = [];
    for (const name of ['a', 'b']) {
      let n = 0;
      made.push(
        await startServer((_req, res) => {
          n++;
          // Same names on every answer; the values change from one answer to the next (and one repeats).
          res.setHeader('x-server', name);
          res.setHeader('x-count', String(n));
          res.setHeader('x-parity', n % 2 === 0 ? 'even' : 'odd');
          res.end(name);
        }),
      );
    }
    servers.push(...made);
    mesh = createMesh({
      services: { a: { endpoints: [made[0]!.address] }, b: { endpoints: [made[1]!.address] } },
    });
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const host = i % 3 === 2 ? 'b' : 'a';
      const res = await fetch(`http://${host}/x`, via(mesh));
      const h = res.headers;
      seen.push(`${await res.text()} ${h.get('x-server')} ${h.get('x-count')} ${h.get('x-parity')}`);
    }
    expect(seen).toEqual(['a a 1 odd', 'a a 2 even', 'b b 1 odd', 'a a 3 odd', 'a a 4 even', 'b b 2 even']);
  });
});
