// mesh.fetch and the built-in fetch with mesh.dispatcher give what the built-in fetch gives, on the points
// where undici's own fetch tests (scripts/undici-fetch-suite) found them apart; and the body errors of every
// entry point are typed. Each test names the behaviour; the built-in fetch is the reference where it can be.
import { PerformanceObserver } from 'node:perf_hooks';
import * as zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, TransportError, type Mesh } from 'meshfetch';
import { echoHandler, startServer, type TestServer } from '../support/servers.js';

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
  performance.clearResourceTimings();
});

/** The fields of a resource-timing entry the tests read. */
interface PerformanceResourceTiming {
  name: string;
  initiatorType: string;
  responseStatus: number;
  encodedBodySize: number;
  fetchStart: number;
  domainLookupStart: number;
  connectEnd: number;
  requestStart: number;
  responseStart: number;
  responseEnd: number;
  redirectEnd: number;
}

function meshOn(s: TestServer, extra: Record<string, unknown> = {}): Mesh {
  mesh = createMesh({ services: { svc: { endpoints: [s.address], ...extra } } });
  return mesh;
}

/** The raw header lines the server saw last (names as sent). */
function rawNames(s: TestServer): string[] {
  return rawLines
    .get(s)!
    .at(-1)!
    .filter((_, i) => i % 2 === 0);
}
const rawLines = new WeakMap<TestServer, string[][]>();
async function recordingServer(): Promise<TestServer> {
  const lines: string[][] = [];
  const s = await server((req, res, body) => {
    lines.push(req.rawHeaders);
    echoHandler(req, res, body);
  });
  rawLines.set(s, lines);
  return s;
}

describe('fetch stays fetch', () => {
  it('integrity: a body that does not match the integrity metadata rejects, as fetch does', async () => {
    const s = await server((_req, res) => {
      res.end('hello');
    });
    const m = meshOn(s);
    const init = { integrity: 'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' };
    await expect(fetch(`http://${s.address}/`, init)).rejects.toThrow(TypeError);
    await expect(m.fetch('http://svc/', init)).rejects.toThrow(TypeError);
    const good = 'sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ='; // of 'hello'
    expect(await (await m.fetch('http://svc/', { integrity: good })).text()).toBe('hello');
  });

  it('referrer and referrerPolicy: the Referer fetch sends is sent', async () => {
    const s = await server();
    const m = meshOn(s);
    await (
      await m.fetch('http://svc/x', { referrer: 'http://svc/page?q=1', referrerPolicy: 'unsafe-url' })
    ).text();
    expect(s.received.at(-1)!.headers.referer).toBe('http://svc/page?q=1');
    await (
      await fetch(`http://${s.address}/x`, {
        referrer: `http://${s.address}/page?q=1`,
        referrerPolicy: 'unsafe-url',
      })
    ).text();
    expect(s.received.at(-1)!.headers.referer).toBe(`http://${s.address}/page?q=1`);
  });

  it('resource timing: each fetch read to its end records a PerformanceResourceTiming entry, in order', async () => {
    const s = await server((req, res) => {
      if (req.url === '/from') res.writeHead(302, { location: '/to' }).end();
      else res.end('ok');
    });
    const m = meshOn(s);
    performance.clearResourceTimings();
    const seen: PerformanceResourceTiming[] = [];
    let allSeen!: () => void;
    const three = new Promise<void>((r) => (allSeen = r));
    const obs = new PerformanceObserver((list) => {
      seen.push(...(list.getEntries() as unknown as PerformanceResourceTiming[]));
      if (seen.length >= 3) allSeen();
    });
    obs.observe({ entryTypes: ['resource'] });
    expect(await (await m.fetch('http://svc/plain')).text()).toBe('ok');
    expect(await (await m.fetch('http://svc/from')).text()).toBe('ok');
    expect(await (await fetch('http://svc/plain', { dispatcher: m.dispatcher })).text()).toBe('ok');
    await three; // the built-in fetch records its entry a task after the body's end
    obs.disconnect();
    const names = () => performance.getEntriesByType('resource').map((e) => e.name);
    expect(names()).toEqual(['http://svc/plain', 'http://svc/from', 'http://svc/plain']);
    const entries = performance.getEntriesByType('resource') as unknown as PerformanceResourceTiming[];
    for (const e of entries) {
      expect(e.initiatorType).toBe('fetch');
      expect(e.responseStatus).toBe(entries[2]!.responseStatus); // 200 where Node reports it (not on 22)
      expect(e.encodedBodySize).toBe(2);
      expect(e.domainLookupStart).toBeGreaterThanOrEqual(e.fetchStart);
      expect(e.connectEnd).toBeGreaterThanOrEqual(e.domainLookupStart);
      expect(e.requestStart).toBeGreaterThanOrEqual(e.connectEnd);
      expect(e.responseStart).toBeGreaterThanOrEqual(e.requestStart);
      expect(e.responseEnd).toBeGreaterThanOrEqual(e.responseStart);
    }
    expect(entries[1]!.redirectEnd).toBeGreaterThan(0);
    expect(seen.map((e) => e.name)).toEqual(names());
  });

  it("a caller-set Host is replaced by the URL's host, and hostHeader still applies", async () => {
    const s = await server();
    await (await fetch(`http://${s.address}/`, { headers: { host: 'evil.example' } })).text();
    expect(s.received.at(-1)!.headers.host).toBe(s.address);
    const m = meshOn(s);
    await (await m.fetch('http://svc/', { headers: { Host: 'evil.example' } })).text();
    expect(s.received.at(-1)!.headers.host).toBe('svc');
    await (
      await fetch('http://svc/', { headers: { host: 'evil.example' }, dispatcher: m.dispatcher })
    ).text();
    expect(s.received.at(-1)!.headers.host).toBe('svc');
    await mesh!.close();
    const fixed = meshOn(s, { hostHeader: 'users.internal' });
    await (await fixed.fetch('http://svc/', { headers: { host: 'evil.example' } })).text();
    expect(s.received.at(-1)!.headers.host).toBe('users.internal');
    // mesh.request is undici's request: a Host the caller sets is sent.
    await (await fixed.request('http://svc/', { headers: { host: 'mine.example' } })).body.text();
    expect(s.received.at(-1)!.headers.host).toBe('mine.example');
  });

  it('a non-ASCII Location is read as UTF-8, so the redirect goes where it says', async () => {
    const s = await server((req, res) => {
      // The raw UTF-8 bytes of /안녕 on the wire, as a server that does not percent-encode sends them.
      if (req.url === '/start')
        res.writeHead(302, { location: Buffer.from('/안녕').toString('latin1') }).end();
      else res.end(req.url);
    });
    const builtin = await fetch(`http://${s.address}/start`);
    expect(await builtin.text()).toBe('/%EC%95%88%EB%85%95');
    const m = meshOn(s);
    const res = await m.fetch('http://svc/start');
    expect(await res.text()).toBe('/%EC%95%88%EB%85%95');
    expect(res.url).toBe('http://svc/%EC%95%88%EB%85%95');
  });

  it("redirect: 'error' rejects a 3xx that has no Location", async () => {
    const s = await server((_req, res) => {
      res.writeHead(302).end();
    });
    await expect(fetch(`http://${s.address}/`, { redirect: 'error' })).rejects.toThrow(TypeError);
    const m = meshOn(s);
    await expect(m.fetch('http://svc/', { redirect: 'error' })).rejects.toThrow(TypeError);
    expect((await m.fetch('http://svc/')).status).toBe(302); // 'follow' without a Location returns it
  });

  it('an already-aborted signal cancels a ReadableStream body with its reason', async () => {
    const s = await server();
    const m = meshOn(s);
    const reason = new Error('stop');
    let cancelled: unknown;
    const body = new ReadableStream({
      cancel(r) {
        cancelled = r;
      },
    });
    await expect(
      m.fetch('http://svc/', {
        method: 'POST',
        body,
        duplex: 'half',
        signal: AbortSignal.abort(reason),
      } as RequestInit),
    ).rejects.toBe(reason);
    expect(cancelled).toBe(reason);
    expect(s.received).toHaveLength(0);
  });

  it('header names keep the caller spelling on mesh.fetch, mesh.dispatcher and mesh.request, pass-through included', async () => {
    const s = await recordingServer();
    const m = meshOn(s);
    const shapes: Array<() => ConstructorParameters<typeof Headers>[0]> = [
      () => ({ 'Content-Type': 'text/plain', 'X-Trace-ID': '1' }),
      () => [
        ['Content-Type', 'text/plain'],
        ['X-Trace-ID', '1'],
      ],
      () =>
        new Headers([
          ['Content-Type', 'text/plain'],
          ['X-Trace-ID', '1'],
        ]),
    ];
    const urls = ['http://svc/', `http://${s.address}/`]; // a service, and a host that passes through
    for (const url of urls) {
      for (const headers of shapes) {
        for (const call of [
          () => m.fetch(url, { method: 'POST', body: 'x', headers: headers() }),
          () => fetch(url, { method: 'POST', body: 'x', headers: headers(), dispatcher: m.dispatcher }),
        ]) {
          await (await call()).text();
          expect(rawNames(s)).toEqual(expect.arrayContaining(['Content-Type', 'X-Trace-ID']));
        }
      }
      const { body } = await m.request(url, { method: 'POST', body: 'x', headers: { 'X-Trace-ID': '1' } });
      await body.text();
      expect(rawNames(s)).toEqual(expect.arrayContaining(['X-Trace-ID']));
    }
  });

  it('a 421 answer to a POST with a body, through mesh.dispatcher, is sent again once and returned', async () => {
    const s = await server((_req, res) => {
      res.statusCode = 421;
      res.end('misdirected');
    });
    const m = meshOn(s);
    for (const body of ['hello', new Uint8Array([1, 2, 3])]) {
      const res = await fetch('http://svc/', { method: 'POST', body, dispatcher: m.dispatcher });
      expect(res.status).toBe(421);
      expect(await res.text()).toBe('misdirected');
    }
    expect(s.received).toHaveLength(4); // each POST twice, as the built-in fetch sends it
  });

  it('unread bodies of up to 1 MiB do not hold the pool: 12 answers kept unread through 2 connections', async () => {
    const body = Buffer.alloc(512 * 1024, 1);
    const s = await server((_req, res) => {
      res.end(body);
    });
    const m = meshOn(s, { transport: { connections: 2 }, timeoutMs: 5_000 });
    // Held in an array: no garbage collection can release them; each connection must be free once its
    // answer has arrived, read or not (as undici's fetch, whose Agent opens a socket per unread body).
    const kept: unknown[] = [];
    for (let i = 0; i < 12; i++) kept.push(await m.fetch('http://svc/'));
    for (let i = 0; i < 12; i++) kept.push(await fetch('http://svc/', { dispatcher: m.dispatcher }));
    for (let i = 0; i < 12; i++) kept.push(await m.request('http://svc/'));
    expect(kept).toHaveLength(36);
    expect(s.received).toHaveLength(36);
    const last = kept.at(-1) as { body: { text(): Promise<string> } };
    expect((await last.body.text()).length).toBe(body.length); // still readable
  });

  it("an empty query's '?' goes on the wire exactly when the running fetch sends it", async () => {
    const s = await server((req, res) => {
      res.end(req.url);
    });
    const m = meshOn(s);
    // What the running Node's fetch sends: '/echo?' from undici 7.24.4 (Node 24, 26), '/echo' before (Node 22).
    const sent = await (await fetch(`http://${s.address}/echo?`)).text();
    expect(sent).toBe(Number(process.versions.node.split('.')[0]) >= 24 ? '/echo?' : '/echo');
    expect(await (await m.fetch('http://svc/echo?')).text()).toBe(sent);
    expect(await (await m.fetch('http://svc/echo?#frag')).text()).toBe(sent);
  });

  it('content codings: more than five reject, and zstd decodes exactly when the built-in fetch decodes it', async () => {
    const s = await server((req, res) => {
      if (req.url === '/many') {
        res.writeHead(200, { 'content-encoding': 'gzip, gzip, gzip, gzip, gzip, gzip' });
        res.end(zlib.gzipSync('x'));
      } else if (req.url === '/zstd' && typeof (zlib as any).zstdCompressSync === 'function') {
        res.writeHead(200, { 'content-encoding': 'zstd' });
        res.end((zlib as any).zstdCompressSync(Buffer.from('zstd body')));
      } else res.end('plain');
    });
    const m = meshOn(s);
    const builtinMany = await fetch(`http://${s.address}/many`).then(
      () => 'resolved',
      (e: Error) => e.name,
    );
    expect(
      await m.fetch('http://svc/many').then(
        () => 'resolved',
        (e: Error) => e.name,
      ),
    ).toBe(builtinMany);
    const expected = await (await fetch(`http://${s.address}/zstd`)).arrayBuffer();
    expect(Buffer.from(await (await m.fetch('http://svc/zstd')).arrayBuffer())).toEqual(
      Buffer.from(expected),
    );
  });

  it('a dispatcher given in the init is used, as fetch uses it', async () => {
    const s = await server();
    const m = meshOn(s);
    let used = 0;
    const counting = {
      dispatch(opts: unknown, handler: unknown): boolean {
        used++;
        return (m.dispatcher.dispatch as (o: unknown, h: unknown) => boolean)(opts, handler);
      },
    };
    await (await m.fetch('http://svc/', { dispatcher: counting } as RequestInit)).text();
    expect(used).toBe(1);
  });

  it('a URL with credentials rejects with a TypeError, as fetch does, and sends nothing', async () => {
    const s = await server();
    const m = meshOn(s);
    await expect(fetch(`http://alice:pw@${s.address}/`)).rejects.toThrow(TypeError);
    for (const url of ['http://alice:pw@svc/x', new URL('http://alice@svc/x')]) {
      await expect(m.fetch(url)).rejects.toThrow(/credentials/);
      await expect(m.fetch(url)).rejects.toBeInstanceOf(TypeError);
    }
    expect(s.received).toHaveLength(0);
  });
});

describe('body errors are typed', () => {
  /** A server that sends the headers and part of the body, then cuts the connection. */
  async function cutting(): Promise<TestServer> {
    return server((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial', () => res.socket!.destroy()); // cut once the part is on the wire
    });
  }

  it("a connection cut mid-body: mesh.request's body errors with a TransportError, phase 'body'", async () => {
    const s = await cutting();
    const m = meshOn(s);
    const { body } = await m.request('http://svc/');
    const err = await body.text().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ phase: 'body', service: 'svc', endpoint: s.address, retryable: false });
  });

  it("a connection cut mid-body: mesh.fetch's body rejects with TypeError('terminated'), the TransportError as cause", async () => {
    const s = await cutting();
    const builtin = await fetch(`http://${s.address}/`);
    const builtinErr = (await builtin.text().catch((e: unknown) => e)) as TypeError;
    expect(builtinErr).toBeInstanceOf(TypeError);
    const m = meshOn(s);
    for (const res of [
      await m.fetch('http://svc/'),
      await fetch('http://svc/', { dispatcher: m.dispatcher }),
    ]) {
      const err = (await res.text().catch((e: unknown) => e)) as TypeError;
      expect(err).toBeInstanceOf(TypeError);
      expect(err.message).toBe(builtinErr.message);
      expect(err.cause).toBeInstanceOf(TransportError);
      expect(err.cause).toMatchObject({ phase: 'body' });
    }
  });
});
