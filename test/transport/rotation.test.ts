// Certificates from files that rotate: the client certificate, key and CA given as file paths are re-read
// when the files change, without a restart. New connections use the new material while existing ones drain;
// a half-written file or a certificate with the wrong key is refused with a ConfigError naming the option,
// and the old material stays in use. Short-lived certificates (minutes) made for the test.
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CHANNELS, createMesh, type Mesh, type TlsError, type TlsReloadEvent } from 'meshfetch';
import { TestCa, type Pem } from '../support/certs.js';
import { memoryLogger } from '../support/memory-logger.js';
import { startHttpsServer, type TlsTestServer } from '../support/tls-servers.js';

let ca: TestCa;
let ca2: TestCa;
let server1: Pem;
let server2: Pem; // signed by ca2
let first: Pem;
let second: Pem;
let dir: string;
const MINUTES = 60_000;

beforeAll(() => {
  ca = new TestCa('rotation-ca');
  ca2 = new TestCa('rotation-ca-2');
  server1 = ca.leaf({ names: ['users'] });
  server2 = ca2.leaf({ names: ['users'] });
  // Short-lived client certificates, as a rotating issuer hands out.
  first = ca.leaf({ names: ['client-one'], client: true, notAfter: Date.now() + 5 * MINUTES });
  second = ca.leaf({ names: ['client-two'], client: true, notAfter: Date.now() + 10 * MINUTES });
});
afterAll(() => {
  ca.dispose();
  ca2.dispose();
});

let mesh: Mesh | undefined;
const servers: TlsTestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

function files(): { cert: string; key: string; ca: string } {
  dir = mkdtempSync(join(tmpdir(), 'meshfetch-rotation-'));
  return { cert: join(dir, 'client.pem'), key: join(dir, 'client.key'), ca: join(dir, 'ca.pem') };
}

/** Resolves with the next reload event for which `pred` holds. */
function reload(pred: (e: TlsReloadEvent) => boolean): Promise<TlsReloadEvent> {
  return new Promise((resolve) => {
    const fn = (m: unknown): void => {
      const e = m as TlsReloadEvent;
      if (!pred(e)) return;
      unsubscribe(CHANNELS.tlsReload, fn);
      resolve(e);
    };
    subscribe(CHANNELS.tlsReload, fn);
  });
}

/** An mTLS server answering with the serial number of the client certificate of the connection. */
async function mtls(opts: { close?: boolean } = {}) {
  const held: Array<() => void> = [];
  const heldSockets: Socket[] = [];
  let onHeld: (() => void) | undefined;
  const s = await startHttpsServer(
    { ...server1, ca: ca.cert, requestCert: true, rejectUnauthorized: true },
    async (req, res) => {
      const serial = (req.socket as TLSSocket).getPeerCertificate().serialNumber;
      if (req.url === '/hold') {
        heldSockets.push(req.socket);
        const released = new Promise<void>((r) => held.push(r));
        onHeld?.();
        await released;
      }
      if (opts.close) res.setHeader('connection', 'close');
      res.end(serial);
    },
  );
  servers.push(s);
  /** Resolves when a `/hold` call has reached the handler. */
  const holding = () => new Promise<void>((r) => (onHeld = r));
  return { s, held, heldSockets, holding };
}

const serial = (p: Pem): string => new X509Certificate(p.cert).serialNumber;

describe('certificate files that rotate', () => {
  it('new connections use the rotated client certificate while the existing connection drains its call', async () => {
    const f = files();
    writeFileSync(f.cert, first.cert);
    writeFileSync(f.key, first.key);
    const { s, held, heldSockets, holding } = await mtls();
    mesh = createMesh({
      services: {
        users: {
          endpoints: [s.address],
          transport: { tls: { ca: ca.cert, certFile: f.cert, keyFile: f.key } },
        },
      },
    });
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(first));
    const arrived = holding();
    const slow = mesh.request('https://users/hold'); // in flight on the first connection
    await arrived;
    const before = s.handshakes;
    const rotated = reload((e) => e.error === undefined && e.version >= 1);
    writeFileSync(f.key, second.key);
    writeFileSync(f.cert, second.cert);
    expect((await rotated).path).toBe('services.users.transport.tls');
    // A new connection, with the new certificate.
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(second));
    expect(s.handshakes).toBe(before + 1);
    // The call in flight on the old connection finishes there, with the old certificate; then it closes.
    held[0]!();
    expect(await (await slow).body.text()).toBe(serial(first));
    await once(heldSockets[0]!, 'close'); // the old connection closed once drained
    const ep = mesh.snapshot().services[0]!.endpoints[0]!;
    expect(ep.transport?.https?.tls?.materialVersion).toBe(1);
    expect(ep.transport?.https?.tls?.clientCertificate?.serialNumber).toBe(serial(second));
    expect(ep.transport?.https?.tls?.reloadError).toBeNull();
  });

  it('a half-written certificate file is refused with a ConfigError naming certFile; the old certificate stays in use', async () => {
    const f = files();
    writeFileSync(f.cert, first.cert);
    writeFileSync(f.key, first.key);
    const { s } = await mtls({ close: true }); // every call on a new connection: the material in use shows
    const log = memoryLogger();
    mesh = createMesh({
      logger: log.logger,
      services: {
        users: {
          endpoints: [s.address],
          transport: { tls: { ca: ca.cert, certFile: f.cert, keyFile: f.key } },
        },
      },
    });
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(first));
    const refused = reload((e) => e.error !== undefined);
    writeFileSync(f.cert, second.cert.slice(0, second.cert.length / 2)); // a copy caught half way
    const e = await refused;
    expect(e.error!.path).toBe('services.users.transport.tls.certFile');
    expect(e.error!.message).toMatch(/expected PEM certificate/);
    expect(log.lines.some((l) => l.level === 'error' && /refused/.test(l.msg ?? ''))).toBe(true);
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(first));
    expect(mesh.snapshot().services[0]!.endpoints[0]!.transport?.https?.tls?.reloadError).toMatch(/certFile/);
    // The rest of the copy arrives (with the matching key): taken.
    const taken = reload((x) => x.error === undefined);
    writeFileSync(f.key, second.key);
    writeFileSync(f.cert, second.cert);
    await taken;
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(second));
  });

  it('a certificate written without its new key is refused naming keyFile; the pair is taken once the key follows', async () => {
    const f = files();
    writeFileSync(f.cert, first.cert);
    writeFileSync(f.key, first.key);
    const { s } = await mtls({ close: true });
    mesh = createMesh({
      services: {
        users: {
          endpoints: [s.address],
          transport: { tls: { ca: ca.cert, certFile: f.cert, keyFile: f.key } },
        },
      },
    });
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(first));
    const refused = reload((e) => e.error !== undefined);
    writeFileSync(f.cert, second.cert);
    const e = await refused;
    expect(e.error!.path).toBe('services.users.transport.tls.keyFile');
    expect(e.error!.message).toMatch(/do not match/);
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(first));
    const taken = reload((x) => x.error === undefined);
    writeFileSync(f.key, second.key);
    await taken;
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(second));
  });

  it('a rotated CA file lets the mesh trust a server certificate from the new CA without a restart', async () => {
    const f = files();
    writeFileSync(f.ca, ca.cert);
    const s = await startHttpsServer(server1, (_req, res) => {
      res.setHeader('connection', 'close');
      res.end('ok');
    });
    servers.push(s);
    mesh = createMesh({
      services: { users: { endpoints: [s.address], transport: { tls: { caFile: f.ca } } } },
    });
    expect((await mesh.request('https://users/')).statusCode).toBe(200);
    (s as unknown as { server: HttpsServer }).server.setSecureContext(server2);
    const e = await mesh.request('https://users/').catch((x: unknown) => x);
    expect((e as TlsError).reason).toBe('untrusted-certificate');
    const taken = reload((x) => x.error === undefined);
    writeFileSync(f.ca, ca.cert + ca2.cert); // both CAs during the switch
    await taken;
    expect((await mesh.request('https://users/')).statusCode).toBe(200);
  });

  it('files changed before the first call are read when the endpoint first connects', async () => {
    const f = files();
    writeFileSync(f.cert, first.cert);
    writeFileSync(f.key, first.key);
    const { s } = await mtls();
    mesh = createMesh({
      services: {
        users: {
          endpoints: [s.address],
          transport: { tls: { ca: ca.cert, certFile: f.cert, keyFile: f.key } },
        },
      },
    });
    writeFileSync(f.key, second.key);
    writeFileSync(f.cert, second.cert);
    expect(await (await mesh.request('https://users/')).body.text()).toBe(serial(second));
  });
});
