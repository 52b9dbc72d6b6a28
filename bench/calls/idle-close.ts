/**
 * The idle-close race against a server that closes idle keep-alive sockets after 1 s without advertising it
 * (no `Keep-Alive: timeout=` header, so the client's 4 s keep-alive cannot undercut it), with calls spaced to
 * meet the close: after each answer the client waits about the server's idle time, so each request crosses
 * the server's close of the connection it reuses (nodejs/undici#3492).
 *
 * What it reports, for GETs and POSTs apart: calls that succeeded, failures and their error (code,
 * `retryable`), requests the server saw twice, the failures charged to the endpoint, and how many calls the
 * mesh resent because of the race (from its request events). What the mesh must do (issue 19, item 5): every GET
 * succeeds and the endpoint is charged nothing; no POST reaches the server twice, and each failed POST is a
 * `TransportError` with `retryable: false`.
 *
 *   node --conditions=meshfetch-source --import tsx bench/calls/idle-close.ts [--count 30] [--idle 1000]
 *   (or: npm run build && npx tsx bench/calls/idle-close.ts)
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Worker } from 'node:worker_threads';
import { createMesh, MeshError, type Mesh } from 'meshfetch';
import { numberFlag, parseFlags } from '../lib/cli.js';

const flags = parseFlags(process.argv.slice(2));
const COUNT = numberFlag(flags, 'count', 30);
const IDLE_MS = numberFlag(flags, 'idle', 1_000);

interface Server {
  address: string;
  /** How many times the server saw each request id. */
  seen(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

/**
 * The server runs in a worker thread, with an event loop of its own, so its idle close and the client's
 * request really race (in one loop, undici 8 notices a FIN before it reuses a socket and the race is hidden).
 * HTTP/1.1, keep-alive without a Keep-Alive header; an idle connection is closed after IDLE_MS.
 */
const SERVER = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const seen = new Map();
const sockets = new Set();
const server = net.createServer((socket) => {
  sockets.add(socket);
  socket.on('error', () => {});
  let idle;
  const armIdle = () => { idle = setTimeout(() => socket.destroy(), workerData.idleMs); };
  socket.on('close', () => { clearTimeout(idle); sockets.delete(socket); });
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const end = buf.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const length = Number((/content-length:\\s*(\\d+)/i.exec(head) || [])[1] || 0);
      if (buf.length < end + 4 + length) return;
      buf = buf.subarray(end + 4 + length);
      const id = (/x-id:\\s*(\\S+)/i.exec(head) || [])[1] || '';
      seen.set(id, (seen.get(id) || 0) + 1);
      clearTimeout(idle);
      socket.write('HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: 2\\r\\n\\r\\nok');
      armIdle();
    }
  });
  armIdle();
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', (m) => {
  if (m === 'seen') parentPort.postMessage({ seen: [...seen] });
  if (m === 'close') { for (const s of sockets) s.destroy(); server.close(() => process.exit(0)); }
});
`;

async function startServer(): Promise<Server> {
  const worker = new Worker(SERVER, { eval: true, workerData: { idleMs: IDLE_MS } });
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((r) => worker.once('message', (m: Record<string, unknown>) => r(m)));
  const { port } = (await next()) as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    async seen() {
      worker.postMessage('seen');
      return new Map((await next()).seen as Array<[string, number]>);
    },
    async close() {
      worker.postMessage('close');
      await new Promise((r) => worker.once('exit', r));
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Result {
  method: string;
  ok: number;
  failed: number;
  errors: Map<string, number>;
  seenTwice: number;
  chargedFailures: number;
  /** Calls the mesh resent because of the idle-close race (free of budget). */
  idleCloseResent: number;
}

async function run(method: 'GET' | 'POST'): Promise<Result> {
  const server = await startServer();
  const mesh: Mesh = createMesh({ services: { svc: { endpoints: [server.address] } } });
  const r: Result = {
    method,
    ok: 0,
    failed: 0,
    errors: new Map(),
    seenTwice: 0,
    chargedFailures: 0,
    idleCloseResent: 0,
  };
  // The mesh's request events say why a call was retried.
  const onEnd = (m: unknown): void => {
    const reasons = (m as { context?: { retryReasons?: string[] } }).context?.retryReasons;
    if (reasons?.includes('idle_close') === true) r.idleCloseResent++;
  };
  subscribe('meshfetch:request:end', onEnd);
  let answeredAt = performance.now();
  for (let i = 0; i < COUNT; i++) {
    // Spaced to meet the close: from 1 ms before to 1 ms after the server's idle timeout, in 0.1 ms steps
    // (a timer to near the moment, then a short spin for sub-millisecond placement).
    if (i > 0) {
      const at = answeredAt + IDLE_MS - 1 + (i % 21) * 0.1;
      await sleep(Math.max(0, at - performance.now() - 3));
      while (performance.now() < at) {
        /* spin to the exact moment */
      }
    }
    try {
      const res = await mesh.request('http://svc/', {
        method,
        headers: { 'x-id': `${method}-${i}` },
        body: method === 'POST' ? 'payload' : undefined,
      });
      await res.body.text();
      answeredAt = performance.now();
      r.ok++;
    } catch (err) {
      r.failed++;
      const key =
        err instanceof MeshError
          ? `${err.name} ${(err as { causeCode?: string }).causeCode ?? err.code} retryable=${err.retryable}`
          : String(err);
      r.errors.set(key, (r.errors.get(key) ?? 0) + 1);
    }
  }
  unsubscribe('meshfetch:request:end', onEnd);
  for (const n of (await server.seen()).values()) if (n > 1) r.seenTwice++;
  r.chargedFailures = mesh
    .snapshot()
    .services[0]!.endpoints.reduce((n, e) => n + (e as { failures?: number }).failures!, 0);
  await mesh.close();
  await server.close();
  return r;
}

console.log(
  `idle-close race: ${COUNT} calls per method, server closes idle sockets after ${IDLE_MS} ms, no Keep-Alive header (Node ${process.versions.node})`,
);
for (const method of ['GET', 'POST'] as const) {
  const r = await run(method);
  const errors = [...r.errors].map(([k, n]) => `${n}× ${k}`).join('; ') || 'none';
  console.log(
    `${method.padEnd(4)} succeeded ${r.ok}/${COUNT} (${((100 * r.ok) / COUNT).toFixed(0)} %), failed ${r.failed} [${errors}], ` +
      `reached the server twice ${r.seenTwice}, failures charged to the endpoint ${r.chargedFailures}, ` +
      `resent for the idle-close race ${r.idleCloseResent}`,
  );
}
