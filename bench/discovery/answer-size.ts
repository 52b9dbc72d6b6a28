/**
 * Event-loop stall of huge Consul health answers, with and without the `maxResponseBytes` limit.
 *
 * A fault-injection agent on loopback (test/support/fake-health.ts) binds a resolver to a small set, then
 * answers its blocking query with a big body (about 1 KB per instance, valid JSON). Measured per run, from the
 * moment the big answer is released until the resolver has dealt with it (abandoned it: stale; or parsed it:
 * bound to the big set): the longest event-loop stall (the larger of `monitorEventLoopDelay` at 10 ms
 * resolution and the longest gap between the turns of a 2 ms interval timer) and the elapsed time.
 *
 * Run: `npx tsx --conditions=meshfetch-source bench/discovery/answer-size.ts [runs=3]`
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { consulDiscovery, type ConsulDiscoveryOptions } from 'meshfetch';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { systemRng } from '../../src/core/rng.js';
import { healthAnswer, startFakeHealthAgent, type HealthMode } from '../../test/support/fake-health.js';

const MiB = 1024 * 1024;
const runs = Number(process.argv[2] ?? 3);

interface Scenario {
  readonly name: string;
  readonly body: Buffer;
  readonly kind: HealthMode['kind'];
  readonly options: ConsulDiscoveryOptions;
}

const small = healthAnswer(3_000);
const big23 = healthAnswer(23_000_000);
const under16 = healthAnswer(16 * MiB - 64 * 1024);
const scenarios: Scenario[] = [
  { name: '23 MB chunked, default limit (16 MiB)', body: big23, kind: 'chunked', options: {} },
  { name: '23 MB with Content-Length, default limit', body: big23, kind: 'declared', options: {} },
  {
    name: '23 MB chunked, maxResponseBytes 32 MiB (read and parsed in full)',
    body: big23,
    kind: 'chunked',
    options: { maxResponseBytes: 32 * MiB },
  },
  { name: '16 MiB - 64 KiB chunked, default limit (parsed)', body: under16, kind: 'chunked', options: {} },
];

const agent = await startFakeHealthAgent({ kind: 'answer', body: small });
const smallCount = (JSON.parse(small.toString()) as unknown[]).length;
console.log(`node ${process.version}; ${runs} runs per scenario; small set ${smallCount} instances`);
console.log('| answer | outcome | max stall ms (runs) | elapsed ms (runs) |');
console.log('| --- | --- | --- | --- |');
for (const s of scenarios) {
  const stalls: number[] = [];
  const elapsed: number[] = [];
  let outcome = '';
  for (let i = 0; i < runs; i++) {
    agent.set({ kind: 'answer', body: small });
    const r = consulDiscovery({
      address: agent.address,
      backoff: { baseMs: 5_000, maxMs: 5_000 },
      ...s.options,
    }).resolve({ service: 'users', clock: systemClock, rng: systemRng, logger: silentLogger });
    await new Promise<void>((done) => {
      const sub = r.subscribe((a) => {
        if (a.state === 'bound' && a.endpoints.length === smallCount) {
          sub.unsubscribe();
          done();
        }
      });
    });
    const before = agent.queries;
    while (agent.queries === before) await new Promise((res) => setImmediate(res));
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    // A second view: the longest gap between the turns of a 2 ms interval timer.
    let last = performance.now();
    let gap = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      if (now - last > gap) gap = now - last;
      last = now;
    }, 2);
    const t0 = performance.now();
    await new Promise<void>((done) => {
      const sub = r.subscribe((a) => {
        if (a.state !== 'bound') return;
        if (a.stale) outcome = `abandoned (${r.lastError?.name})`;
        else if (a.endpoints.length > smallCount) outcome = `parsed (${a.endpoints.length} instances)`;
        else return;
        sub.unsubscribe();
        done();
      });
      agent.set({ kind: s.kind, body: s.body });
    });
    elapsed.push(performance.now() - t0);
    await new Promise((res) => setTimeout(res, 5)); // let the interval see the end of a stall
    clearInterval(tick);
    h.disable();
    stalls.push(Math.max(h.max / 1e6, gap));
    await r.close();
  }
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ');
  console.log(`| ${s.name} | ${outcome} | ${fmt(stalls)} | ${fmt(elapsed)} |`);
}
await agent.close();
