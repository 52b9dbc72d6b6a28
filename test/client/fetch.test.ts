// mesh.fetch builds its Response itself for mesh services (src/client/fetch.ts): these tests hold it to the
// built-in fetch, side by side against the same real servers: what the server receives, what the caller gets,
// redirects, compression, aborts, back-pressure and an unread body.
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, NoHealthyEndpointsError, type Mesh } from 'meshfetch';
import { echoHandler, startServer, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

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

/** A mesh with one service, `svc`, on `s`. */
function meshOn(s: TestServer): Mesh {
  mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
  return mesh;
}

/** What the server saw, made comparable: no Host, no mesh header, multipart boundaries replaced. */
function seen(s: TestServer): unknown {
  const r = s.received.at(-1)!;
  const headers = { ...r.headers };
  delete headers.host;
  delete headers['mesh-deadline-ms'];
  const ct = String(headers['content-type'] ?? '');
  const boundary = /boundary=(.+)$/.exec(ct)?.[1];
  let body = r.body.toString('latin1');
  if (boundary !== undefined) {
    headers['content-type'] = ct.replace(boundary, 'B');
    body = body.split(boundary).join('B');
    if (headers['content-length'] !== undefined) headers['content-length'] = 'n';
  }
  return { method: r.method, url: r.url, headers, body };
}

function stream(parts: string[]): ReadableStream<Uint8Array> {
  return Readable.toWeb(Readable.from(parts.map((p) => Buffer.from(p)))) as ReadableStream<Uint8Array>;
}

describe('mesh.fetch sends what the built-in fetch sends', () => {
  const form = (): FormData => {
    const f = new FormData();
    f.append('a', '1');
    f.append('file', new Blob(['bytes'], { type: 'text/x-y' }), 'f.txt');
    return f;
  };
  const cases: Array<[string, () => RequestInit | undefined]> = [
    ['no init', () => undefined],
    ['a string body, lower-case method', () => ({ method: 'post', body: 'héllo' })],
    ['PATCH', () => ({ method: 'PATCH', body: 'x' })],
    ['URLSearchParams', () => ({ method: 'PUT', body: new URLSearchParams('a=1&b=two') })],
    ['a Blob with a type', () => ({ method: 'POST', body: new Blob(['xy'], { type: 'text/x-y' }) })],
    ['FormData (multipart)', () => ({ method: 'POST', body: form() })],
    ['a Uint8Array', () => ({ method: 'POST', body: new Uint8Array([1, 2, 3]) })],
    ['an ArrayBuffer', () => ({ method: 'POST', body: new Uint8Array([4, 5]).buffer })],
    ['a DataView', () => ({ method: 'POST', body: new DataView(new Uint8Array([6, 7, 8]).buffer, 1) })],
    [
      'a ReadableStream, duplex half',
      () => ({ method: 'POST', body: stream(['a', 'b']), duplex: 'half' }) as RequestInit,
    ],
    [
      'Headers, repeated names',
      () => ({
        headers: new Headers([
          ['x-a', '1'],
          ['x-a', '2'],
        ]),
      }),
    ],
    [
      'pairs, and overridden defaults',
      () => ({
        headers: [
          ['accept', 'application/json'],
          ['user-agent', 'me'],
        ],
      }),
    ],
    [
      'a record with an explicit content-type',
      () => ({ method: 'POST', body: 'z', headers: { 'content-type': 'text/x-z' } }),
    ],
  ];
  for (const [name, init] of cases) {
    it(name, async () => {
      const s = await server();
      const m = meshOn(s);
      // The built-in fetch to the same URL: what it adds can depend on the URL (undici 8 sends Fetch Metadata
      // only to https and loopback hosts), so it goes to http://svc too, through the mesh's dispatcher.
      await (
        await fetch('http://svc/p?q=1#frag', { ...init(), dispatcher: m.dispatcher } as RequestInit)
      ).text();
      const direct = seen(s);
      const res = await m.fetch('http://svc/p?q=1#frag', init());
      await res.text();
      expect(seen(s)).toEqual(direct);
    });
  }
});

describe('mesh.fetch answers what the built-in fetch answers', () => {
  it('status, reason, headers (set-cookie included), body, url; a global Response', async () => {
    const s = await server((_req, res) => {
      res.writeHead(201, 'Made It', [
        ['content-type', 'application/json'],
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
        ['x-multi', 'one'],
        ['x-multi', 'two'],
      ]);
      res.end('{"ok":true}');
    });
    const m = meshOn(s);
    const direct = await fetch(`http://${s.address}/x#f`);
    const res = await m.fetch('http://svc/x#f');
    expect(res).toBeInstanceOf(Response);
    expect(res.body).toBeInstanceOf(ReadableStream);
    for (const r of [direct, res]) expect(r.headers.get('date')).toMatch(/GMT$/);
    const strip = (h: Headers) => [...h].filter(([k]) => k !== 'date');
    expect([res.status, res.statusText, res.ok, res.redirected, res.type]).toEqual([
      direct.status,
      direct.statusText,
      direct.ok,
      direct.redirected,
      direct.type,
    ]);
    expect(strip(res.headers)).toEqual(strip(direct.headers));
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(res.url).toBe('http://svc/x');
    const copy = res.clone();
    expect(await res.json()).toEqual(await direct.json());
    expect(await copy.text()).toBe('{"ok":true}');
  });

  it('no body for HEAD, 204 and 304, as the built-in fetch', async () => {
    const s = await server((req, res) => {
      const code = Number(req.url!.slice(1)) || 200;
      res.writeHead(code, { 'content-type': 'text/plain' });
      res.end(code === 200 && req.method !== 'HEAD' ? 'body' : undefined);
    });
    const m = meshOn(s);
    const head = await m.fetch('http://svc/', { method: 'HEAD' });
    expect(head.body).toBeNull();
    for (const code of [204, 304]) {
      const r = await m.fetch(`http://svc/${code}`);
      expect([r.status, r.body]).toEqual([code, null]);
    }
    expect(await (await m.fetch('http://svc/')).text()).toBe('body');
    expect((await fetch(`http://${s.address}/204`)).body).toBeNull();
  });

  for (const coding of ['gzip', 'deflate', 'br', 'gzip, br'] as const) {
    it(`decodes a ${coding} body as fetch does`, async () => {
      const text = 'squeeze me '.repeat(5_000);
      const encode = (buf: Buffer, c: string): Buffer =>
        c === 'gzip'
          ? zlib.gzipSync(buf)
          : c === 'deflate'
            ? zlib.deflateSync(buf)
            : zlib.brotliCompressSync(buf);
      const s = await server((_req, res) => {
        const body = coding.split(', ').reduce<Buffer>((b, c) => encode(b, c), Buffer.from(text));
        res.writeHead(200, { 'content-encoding': coding, 'content-length': body.length });
        res.end(body);
      });
      const m = meshOn(s);
      const direct = await fetch(`http://${s.address}/`);
      const res = await m.fetch('http://svc/');
      expect(res.headers.get('content-encoding')).toBe(direct.headers.get('content-encoding'));
      expect(await res.text()).toBe(await direct.text());
    });
  }

  it('a BYOB reader reads the body into its own buffer', async () => {
    const s = await server((_req, res) => void res.end('0123456789'));
    const m = meshOn(s);
    const reader = (await m.fetch('http://svc/')).body!.getReader({ mode: 'byob' });
    let got = '';
    for (;;) {
      const { done, value } = await reader.read(new Uint8Array(4));
      if (done) break;
      expect(value.byteLength).toBeLessThanOrEqual(4);
      got += Buffer.from(value).toString();
    }
    expect(got).toBe('0123456789');
  });

  it('a Request object and a host outside the mesh go through the built-in fetch', async () => {
    const s = await server();
    const m = meshOn(s);
    const viaRequest = await m.fetch(new Request('http://svc/r', { method: 'POST', body: 'req' }));
    expect(viaRequest).toBeInstanceOf(Response);
    expect(JSON.parse(await viaRequest.text())).toMatchObject({ method: 'POST', url: '/r', body: 'req' });
    const outside = await m.fetch(`http://${s.address}/o`);
    expect(JSON.parse(await outside.text())).toMatchObject({ url: '/o' });
  });

  it('rejects as fetch does on bad input, and with the typed mesh error on a mesh failure', async () => {
    const s = await server();
    const m = meshOn(s);
    await expect(m.fetch('http://svc/', { method: 'GET', body: 'x' })).rejects.toThrow(TypeError);
    await expect(m.fetch('http://svc/', { method: 'CONNECT' })).rejects.toThrow(TypeError);
    await expect(m.fetch('http://svc/', { headers: { 'x-bad': 'a\r\nb' } })).rejects.toThrow(TypeError);
    await expect(
      m.fetch('http://svc/', { method: 'POST', body: stream(['a']) } as RequestInit),
    ).rejects.toThrow(TypeError); // a stream body needs duplex: 'half'
    const empty = createMesh({ services: { none: { endpoints: [] } } });
    try {
      await expect(empty.fetch('http://none/')).rejects.toBeInstanceOf(NoHealthyEndpointsError);
    } finally {
      await empty.close();
    }
  });
});

describe('redirects', () => {
  /** `/r/CODE/TO` answers CODE with Location TO (URL-decoded); `/loop` redirects to itself; anything else echoes. */
  async function redirecting(): Promise<TestServer> {
    return server((req, res, body) => {
      if (req.url === '/loop') {
        res.writeHead(302, { location: '/loop' });
        return void res.end();
      }
      const m = /^\/r\/(\d+)\/(.+)$/.exec(req.url!);
      if (m === null) return echoHandler(req, res, body);
      res.writeHead(Number(m[1]), { location: decodeURIComponent(m[2]!) });
      res.end();
    });
  }

  it('303 after a POST becomes a GET without the body; url and redirected tell', async () => {
    const s = await redirecting();
    const m = meshOn(s);
    const res = await m.fetch('http://svc/r/303/%2Fdone', {
      method: 'POST',
      body: 'payload',
      headers: { 'x-keep': 'k' },
    });
    const echo = JSON.parse(await res.text());
    expect(echo).toMatchObject({ method: 'GET', url: '/done', body: '', headers: { 'x-keep': 'k' } });
    expect(echo.headers['content-type']).toBeUndefined();
    expect([res.url, res.redirected]).toEqual(['http://svc/done', true]);
  });

  it('307 sends the same method and body again; a stream body cannot be sent twice', async () => {
    const s = await redirecting();
    const m = meshOn(s);
    const res = await m.fetch('http://svc/r/307/%2Fagain', { method: 'PUT', body: 'twice' });
    expect(JSON.parse(await res.text())).toMatchObject({ method: 'PUT', url: '/again', body: 'twice' });
    await expect(
      m.fetch('http://svc/r/307/%2Fagain', {
        method: 'PUT',
        body: stream(['x']),
        duplex: 'half',
      } as RequestInit),
    ).rejects.toThrow(TypeError);
  });

  it("'manual' returns the redirect itself; 'error' rejects; a loop stops after 20", async () => {
    const s = await redirecting();
    const m = meshOn(s);
    const manual = await m.fetch('http://svc/r/302/%2Fx', { redirect: 'manual' });
    expect([manual.status, manual.headers.get('location'), manual.redirected]).toEqual([302, '/x', false]);
    await expect(m.fetch('http://svc/r/302/%2Fx', { redirect: 'error' })).rejects.toThrow(TypeError);
    let before = s.received.length;
    await expect(fetch(`http://${s.address}/loop`)).rejects.toThrow(TypeError);
    const direct = s.received.length - before;
    before = s.received.length;
    await expect(m.fetch('http://svc/loop')).rejects.toThrow(TypeError);
    expect(s.received.length - before).toBe(direct); // 21: the first request and 20 redirects
  });

  it('a redirect to another origin drops the credentials', async () => {
    const a = await redirecting();
    const b = await server();
    mesh = createMesh({ services: { a: { endpoints: [a.address] }, b: { endpoints: [b.address] } } });
    const res = await mesh.fetch('http://a/r/302/http%3A%2F%2Fb%2Fland', {
      headers: { authorization: 'Bearer t', cookie: 'c=1', 'x-other': 'o' },
    });
    const echo = JSON.parse(await res.text());
    expect(echo.url).toBe('/land');
    expect(echo.headers).toMatchObject({ 'x-other': 'o' });
    expect(echo.headers.authorization).toBeUndefined();
    expect(echo.headers.cookie).toBeUndefined();
    expect(res.url).toBe('http://b/land');
  });
});

describe('aborts and flow control', () => {
  it('an aborted signal rejects with its reason, before the call and mid-body', async () => {
    let closed!: () => void;
    const serverSawClose = new Promise<void>((r) => (closed = r));
    const s = await server(async (_req, res) => {
      res.write('start;');
      await once(res, 'close'); // until the client goes away
      closed();
    });
    const m = meshOn(s);
    const reason = new Error('caller gave up');
    await expect(m.fetch('http://svc/', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(s.received).toHaveLength(0);
    const ac = new AbortController();
    const res = await m.fetch('http://svc/', { signal: ac.signal });
    const reader = res.body!.getReader();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('start;');
    ac.abort(reason);
    await expect(reader.read()).rejects.toBe(reason);
    await serverSawClose; // the aborted response's connection is gone
  });

  it('a reader that cancels while chunks are still arriving drops them quietly and frees the connection', async () => {
    const chunk = Buffer.alloc(16 * 1024, 1);
    const s = await server(async (_req, res) => {
      res.writeHead(200);
      for (let i = 0; i < 64 && !res.destroyed; i++) if (!res.write(chunk)) await once(res, 'drain');
      res.end();
    });
    const m = meshOn(s);
    for (let i = 0; i < 50; i++) {
      // Cancelled before any read: the Node side starts flowing on the next tick, with a chunk buffered.
      const first = await m.fetch('http://svc/');
      await first.body!.cancel();
      // Cancelled after a read, with a pull (a resume on the next tick) in flight.
      const res = await m.fetch('http://svc/');
      const reader = res.body!.getReader();
      await reader.read();
      void reader.read().catch(() => {});
      await reader.cancel();
    }
    await until(() => m.inflightCalls === 0);
  });

  it('back-pressure: the server cannot write far ahead of a reader that does not read', async () => {
    const total = 32 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    let blocked!: () => void;
    const blockedOnce = new Promise<void>((r) => (blocked = r));
    const s = await server(async (_req, res) => {
      res.writeHead(200, { 'content-length': total });
      while (written < total) {
        written += chunk.length;
        if (!res.write(chunk)) {
          blocked();
          await once(res, 'drain');
        }
      }
      res.end();
    });
    const m = meshOn(s);
    const res = await m.fetch('http://svc/');
    await blockedOnce;
    // Socket buffers and the stream's 64 KiB are all that may be in flight: nowhere near the 32 MiB.
    expect(written).toBeLessThan(total / 4);
    let got = 0;
    for await (const part of res.body!) got += part.byteLength;
    expect(got).toBe(total);
  });

  it('a response dropped unread releases its connection when it is garbage collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let closed = false;
    const s = await server(async (_req, res) => {
      res.writeHead(200);
      res.write('never read');
      await once(res, 'close');
      closed = true;
    });
    mesh = createMesh({ services: { svc: { endpoints: [s.address], timeoutMs: Infinity } } });
    await (async () => {
      const res = await mesh!.fetch('http://svc/');
      expect(res.status).toBe(200);
    })();
    expect(closed).toBe(false);
    await until(
      () => {
        gc();
        return closed;
      },
      5_000,
      'timer',
    );
  });
});
