/**
 * The fairness benchmark's backends (bench/fairness), in their own process so that the client's event loop
 * never delays an answer: node:http servers on 127.0.0.1, port 0, each answering GET with a small body and
 * `x-backend: <index>`, and recording when each request arrived (wall-clock ms, `performance.timeOrigin +
 * performance.now()`, comparable with the client's on the same machine). Each backend has a behaviour:
 *
 *   ok             200 after `delayMs` (a timer: 1 ms by default, the timer's resolution)
 *   slow-first     200 after 200 ms for its first request, then as `ok` (a cold start)
 *   429            429 at once (no timer: about 0.1-0.5 ms on loopback)
 *   429-ra         429 at once with `Retry-After: 1`
 *   503-ra0        503 at once with `Retry-After: 0`
 *
 * Driven over IPC by bench/fairness/index.ts (not meant to be run by hand):
 *   -> { type: 'start', count, modes, delayMs }  (re)creates the servers: a fresh set for every run
 *   <- { type: 'ready', ports }
 *   -> { type: 'arrivals' }                      <- { type: 'arrivals', at: number[][] } (per backend)
 * Exits when the parent disconnects, or after 30 minutes at most. Keep-alive 120 s: no reconnects in a run.
 */
import * as http from 'node:http';

type Mode = 'ok' | 'slow-first' | '429' | '429-ra' | '503-ra0';

const BODY = Buffer.from('ok\n');
let servers: http.Server[] = [];
let at: number[][] = [];

const wallMs = (): number => performance.timeOrigin + performance.now();

async function start(count: number, modes: Mode[], delayMs: number): Promise<number[]> {
  await stopAll();
  at = Array.from({ length: count }, () => []);
  servers = [];
  for (let i = 0; i < count; i++) {
    const mode = modes[i] ?? 'ok';
    let served = 0;
    const server = http.createServer((req, res) => {
      at[i]!.push(wallMs());
      req.resume();
      const n = served++;
      const headers = {
        'content-type': 'text/plain',
        'content-length': String(BODY.length),
        'x-backend': String(i),
      };
      if (mode === '429') return void res.writeHead(429, headers).end(BODY);
      if (mode === '429-ra') return void res.writeHead(429, { ...headers, 'retry-after': '1' }).end(BODY);
      if (mode === '503-ra0') return void res.writeHead(503, { ...headers, 'retry-after': '0' }).end(BODY);
      const delay = mode === 'slow-first' && n === 0 ? 200 : delayMs;
      setTimeout(() => res.writeHead(200, headers).end(BODY), delay);
    });
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 130_000;
    servers.push(server);
  }
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  return servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
}

async function stopAll(): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((r) => {
          s.closeAllConnections();
          s.close(() => r());
        }),
    ),
  );
  servers = [];
}

type Msg = { type: 'start'; count: number; modes: Mode[]; delayMs: number } | { type: 'arrivals' };

process.on('message', (m: Msg) => {
  if (m.type === 'start') {
    void start(m.count, m.modes, m.delayMs).then((ports) => process.send!({ type: 'ready', ports }));
  } else if (m.type === 'arrivals') {
    process.send!({ type: 'arrivals', at });
  }
});

const stop = (): void => {
  void stopAll().finally(() => process.exit(0));
};
process.on('disconnect', stop);
process.on('SIGTERM', stop);
setTimeout(() => {
  console.error('fairness backends: 30 minute limit reached, exiting');
  process.exit(1);
}, 30 * 60_000).unref();
process.send!({ type: 'hello', pid: process.pid });
