// Consul discovery against a real dev agent: the endpoint set follows registrations and health changes,
// keeps Endpoint identity for unchanged instances, tells an unknown service (negative) from one with no
// passing instance (bound to nothing), skips unusable instances, and leaves nothing running after close().
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { consulDiscovery, type ConsulResolver } from '../../src/discovery/consul.js';
import type { Endpoint } from '../../src/discovery/types.js';
import { systemClock, type Clock, type TimerHandle } from '../../src/core/clock.js';
import { ConfigError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { systemRng } from '../../src/core/rng.js';
import {
  deregisterInstance,
  registerInstance,
  setCheck,
  startConsul,
  waitFor,
  type ConsulAgent,
} from '../support/consul.js';
import { memoryLogger } from '../support/memory-logger.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

let consul: ConsulAgent;
const open: ConsulResolver[] = [];
const track = (r: ConsulResolver): ConsulResolver => (open.push(r), r);

beforeAll(async () => {
  consul = await startConsul();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await consul?.stop();
});

describe('consulDiscovery against a real agent', () => {
  it('follows registrations and health: 3 instances, one critical, one new, one deregistered', async () => {
    const svc = 'users';
    for (const port of [9001, 9002, 9003]) {
      await registerInstance(consul, {
        name: svc,
        id: `${svc}-${port}`,
        address: '127.0.0.1',
        port,
        tags: ['v1', `p${port}`],
        meta: { zone: port === 9001 ? 'a' : 'b' },
        weights: { passing: port === 9003 ? 5 : 1, warning: 1 },
      });
    }
    const r = track(resolveOn(consul, svc));
    expect(r.addr.state).toBe('pending');
    const bound = await waitForAddr(r, boundTo(9001, 9002, 9003), 'three endpoints');
    if (bound.state !== 'bound') throw new Error('unreachable');
    const byPort = new Map(bound.endpoints.map((e) => [e.port, e]));
    expect(byPort.get(9001)).toMatchObject({
      id: '127.0.0.1:9001',
      host: '127.0.0.1',
      weight: 1,
      tags: ['v1', 'p9001'],
      meta: { zone: 'a' },
    });
    expect(byPort.get(9003)?.weight).toBe(5);

    // A TTL check going critical removes that instance; the others keep their Endpoint objects.
    const t0 = performance.now();
    await setCheck(consul, `${svc}-9002`, 'critical');
    const afterCritical = await waitForAddr(r, boundTo(9001, 9003), 'critical instance removed');
    const convergeMs = performance.now() - t0;
    expect(convergeMs).toBeLessThan(1_000);
    if (afterCritical.state !== 'bound') throw new Error('unreachable');
    for (const e of afterCritical.endpoints) expect(e).toBe(byPort.get(e.port));

    // A new instance appears.
    await registerInstance(consul, { name: svc, id: `${svc}-9004`, address: '127.0.0.1', port: 9004 });
    await waitForAddr(r, boundTo(9001, 9003, 9004), 'new instance added');

    // Deregistration removes one.
    await deregisterInstance(consul, `${svc}-9001`);
    const afterDereg = await waitForAddr(r, boundTo(9003, 9004), 'deregistered instance removed');
    if (afterDereg.state !== 'bound') throw new Error('unreachable');
    expect(afterDereg.endpoints.find((e) => e.port === 9003)).toBe(byPort.get(9003));

    // The critical one passes again and comes back.
    await setCheck(consul, `${svc}-9002`, 'passing');
    await waitForAddr(r, boundTo(9002, 9003, 9004), 'recovered instance back');

    // A change of weight is an update of that endpoint only.
    const before = r.addr.state === 'bound' ? r.addr.endpoints : [];
    await registerInstance(consul, {
      name: svc,
      id: `${svc}-9004`,
      address: '127.0.0.1',
      port: 9004,
      weights: { passing: 3, warning: 1 },
    });
    const reweighted = await waitForAddr(
      r,
      (a) => a.state === 'bound' && a.endpoints.some((e) => e.port === 9004 && e.weight === 3),
      'weight update',
    );
    if (reweighted.state !== 'bound') throw new Error('unreachable');
    const same = (e: Endpoint): boolean => before.includes(e);
    expect(
      reweighted.endpoints
        .filter(same)
        .map((e) => e.port)
        .sort(),
    ).toEqual([9002, 9003]);
    expect(r.snapshot().stats.errors).toBe(0);
  });

  it('an unknown service is negative at once, and becomes bound when it is registered', async () => {
    const t0 = performance.now();
    const r = track(resolveOn(consul, 'nobody-here'));
    const addr = await waitForAddr(r, (a) => a.state === 'negative', 'negative');
    expect(performance.now() - t0).toBeLessThan(1_000);
    if (addr.state !== 'negative') throw new Error('unreachable');
    expect(addr.reason).toContain('no service "nobody-here"');
    expect(addr.reason).not.toContain('ACL'); // no token set: no ACL hint
    await registerInstance(consul, { name: 'nobody-here', id: 'nh-1', address: '127.0.0.1', port: 9100 });
    await waitForAddr(r, boundTo(9100), 'bound after registration');
  });

  it('a service with no passing instance is bound to nothing, not negative', async () => {
    await registerInstance(consul, {
      name: 'sick',
      id: 'sick-1',
      address: '127.0.0.1',
      port: 9200,
      status: 'critical',
    });
    const r = track(resolveOn(consul, 'sick'));
    const addr = await waitForAddr(r, (a) => a.state !== 'pending', 'an answer');
    expect(addr).toMatchObject({ state: 'bound', endpoints: [], stale: false });
    expect(r.snapshot().stats.catalogChecks).toBeGreaterThan(0);
  });

  it('filters by tags (all must match), node meta, and can include warning instances with their weight', async () => {
    await registerInstance(consul, {
      name: 'tagged',
      id: 't-1',
      address: '127.0.0.1',
      port: 9301,
      tags: ['a', 'b'],
    });
    await registerInstance(consul, {
      name: 'tagged',
      id: 't-2',
      address: '127.0.0.1',
      port: 9302,
      tags: ['a'],
    });
    await registerInstance(consul, {
      name: 'tagged',
      id: 't-3',
      address: '127.0.0.1',
      port: 9303,
      tags: ['a'],
      status: 'warning',
      weights: { passing: 10, warning: 2 },
    });
    await registerInstance(consul, {
      name: 'tagged',
      id: 't-4',
      address: '127.0.0.1',
      port: 9304,
      tags: ['a'],
      status: 'critical',
    });
    const ab = track(resolveOn(consul, 'tagged', { tags: ['a', 'b'] }));
    await waitForAddr(ab, boundTo(9301), 'tags a+b');
    const a = track(resolveOn(consul, 'tagged', { tags: 'a' }));
    await waitForAddr(a, boundTo(9301, 9302), 'tag a, passing only');
    const warn = track(resolveOn(consul, 'tagged', { passingOnly: false }));
    const w = await waitForAddr(warn, boundTo(9301, 9302, 9303), 'passing + warning, never critical');
    if (w.state !== 'bound') throw new Error('unreachable');
    expect(w.endpoints.find((e) => e.port === 9303)?.weight).toBe(2);
    const otherZone = track(resolveOn(consul, 'tagged', { nodeMeta: { zone: 'nowhere' } }));
    await waitForAddr(otherZone, (x) => x.state === 'bound' && x.endpoints.length === 0, 'node-meta filter');
    const ownNode = track(
      resolveOn(consul, 'tagged', { nodeMeta: { 'consul-network-segment': '' }, consistency: 'stale' }),
    );
    await waitForAddr(ownNode, boundTo(9301, 9302), 'node-meta filter matching, stale reads');
    const consistent = track(
      resolveOn(consul, 'tagged', { consistency: 'consistent', datacenter: consul.datacenter }),
    );
    await waitForAddr(consistent, boundTo(9301, 9302), 'consistent reads in the named datacenter');
  });

  it('uses Service.Address, else Node.Address; skips and reports unusable instances', async () => {
    const log = memoryLogger();
    await registerInstance(consul, { name: 'mixed', id: 'm-good', address: '127.0.0.1', port: 9401 });
    await registerInstance(consul, { name: 'mixed', id: 'm-node-addr', port: 9402 }); // no service address
    await registerInstance(consul, { name: 'mixed', id: 'm-bad-addr', address: 'not a host!', port: 9403 });
    await registerInstance(consul, { name: 'mixed', id: 'm-no-port', address: '127.0.0.1', port: 0 });
    await registerInstance(consul, { name: 'mixed', id: 'm-dup', address: '127.0.0.1', port: 9401 });
    const r = track(resolveOn(consul, 'mixed', {}, log.logger));
    const addr = await waitForAddr(r, boundTo(9401, 9402), 'usable instances only');
    if (addr.state !== 'bound') throw new Error('unreachable');
    expect(addr.endpoints.find((e) => e.port === 9402)?.host).toBe('127.0.0.1'); // the node's address
    const skipped = Object.fromEntries(r.skipped.map((s) => [s.serviceId, s.reason]));
    // Two instances share 127.0.0.1:9401: the first in Consul's order is kept, the other skipped.
    const dup = 'm-dup' in skipped ? 'm-dup' : 'm-good';
    expect(Object.keys(skipped).sort()).toEqual(['m-bad-addr', dup, 'm-no-port'].sort());
    expect(skipped['m-bad-addr']).toMatch(/invalid address/);
    expect(skipped['m-no-port']).toMatch(/invalid port/);
    expect(skipped[dup]).toMatch(/duplicate address 127.0.0.1:9401/);
    expect(log.lines.some((l) => l.level === 'warn' && /skipped 3/.test(l.msg ?? ''))).toBe(true);
    expect(JSON.parse(JSON.stringify(r)).skipped).toHaveLength(3);
  });

  it('uses options.service instead of the logical name', async () => {
    await registerInstance(consul, { name: 'real-name', id: 'rn-1', address: '127.0.0.1', port: 9501 });
    const r = track(resolveOn(consul, 'logical-name', { service: 'real-name' }));
    await waitForAddr(r, boundTo(9501), 'bound through options.service');
    expect(r.snapshot()).toMatchObject({ service: 'logical-name', consulService: 'real-name' });
  });

  it('rejects bad options with a ConfigError naming the option', () => {
    expect(() => consulDiscovery({ address: 'ftp://x' })).toThrow(ConfigError);
    expect(() => consulDiscovery({ waitMs: -1 })).toThrow(/consulDiscovery\.waitMs/);
    expect(() => consulDiscovery({ waitMs: 10_000, timeoutMs: 5_000 })).toThrow(/consulDiscovery\.timeoutMs/);
    expect(() => consulDiscovery({ consistency: 'eventual' as never })).toThrow(
      /consulDiscovery\.consistency/,
    );
    expect(() => consulDiscovery({ tags: [''] })).toThrow(/consulDiscovery\.tags/);
    expect(() => consulDiscovery({ token: 'abc\ndef' })).toThrow(/consulDiscovery\.token/);
    try {
      consulDiscovery({ token: 'secret\nvalue' });
    } catch (e) {
      expect(String((e as Error).message)).not.toContain('secret');
    }
  });

  it('close() during a blocking query leaves no sockets or timers behind', async () => {
    await registerInstance(consul, { name: 'closing', id: 'c-1', address: '127.0.0.1', port: 9601 });
    // Sockets: process.getActiveResourcesInfo() lists what keeps the loop alive (ref'ed handles).
    const count = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const k of process.getActiveResourcesInfo()) out[k] = (out[k] ?? 0) + 1;
      return out;
    };
    // Timers: the mesh's timers are unref'ed (invisible to getActiveResourcesInfo), so count them at the clock.
    const pending = new Set<unknown>();
    const clock: Clock = {
      now: () => systemClock.now(),
      wallNow: () => systemClock.wallNow(),
      setTimeout(fn, ms) {
        const h: TimerHandle = systemClock.setTimeout(() => {
          pending.delete(h);
          fn();
        }, ms);
        pending.add(h);
        return h;
      },
      clearTimeout(h) {
        if (h !== undefined) pending.delete(h);
        systemClock.clearTimeout(h);
      },
    };
    // Wait for the harness's own request sockets to finish closing, then take the baseline.
    await waitFor(() => !count().SimpleShutdownWrap, 'harness sockets closed', 2_000);
    const baseline = count();
    const r = consulDiscovery({ address: consul.httpAddr, waitMs: 60_000 }).resolve({
      service: 'closing',
      clock,
      rng: systemRng,
      logger: silentLogger,
    });
    await waitForAddr(r, boundTo(9601), 'bound');
    // Let the loop enter its blocking query, then close while it hangs.
    await waitFor(() => r.snapshot().stats.queries >= 2, 'second (blocking) query sent');
    expect(count().TCPSocketWrap ?? 0).toBeGreaterThan(baseline.TCPSocketWrap ?? 0);
    expect(pending.size).toBeGreaterThan(0); // the client timeout of the blocking query
    const t0 = performance.now();
    await r.close();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(pending.size).toBe(0);
    await waitFor(
      () => (count().TCPSocketWrap ?? 0) <= (baseline.TCPSocketWrap ?? 0),
      `sockets back to baseline (${JSON.stringify(baseline)}, now ${JSON.stringify(count())})`,
      2_000,
    );
    await r.close(); // idempotent
    expect(r.addr.state).toBe('bound'); // the last state stays readable
  });
});
