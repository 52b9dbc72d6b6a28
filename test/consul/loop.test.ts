// The pure pieces of the Consul watch loop, deterministic with a fake clock and a seeded rng: the token
// bucket (a single change after a quiet period goes at once; a storm is spaced), the jittered backoff, the
// index rules, and parsing/reconciling health answers (skips, weights, identity).
import { describe, expect, it } from 'vitest';
import { seededRng } from '../../src/core/rng.js';
import { parseHealthEntries, reconcileEndpoints } from '../../src/discovery/consul/entries.js';
import { backoffDelay, nextIndex, parseIndex, TokenBucket } from '../../src/discovery/consul/loop.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const entry = (id: string, address: string, port: unknown, extra: Record<string, unknown> = {}): unknown => ({
  Node: { Node: 'n1', Address: '10.0.0.1' },
  Service: { ID: id, Service: 'svc', Address: address, Port: port, Tags: ['t'], Meta: { k: 'v' }, ...extra },
  Checks: [{ Status: 'passing' }],
});

describe('TokenBucket', () => {
  it('lets a burst through, then one per interval, and is full again after a quiet period', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(clock, 250, 3);
    expect([b.take(), b.take(), b.take()]).toEqual([0, 0, 0]);
    expect(b.take()).toBe(250);
    clock.advance(100);
    expect(b.take()).toBe(150);
    clock.advance(150);
    expect(b.take()).toBe(0);
    clock.advance(10_000); // quiet period: full again, capped at the burst
    expect([b.take(), b.take(), b.take(), b.take() > 0]).toEqual([0, 0, 0, true]);
  });
  it('is off with an interval of 0', () => {
    const b = new TokenBucket(new FakeClock(), 0, 1);
    for (let i = 0; i < 100; i++) expect(b.take()).toBe(0);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially with equal jitter up to the cap', () => {
    const rng = seededRng(1);
    for (let attempt = 0; attempt < 40; attempt++) {
      const step = Math.min(10_000, 250 * 2 ** attempt);
      const d = backoffDelay(attempt, 250, 10_000, rng);
      expect(d).toBeGreaterThanOrEqual(step / 2);
      expect(d).toBeLessThanOrEqual(step);
    }
  });
  it('spreads clients out', () => {
    const rng = seededRng(7);
    const ds = Array.from({ length: 100 }, () => backoffDelay(5, 250, 10_000, rng));
    expect(new Set(ds.map((d) => Math.round(d / 100))).size).toBeGreaterThan(10);
  });
});

describe('Consul index rules', () => {
  it('resets when the index goes backwards, and never blocks on an index below 1', () => {
    expect(nextIndex(0n, 10n)).toEqual({ index: 10n, reset: 'none' });
    expect(nextIndex(10n, 10n)).toEqual({ index: 10n, reset: 'none' });
    expect(nextIndex(10n, 11n)).toEqual({ index: 11n, reset: 'none' });
    expect(nextIndex(40n, 12n)).toEqual({ index: 0n, reset: 'backwards' });
    expect(nextIndex(40n, 0n)).toEqual({ index: 1n, reset: 'below-one' });
    expect(nextIndex(40n, undefined)).toEqual({ index: 1n, reset: 'below-one' });
  });
  it('parses X-Consul-Index strictly', () => {
    expect(parseIndex('42')).toBe(42n);
    expect(parseIndex(['7', '8'])).toBe(7n);
    expect(parseIndex('18446744073709551615')).toBe(18446744073709551615n);
    for (const bad of [undefined, '', '-1', '1e3', ' 4', 'abc', 42]) expect(parseIndex(bad)).toBeUndefined();
  });
});

describe('parseHealthEntries', () => {
  it('prefers Service.Address, falls back to Node.Address, keeps tags, meta and weights', () => {
    const { endpoints, skipped } = parseHealthEntries(
      [
        entry('a', '127.0.0.1', 80, { Weights: { Passing: 4, Warning: 1 } }),
        entry('b', '', 81),
        entry('c', '::1', 82),
      ],
      { passingOnly: true },
    );
    expect(skipped).toEqual([]);
    expect(endpoints).toEqual([
      { id: '127.0.0.1:80', host: '127.0.0.1', port: 80, weight: 4, tags: ['t'], meta: { k: 'v' } },
      { id: '10.0.0.1:81', host: '10.0.0.1', port: 81, weight: 1, tags: ['t'], meta: { k: 'v' } },
      { id: '[::1]:82', host: '::1', port: 82, weight: 1, tags: ['t'], meta: { k: 'v' } },
    ]);
    expect(Object.isFrozen(endpoints[0])).toBe(true);
  });
  it('skips and reports unusable instances, never throws', () => {
    const { endpoints, skipped } = parseHealthEntries(
      [
        entry('ok', '127.0.0.1', 80),
        entry('bad-host', 'no such host!', 80),
        entry('port-0', '127.0.0.1', 0),
        entry('port-str', '127.0.0.1', '80'),
        entry('port-big', '127.0.0.1', 70_000),
        entry('dup', '127.0.0.1', 80),
        { Node: {}, Service: { ID: 'no-addr', Port: 80 } },
        null,
        42,
        { Service: 'nope' },
      ],
      { passingOnly: true },
    );
    expect(endpoints.map((e) => e.id)).toEqual(['127.0.0.1:80']);
    expect(skipped.map((s) => [s.serviceId, s.reason.split(' ')[0]])).toEqual([
      ['bad-host', 'invalid'],
      ['port-0', 'invalid'],
      ['port-str', 'invalid'],
      ['port-big', 'invalid'],
      ['dup', 'duplicate'],
      ['no-addr', 'no'],
      ['', 'malformed'],
      ['', 'malformed'],
      ['', 'malformed'],
    ]);
  });
  it('without passingOnly: warning instances get Weights.Warning, critical ones and warning weight 0 are left out', () => {
    const w = { Weights: { Passing: 10, Warning: 2 } };
    const mk = (id: string, port: number, statuses: string[], extra = w): unknown => ({
      ...(entry(id, '127.0.0.1', port, extra) as object),
      Checks: statuses.map((Status) => ({ Status })),
    });
    const { endpoints, excluded } = parseHealthEntries(
      [
        mk('p', 1, ['passing', 'passing']),
        mk('w', 2, ['passing', 'warning']),
        mk('c', 3, ['warning', 'critical']),
        mk('m', 4, ['maintenance']),
        mk('w0', 5, ['warning'], { Weights: { Passing: 1, Warning: 0 } }),
      ],
      { passingOnly: false },
    );
    expect(endpoints.map((e) => [e.port, e.weight])).toEqual([
      [1, 10],
      [2, 2],
    ]);
    expect(excluded).toBe(3);
  });
});

describe('reconcileEndpoints', () => {
  const parse = (...entries: unknown[]) => parseHealthEntries(entries, { passingOnly: true }).endpoints;
  it('keeps the previous objects for unchanged instances and the previous array when nothing changed', () => {
    const first = reconcileEndpoints([], parse(entry('a', '127.0.0.1', 1), entry('b', '127.0.0.1', 2)));
    expect(first).toMatchObject({ changed: true, added: 2, removed: 0, updated: 0 });
    const same = reconcileEndpoints(
      first.endpoints,
      parse(entry('b', '127.0.0.1', 2), entry('a', '127.0.0.1', 1)),
    );
    expect(same.changed).toBe(false);
    expect(same.endpoints).toBe(first.endpoints);
    const next = reconcileEndpoints(
      first.endpoints,
      parse(
        entry('a', '127.0.0.1', 1),
        entry('b', '127.0.0.1', 2, { Tags: ['new'] }),
        entry('c', '127.0.0.1', 3),
      ),
    );
    expect(next).toMatchObject({ changed: true, added: 1, removed: 0, updated: 1 });
    expect(next.endpoints[0]).toBe(first.endpoints[0]);
    expect(next.endpoints[1]).not.toBe(first.endpoints[1]);
    const fewer = reconcileEndpoints(next.endpoints, parse(entry('c', '127.0.0.1', 3)));
    expect(fewer).toMatchObject({ changed: true, added: 0, removed: 2, updated: 0 });
    expect(fewer.endpoints[0]).toBe(next.endpoints[2]);
  });
  it('diffs 5,000 instances with one change, keeping 4,999 objects', () => {
    const entries = Array.from({ length: 5_000 }, (_, i) => entry(`s${i}`, '10.1.0.1', 1 + i));
    const a = reconcileEndpoints([], parse(...entries));
    entries[1234] = entry('s1234', '10.1.0.1', 1 + 1234, { Weights: { Passing: 9, Warning: 1 } });
    const b = reconcileEndpoints(a.endpoints, parse(...entries));
    expect(b).toMatchObject({ changed: true, added: 0, removed: 0, updated: 1 });
    expect(b.endpoints.filter((e, i) => e === a.endpoints[i]).length).toBe(4_999);
  });
});
