// Huge discovery answers: an answer above `maxResponseBytes` (default 16 MiB) is abandoned while it is read,
// never read or parsed in full, so it cannot stall the event loop; it is a ConsulResponseTooLargeError that
// names the option, and the last good endpoint set keeps serving. A fault-injection server on loopback
// (test/support/fake-health.ts) answers a blocking health query with a 23 MB body, as an agent with ~22 000
// instances would (bench/discovery/answer-size.ts measures the stall with and without the limit).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { systemRng } from '../../src/core/rng.js';
import {
  ConsulResponseTooLargeError,
  consulDiscovery,
  DEFAULT_MAX_RESPONSE_BYTES,
  type ConsulDiscoveryOptions,
  type ConsulResolver,
} from '../../src/discovery/consul.js';
import { ConfigError } from '../../src/core/errors.js';
import { healthAnswer, startFakeHealthAgent, type FakeHealthAgent } from '../support/fake-health.js';
import { until } from '../support/until.js';
import { waitForAddr } from './helpers.js';

const MiB = 1024 * 1024;
let small: Buffer;
let smallCount: number;
let huge: Buffer;
let agent: FakeHealthAgent;

beforeAll(async () => {
  small = healthAnswer(3_000); // a few instances
  smallCount = (JSON.parse(small.toString()) as unknown[]).length;
  huge = healthAnswer(23_000_000);
  agent = await startFakeHealthAgent({ kind: 'answer', body: small });
});
afterAll(async () => {
  await agent?.close();
});

function resolve(options: ConsulDiscoveryOptions = {}): ConsulResolver {
  return consulDiscovery({ address: agent.address, backoff: { baseMs: 20, maxMs: 200 }, ...options }).resolve(
    {
      service: 'users',
      clock: systemClock,
      rng: systemRng,
      logger: silentLogger,
    },
  );
}

const freshSmall = (a: ConsulResolver['addr']): boolean =>
  a.state === 'bound' && !a.stale && a.endpoints.length === smallCount;

describe('huge Consul answers', () => {
  it('a 23 MB answer is abandoned at maxResponseBytes while read: a typed error naming the option, the last set kept, no stall', async () => {
    agent.set({ kind: 'answer', body: small });
    const r = resolve();
    try {
      const fresh = await waitForAddr(r, freshSmall, 'bound to the small set');
      const queries = agent.queries;
      await until(() => agent.queries > queries, 5_000); // the next blocking query is held by the agent
      // The longest stall: the larger of Node's delay monitor and the longest gap between the turns of a
      // 2 ms interval timer (the monitor alone under-reports single long tasks).
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      let last = performance.now();
      let gap = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        gap = Math.max(gap, now - last);
        last = now;
      }, 2);
      const t0 = performance.now();
      let err: Error | undefined;
      const delivered = agent.deliveries.length;
      // 18 MiB of it are sent; the rest only if the client reads on (it must close the connection instead).
      agent.set({ kind: 'chunked', body: huge, holdAfter: 18 * MiB });
      const stale = await waitForAddr(
        r,
        (a) => {
          if (a.state !== 'bound' || !a.stale) return false;
          err = r.lastError;
          return true;
        },
        'stale after the huge answer',
      );
      const elapsedMs = performance.now() - t0;
      await new Promise<void>((done) => setImmediate(done));
      clearInterval(tick);
      delay.disable();
      const stallMs = Math.max(delay.max / 1e6, gap, performance.now() - last);
      if (stale.state !== 'bound' || fresh.state !== 'bound') throw new Error('unreachable');
      expect(stale.endpoints).toBe(fresh.endpoints); // the very same set keeps serving
      expect(err).toBeInstanceOf(ConsulResponseTooLargeError);
      const e = err as ConsulResponseTooLargeError;
      expect(e).toMatchObject({ kind: 'too-large', option: 'maxResponseBytes', limitBytes: 16 * MiB });
      expect(e.message).toContain('maxResponseBytes');
      expect(e.message).toContain('16 MiB');
      // Read up to the limit and one piece more, never the whole 23 MB.
      expect(e.receivedBytes).toBeGreaterThan(16 * MiB);
      expect(e.receivedBytes).toBeLessThan(17 * MiB);
      expect(e.declaredBytes).toBeUndefined();
      const d = agent.deliveries[delivered]!;
      await until(() => d.abandoned || d.finished, 5_000);
      expect(d.abandoned).toBe(true); // the client closed the connection mid-answer, without waiting for more
      // Generous bounds (2 shared cores): reading in 64 KiB pieces and abandoning never blocks the loop for
      // long (measured 12-46 ms; reading and parsing this answer in full stalled it 260-740 ms).
      expect(stallMs).toBeLessThan(500);
      expect(elapsedMs).toBeLessThan(10_000);
      expect(r.snapshot()).toMatchObject({ state: 'bound', stale: true, endpoints: smallCount });
      expect(r.snapshot().lastError).toContain('maxResponseBytes');

      agent.set({ kind: 'answer', body: small });
      const again = await waitForAddr(r, freshSmall, 'fresh again');
      if (again.state !== 'bound') throw new Error('unreachable');
      expect(again.endpoints).toBe(fresh.endpoints);
      expect(r.lastError).toBeUndefined();
    } finally {
      await r.close();
    }
  });

  it('an answer whose Content-Length is over the limit is abandoned before its body is read', async () => {
    agent.set({ kind: 'declared', body: huge });
    const r = resolve();
    try {
      const failed = await waitForAddr(r, (a) => a.state === 'failed', 'failed');
      if (failed.state !== 'failed') throw new Error('unreachable');
      expect(failed.error).toBeInstanceOf(ConsulResponseTooLargeError);
      expect(failed.error).toMatchObject({
        receivedBytes: 0,
        declaredBytes: huge.length,
        limitBytes: 16 * MiB,
      });
      expect(failed.error.message).toContain(`Content-Length ${huge.length}`);
      agent.set({ kind: 'answer', body: small });
      await waitForAddr(r, freshSmall, 'bound once the answer is small');
    } finally {
      await r.close();
    }
  });

  it('maxResponseBytes sets the limit: an answer above it fails, one within it binds', async () => {
    const medium = healthAnswer(200_000);
    agent.set({ kind: 'chunked', body: medium });
    const tight = resolve({ maxResponseBytes: 64 * 1024 });
    const roomy = resolve({ maxResponseBytes: 1 * MiB });
    try {
      const failed = await waitForAddr(tight, (a) => a.state === 'failed', 'failed');
      if (failed.state !== 'failed') throw new Error('unreachable');
      expect(failed.error).toMatchObject({ kind: 'too-large', limitBytes: 64 * 1024 });
      expect(failed.error.message).toContain('64 KiB');
      await waitForAddr(roomy, (a) => a.state === 'bound' && a.endpoints.length > 100, 'bound');
    } finally {
      await tight.close();
      await roomy.close();
      agent.set({ kind: 'answer', body: small });
    }
  });

  it('the default is 16 MiB; a bad maxResponseBytes is a ConfigError naming it', () => {
    expect(DEFAULT_MAX_RESPONSE_BYTES).toBe(16 * MiB);
    expect(consulDiscovery({ address: agent.address }).options.maxResponseBytes).toBe(16 * MiB);
    for (const bad of [0, 1023, 256 * MiB + 1, 1536.5, NaN, '16MiB']) {
      let err: unknown;
      try {
        consulDiscovery({ maxResponseBytes: bad as number });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).path).toBe('consulDiscovery.maxResponseBytes');
    }
    let typo: unknown;
    try {
      consulDiscovery({ maxResponseByte: 1 } as ConsulDiscoveryOptions);
    } catch (e) {
      typo = e;
    }
    expect((typo as ConfigError).path).toBe('consulDiscovery.maxResponseByte');
  });
});
