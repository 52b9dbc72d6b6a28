// Telemetry and snapshots of TLS and HTTP/2: the attempt span and http.client.request.duration carry
// network.protocol.version (what the endpoint's connections negotiated); the snapshot shows, per endpoint and
// scheme, the protocol, the connections and the TLS state (version, server name, the server's certificate,
// the client certificate in use, whether verification was on).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SpanKind } from '@opentelemetry/api';
import { createMesh, type Mesh } from 'meshfetch';
import { TestCa, type Pem } from '../support/certs.js';
import { startH2Server, startHttpsServer, type TlsTestServer } from '../support/tls-servers.js';
import { histogramCount, meshSpans, setupOtel, type TestOtel } from '../telemetry/otel-sdk.js';

let ca: TestCa;
let cert: Pem;
let client: Pem;
beforeAll(() => {
  ca = new TestCa('telemetry-ca');
  cert = ca.leaf({ names: ['users', 'legacy'] });
  client = ca.leaf({ names: ['orders'], client: true });
});
afterAll(() => ca.dispose());

let mesh: Mesh | undefined;
let otel: TestOtel | undefined;
const servers: TlsTestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await otel?.shutdown();
  otel = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('protocol and TLS state in telemetry and snapshots', () => {
  it('attempt spans and http.client.request.duration carry network.protocol.version: 2 over HTTP/2, 1.1 over HTTP/1.1', async () => {
    const h2 = await startH2Server({ ...cert });
    const h1 = await startHttpsServer(cert);
    servers.push(h2, h1);
    otel = setupOtel();
    mesh = createMesh({
      services: {
        users: { endpoints: [h2.address], transport: { http2: true, tls: { ca: ca.cert } } },
        legacy: { endpoints: [h1.address], transport: { http2: true, tls: { ca: ca.cert } } },
      },
    });
    await (await mesh.request('https://users/')).body.text();
    await (await mesh.request('https://legacy/')).body.text();
    const attempts = meshSpans(otel).filter((s) => s.kind === SpanKind.CLIENT);
    const by = (svc: string) => attempts.find((s) => s.attributes['meshfetch.service'] === svc)!;
    expect(by('users').attributes['network.protocol.version']).toBe('2');
    expect(by('legacy').attributes['network.protocol.version']).toBe('1.1');
    expect(by('users').attributes['url.full']).toBe('https://users/');
    const m = await otel.collect();
    const d = m.get('http.client.request.duration');
    expect(histogramCount(d, { 'meshfetch.service': 'users', 'network.protocol.version': '2' })).toBe(1);
    expect(histogramCount(d, { 'meshfetch.service': 'legacy', 'network.protocol.version': '1.1' })).toBe(1);
  });

  it('the snapshot shows per endpoint the protocol, connections and TLS state, with the client certificate in use', async () => {
    const s = await startHttpsServer({ ...cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true });
    servers.push(s);
    mesh = createMesh({
      services: {
        users: {
          endpoints: [s.address],
          transport: { tls: { ca: ca.cert, cert: client.cert, key: client.key } },
        },
      },
    });
    expect(mesh.snapshot().services[0]!.endpoints[0]!.transport).toBeUndefined(); // no connection yet
    await (await mesh.request('https://users/')).body.text();
    const t = mesh.snapshot().services[0]!.endpoints[0]!.transport!;
    expect(t.http).toBeUndefined();
    expect(t.https).toMatchObject({
      protocol: 'http/1.1',
      opened: 1,
      open: 1,
      tls: {
        version: 'TLSv1.3',
        servername: 'users',
        authorized: true,
        authorizationError: null,
        materialVersion: 0,
        reloadError: null,
        peerCertificate: { subject: 'users', issuer: 'telemetry-ca' },
        clientCertificate: { subject: 'CN=orders' },
      },
    });
    expect(t.https!.tls!.cipher).toMatch(/^TLS_/);
    expect(JSON.stringify(mesh.snapshot())).not.toContain('PRIVATE KEY');
  });

  it('with rejectUnauthorized: false the snapshot shows the connection as not authorized, and why', async () => {
    const self = ca.selfSigned(['users']);
    const s = await startHttpsServer(self);
    servers.push(s);
    mesh = createMesh({
      services: { users: { endpoints: [s.address], transport: { tls: { rejectUnauthorized: false } } } },
    });
    await (await mesh.request('https://users/')).body.text();
    const tls = mesh.snapshot().services[0]!.endpoints[0]!.transport!.https!.tls!;
    expect(tls.authorized).toBe(false);
    expect(tls.authorizationError).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});
