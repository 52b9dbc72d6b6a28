// Admission end to end: real node:http servers that hold requests until the test releases them, the real mesh
// with the admission module first of the concrete stack. The bound holds on every entry point, the refusal is
// immediate and typed, and the in-flight count returns to zero after calls that end in every possible way.
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import {
  createMesh,
  DeadlineExceededError,
  type Mesh,
  type ServiceConfig,
  type StackModule,
} from 'meshfetch';
import {
  AdmissionParam,
  OverloadedError,
  admissionModule,
  admissionOf,
  resolveAdmissionOptions,
  type AdmissionFilter,
} from '../../src/resilience/admission.js';
import { closedPort, startServer, type TestHandler, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
async function server(handler?: TestHandler): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A server that holds every request until `release()`. */
async function holdingServer(): Promise<{ s: TestServer; held: ServerResponse[]; release(): void }> {
  const held: ServerResponse[] = [];
  const s = await server((_req, res) => {
    held.push(res);
  });
  return {
    s,
    held,
    release() {
      for (const r of held.splice(0)) r.end('released');
    },
  };
}

/** The admission module with a bound of the test's choosing; `filters` receives each filter built. */
function admission(maxInFlight: number, filters: AdmissionFilter[]): StackModule<'concrete'> {
  const resolved = resolveAdmissionOptions({ maxInFlight }, 'admission');
  return {
    ...admissionModule,
    make(next, env) {
      const s = admissionModule.make(next, { ...env, params: env.params.with(AdmissionParam, resolved) });
      filters.push(admissionOf(s)!);
      return s;
    },
  };
}

function meshWith(
  services: Record<string, ServiceConfig>,
  maxInFlight: number,
  filters: AdmissionFilter[],
): Mesh {
  mesh = createMesh({
    services,
    stack: (d) => ({
      ...d,
      concrete: d.concrete.replace('admission', admission(maxInFlight, filters)).remove('circuit-breaker'),
    }),
  });
  return mesh;
}

describe('admission through the mesh', () => {
  it('refuses the call past the bound at once, with OverloadedError, and admits again after release', async () => {
    const h = await holdingServer();
    const filters: AdmissionFilter[] = [];
    const m = meshWith({ users: { endpoints: [h.s.address] } }, 5, filters);
    const first = Array.from({ length: 5 }, () => m.request('http://users/'));
    await until(() => h.held.length === 5);
    expect(filters[0]!.inFlight).toBe(5);

    const t0 = performance.now();
    const e = await m.request('http://users/').catch((x: unknown) => x);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(e).toBeInstanceOf(OverloadedError);
    expect(e).toMatchObject({
      code: 'MESH_OVERLOADED',
      phase: 'route',
      retryable: false,
      service: 'users',
      limit: 5,
    });
    // The same on the fetch and dispatcher entry points; the server never saw any of them.
    await expect(m.fetch('http://users/')).rejects.toBeInstanceOf(OverloadedError);
    const viaDispatcher = await fetch('http://users/', { dispatcher: m.dispatcher }).catch((x: unknown) => x);
    expect((viaDispatcher as TypeError).cause).toBeInstanceOf(OverloadedError);
    expect(h.s.received).toHaveLength(5);
    expect(filters[0]!.snapshot()).toEqual({ inFlight: 5, limit: 5, rejected: 3 });

    h.release();
    for (const r of await Promise.all(first)) expect(await r.body.text()).toBe('released');
    await until(() => filters[0]!.inFlight === 0);

    const again = Array.from({ length: 5 }, () => m.request('http://users/'));
    await until(() => h.held.length === 5);
    h.release();
    for (const r of await Promise.all(again)) await r.body.dump();
    await until(() => filters[0]!.inFlight === 0);
    expect(m.inflightCalls).toBe(0);
  });

  it('a response counts until its body is over, not just until its headers', async () => {
    const streams: ServerResponse[] = [];
    const s = await server((_req, res) => {
      res.writeHead(200);
      res.write('first chunk');
      streams.push(res);
    });
    const filters: AdmissionFilter[] = [];
    const m = meshWith({ users: { endpoints: [s.address] } }, 2, filters);
    const a = await m.request('http://users/');
    const b = await m.request('http://users/');
    expect(filters[0]!.inFlight).toBe(2);
    await expect(m.request('http://users/')).rejects.toBeInstanceOf(OverloadedError);
    for (const r of streams) r.end();
    await a.body.text();
    await b.body.text();
    await until(() => filters[0]!.inFlight === 0);
  });

  it('the count returns to 0 after many calls that end every way: read, dumped, destroyed, aborted, reset, refused, timed out', async () => {
    const s = await server((req, res) => {
      const url = req.url ?? '/';
      if (url === '/hold') return; // never answers: the caller aborts or the deadline fires
      if (url === '/reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(url === '/fail' ? 503 : 200);
      if (url === '/stream') {
        res.write('x'.repeat(1024));
        setTimeout(() => res.end('y'), 20);
        return;
      }
      res.end('ok');
    });
    const refused = `127.0.0.1:${await closedPort()}`;
    const filters: AdmissionFilter[] = [];
    const m = meshWith(
      {
        users: { endpoints: [s.address], retries: false },
        gone: { endpoints: [refused], retries: false },
        slow: { endpoints: [s.address], retries: false, timeoutMs: 30 },
      },
      1_000,
      filters,
    );
    expect(filters).toHaveLength(3);
    const ways: Array<() => Promise<unknown>> = [
      async () => (await m.request('http://users/')).body.text(),
      async () => (await m.request('http://users/fail')).body.dump(),
      async () => (await m.request('http://users/stream')).body.destroy(),
      async () => {
        const r = await m.request('http://users/stream');
        r.body.on('error', () => {});
        r.body.destroy(new Error('caller gave up'));
      },
      async () => {
        const ac = new AbortController();
        const p = m.request('http://users/hold', { signal: ac.signal });
        setTimeout(() => ac.abort(), 5);
        await expect(p).rejects.toThrow();
      },
      async () => {
        // Aborted mid-body.
        const ac = new AbortController();
        const r = await m.request('http://users/stream', { signal: ac.signal });
        ac.abort();
        await expect(r.body.text()).rejects.toThrow();
      },
      async () => {
        const r = await m.fetch('http://users/stream');
        await r.body!.cancel();
      },
      async () => expect(m.request('http://users/reset')).rejects.toThrow(),
      async () => expect(m.request('http://gone/')).rejects.toThrow(),
      async () => expect(m.request('http://slow/hold')).rejects.toBeInstanceOf(DeadlineExceededError),
    ];
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) calls.push(ways[i % ways.length]!());
    await Promise.all(calls);
    await until(() => filters.every((f) => f.inFlight === 0));
    expect(filters.map((f) => f.rejected)).toEqual([0, 0, 0]);
    await until(() => m.inflightCalls === 0);
  });
});
