// Bodies stream both ways; aborts mid-request and mid-body; redirects routed hop by hop.
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const servers: TestServer[] = [];
async function server(...args: Parameters<typeof startServer>): Promise<TestServer> {
  const s = await startServer(...args);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A server that sends one chunk, then waits for `release` before sending the rest. */
async function chunkedServer() {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const s = await server(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first;');
    await released;
    res.end('second');
  });
  return { s, release };
}

describe('response bodies stream', () => {
  it('mesh.fetch delivers the first chunk before the server has finished', async () => {
    const { s, release } = await chunkedServer();
    mesh = createMesh({ services: { stream: { endpoints: [s.address] } } });
    const res = await mesh.fetch('http://stream/');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first;');
    release();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += Buffer.from(value).toString();
    }
    expect(rest).toBe('second');
  });

  it('mesh.request delivers the first chunk before the server has finished', async () => {
    const { s, release } = await chunkedServer();
    mesh = createMesh({ services: { stream: { endpoints: [s.address] } } });
    const res = await mesh.request('http://stream/');
    const [first] = (await once(res.body, 'data')) as [Buffer];
    expect(first.toString()).toBe('first;');
    release();
    let rest = '';
    for await (const c of res.body) rest += String(c);
    expect(rest).toBe('second');
  });

  it('global fetch with the dispatcher delivers the first chunk before the server has finished', async () => {
    const { s, release } = await chunkedServer();
    mesh = createMesh({ services: { stream: { endpoints: [s.address] } } });
    const res = await fetch('http://stream/', { dispatcher: mesh.dispatcher });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first;');
    release();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('second');
  });

  it('a large response arrives intact through each entry point', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 7, 'abcdefghij');
    const s = await server((_req, res) => {
      res.end(big);
    });
    mesh = createMesh({ services: { big: { endpoints: [s.address] } } });
    const viaFetch = Buffer.from(await (await mesh.fetch('http://big/')).arrayBuffer());
    const viaRequest = Buffer.from(await (await mesh.request('http://big/')).body.arrayBuffer());
    const viaDispatcher = Buffer.from(
      await (await fetch('http://big/', { dispatcher: mesh.dispatcher })).arrayBuffer(),
    );
    for (const got of [viaFetch, viaRequest, viaDispatcher]) expect(got.equals(big)).toBe(true);
  });
});

describe('request bodies stream', () => {
  it('sends a streamed request body that the server reads while the client is still writing', async () => {
    let gotFirst!: () => void;
    const firstArrived = new Promise<void>((r) => (gotFirst = r));
    const s = await server(
      async (req, res) => {
        const seen: string[] = [];
        for await (const c of req) {
          seen.push(String(c));
          gotFirst();
        }
        res.end(seen.join(''));
      },
      { streamBody: true },
    );
    mesh = createMesh({ services: { up: { endpoints: [s.address] } } });
    async function* gen() {
      yield Buffer.from('part1;');
      await firstArrived; // the server has the first part before we produce the second
      yield Buffer.from('part2');
    }
    const res = await mesh.request('http://up/', { method: 'POST', body: Readable.from(gen()) });
    expect(await res.body.text()).toBe('part1;part2');

    const viaFetch = await mesh.fetch('http://up/', {
      method: 'POST',
      body: Readable.toWeb(Readable.from([Buffer.from('a'), Buffer.from('b')])) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    expect(await viaFetch.text()).toBe('ab');
  });
});

describe('aborts', () => {
  it('an abort before the response rejects with the signal reason and frees the server socket', async () => {
    let arrived!: () => void;
    const requestArrived = new Promise<void>((r) => (arrived = r));
    const s = await server(() => {
      arrived(); // never answers
    });
    mesh = createMesh({ services: { slow: { endpoints: [s.address] } } });
    for (const entry of ['fetch', 'request', 'dispatcher'] as const) {
      const ac = new AbortController();
      const p =
        entry === 'fetch'
          ? mesh.fetch('http://slow/', { signal: ac.signal })
          : entry === 'request'
            ? mesh.request('http://slow/', { signal: ac.signal })
            : fetch('http://slow/', { signal: ac.signal, dispatcher: mesh.dispatcher });
      await requestArrived;
      ac.abort();
      await expect(p).rejects.toMatchObject({ name: 'AbortError' });
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    }
  });

  it('an abort mid-body errors the body', async () => {
    const { s } = await chunkedServer();
    mesh = createMesh({ services: { stream: { endpoints: [s.address] } } });
    const ac = new AbortController();
    const res = await mesh.fetch('http://stream/', { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await expect(reader.read()).rejects.toMatchObject({ name: 'AbortError' });

    const ac2 = new AbortController();
    const res2 = await mesh.request('http://stream/', { signal: ac2.signal });
    await once(res2.body, 'data');
    ac2.abort();
    await expect(res2.body.text()).rejects.toThrow();

    // Through the dispatcher (whose handler takes the body straight from the connection): the fetch's
    // body errors, and the call ends (its in-flight counts fall to zero).
    const ac3 = new AbortController();
    const res3 = await fetch('http://stream/', { signal: ac3.signal, dispatcher: mesh.dispatcher });
    const reader3 = res3.body!.getReader();
    expect(Buffer.from((await reader3.read()).value!).toString()).toBe('first;');
    expect(mesh.snapshot().inflightCalls).toBe(1);
    ac3.abort();
    await expect(reader3.read()).rejects.toMatchObject({ name: 'AbortError' });
    expect(mesh.snapshot().inflightCalls).toBe(0);
    expect(mesh.snapshot().services[0]!.endpoints[0]!.inflight).toBe(0);
  });

  it('a body read slowly through the dispatcher arrives whole and in order, and the call ends with it', async () => {
    const part = (i: number): Buffer => Buffer.alloc(256 * 1024, String.fromCharCode(97 + (i % 26)));
    const s = await server(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < 24; i++) {
        // Honour back-pressure: the client reads slowly, so the socket fills.
        if (!res.write(part(i))) await once(res, 'drain');
      }
      res.end();
    });
    mesh = createMesh({ services: { slowread: { endpoints: [s.address] } } });
    const res = await fetch('http://slowread/', { dispatcher: mesh.dispatcher });
    const reader = res.body!.getReader();
    const got: Buffer[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      got.push(Buffer.from(value));
      await new Promise<void>((r) => setImmediate(r)); // a slow reader: fetch's stream fills and pauses
    }
    expect(Buffer.concat(got).equals(Buffer.concat(Array.from({ length: 24 }, (_, i) => part(i))))).toBe(
      true,
    );
    expect(mesh.snapshot().inflightCalls).toBe(0);
  });
});

describe('redirects', () => {
  it('fetch follows a redirect from one service to another, each hop routed by its host', async () => {
    const target = await server();
    const origin = await server((_req, res) => {
      res.writeHead(302, { location: 'http://second/landed?x=1' });
      res.end();
    });
    mesh = createMesh({
      services: { first: { endpoints: [origin.address] }, second: { endpoints: [target.address] } },
    });
    for (const res of [
      await mesh.fetch('http://first/start'),
      await fetch('http://first/start', { dispatcher: mesh.dispatcher }),
    ]) {
      expect(res.status).toBe(200);
      expect(res.redirected).toBe(true);
      expect(res.url).toBe('http://second/landed?x=1');
      const echo = (await res.json()) as { url: string; headers: Record<string, string> };
      expect(echo.url).toBe('/landed?x=1');
      expect(echo.headers.host).toBe('second');
    }
  });

  it('a redirect to a host outside the mesh passes through without mesh headers', async () => {
    const outside = await server();
    const origin = await server((_req, res) => {
      res.writeHead(307, { location: `http://${outside.address}/out` });
      res.end();
    });
    mesh = createMesh({ services: { first: { endpoints: [origin.address] } } });
    const res = await mesh.fetch('http://first/start', { headers: { 'mesh-deadline-ms': '2000' } });
    const echo = (await res.json()) as { url: string; headers: Record<string, string> };
    expect(echo.url).toBe('/out');
    expect(echo.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it('mesh.request does not follow redirects', async () => {
    const origin = await server((_req, res) => {
      res.writeHead(302, { location: 'http://elsewhere/' });
      res.end();
    });
    mesh = createMesh({ services: { first: { endpoints: [origin.address] } } });
    const res = await mesh.request('http://first/');
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe('http://elsewhere/');
    await res.body.dump();
  });
});
