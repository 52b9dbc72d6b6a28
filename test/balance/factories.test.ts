// The factories: their kinds and metrics, and option validation (a bad option is a ConfigError naming
// `balancer.<option>` and holding the value; nothing is built).
import { describe, expect, test } from 'vitest';
import {
  P2C_DEFAULTS,
  PeakEwmaLoad,
  PendingLoad,
  P2CDistributor,
  ROUND_ROBIN_DEFAULTS,
  RoundRobinDistributor,
  p2cLeastLoaded,
  p2cPeakEwma,
  roundRobin,
} from '../../src/balance/index.js';
import { ConfigError } from '../../src/core/errors.js';
import { seededRng } from '../../src/core/rng.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const env = { clock: new FakeClock(5_000), rng: seededRng(1) };

describe('factories', () => {
  test('kinds, metrics and distributors', () => {
    const ewma = p2cPeakEwma();
    expect(ewma.kind).toBe('p2c-peak-ewma');
    expect(ewma.newLoad(env)).toBeInstanceOf(PeakEwmaLoad);
    expect(ewma.newDistributor(env)).toBeInstanceOf(P2CDistributor);
    const ll = p2cLeastLoaded();
    expect(ll.kind).toBe('p2c-least-loaded');
    expect(ll.newLoad(env)).toBeInstanceOf(PendingLoad);
    expect(ll.newDistributor(env)).toBeInstanceOf(P2CDistributor);
    const rr = roundRobin();
    expect(rr.kind).toBe('round-robin');
    expect(rr.newLoad(env)).toBeInstanceOf(PendingLoad);
    expect(rr.newDistributor(env)).toBeInstanceOf(RoundRobinDistributor);
  });

  test('Peak EWMA loads start probing (cost 0) and take the options given', () => {
    const load = p2cPeakEwma({ probeSamples: 1, tauMs: 1_000 }).newLoad(env) as PeakEwmaLoad;
    expect(load.cost(5_000)).toBe(0);
    load.observe(50, 5_000);
    expect(load.cost(5_000)).toBe(50);
    expect(load.cost(6_000)).toBeCloseTo(50 / Math.E, 9);
  });

  test('defaults: maxEffort 4 (Finagle), panic below 50 % ready (Envoy), recount every 100 ms', () => {
    expect(P2C_DEFAULTS).toEqual({ maxEffort: 4, panicThreshold: 0.5, statusRefreshMs: 100 });
    expect(ROUND_ROBIN_DEFAULTS).toEqual({ maxEffort: 4, panicThreshold: 0.5, statusRefreshMs: 100 });
  });
});

describe('option validation', () => {
  const cases: [string, () => unknown, string, unknown][] = [
    ['tauMs 0', () => p2cPeakEwma({ tauMs: 0 }), 'balancer.tauMs', 0],
    ['tauMs NaN', () => p2cPeakEwma({ tauMs: NaN }), 'balancer.tauMs', NaN],
    ['tauMs string', () => p2cPeakEwma({ tauMs: '10s' as never }), 'balancer.tauMs', '10s'],
    ['maxProbes 0', () => p2cPeakEwma({ maxProbes: 0 }), 'balancer.maxProbes', 0],
    ['slowStartMs negative', () => p2cPeakEwma({ slowStartMs: -5 }), 'balancer.slowStartMs', -5],
    ['removed defaultRttMs', () => p2cPeakEwma({ defaultRttMs: 30 } as never), 'balancer.defaultRttMs', 30],
    ['penalty 0', () => p2cPeakEwma({ penalty: 0 }), 'balancer.penalty', 0],
    ['maxEffort 0', () => p2cPeakEwma({ maxEffort: 0 }), 'balancer.maxEffort', 0],
    ['maxEffort 1.5', () => p2cLeastLoaded({ maxEffort: 1.5 }), 'balancer.maxEffort', 1.5],
    ['maxEffort 1000', () => roundRobin({ maxEffort: 1000 }), 'balancer.maxEffort', 1000],
    ['panicThreshold 1.2', () => p2cLeastLoaded({ panicThreshold: 1.2 }), 'balancer.panicThreshold', 1.2],
    ['panicThreshold -0.1', () => roundRobin({ panicThreshold: -0.1 }), 'balancer.panicThreshold', -0.1],
    [
      'statusRefreshMs Infinity',
      () => roundRobin({ statusRefreshMs: Infinity }),
      'balancer.statusRefreshMs',
      Infinity,
    ],
    ['unknown key', () => p2cPeakEwma({ tauMS: 5 } as never), 'balancer.tauMS', 5],
    ['Peak EWMA key on least-loaded', () => p2cLeastLoaded({ tauMs: 5 } as never), 'balancer.tauMs', 5],
    ['not an object', () => roundRobin(3 as never), 'balancer', 3],
    ['null', () => p2cPeakEwma(null as never), 'balancer', null],
    ['distributor constructor', () => new P2CDistributor(env, { maxEffort: -1 }), 'balancer.maxEffort', -1],
  ];

  test.each(cases)('%s', (_, make, path, value) => {
    let error: unknown;
    try {
      make();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const ce = error as ConfigError;
    expect(ce.path).toBe(path);
    expect(ce.value).toEqual(value);
    expect(ce.code).toBe('MESH_CONFIG');
    expect(ce.message).toContain(path);
  });

  test('good options and boundaries are accepted', () => {
    expect(() =>
      p2cPeakEwma({ tauMs: 1, maxProbes: 1, penalty: 1, maxEffort: 1, panicThreshold: 0, slowStartMs: 0 }),
    ).not.toThrow();
    expect(() => p2cLeastLoaded({ panicThreshold: 1, statusRefreshMs: 0, maxEffort: 64 })).not.toThrow();
    expect(() => roundRobin({})).not.toThrow();
    expect(() => roundRobin(undefined)).not.toThrow();
  });
});
