// HTTP/2 to upstreams through the mesh, against real node:http2 servers on loopback: over TLS (ALPN) and in
// cleartext (h2c, prior knowledge), bodies streaming both ways, many calls multiplexed over one connection,
// a server's GOAWAY and REFUSED_STREAM (streams it never processed are retried whatever the method; streams
// it processed follow the usual rules), a session the server closes while idle, deadlines.
import { once } from 'node:events';
import { constants, type ServerHttp2Stream } from 'node:http2';
import { PassThrough, Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CHANNELS,
  callOptions,
  createMesh,
  DeadlineExceededError,
  TransportError,
  type Mesh,
  type RequestEvent,
  type ServiceConfig,
  type TlsError,
} from 'meshfetch';
import { TestCa, type Pem } from '../support/certs.js';
import { startServer, type TestServer } from '../support/servers.js';
import {
  startH2Server,
  startHttpsServer,
  type H2TestServer,
  type TlsTestServer,
} from '../support/tls-servers.js';

let ca: TestCa;
let cert: Pem;
beforeAll(() => {
  ca = new TestCa('http2-ca');
  cert = ca.leaf({ names: ['users'] });
});
afterAll(() => ca.dispose());

let mesh: Mesh | undefined;
const servers: Array<TlsTestServer | TestServer> = [];
/** The retry reasons of every call that ends while `fn` runs. */
async function retryReasons<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
  const reasons: string[] = [];
  const on = (m: unknown): void => {
    reasons.push(...((m as RequestEvent).context.retryReasons ?? []));
  };
  subscribe(CHANNELS.requestEnd, on);
  try {
    return [await fn(), reasons];
  } finally {
    unsubscribe(CHANNELS.requestEnd, on);
  }
}

afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function h2(...args: Parameters<typeof startH2Server>): Promise<H2TestServer> {
  const s = await startH2Server(...args);
  servers.push(s);
  return s;
}

function tlsUsers(address: string, extra: Partial<ServiceConfig> = {}): ServiceConfig {
  return { endpoints: [address], transport: { http2: true, tls: { ca: ca.cert } }, ...extra };
}

const ok = (stream: ServerHttp2Stream, body = 'ok'): void => {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': 200 });
  stream.end(body);
};

async function readAll(stream: ServerHttp2Stream): Promise<string> {
  let s = '';
  for await (const c of stream) s += String(c);
  return s;
}

describe('HTTP/2 over TLS and in cleartext', () => {
  it('http2: true negotiates HTTP/2 by ALPN; the snapshot shows h2 and the TLS state', async () => {
    const s = await h2({ ...cert });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    const res = await mesh.request('https://users/');
    expect(await res.body.text()).toBe('ok 2.0');
    const t = mesh.snapshot().services[0]!.endpoints[0]!.transport!.https!;
    expect(t.protocol).toBe('h2');
    expect(t.opened).toBe(1);
    expect(t.tls).toMatchObject({ version: 'TLSv1.3', servername: 'users', authorized: true });
    expect(t.tls!.peerCertificate).toMatchObject({ subject: 'users', issuer: 'http2-ca' });
  });

  it('http2: true falls back to HTTP/1.1 against a TLS server that does not offer h2', async () => {
    const s = await startHttpsServer(cert, (req, res) => void res.end(`ok ${req.httpVersion}`));
    servers.push(s);
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    expect(await (await mesh.request('https://users/')).body.text()).toBe('ok 1.1');
    expect(mesh.snapshot().services[0]!.endpoints[0]!.transport!.https!.protocol).toBe('http/1.1');
  });

  it('HTTP/2 with mutual TLS: the client certificate is presented; an untrusted one is refused as a TlsError, sent once', async () => {
    const other = new TestCa('http2-other-ca');
    try {
      const client = ca.leaf({ names: ['orders'], client: true });
      const intruder = other.leaf({ names: ['intruder'], client: true });
      const s = await h2({ ...cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (stream) => {
        const peer = (stream.session!.socket as TLSSocket).getPeerCertificate();
        ok(stream, `hello ${String(peer.subject?.CN)}`);
      });
      const service = (c: Pem): ServiceConfig => ({
        endpoints: [s.address],
        transport: { http2: true, tls: { ca: ca.cert, cert: c.cert, key: c.key, servername: 'users' } },
      });
      mesh = createMesh({ services: { users: service(client), intruders: service(intruder) } });
      expect(await (await mesh.request('https://users/')).body.text()).toBe('hello orders');
      const before = s.connections;
      const e = (await mesh.request('https://intruders/').catch((x: unknown) => x)) as TlsError;
      expect(e).toBeInstanceOf(TransportError);
      expect(e.code).toBe('MESH_TLS');
      expect(e.reason).toBe('client-certificate-rejected');
      expect(e.attempts).toBe(1);
      expect(s.connections - before).toBe(1);
    } finally {
      other.dispose();
    }
  });

  it("http2: 'h2c' speaks HTTP/2 in cleartext with prior knowledge", async () => {
    const s = await h2(undefined);
    mesh = createMesh({ services: { users: { endpoints: [s.address], transport: { http2: 'h2c' } } } });
    expect(await (await mesh.request('http://users/')).body.text()).toBe('ok 2.0');
    expect(mesh.snapshot().services[0]!.endpoints[0]!.transport!.http!.protocol).toBe('h2');
    expect(s.sessions).toHaveLength(1);
  });

  it("http2: 'h2c' to an endpoint that speaks only HTTP/1.1 fails on the first call with a TransportError naming the endpoint", async () => {
    const s = await startServer();
    servers.push(s);
    mesh = createMesh({
      services: { users: { endpoints: [s.address], transport: { http2: 'h2c' }, retries: false } },
    });
    const e = await mesh.request('http://users/').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TransportError);
    expect((e as TransportError).endpoint).toBe(s.address);
    expect((e as TransportError).message).toContain(s.address);
    expect((e as TransportError).message).toContain(
      "with transport.http2 'h2c' the endpoint must speak HTTP/2",
    );
    expect(s.received).toHaveLength(0);
  });

  it('http2 with a value other than a boolean or h2c is a ConfigError naming the option', () => {
    expect(() =>
      createMesh({
        services: { users: { endpoints: ['127.0.0.1:1'], transport: { http2: 'yes' as never } } },
      }),
    ).toThrow(/services\.users\.transport\.http2: expected a boolean or 'h2c'/);
  });
});

describe('HTTP/2 streams', () => {
  it('request and response bodies stream both ways: the server echoes each chunk before the request ends', async () => {
    const s = await h2({ ...cert }, (stream) => {
      stream.respond({ ':status': 200 });
      stream.on('data', (c: Buffer) => stream.write(`echo:${String(c)};`));
      stream.on('end', () => stream.end('done'));
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    const body = new PassThrough();
    body.write('one');
    const res = await mesh.request('https://users/', { method: 'POST', body });
    const [first] = (await once(res.body, 'data')) as [Buffer];
    expect(String(first)).toBe('echo:one;'); // the request is still open
    body.end('two');
    let rest = '';
    for await (const c of res.body) rest += String(c);
    expect(rest).toBe('echo:two;done');
  });

  it('64 concurrent calls are multiplexed over one connection', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let arrived = 0;
    const s = await h2({ ...cert }, async (stream) => {
      if (++arrived === 64) release();
      await gate; // all 64 in flight at once
      ok(stream);
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    const calls = Array.from({ length: 64 }, () =>
      mesh!.request('https://users/').then((r) => r.body.text()),
    );
    expect(await Promise.all(calls)).toEqual(Array(64).fill('ok'));
    expect(s.connections).toBe(1);
    expect(s.sessions).toHaveLength(1);
    expect(mesh.snapshot().services[0]!.endpoints[0]!.transport!.https!.opened).toBe(1);
  });

  it('a GOAWAY: streams above its last stream id are retried on a new connection, even POSTs, and processed once', async () => {
    let goneAway = false;
    const processed: string[] = [];
    const s = await h2({ ...cert }, async (stream, headers, session) => {
      const body = await readAll(stream);
      if (!goneAway) {
        if (stream.id === 1) {
          // Hold the first stream until the others have arrived, then answer it and go away above it.
          (s as unknown as { first: ServerHttp2Stream }).first = stream;
          return;
        }
        if (stream.id === 7) {
          goneAway = true;
          const first = (s as unknown as { first: ServerHttp2Stream }).first;
          processed.push(`1:${headers[':path']}`);
          ok(first, 'first');
          session.goaway(constants.NGHTTP2_NO_ERROR, 1);
          return;
        }
        return; // 3, 5: above the last stream id, never processed
      }
      processed.push(`${stream.id}:${body}`);
      ok(stream, body);
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    // Streamed bodies (undici cannot replay them itself): the mesh's retry does.
    const post = (i: number) =>
      mesh!
        .request('https://users/', { method: 'POST', body: Readable.from([`b${i}`]) })
        .then((r) => r.body.text());
    const [results, reasons] = await retryReasons(() => Promise.all([post(0), post(1), post(2), post(3)]));
    expect(reasons).toEqual(['GOAWAY', 'GOAWAY', 'GOAWAY']);
    expect(results[0]).toBe('first');
    expect(results.slice(1).sort()).toEqual(['b1', 'b2', 'b3']);
    expect(processed).toHaveLength(4); // each once
    expect(s.sessions).toHaveLength(2);
  });

  it('a refused stream (REFUSED_STREAM) is retried for a POST: the server never processed it', async () => {
    let refusals = 0;
    let processed = 0;
    const s = await h2({ ...cert }, async (stream) => {
      if (refusals < 2) {
        refusals++;
        stream.close(constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      processed++;
      ok(stream, await readAll(stream));
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    const [text, reasons] = await retryReasons(async () => {
      const res = await mesh!.request('https://users/', { method: 'POST', body: Readable.from(['payload']) });
      return res.body.text();
    });
    expect(text).toBe('payload');
    // undici replays a refused stream once itself when it can; the refusal that reaches the mesh is retried.
    expect(reasons.length).toBeGreaterThanOrEqual(1);
    expect(new Set(reasons)).toEqual(new Set(['REFUSED_STREAM']));
    expect(refusals).toBe(2);
    expect(processed).toBe(1);
  });

  it('a stream the server reset after processing it: a POST fails at once, a GET is retried', async () => {
    let calls = 0;
    const s = await h2({ ...cert }, async (stream) => {
      await readAll(stream);
      if (++calls === 1 || calls === 2) {
        stream.close(constants.NGHTTP2_INTERNAL_ERROR); // processed, then failed
        return;
      }
      ok(stream);
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    const e = await mesh.request('https://users/', { method: 'POST', body: 'x' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TransportError);
    expect((e as TransportError).unprocessed).toBe(false);
    expect((e as TransportError).attempts).toBe(1);
    expect(calls).toBe(1);
    const res = await mesh.request('https://users/'); // GET: idempotent, retried after the reset
    expect(await res.body.text()).toBe('ok');
    expect(calls).toBe(3);
  });

  it('a session the server closes while idle: the next call opens a new connection and succeeds', async () => {
    const s = await h2({ ...cert });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    expect(await (await mesh.request('https://users/')).body.text()).toBe('ok 2.0');
    const session = s.sessions[0]!;
    const closed = once(session, 'close');
    session.close(); // GOAWAY(NO_ERROR), as a server's idle timeout does
    await closed;
    expect(await (await mesh.request('https://users/', { method: 'POST', body: 'x' })).body.text()).toBe(
      'ok 2.0',
    );
    expect(s.sessions).toHaveLength(2);
  });

  it('a deadline on an HTTP/2 call resets that stream only: the connection goes on serving', async () => {
    const s = await h2({ ...cert }, (stream, headers) => {
      if (headers[':path'] === '/never') return; // never answers
      ok(stream);
    });
    mesh = createMesh({ services: { users: tlsUsers(s.address) } });
    expect(await (await mesh.request('https://users/')).body.text()).toBe('ok');
    const e = await mesh
      .request('https://users/never', { headers: callOptions({ deadlineMs: 100 }) })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(await (await mesh.request('https://users/')).body.text()).toBe('ok');
    expect(s.connections).toBe(1);
  });
});
