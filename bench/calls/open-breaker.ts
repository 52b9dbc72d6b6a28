/**
 * The cost of a call to an open circuit breaker, with the default retries: it must fail fast with
 * `CircuitOpenError` (no backoff, no retry budget spent), so its p99 stays at or under 1 ms (issue 19, item 9).
 * A backend that answers 500 opens the breaker (volume threshold 2, reset time 10 minutes, so it stays open
 * for the whole run); then `--calls` sequential calls are timed one by one.
 *
 *   node --conditions=meshfetch-source --import tsx bench/calls/open-breaker.ts [--calls 20000]
 *   (or: npm run build && npx tsx bench/calls/open-breaker.ts)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMesh, MeshError } from 'meshfetch';
import { numberFlag, parseFlags } from '../lib/cli.js';

const flags = parseFlags(process.argv.slice(2));
const CALLS = numberFlag(flags, 'calls', 20_000);
const WARMUP = Math.min(2_000, Math.floor(CALLS / 10));

const server = createServer((_req, res) => res.writeHead(500).end('broken'));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
const mesh = createMesh({
  services: {
    svc: { endpoints: [address], circuitBreaker: { volumeThreshold: 2, resetTimeoutMs: 600_000 } },
  },
});

for (let i = 0; i < 10 && mesh.snapshot().services[0]!.breaker !== 'open'; i++) {
  const r = await mesh.request('http://svc/');
  await r.body.dump();
}
if (mesh.snapshot().services[0]!.breaker !== 'open') throw new Error('the breaker did not open');

const samples: number[] = [];
const codes = new Map<string, number>();
for (let i = 0; i < WARMUP + CALLS; i++) {
  const t0 = performance.now();
  let code = 'response';
  try {
    const r = await mesh.request('http://svc/');
    await r.body.dump();
  } catch (err) {
    code = err instanceof MeshError ? err.code : String(err);
  }
  const dt = performance.now() - t0;
  if (i >= WARMUP) {
    samples.push(dt);
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
}
samples.sort((a, b) => a - b);
const q = (p: number): string =>
  samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!.toFixed(3);
console.log(
  `calls to an open breaker (default retries, Node ${process.versions.node}): ${CALLS} sequential calls after ${WARMUP} warm-up`,
);
console.log(`outcomes: ${[...codes].map(([c, n]) => `${n}× ${c}`).join(', ')}`);
console.log(
  `latency ms: p50 ${q(0.5)}, p99 ${q(0.99)}, p99.9 ${q(0.999)}, max ${samples.at(-1)!.toFixed(3)}`,
);
console.log(`retry budget left: ${mesh.snapshot().services[0]!.retryBudget}`);
await mesh.close();
server.close();
