/**
 * Unread response bodies: undici's own test/fetch/fire-and-forget.js as a measurement. Batches of 50 fetches
 * of a 512 KiB answer whose bodies are never read (half of them cloned), a forced minor GC before each
 * batch, until N fetches; the median time per entry point over interleaved rounds (the order rotates each
 * round), in one process:
 *
 *   undici fetch (its Agent, as the test configures it), the built-in fetch, mesh.fetch, and the built-in
 *   fetch with mesh.dispatcher, to a mesh service on loopback.
 *
 * An unread body holds its connection until it is released: read ahead to its end (a body up to 1 MiB,
 * src/transport/body.ts), or cancelled when its Response is garbage collected. undici's Agent opens a socket
 * per unread body; the mesh's pool has a cap (128 connections per endpoint by default), so a body that held
 * its connection until GC would stall the calls behind it. Target: each mesh entry point within 1.2x undici's
 * fetch.
 *
 *   npm run build && node --expose-gc --import tsx bench/fetch/unread-bodies.ts [N=5000] [rounds=3]
 */
import { randomFillSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import { createMesh } from 'meshfetch';

const gc = (globalThis as { gc?: (minor?: boolean) => void }).gc;
if (gc === undefined) {
  console.error('run with --expose-gc (see the header)');
  process.exit(2);
}
const N = Number(process.argv[2] ?? 5000);
const ROUNDS = Number(process.argv[3] ?? 3);
const blob = randomFillSync(new Uint8Array(512 * 1024));
const server = createServer((_req, res) => {
  res.writeHead(200);
  res.end(blob);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
const mesh = createMesh({ services: { svc: { endpoints: [address] } } });
const agent = new Agent({ keepAliveMaxTimeout: 10, keepAliveTimeoutThreshold: 10 });

async function run(f: () => Promise<{ clone(): unknown }>): Promise<number> {
  const t0 = performance.now();
  for (let total = 0; total < N; total += 50) {
    gc!(true);
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i += 2) {
      batch.push(f().catch(() => {}));
      batch.push(
        f()
          .then((r) => r.clone())
          .catch(() => {}),
      );
    }
    await Promise.all(batch);
    await sleep(0);
  }
  return performance.now() - t0;
}

const entries: Array<[string, () => Promise<{ clone(): unknown }>]> = [
  ['undici fetch (Agent)', () => undiciFetch(`http://${address}/`, { dispatcher: agent })],
  ['built-in fetch', () => fetch(`http://${address}/`)],
  ['mesh.fetch', () => mesh.fetch('http://svc/')],
  ['built-in fetch + mesh.dispatcher', () => fetch('http://svc/', { dispatcher: mesh.dispatcher })],
];
const times = new Map<string, number[]>(entries.map(([name]) => [name, []]));
console.log(`${N} fetches of 512 KiB, bodies never read, ${ROUNDS} rounds (Node ${process.version})`);
for (let r = 0; r < ROUNDS; r++) {
  for (let k = 0; k < entries.length; k++) {
    const [name, f] = entries[(k + r) % entries.length]!;
    times.get(name)!.push(await run(f));
  }
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
for (const [name, xs] of times) {
  const ms = xs.map((x) => Math.round(x));
  console.log(
    `${name.padEnd(34)} median ${Math.round(median(xs)).toString().padStart(6)} ms  (${ms.join(', ')})`,
  );
}
const base = median(times.get('undici fetch (Agent)')!);
const ratio = (name: string): string => (median(times.get(name)!) / base).toFixed(2);
console.log(
  `mesh.fetch / undici fetch: ${ratio('mesh.fetch')}x; dispatcher / undici fetch: ${ratio('built-in fetch + mesh.dispatcher')}x (target <= 1.2x)`,
);
await mesh.close({ gracePeriodMs: 0 });
await agent.close();
server.closeAllConnections();
server.close();
