/**
 * The upstream of the overhead benchmark, run in its own process (so its CPU is not the client's): a
 * node:http server on 127.0.0.1, port 0, answering every request with 200 and a small body, keep-alive with a
 * long idle timeout (120 s, advertised in `Keep-Alive: timeout=120`, which undici honours), so no client in
 * the run reconnects between rounds. It reports its port over IPC and exits when the parent disconnects, or
 * after 30 minutes at most.
 */
import * as http from 'node:http';

const BODY = Buffer.from('hello from the benchmark server\n');
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) };

const server = http.createServer((req, res) => {
  // Drain any request body, then answer.
  req.resume();
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.maxRequestsPerSocket = 0;

server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  if (process.send) process.send({ port, pid: process.pid });
  else console.log(`listening on 127.0.0.1:${port}`);
});

const stop = (): void => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.on('disconnect', stop);
process.on('SIGTERM', stop);
setTimeout(() => {
  console.error('benchmark server: 30 minute limit reached, exiting');
  process.exit(1);
}, 30 * 60_000).unref();
