/**
 * Unread response bodies: undici's own test/fetch/fire-and-forget.js as a measurement. Batches of 50 fetches
 * of a 512 KiB answer whose bodies are never read (half of them cloned), a forced minor GC before each
 * batch, until N fetches; the time per entry point, in one run:
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
 *   npm run build && node --expose-gc --import tsx bench/fetch/unread-bodies.ts [N=5000]
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
const blob = randomFillSync(new Uint8Array(512 * 1024));
const server = createServer((_req, res) => {
  res.writeHead(200);
  res.end(blob);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
const mesh = createMesh({ services: { svc: { endpoints: [address] } } });
const agent = new Agent({ keepAliveMaxTimeout: 10, keepAliveTimeoutThreshold: 10 });

async function run(name: string, f: () => Promise<{ clone(): unknown }>): Promise<number> {
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
  const ms = performance.now() - t0;
  console.log(`${name.padEnd(36)} ${Math.round(ms).toString().padStart(7)} ms`);
  return ms;
}

console.log(`${N} fetches of 512 KiB, bodies never read (Node ${process.version})`);
const base = await run('undici fetch (Agent)', () =>
  undiciFetch(`http://${address}/`, { dispatcher: agent }),
);
await run('built-in fetch', () => fetch(`http://${address}/`));
const m = await run('mesh.fetch', () => mesh.fetch('http://svc/'));
const d = await run('built-in fetch + mesh.dispatcher', () =>
  fetch('http://svc/', { dispatcher: mesh.dispatcher }),
);
console.log(
  `mesh.fetch / undici fetch: ${(m / base).toFixed(2)}x; dispatcher / undici fetch: ${(d / base).toFixed(2)}x (target <= 1.2x)`,
);
await mesh.close({ gracePeriodMs: 0 });
await agent.close();
server.closeAllConnections();
server.close();
