/**
 * The upstreams of the TLS benchmark, in their own process (so their CPU is not the client's): an https
 * server (HTTP/1.1) and an HTTP/2 server over TLS on 127.0.0.1, port 0, with the certificate and key whose
 * paths come in argv, answering every request with 200 and a small body. `/close` answers with
 * `Connection: close` on HTTP/1.1, so the next call needs a new connection and a handshake. Reports its ports
 * over IPC and exits when the parent disconnects, or after 10 minutes at most.
 */
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';

const [certFile, keyFile] = process.argv.slice(2) as [string, string];
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
const BODY = Buffer.from('hello from the benchmark server\n');
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) };

const h1 = https.createServer(tls, (req, res) => {
  req.resume();
  res.writeHead(200, req.url === '/close' ? { ...HEADERS, connection: 'close' } : HEADERS);
  res.end(BODY);
});
h1.keepAliveTimeout = 120_000;
h1.headersTimeout = 130_000;

const h2 = http2.createSecureServer({ ...tls, settings: { maxConcurrentStreams: 1000 } });
h2.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.resume();
  stream.respond({ ':status': 200, ...HEADERS });
  stream.end(BODY);
});

let ready = 0;
const done = (): void => {
  if (++ready < 2) return;
  const ports = { h1: (h1.address() as AddressInfo).port, h2: (h2.address() as AddressInfo).port };
  if (process.send) process.send({ ...ports, pid: process.pid });
  else console.log(ports);
};
h1.listen(0, '127.0.0.1', done);
h2.listen(0, '127.0.0.1', done);

const stop = (): void => process.exit(0);
process.on('disconnect', stop);
process.on('SIGTERM', stop);
setTimeout(() => process.exit(1), 10 * 60_000).unref();
