/**
 * TLS, mutual TLS, certificate rotation and HTTP/2 to upstreams, against local servers, with certificates
 * the program makes.
 *
 * Why this exists: it is the smallest complete program that shows what docs/security.md describes. It makes
 * a CA, a server certificate for `users`, two client certificates and one for a wrong name with the openssl
 * CLI in a temporary directory, then starts two local upstreams that require a client certificate from that
 * CA: an https server (HTTP/1.1) and an HTTP/2 server. A mesh calls both with the client certificate given as
 * files; the program prints what each connection negotiated (from `mesh.snapshot()`), rotates the client
 * certificate on disk (the mesh re-reads it without a restart: the next connection presents the new one),
 * shows a half-written file refused with the old certificate kept, and the typed error a server
 * certificate for the wrong name gives.
 *
 * Run (needs the `openssl` CLI):
 *   npx tsx --conditions=meshfetch-source examples/tls/index.ts
 */
import { execFileSync } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { CHANNELS, createMesh, type TlsError, type TlsReloadEvent } from 'meshfetch';

const dir = mkdtempSync(join(tmpdir(), 'meshfetch-tls-example-'));
const file = (name: string): string => join(dir, name);
const openssl = (args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A key and a certificate for `name`, signed by the CA (`client` for client authentication). */
function leaf(id: string, name: string, client = false): { cert: string; key: string } {
  openssl(['req', '-new', ...EC, '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${name}`]);
  writeFileSync(
    file(`${id}.ext`),
    `subjectAltName=DNS:${name}\nextendedKeyUsage=${client ? 'clientAuth' : 'serverAuth'}\n`,
  );
  openssl(['x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', `${id}.crt`, '-days', '1', '-extfile', `${id}.ext`]); // prettier-ignore
  return { cert: readFileSync(file(`${id}.crt`), 'utf8'), key: readFileSync(file(`${id}.key`), 'utf8') };
}

/** Resolves with the next `meshfetch:tls:reload` event that `pred` accepts. */
function nextReload(pred: (e: TlsReloadEvent) => boolean): Promise<TlsReloadEvent> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      if (!pred(m as TlsReloadEvent)) return;
      unsubscribe(CHANNELS.tlsReload, on);
      resolve(m as TlsReloadEvent);
    };
    subscribe(CHANNELS.tlsReload, on);
  });
}

async function listen(server: https.Server | http2.Http2SecureServer): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function main(): Promise<void> {
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=example-ca',
    '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']); // prettier-ignore
  const ca = readFileSync(file('ca.crt'), 'utf8');
  const server = leaf('server', 'users');
  const wrong = leaf('wrong', 'somebody-else');
  const alice = leaf('client-1', 'orders-1', true);
  const bob = leaf('client-2', 'orders-2', true);
  // The client certificate as files, as a secret mount or a certificate agent would write them.
  writeFileSync(file('client.pem'), alice.cert);
  writeFileSync(file('client-key.pem'), alice.key);

  // Both upstreams require a client certificate from the CA and answer with its common name.
  const mtls = { ...server, ca, requestCert: true, rejectUnauthorized: true };
  const who = (socket: TLSSocket): string => String(socket.getPeerCertificate().subject?.CN);
  const h1 = https.createServer(mtls, (req, res) => res.end(`hello ${who(req.socket as TLSSocket)}`));
  const h2 = http2.createSecureServer(mtls, (req, res) => res.end(`hello ${who(req.socket as TLSSocket)}`));
  const wrongName = https.createServer(wrong, (_req, res) => res.end('never'));
  const [h1Address, h2Address, wrongAddress] = await Promise.all([listen(h1), listen(h2), listen(wrongName)]);

  const tls = { ca, certFile: file('client.pem'), keyFile: file('client-key.pem') };
  const mesh = createMesh({
    services: {
      users: { endpoints: [h1Address], transport: { tls } },
      'users-h2': {
        endpoints: [h2Address],
        transport: { http2: true, tls: { ...tls, servername: 'users' } },
      },
      billing: { endpoints: [wrongAddress], transport: { tls: { ca } } },
    },
  });

  const call = async (url: string): Promise<string> => (await mesh.request(url)).body.text();
  console.log('HTTP/1.1 over TLS:', await call('https://users/'));
  console.log('HTTP/2 over TLS:  ', await call('https://users-h2/'));
  for (const s of mesh.snapshot().services.filter((x) => x.name.startsWith('users'))) {
    const t = s.endpoints[0]!.transport!.https!;
    console.log(
      `  ${s.name}: ${t.protocol}, ${t.tls!.version}, server certificate ${t.tls!.peerCertificate!.subject}` +
        ` from ${t.tls!.peerCertificate!.issuer}, client certificate ${t.tls!.clientCertificate!.subject}`,
    );
  }

  // Rotation: write the new key and certificate; the mesh re-reads them, new connections present them.
  const rotated = nextReload((e) => e.path === 'services.users.transport.tls' && e.error === undefined);
  writeFileSync(file('client-key.pem'), bob.key);
  writeFileSync(file('client.pem'), bob.cert);
  console.log(`rotated (material version ${(await rotated).version}):`, await call('https://users/'));

  // A half-written certificate is refused; the certificate in use stays.
  const refused = nextReload((e) => e.path === 'services.users.transport.tls' && e.error !== undefined);
  writeFileSync(file('client.pem'), bob.cert.slice(0, 200));
  console.log('half-written file refused:', (await refused).error?.message);
  console.log('still served with the old one:', await call('https://users/'));

  // A server certificate for another name: a typed error that says which check failed.
  try {
    console.log('billing answered?!', await call('https://billing/'));
  } catch (err) {
    const t = err as TlsError;
    console.log(`wrong name: ${t.code} ${t.reason} at ${t.endpoint}`);
  }

  await mesh.close();
  h1.close();
  h2.close();
  wrongName.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
