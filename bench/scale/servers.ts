/**
 * Upstreams for bench/scale's memory measurement, in their own process (so their sockets and heap are not
 * the mesh's): N node:http servers on 127.0.0.1, port 0, each answering 200 with a tiny body at once,
 * keep-alive with a 120 s idle timeout. Reports `{ ports, pid }` over IPC and exits when the parent
 * disconnects, or after 30 minutes. Not meant to be run by hand. argv: <count>
 */
import * as http from 'node:http';

const count = Number(process.argv[2]);
if (!Number.isInteger(count) || count < 1) {
  console.error('usage: servers.ts <count>');
  process.exit(2);
}
const BODY = Buffer.from('ok\n');
const servers = Array.from({ length: count }, () => {
  const s = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(BODY.length) });
    res.end(BODY);
  });
  s.keepAliveTimeout = 120_000;
  s.headersTimeout = 130_000;
  return s;
});
await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
const ports = servers.map((s) => {
  const a = s.address();
  return typeof a === 'object' && a ? a.port : 0;
});
const stop = (): void => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  process.exit(0);
};
process.on('disconnect', stop);
process.on('SIGTERM', stop);
setTimeout(() => process.exit(1), 30 * 60_000).unref();
process.send!({ ports, pid: process.pid });
