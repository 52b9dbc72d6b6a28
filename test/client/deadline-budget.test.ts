// A caller's deadline is one budget for the whole call: redirects included, and on hosts outside the mesh too.
import { afterEach, describe, expect, it } from 'vitest';
import { callOptions, createMesh, DeadlineExceededError, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(handler: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}

/** A backend that answers every request with a redirect to itself after 300 ms. */
async function loop(forwarded: number[]): Promise<TestServer> {
  return server((req, res) => {
    forwarded.push(Number(req.headers['mesh-deadline-ms']));
    setTimeout(() => {
      if (!res.destroyed) res.writeHead(302, { location: '/loop' }).end();
    }, 300);
  });
}

/** `/from` redirects to `/to` after 100 ms; `/to` answers. Records the deadline each hop was sent with. */
async function redirectOnce(forwarded: number[]): Promise<TestServer> {
  return server((req, res) => {
    forwarded.push(Number(req.headers['mesh-deadline-ms']));
    if (req.url === '/from') setTimeout(() => res.writeHead(307, { location: '/to' }).end(), 100);
    else res.end('arrived');
  });
}

function expectRemaining(forwarded: number[]): void {
  expect(forwarded.length).toBeLessThanOrEqual(4);
  expect(forwarded[0]).toBeLessThanOrEqual(1_000);
  for (let i = 1; i < forwarded.length; i++) {
    // Each hop forwards what remains: at least the 300 ms the previous hop took less.
    expect(forwarded[i]).toBeLessThanOrEqual(forwarded[i - 1]! - 250);
  }
}

describe('mesh.fetch: one deadline for the whole redirect chain', () => {
  it('a backend that redirects to itself after 300 ms ends at the caller deadline (1 s), each hop forwarding what remains', async () => {
    const forwarded: number[] = [];
    const s = await loop(forwarded);
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const t0 = performance.now();
    const err = await mesh
      .fetch('http://svc/loop', { headers: callOptions({ deadlineMs: 1_000 }) })
      .catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(DeadlineExceededError);
    // One budget: about 1 s (generous bound for a loaded machine), not 21 hops of a fresh second each.
    expect(elapsed).toBeLessThan(2_500);
    expectRemaining(forwarded);
  });

  it('a redirect followed within the budget still succeeds and forwards the remaining budget', async () => {
    const forwarded: number[] = [];
    const s = await redirectOnce(forwarded);
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const res = await mesh.fetch('http://svc/from', { headers: callOptions({ deadlineMs: 5_000 }) });
    expect(await res.text()).toBe('arrived');
    expect(res.redirected).toBe(true);
    expect(forwarded).toHaveLength(2);
    expect(forwarded[1]).toBeLessThanOrEqual(forwarded[0]! - 80);
  });
});

describe('the built-in fetch with mesh.dispatcher: one deadline for the whole redirect chain', () => {
  it('a backend that redirects to itself after 300 ms: the fetch fails at the caller deadline (1 s), each hop forwarding what remains', async () => {
    const forwarded: number[] = [];
    const s = await loop(forwarded);
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const t0 = performance.now();
    const err = await fetch('http://svc/loop', {
      dispatcher: mesh.dispatcher,
      headers: callOptions({ deadlineMs: 1_000 }),
    }).catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(TypeError);
    expect((err as TypeError).cause).toBeInstanceOf(DeadlineExceededError);
    // One budget: about 1 s (generous bound for a loaded machine), not 21 hops of a fresh second each.
    expect(elapsed).toBeLessThan(2_500);
    expectRemaining(forwarded);
  });

  it('a redirect followed within the budget still succeeds and forwards the remaining budget', async () => {
    const forwarded: number[] = [];
    const s = await redirectOnce(forwarded);
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const res = await fetch('http://svc/from', {
      dispatcher: mesh.dispatcher,
      headers: callOptions({ deadlineMs: 5_000 }),
    });
    expect(await res.text()).toBe('arrived');
    expect(res.redirected).toBe(true);
    expect(forwarded).toHaveLength(2);
    expect(forwarded[1]).toBeLessThanOrEqual(forwarded[0]! - 80);
  });

  it('a redirect from a service to a host outside the mesh keeps the same budget', async () => {
    const outside = await server(() => {
      /* never answers */
    });
    const s = await server((_req, res) => {
      setTimeout(() => res.writeHead(302, { location: `http://${outside.address}/` }).end(), 300);
    });
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const t0 = performance.now();
    const err = await fetch('http://svc/', {
      dispatcher: mesh.dispatcher,
      headers: callOptions({ deadlineMs: 1_000 }),
    }).catch((e: unknown) => e);
    const cause = (err as TypeError).cause as DeadlineExceededError;
    expect(cause).toBeInstanceOf(DeadlineExceededError);
    // The outside hop had what remained after the 300 ms redirect, not a fresh second.
    expect(cause.budgetMs).toBeLessThanOrEqual(750);
    // 1 s in all, not 300 ms then a fresh second (a generous bound for a loaded machine).
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(outside.received[0]?.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it('fetches that do not follow a redirect each get their own budget', async () => {
    const forwarded: number[] = [];
    const s = await server((req, res) => {
      forwarded.push(Number(req.headers['mesh-deadline-ms']));
      setTimeout(() => res.writeHead(302, { location: '/next' }).end(), 200);
    });
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    for (let i = 0; i < 3; i++) {
      const res = await fetch('http://svc/first', {
        dispatcher: mesh.dispatcher,
        redirect: 'manual',
        headers: callOptions({ deadlineMs: 1_000 }),
      });
      expect(res.status).toBe(302);
    }
    expect(forwarded).toHaveLength(3);
    for (const f of forwarded) expect(f).toBeGreaterThan(900);
  });
});

describe('pass-through hosts: the caller deadline applies, undici defaults otherwise', () => {
  async function silent(): Promise<TestServer> {
    return server(() => {
      /* never answers */
    });
  }

  it('mesh.request to a non-mesh host that never answers ends at deadlineMs, and the header is not sent', async () => {
    const s = await silent();
    mesh = createMesh({ services: {} });
    const t0 = performance.now();
    const err = await mesh
      .request(`http://${s.address}/`, { headers: callOptions({ deadlineMs: 300 }) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as DeadlineExceededError).phase).toBe('headers');
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(3_000);
    expect(s.received[0]?.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it('mesh.fetch to a non-mesh host that never answers ends at deadlineMs', async () => {
    const s = await silent();
    mesh = createMesh({ services: {} });
    const t0 = performance.now();
    const err = await mesh
      .fetch(`http://${s.address}/`, { headers: callOptions({ deadlineMs: 300 }) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(s.received[0]?.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it('fetch with mesh.dispatcher to a non-mesh host: a TypeError whose cause is the DeadlineExceededError', async () => {
    const s = await silent();
    mesh = createMesh({ services: {} });
    const err = await fetch(`http://${s.address}/`, {
      dispatcher: mesh.dispatcher,
      headers: callOptions({ deadlineMs: 300 }),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect((err as TypeError).cause).toBeInstanceOf(DeadlineExceededError);
  });

  it('the deadline covers the body of a pass-through response', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200);
      res.write('part');
      // never ends
    });
    mesh = createMesh({ services: {} });
    const r = await mesh.request(`http://${s.address}/`, { headers: callOptions({ deadlineMs: 300 }) });
    const err = await r.body.text().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as DeadlineExceededError).phase).toBe('body');
  });

  it('a pass-through call that answers in time is unaffected', async () => {
    const s = await server((_req, res) => void res.end('ok'));
    mesh = createMesh({ services: {} });
    const r = await mesh.request(`http://${s.address}/`, { headers: callOptions({ deadlineMs: 5_000 }) });
    expect(await r.body.text()).toBe('ok');
  });

  it('the pass-through Agent keeps undici default headers and body timeouts (no 0 = "never")', () => {
    mesh = createMesh({ services: {} });
    const agent = (mesh as unknown as { passthrough(h: string): object }).passthrough('example.com');
    const key = Object.getOwnPropertySymbols(agent).find((k) => k.description === 'options')!;
    const options = (agent as Record<symbol, Record<string, unknown>>)[key]!;
    expect(options.headersTimeout).toBeUndefined();
    expect(options.bodyTimeout).toBeUndefined();
  });
});
