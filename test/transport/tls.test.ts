// TLS and mutual TLS to upstreams through the mesh, against real node:https servers on loopback with
// certificates made for the test (a CA, leaves for the right and a wrong name, an expired and a self-signed
// one, client certificates from the CA and from another CA): what works, and the typed error each failure
// gives, sent once (a certificate is not a transient failure).
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createMesh,
  TransportError,
  type Mesh,
  type ServiceConfig,
  type TlsError,
} from 'meshfetch';
import { TestCa, type Pem } from '../support/certs.js';
import { memoryLogger } from '../support/memory-logger.js';
import { startHttpsServer, type TlsTestServer } from '../support/tls-servers.js';

let ca: TestCa;
let otherCa: TestCa;
let good: Pem; // users, users.internal
let wrongName: Pem;
let expired: Pem;
let selfSigned: Pem;
let client: Pem;
let untrustedClient: Pem;

beforeAll(() => {
  ca = new TestCa('meshfetch-test-ca');
  otherCa = new TestCa('another-ca');
  good = ca.leaf({ names: ['users', 'users.internal'] });
  wrongName = ca.leaf({ names: ['billing.internal'] });
  expired = ca.leaf({
    names: ['users', 'users.internal'],
    notBefore: Date.now() - 3 * 86_400_000,
    notAfter: Date.now() - 86_400_000,
  });
  selfSigned = ca.selfSigned(['users', 'users.internal']);
  client = ca.leaf({ names: ['orders'], client: true });
  untrustedClient = otherCa.leaf({ names: ['intruder'], client: true });
});
afterAll(() => {
  ca.dispose();
  otherCa.dispose();
});

let mesh: Mesh | undefined;
const servers: TlsTestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function https(...args: Parameters<typeof startHttpsServer>): Promise<TlsTestServer> {
  const s = await startHttpsServer(...args);
  servers.push(s);
  return s;
}

function users(endpoint: string, tls: NonNullable<ServiceConfig['transport']>['tls']): ServiceConfig {
  return { endpoints: [endpoint], transport: { tls } };
}

async function failure(p: Promise<unknown>): Promise<TlsError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TransportError);
  expect((e as TlsError).code).toBe('MESH_TLS');
  return e as TlsError;
}

describe('TLS to upstreams', () => {
  it('a certificate for the service name from the configured CA works (server name defaults to the service)', async () => {
    const s = await https(good);
    mesh = createMesh({ services: { users: users(s.address, { ca: ca.cert }) } });
    const res = await mesh.request('https://users/hello');
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('ok');
  });

  it('an explicit servername is the name sent (SNI) and verified', async () => {
    const s = await https({ ...good, SNICallback: undefined });
    const seen: string[] = [];
    (s as unknown as { server: HttpsServer }).server.on('secureConnection', (sock: TLSSocket) =>
      seen.push(String((sock as unknown as { servername: string }).servername)),
    );
    mesh = createMesh({
      services: { users: users(s.address, { ca: ca.cert, servername: 'users.internal' }) },
    });
    expect((await mesh.request('https://users/')).statusCode).toBe(200);
    expect(seen).toEqual(['users.internal']);
  });

  it('a certificate for another name fails with TlsError reason hostname-mismatch, sent once', async () => {
    const s = await https(wrongName);
    mesh = createMesh({ services: { users: users(s.address, { ca: ca.cert }) } });
    const e = await failure(mesh.request('https://users/'));
    expect(e.reason).toBe('hostname-mismatch');
    expect(e.code).toBe('MESH_TLS');
    expect(e.causeCode).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(e.endpoint).toBe(s.address);
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('not valid for the server name');
    expect(e.attempts).toBe(1);
    expect(s.connections).toBe(1);
    expect(s.requests).toBe(0);
  });

  it('a certificate from a CA that is not trusted fails with TlsError reason untrusted-certificate, sent once', async () => {
    const s = await https(good);
    mesh = createMesh({ services: { users: users(s.address, { ca: otherCa.cert }) } });
    const e = await failure(mesh.request('https://users/'));
    expect(e.reason).toBe('untrusted-certificate');
    expect(e.causeCode).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(e.attempts).toBe(1);
    expect(s.connections).toBe(1);
  });

  it('an expired certificate fails with TlsError reason expired-certificate, sent once', async () => {
    const s = await https(expired);
    mesh = createMesh({ services: { users: users(s.address, { ca: ca.cert }) } });
    const e = await failure(mesh.request('https://users/'));
    expect(e.reason).toBe('expired-certificate');
    expect(e.causeCode).toBe('CERT_HAS_EXPIRED');
    expect(e.message).toContain('has expired');
    expect(s.connections).toBe(1);
  });

  it('a self-signed certificate fails with TlsError reason self-signed-certificate, sent once', async () => {
    const s = await https(selfSigned);
    mesh = createMesh({ services: { users: users(s.address, { ca: ca.cert }) } });
    const e = await failure(mesh.request('https://users/'));
    expect(e.reason).toBe('self-signed-certificate');
    expect(s.connections).toBe(1);
  });

  it("with no TLS options Node's bundled roots are the trust: a private CA's certificate is refused, typed", async () => {
    const s = await https(good);
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    const e = await failure(mesh.request('https://users/'));
    expect(e.reason).toBe('untrusted-certificate');
    expect(s.connections).toBe(1);
  });

  it('an idempotent call with retries on is still sent once to an endpoint whose certificate fails', async () => {
    const s = await https(expired);
    mesh = createMesh({
      services: { users: { ...users(s.address, { ca: ca.cert }), retries: { maxAttempts: 5 } } },
    });
    for (let i = 0; i < 3; i++) await failure(mesh.request('https://users/', { method: 'GET' }));
    expect(s.connections).toBe(3); // one per call, none repeated within a call
  });

  it('rejectUnauthorized: false accepts any certificate only on the service that sets it, and warns once', async () => {
    const s = await https(selfSigned);
    const log = memoryLogger();
    mesh = createMesh({
      logger: log.logger,
      services: {
        users: users(s.address, { rejectUnauthorized: false }),
        strict: users(s.address, {}),
      },
    });
    for (let i = 0; i < 3; i++) expect((await mesh.request('https://users/')).statusCode).toBe(200);
    expect((await failure(mesh.request('https://strict/'))).reason).toBe('self-signed-certificate');
    const warns = log.lines.filter((l) => l.level === 'warn' && /rejectUnauthorized/.test(l.msg ?? ''));
    expect(warns).toHaveLength(1);
    expect(warns[0]!.obj.service).toBe('users');
  });
});

describe('mutual TLS', () => {
  const mtlsServer = () => ({ ...good, ca: ca.cert, requestCert: true, rejectUnauthorized: true });

  it('the per-service client certificate and key are presented and verified by the server', async () => {
    const s = await https(mtlsServer());
    mesh = createMesh({
      services: {
        users: users(s.address, { ca: ca.cert, cert: client.cert, key: client.key }),
      },
    });
    const res = await mesh.request('https://users/');
    expect(await res.body.text()).toBe('ok orders'); // the client certificate's CN, as the server saw it
  });

  it('no client certificate: the server refusal is a TlsError reason client-certificate-required', async () => {
    const s = await https(mtlsServer());
    mesh = createMesh({ services: { users: users(s.address, { ca: ca.cert }) } });
    const e = await failure(mesh.request('https://users/', { method: 'POST', body: 'x' }));
    expect(e.reason).toBe('client-certificate-required');
    expect(e.endpoint).toBe(s.address);
    expect(s.requests).toBe(0);
    expect(s.connections).toBe(1);
  });

  it('a client certificate from an untrusted CA: the server refusal is a TlsError reason client-certificate-rejected', async () => {
    const s = await https(mtlsServer());
    mesh = createMesh({
      services: {
        users: users(s.address, { ca: ca.cert, cert: untrustedClient.cert, key: untrustedClient.key }),
      },
    });
    const e = await failure(mesh.request('https://users/', { method: 'GET' }));
    expect(e.reason).toBe('client-certificate-rejected');
    expect(e.message).toContain('refused the client certificate');
    expect(s.requests).toBe(0);
    expect(s.connections).toBe(1); // not retried as an idle-close race or a transient failure
  });

  it('a server that does not ask for a certificate still works with one configured', async () => {
    const s = await https(good);
    mesh = createMesh({
      services: { users: users(s.address, { ca: ca.cert, cert: client.cert, key: client.key }) },
    });
    expect(await (await mesh.request('https://users/')).body.text()).toBe('ok');
  });
});

describe('the idle-close race over TLS', () => {
  // The server closes a kept-alive TLS connection when the second request arrives on it, before answering:
  // what a client sees when the server's idle timeout fires just as the request is sent.
  async function closingServer(options: HttpsServerOptions) {
    const served = new WeakMap<object, number>();
    return https(options, (req, res) => {
      const n = served.get(req.socket) ?? 0;
      served.set(req.socket, n + 1);
      if (n >= 1) {
        req.socket.destroy();
        return;
      }
      req.resume();
      req.on('end', () => res.end('served'));
    });
  }

  it('is retried once on a fresh connection for a GET, and not for a POST (it may have been read), as on plain HTTP/1.1', async () => {
    const s = await closingServer(good);
    mesh = createMesh({
      services: {
        users: { ...users(s.address, { ca: ca.cert }), transport: { connections: 1, tls: { ca: ca.cert } } },
      },
    });
    expect(await (await mesh.request('https://users/warm')).body.text()).toBe('served');
    const get = await mesh.request('https://users/get');
    expect(await get.body.text()).toBe('served');
    expect(s.connections).toBe(2);
    const post = await mesh
      .request('https://users/post', { method: 'POST', body: 'once' })
      .catch((e: unknown) => e);
    expect(post).toBeInstanceOf(TransportError);
    expect((post as TransportError).idleClose).toBe(true);
    expect((post as TransportError).retryable).toBe(false);
  });

  it('with a client certificate too (mTLS): a connection that served a response is an idle close, not a refusal', async () => {
    const s = await closingServer({ ...good, ca: ca.cert, requestCert: true, rejectUnauthorized: true });
    mesh = createMesh({
      services: {
        users: {
          endpoints: [s.address],
          transport: { connections: 1, tls: { ca: ca.cert, cert: client.cert, key: client.key } },
        },
      },
    });
    expect(await (await mesh.request('https://users/warm')).body.text()).toBe('served');
    const get = await mesh.request('https://users/get');
    expect(await get.body.text()).toBe('served');
    expect(s.connections).toBe(2);
  });
});

describe('bad TLS input', () => {
  const make = (tls: unknown) => () =>
    createMesh({ services: { users: { endpoints: ['127.0.0.1:1'], transport: { tls: tls as object } } } });

  it('a certificate without its key is a ConfigError naming tls.key', () => {
    expect(make({ cert: client.cert })).toThrow(ConfigError);
    expect(make({ cert: client.cert })).toThrow(/services\.users\.transport\.tls\.key/);
  });

  it('a key without its certificate is a ConfigError naming tls.cert', () => {
    expect(make({ key: client.key })).toThrow(/services\.users\.transport\.tls\.cert\b/);
  });

  it('a key that does not match its certificate is a ConfigError naming tls.key', () => {
    expect(make({ cert: client.cert, key: untrustedClient.key })).toThrow(
      /tls\.key: expected the private key of the certificate in services\.users\.transport\.tls\.cert/,
    );
  });

  it('an unreadable certificate file is a ConfigError naming tls.certFile and the error', () => {
    expect(make({ certFile: '/nonexistent/client.pem', keyFile: '/nonexistent/client.key' })).toThrow(
      /tls\.certFile: expected a readable file \(ENOENT\)/,
    );
  });

  it('text that is not PEM is a ConfigError naming the option, and a key never appears in the message', () => {
    expect(make({ ca: 'not a certificate' })).toThrow(/tls\.ca: expected PEM certificate/);
    let msg = '';
    try {
      make({ cert: client.cert, key: 'garbage-secret-key' })();
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/tls\.key: expected an unencrypted PEM private key/);
    expect(msg).not.toContain('garbage-secret-key');
  });

  it('both cert and certFile is a ConfigError naming tls.certFile', () => {
    expect(make({ cert: client.cert, certFile: '/x', key: client.key })).toThrow(
      /tls\.certFile: expected either cert or certFile/,
    );
  });

  it('an unknown TLS option is a ConfigError naming it', () => {
    expect(make({ passphrase: 'x' })).toThrow(/tls\.passphrase: expected no such option/);
  });
});
