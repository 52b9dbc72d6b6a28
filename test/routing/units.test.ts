// Routing's pure parts: the sticky hash (pinned values, so every process agrees; the weighted split's ratio;
// monotonicity as a property), the random split with a seeded rng, the override grammar (valid forms, the
// canonical text, precise errors, and fuzzing: any input is either parsed or an InvalidOverrideError), and the
// validation of rules and destinations (each bad value names its option path).
import fc from 'fast-check';
import { describe, expect, it, test } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { seededRng } from '../../src/core/rng.js';
import { staticDiscovery } from '../../src/discovery/static.js';
import { consulDiscovery } from '../../src/discovery/consul.js';
import { resolveRouting } from '../../src/routing/config.js';
import { InvalidOverrideError } from '../../src/routing/errors.js';
import { stableHash, stickyIndex, weightedIndex, type SplitOption } from '../../src/routing/hash.js';
import { OVERRIDE_HEADER, parseOverrides, RouteOverrides } from '../../src/routing/override.js';
import { MESH_HEADERS } from '../../src/core/call-options.js';
import { stripMeshHeaders } from '../../src/client/headers.js';

const split = (...w: number[]): SplitOption[] => w.map((weight, i) => ({ name: `d${i}`, weight }));

describe('sticky hash', () => {
  it('is pinned: the same values in every process, platform and release', () => {
    // If these change, every user of a sticky split moves: that is a breaking change.
    expect(stableHash('')).toBe(stableHash(''));
    const got = [stableHash('user-1', 'v1'), stableHash('user-1', 'v2'), stableHash('ü', '')];
    expect(got).toEqual([2571928009, 331953604, 3393014048]);
    // And they are what the documented algorithm gives, restated independently with BigInt.
    expect(got).toEqual([
      stableHashReference('user-1', 'v1'),
      stableHashReference('user-1', 'v2'),
      stableHashReference('ü', ''),
    ]);
    expect(stableHash('ab', 'c')).not.toBe(stableHash('a', 'bc'));
  });

  it('splits 95 / 5 within 0.5 % over 100k keys, and 1 / 1 / 2 within 0.5 %', () => {
    const count = (opts: SplitOption[], n: number): number[] => {
      const c = opts.map(() => 0);
      for (let i = 0; i < n; i++) c[stickyIndex(opts, `user-${i}`)]!++;
      return c.map((x) => x / n);
    };
    // Binomial standard deviation at p = 0.05, n = 1e5 is 0.07 %: 0.5 % is more than 7 of them.
    const [a, b] = count(split(95, 5), 100_000);
    expect(Math.abs(a! - 0.95)).toBeLessThan(0.005);
    expect(Math.abs(b! - 0.05)).toBeLessThan(0.005);
    const three = count(split(1, 1, 2), 100_000);
    expect(three.map((x, i) => Math.abs(x - [0.25, 0.25, 0.5][i]!) < 0.005)).toEqual([true, true, true]);
  });

  it('ignores weight 0', () => {
    for (let i = 0; i < 1000; i++) expect(stickyIndex(split(0, 1), `k${i}`)).toBe(1);
  });

  test('monotone: raising the canary only moves keys from the old version to the new one', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 1, max: 100 }),
        (key, canary, raise) => {
          const before = stickyIndex(
            [
              { name: 'v1', weight: 100 - canary },
              { name: 'v2', weight: canary },
            ],
            key,
          );
          const c2 = Math.min(100, canary + raise);
          const after = stickyIndex(
            [
              { name: 'v1', weight: 100 - c2 },
              { name: 'v2', weight: c2 },
            ],
            key,
          );
          // Once on the canary, always on the canary.
          return before === 0 || after === 1;
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('monotone with any number of destinations: raising one weight only moves keys to it', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 2, maxLength: 6 }),
        fc.nat(),
        fc.integer({ min: 1, max: 50 }),
        (key, weights, which, raise) => {
          const j = which % weights.length;
          const before = stickyIndex(split(...weights), key);
          const raised = weights.map((w, i) => (i === j ? w + raise : w));
          const after = stickyIndex(split(...raised), key);
          return after === before || after === j;
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('moves only the expected share when the canary goes 5 % -> 10 %', () => {
    let moved = 0;
    const n = 50_000;
    for (let i = 0; i < n; i++) {
      const a = stickyIndex(split(95, 5), `u${i}`);
      const b = stickyIndex(split(90, 10), `u${i}`);
      if (a !== b) {
        expect([a, b]).toEqual([0, 1]);
        moved++;
      }
    }
    expect(Math.abs(moved / n - 0.05)).toBeLessThan(0.005);
  });
});

describe('random split', () => {
  it('follows the weights with a seeded rng within 0.5 % over 100k draws', () => {
    const rng = seededRng(7);
    const opts = split(95, 5);
    let b = 0;
    for (let i = 0; i < 100_000; i++) b += weightedIndex(opts, 100, rng);
    expect(Math.abs(b / 100_000 - 0.05)).toBeLessThan(0.005);
  });

  it('never picks a zero weight, even at the top of the range', () => {
    const top = { next: () => 0.9999999999999999 };
    expect(weightedIndex(split(1, 0), 1, top)).toBe(0);
    expect(weightedIndex(split(0, 1, 0), 1, { next: () => 0 })).toBe(1);
  });
});

describe('override header', () => {
  it('is one of the mesh headers, stripped from requests to hosts outside the mesh', () => {
    expect(MESH_HEADERS).toContain(OVERRIDE_HEADER);
    expect(stripMeshHeaders({ [OVERRIDE_HEADER]: 'users => #a', accept: '*/*' })).toEqual({ accept: '*/*' });
  });
});

describe('override grammar', () => {
  it('parses destinations, subsets, datacenters and alternatives into a canonical form', () => {
    const o = parseOverrides('  users=>owner=alice|#stable ; billing => @dc2,tag:b,tag:a ;');
    expect(o.text).toBe('users => owner=alice | #stable; billing => tag:a,tag:b,@dc2');
    expect(o.get('users')?.targets).toEqual([
      { kind: 'subset', tags: [], meta: { owner: 'alice' }, datacenter: undefined, key: 'owner=alice' },
      { kind: 'destination', name: 'stable', key: '#stable' },
    ]);
    expect(o.get('billing')?.targets[0]).toMatchObject({ datacenter: 'dc2', tags: ['a', 'b'] });
    expect(parseOverrides('').size).toBe(0);
    expect(parseOverrides(' ; ').size).toBe(0);
  });

  it('lets a later entry for a service win, and `then` is idempotent', () => {
    const a = parseOverrides('users => #a; billing => #x');
    const b = parseOverrides('users => #b');
    expect(a.then(b).text).toBe('billing => #x; users => #b');
    expect(a.then(a.then(b)).text).toBe(a.then(b).text);
    expect(parseOverrides('users => #a; users => #b').text).toBe('users => #b');
  });

  it.each([
    ['users', 'expected "service => target"', 'users', 0],
    ['users => ', 'an empty alternative', '', 8],
    ['Users => #v2', 'expected a service name', 'Users ', 0],
    ['users => owner=', 'expected a meta value', 'owner=', 9],
    ['users => #', 'expected a destination name', '#', 9],
    ['users => owner=a,owner=b', 'given twice', 'owner=b', 17],
    ['users => @dc1,@dc2', 'more than one datacenter', '@dc2', 14],
    ['users => #v2 | ', 'an empty alternative', '', 14],
    ['a => #x; b =>#y; c', 'expected "service => target"', 'c', 17],
    ['users => own er=x', 'expected a meta key', 'own er=x', 9],
  ])('rejects %j: %s', (text, reason, part, offset) => {
    let err: unknown;
    try {
      parseOverrides(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidOverrideError);
    const e = err as InvalidOverrideError;
    expect(e.message).toContain(reason);
    expect(e.part).toBe(part);
    expect(e.offset).toBe(offset);
    expect(e.statusCode).toBe(400);
    expect(e.retryable).toBe(false);
    expect(e.code).toBe('MESH_INVALID_OVERRIDE');
  });

  it('rejects what is over its limits', () => {
    expect(() => parseOverrides('x'.repeat(1025))).toThrow(/longer than 1024/);
    expect(() => parseOverrides(Array.from({ length: 17 }, (_, i) => `s${i} => #a`).join(';'))).toThrow(
      /more than 16 entries/,
    );
    expect(() => parseOverrides('a => #a | #b | #c | #d | #e')).toThrow(/more than 4 alternatives/);
  });

  test('fuzz: any string is either an override or an InvalidOverrideError, never anything else', () => {
    const alphabet = fc.constantFrom(...'ab=>|#;,@:tag _-.\u0000\n\u00fc'.split(''), '=>', 'tag:', 'users');
    const inputs = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(inputs, (text) => {
        try {
          const o = parseOverrides(text);
          // What parses has a canonical form that parses to itself.
          expect(parseOverrides(o.text).text).toBe(o.text);
        } catch (e) {
          if (!(e instanceof InvalidOverrideError)) throw e;
          expect(e.offset).toBeLessThanOrEqual(text.length);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('property: generated overrides round-trip through their text', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/);
    const target = fc.oneof(
      name.map((n) => `#${n}`),
      fc
        .record({
          k: name,
          v: name,
          dc: fc.option(name, { nil: undefined }),
          tag: fc.option(name, { nil: undefined }),
        })
        .map(({ k, v, dc, tag }) =>
          [`${k}=${v}`, ...(tag ? [`tag:${tag}`] : []), ...(dc ? [`@${dc}`] : [])].join(','),
        ),
    );
    const entry = fc
      .tuple(name, fc.array(target, { minLength: 1, maxLength: 4 }))
      .map(([s, ts]) => `${s} => ${ts.join(' | ')}`);
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), (entries) => {
        const o = parseOverrides(entries.join('; '));
        expect(o).toBeInstanceOf(RouteOverrides);
        expect(parseOverrides(o.text).text).toBe(o.text);
        for (const e of o.list()) expect(e.targets.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('routing config', () => {
  const base = staticDiscovery(['127.0.0.1:1']);
  const bad = (input: Parameters<typeof resolveRouting>[0], path: string, own = true): void => {
    const b = own ? base : undefined;
    let err: unknown;
    try {
      resolveRouting(input, b, 'services.users');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
  };

  it('defaults to everything to primary', () => {
    const r = resolveRouting({}, base, 'services.users');
    expect([...r.destinations.keys()]).toEqual(['primary']);
    expect(r.rules.map((x) => x.split)).toEqual([[{ name: 'primary', weight: 1 }]]);
  });

  it('names the exact option path of a bad value', () => {
    bad({ routes: [] }, 'services.users.routes');
    bad({ routes: [{ to: 'nope' }] }, 'services.users.routes[0].to');
    bad({ routes: [{ to: 'primary', when: 1 }] as never }, 'services.users.routes[0].when');
    bad(
      { routes: [{ to: [{ destination: 'primary', weight: -1 }] }] },
      'services.users.routes[0].to[0].weight',
    );
    bad({ routes: [{ to: [{ destination: 'primary', weight: 0 }] }] }, 'services.users.routes[0].to');
    bad(
      {
        routes: [
          {
            to: [
              { destination: 'primary', weight: 1 },
              { destination: 'primary', weight: 1 },
            ],
          },
        ],
      },
      'services.users.routes[0].to[1].destination',
    );
    bad({ routes: [{ match: { path: /x/g }, to: 'primary' }] }, 'services.users.routes[0].match.path');
    bad(
      { routes: [{ match: { pathPrefix: 'v1' }, to: 'primary' }] },
      'services.users.routes[0].match.pathPrefix',
    );
    bad(
      { routes: [{ match: { method: ['GET', 'B A D'] }, to: 'primary' }] },
      'services.users.routes[0].match.method[1]',
    );
    bad(
      { routes: [{ match: { headers: { 'x-a': 1 as never } }, to: 'primary' }] },
      'services.users.routes[0].match.headers.x-a',
    );
    bad(
      { routes: [{ to: 'primary', sticky: { header: 'a', key: () => 'x' } as never }] },
      'services.users.routes[0].sticky',
    );
    bad(
      { destinations: { v2: { subset: { meta: { v: 2 as never } } } } },
      'services.users.destinations.v2.subset.meta.v',
    );
    bad(
      { destinations: { v2: { subset: { tags: [''] } } } },
      'services.users.destinations.v2.subset.tags[0]',
    );
    bad({ destinations: { v2: { fallbacks: ['v3'] } } }, 'services.users.destinations.v2.fallbacks[0]');
    bad({ destinations: { v2: { fallbacks: ['v2'] } } }, 'services.users.destinations.v2.fallbacks[0]');
    bad({ destinations: { v2: { datacenter: 'dc2' } } }, 'services.users.destinations.v2.datacenter');
    bad({ destinations: { 'v 2': {} } }, 'services.users.destinations["v 2"]');
    bad({ destinations: { v2: { endpoints: ['nope'] } } }, 'services.users.destinations.v2.endpoints[0]');
    bad({ destinations: { v2: {} } }, 'services.users.destinations.v2.discovery', false);
    bad({ destinations: { v2: { endpoints: ['127.0.0.1:2'] } } }, 'services.users.routes', false);
  });

  it('shares one discovery per datacenter', () => {
    const consul = consulDiscovery({ address: '127.0.0.1:1' });
    const r = resolveRouting(
      {
        destinations: {
          a: { datacenter: 'dc2', subset: { meta: { v: '1' } } },
          b: { datacenter: 'dc2', subset: { meta: { v: '2' } } },
          c: { datacenter: 'dc3' },
        },
      },
      consul,
      'services.users',
    );
    const d = r.destinations;
    expect(d.get('a')!.discovery).toBe(d.get('b')!.discovery);
    expect(d.get('a')!.discovery).not.toBe(d.get('c')!.discovery);
    expect(d.get('a')!.discovery).not.toBe(consul);
  });
});

/** An independent, byte-by-byte restatement of the documented algorithm (FNV-1a 32 + fmix32). */
function stableHashReference(key: string, salt: string): number {
  const units = [...key].flatMap((ch) => {
    const out: number[] = [];
    for (let i = 0; i < ch.length; i++) out.push(ch.charCodeAt(i));
    return out;
  });
  const all = [...units, 0, ...[...salt].map((c) => c.charCodeAt(0))];
  let h = 0x811c9dc5n;
  for (const u of all) {
    h ^= BigInt(u);
    h = (h * 0x01000193n) & 0xffffffffn;
  }
  const mix = (x: bigint, m: bigint): bigint => (x * m) & 0xffffffffn;
  h ^= h >> 16n;
  h = mix(h, 0x85ebca6bn);
  h ^= h >> 13n;
  h = mix(h, 0xc2b2ae35n);
  h ^= h >> 16n;
  return Number(h);
}
