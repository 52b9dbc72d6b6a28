/**
 * The demo's backends: one node:http server per {@link BACKENDS} entry, on 127.0.0.1, port 0, all in this
 * child process (forked by fleet.ts, never run by hand).
 *
 * Why a child process: the backends' latency is made of timers. In the same process as the mesh and the load
 * generator, every millisecond the client spends on its own work would delay those timers and blur what the
 * balancers see (and the machine may have two cores only). Here the servers have their own event loop, so a
 * "10 ms" backend answers in 10 ms however busy the client is.
 *
 * Each run (a `run` message) reseeds every backend's randomness, so each balancer meets the same latencies
 * and failures in the same order per backend. The process exits when told to, or when the parent goes away.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BACKEND_HEADER,
  BACKENDS,
  type BackendSpec,
  type Counts,
  type FromBackends,
  type ToBackends,
} from './scenario.js';

interface Backend {
  readonly spec: BackendSpec;
  readonly server: Server;
  rng: Rng;
  counts: Counts;
}

let runStart = performance.now();
let slowAtMs: number | null = 0;

function send(msg: FromBackends): void {
  process.send?.(msg);
}

function latency(b: Backend): number {
  const s = b.spec;
  const slow = s.slowMs !== undefined && slowAtMs !== null && performance.now() - runStart >= slowAtMs;
  const base = slow ? s.slowMs! : s.baseMs;
  const jitter = slow ? (s.slowJitterMs ?? 0) : s.jitterMs;
  return Math.max(0, base + (b.rng.next() * 2 - 1) * jitter);
}

function handler(b: Backend) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const s = b.spec;
    // One draw decides the outcome and one the latency, whatever the outcome, so the sequence stays aligned.
    const roll = b.rng.next();
    const ms = latency(b);
    b.counts.received++;
    req.resume();
    if (s.resetRate !== undefined && roll < s.resetRate) {
      b.counts.reset++;
      req.socket.destroy();
      return;
    }
    if (s.errorRate !== undefined && roll < (s.resetRate ?? 0) + s.errorRate) {
      b.counts.http503++;
      res.writeHead(503, { [BACKEND_HEADER]: s.name, 'content-type': 'text/plain' });
      res.end('overloaded\n');
      return;
    }
    const timer = setTimeout(() => {
      res.writeHead(200, { [BACKEND_HEADER]: s.name, 'content-type': 'text/plain' });
      res.end(`${s.name}\n`);
    }, ms);
    res.once('close', () => clearTimeout(timer));
  };
}

/** A uniform number in [0, 1). */
type Rng = { next(): number };

/**
 * mulberry32, a tiny seeded generator. Not meshfetch's `seededRng` only so that this process starts faster:
 * it need not load the library and its dependencies.
 */
function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return {
    next(): number {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

function zero(): Counts {
  return { received: 0, http503: 0, reset: 0 };
}

async function start(): Promise<Backend[]> {
  const backends: Backend[] = [];
  for (const spec of BACKENDS) {
    const server = createServer();
    const b: Backend = { spec, server, rng: seededRng(1), counts: zero() };
    server.on('request', handler(b));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backends.push(b);
  }
  return backends;
}

let stopping = false;
async function stop(backends: readonly Backend[]): Promise<void> {
  if (stopping) return;
  stopping = true;
  await Promise.all(
    backends.map(
      (b) =>
        new Promise<void>((resolve) => {
          b.server.close(() => resolve());
          b.server.closeAllConnections();
        }),
    ),
  );
  if (process.connected) process.disconnect();
}

const backends = await start();
process.on('message', (msg: ToBackends) => {
  if (msg.type === 'run') {
    runStart = performance.now();
    slowAtMs = msg.slowAtMs;
    backends.forEach((b, i) => {
      b.rng = seededRng(msg.seed * 31 + i);
      b.counts = zero();
    });
    send({ type: 'running' });
  } else if (msg.type === 'stats') {
    const counts: Record<string, Counts> = {};
    for (const b of backends) counts[b.spec.name] = { ...b.counts };
    send({ type: 'stats', counts });
  } else if (msg.type === 'stop') {
    void stop(backends);
  }
});
// Ctrl-C reaches the whole process group: let the parent finish its calls and stop us in order.
process.on('SIGINT', () => {});
// The parent died or closed the channel: do not outlive it.
process.on('disconnect', () => void stop(backends));
const ports: Record<string, number> = {};
for (const b of backends) ports[b.spec.name] = (b.server.address() as AddressInfo).port;
send({ type: 'ready', ports });
