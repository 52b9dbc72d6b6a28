/**
 * The tail benchmark's backends (bench/tail), run in their own process so the load generator's event loop
 * (and its garbage collector) never delays a backend's answer: N node:http servers on 127.0.0.1, port 0,
 * each answering GET with 200, a small body and `x-backend: <index>` after a delay drawn from a seeded
 * normal distribution (median 10 ms, sd 1 ms by default; Box-Muller over mulberry32, one stream per backend,
 * so every strategy sees the same sequence of delays per backend). Delays are `setTimeout` in this process,
 * so they have the timer's millisecond resolution.
 *
 * Driven over IPC by bench/tail/index.ts (not meant to be run by hand):
 *   -> { type: 'reset' }                        start of the measured run: zero the per-second counters
 *   -> { type: 'degrade', index, delayMs }      from now on, backend `index` answers after `delayMs`
 *   -> { type: 'heal' }                         every backend back to the normal distribution
 *   -> { type: 'stats' }                        <- { type: 'stats', arrivals: number[][] } (per backend, per s)
 *   <- { type: 'ready', ports, pid }            once every server listens
 * Exits when the parent disconnects, or after 30 minutes at most. Keep-alive with a 120 s idle timeout, so
 * no client reconnects during a run.
 *
 * argv: <count> <seed> <medianMs> <sdMs>
 */
import * as http from 'node:http';
import { mulberry32, normal } from './rng.js';

const [count, seed, medianMs, sdMs] = process.argv.slice(2).map(Number) as [number, number, number, number];
if (!(count > 0) || !Number.isFinite(seed) || !(medianMs > 0) || !(sdMs >= 0)) {
  console.error('usage: backends.ts <count> <seed> <medianMs> <sdMs>');
  process.exit(2);
}

const BODY = Buffer.from('ok\n');
let degraded = -1;
let degradedDelayMs = 0;
let t0 = performance.now();
/** arrivals[i][s]: requests that reached backend i in second s of the measured run. */
let arrivals: number[][] = [];
const reset = (): void => {
  t0 = performance.now();
  arrivals = Array.from({ length: count }, () => []);
};
reset();

const servers: http.Server[] = [];
for (let i = 0; i < count; i++) {
  const rng = mulberry32(seed * 1_000 + i);
  const headers = {
    'content-type': 'text/plain',
    'content-length': String(BODY.length),
    'x-backend': String(i),
  };
  const server = http.createServer((req, res) => {
    const s = Math.floor((performance.now() - t0) / 1000);
    if (s >= 0) {
      const row = arrivals[i]!;
      row[s] = (row[s] ?? 0) + 1;
    }
    // Draw for every request, degraded or not, so the healthy backends' sequences do not depend on the window.
    const normalDelay = Math.max(0.5, normal(rng, medianMs, sdMs));
    const delay = i === degraded ? degradedDelayMs : normalDelay;
    req.resume();
    setTimeout(() => {
      res.writeHead(200, headers);
      res.end(BODY);
    }, delay);
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  server.maxRequestsPerSocket = 0;
  servers.push(server);
}

await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
const ports = servers.map((s) => {
  const a = s.address();
  return typeof a === 'object' && a ? a.port : 0;
});

type Msg =
  | { type: 'reset' }
  | { type: 'degrade'; index: number; delayMs: number }
  | { type: 'heal' }
  | { type: 'stats' };

process.on('message', (m: Msg) => {
  if (m.type === 'reset') reset();
  else if (m.type === 'degrade') {
    degraded = m.index;
    degradedDelayMs = m.delayMs;
  } else if (m.type === 'heal') degraded = -1;
  else if (m.type === 'stats') {
    const seconds = Math.max(0, ...arrivals.map((r) => r.length));
    process.send!({
      type: 'stats',
      arrivals: arrivals.map((r) => Array.from({ length: seconds }, (_, k) => r[k] ?? 0)),
    });
  }
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
setTimeout(() => {
  console.error('tail backends: 30 minute limit reached, exiting');
  process.exit(1);
}, 30 * 60_000).unref();

process.send!({ type: 'ready', ports, pid: process.pid });
