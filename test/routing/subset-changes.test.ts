// A subset view restates the shared source's diff relative to its own previous set: another subset's change is
// no news, an endpoint whose meta moves it out of the subset is a removal, into it an addition. So a subset
// destination applies updates in O(change) like any other (Addr's contract: changes are relative to the same
// resolver's previous bound Addr).
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { seededRng } from '../../src/core/rng.js';
import type { Addr } from '../../src/discovery/types.js';
import { staticDiscovery } from '../../src/discovery/static.js';
import { SubsetResolver } from '../../src/concrete/subset.js';
import { FakeClock } from '../../src/testing/index.js';

const v = (version: string, port: number) => ({ host: '127.0.0.1', port, meta: { version } });
const v2 = { tags: [], meta: { version: 'v2' }, key: 'version=v2' };

function setup() {
  const source = staticDiscovery([v('v1', 1), v('v1', 2), v('v2', 3)]);
  const resolver = source.resolve({
    service: 'users',
    clock: new FakeClock(),
    rng: seededRng(1),
    logger: silentLogger,
  });
  const view = new SubsetResolver(resolver, v2, () => resolver.close());
  const seen: Addr[] = [];
  view.subscribe((a) => seen.push(a));
  return { source, view, seen };
}

function ids(a: Addr): string[] {
  return a.state === 'bound' ? a.endpoints.map((e) => e.id) : [];
}

describe('subset views and changes', () => {
  it('starts with the subset and no changes (a full set)', () => {
    const { view } = setup();
    expect(ids(view.addr)).toEqual(['127.0.0.1:3']);
    expect(view.addr.state === 'bound' && view.addr.changes).toBe(undefined);
  });

  it("publishes nothing for another subset's change", () => {
    const { source, seen } = setup();
    source.set([v('v1', 1), v('v2', 3)]); // a v1 endpoint went away
    expect(seen).toEqual([]);
  });

  it('restates additions, removals and moves between subsets relative to its own set', () => {
    const { source, view, seen } = setup();
    source.set([v('v1', 1), v('v1', 2), v('v2', 3), v('v2', 4)]); // v2 gains :4
    expect(seen.at(-1)).toMatchObject({
      changes: { added: [{ id: '127.0.0.1:4' }], removed: [], updated: [] },
    });
    source.set([v('v1', 1), v('v2', 2), v('v2', 3), v('v2', 4)]); // :2 moves v1 -> v2: an addition here
    expect(seen.at(-1)).toMatchObject({
      changes: { added: [{ id: '127.0.0.1:2' }], removed: [], updated: [] },
    });
    source.set([v('v1', 1), v('v2', 2), v('v1', 3), v('v2', 4)]); // :3 moves v2 -> v1: a removal here
    expect(seen.at(-1)).toMatchObject({ changes: { added: [], removed: ['127.0.0.1:3'], updated: [] } });
    source.set([v('v1', 1), v('v2', 2), v('v1', 3)]); // :4 removed at the source
    expect(seen.at(-1)).toMatchObject({ changes: { added: [], removed: ['127.0.0.1:4'], updated: [] } });
    source.set([v('v1', 1), { ...v('v2', 2), weight: 5 }, v('v1', 3)]); // :2 re-weighted, still v2
    const last = seen.at(-1)!;
    expect(last).toMatchObject({
      changes: { added: [], removed: [], updated: [{ id: '127.0.0.1:2', weight: 5 }] },
    });
    expect(ids(view.addr)).toEqual(['127.0.0.1:2']);
    // Every published diff, applied in turn to the first set, gives exactly the set published with it.
    let mirror = new Set(['127.0.0.1:3']);
    for (const a of seen) {
      if (a.state !== 'bound' || !a.changes) throw new Error('expected a bound Addr with changes');
      mirror = new Set([...mirror].filter((id) => !a.changes!.removed.includes(id)));
      for (const e of a.changes.added) mirror.add(e.id);
      expect([...mirror].sort()).toEqual(ids(a).sort());
    }
  });
});
