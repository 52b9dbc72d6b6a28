// ConsulResolver publishes `Addr.changes` (the diff from its previous bound Addr) against a real dev agent:
// none on the first answer, exactly what was added, removed and updated afterwards (so that applying the
// changes to the previous set gives the new one, with unchanged Endpoint objects kept), and empty changes when
// the set only turns stale because the agent went away.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConsulResolver } from '../../src/discovery/consul.js';
import type { Addr, Endpoint } from '../../src/discovery/types.js';
import {
  deregisterInstance,
  registerInstance,
  setCheck,
  startConsul,
  type ConsulAgent,
} from '../support/consul.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

let consul: ConsulAgent;
const open: ConsulResolver[] = [];

beforeAll(async () => {
  consul = await startConsul();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await consul?.stop();
});

/** Applies `changes` to `previous` by id, as a consumer that mirrors the set does. */
function applyTo(previous: readonly Endpoint[], addr: Addr & { state: 'bound' }): Map<string, Endpoint> {
  const out = new Map(previous.map((e) => [e.id, e]));
  for (const id of addr.changes!.removed) {
    expect(out.has(id)).toBe(true);
    out.delete(id);
  }
  for (const e of addr.changes!.updated) {
    expect(out.has(e.id)).toBe(true);
    out.set(e.id, e);
  }
  for (const e of addr.changes!.added) {
    expect(out.has(e.id)).toBe(false);
    out.set(e.id, e);
  }
  return out;
}

describe('ConsulResolver: Addr.changes', () => {
  it('first answer: none; then exactly the added, removed and updated instances; stale: empty', async () => {
    const svc = 'changes';
    for (const port of [9101, 9102, 9103]) {
      await registerInstance(consul, { name: svc, id: `${svc}-${port}`, address: '127.0.0.1', port });
    }
    const r = resolveOn(consul, svc);
    open.push(r);
    const published: Addr[] = [];
    r.subscribe((a) => published.push(a));
    const first = await waitForAddr(r, boundTo(9101, 9102, 9103), 'three');
    if (first.state !== 'bound') throw new Error('unreachable');
    expect(first.changes).toBeUndefined();

    await setCheck(consul, `${svc}-9102`, 'critical');
    await waitForAddr(r, boundTo(9101, 9103), 'one critical');
    await registerInstance(consul, { name: svc, id: `${svc}-9104`, address: '127.0.0.1', port: 9104 });
    await waitForAddr(r, boundTo(9101, 9103, 9104), 'one added');
    // Same address, new meta: an update of the same id.
    await registerInstance(consul, {
      name: svc,
      id: `${svc}-9103`,
      address: '127.0.0.1',
      port: 9103,
      meta: { version: 'v2' },
    });
    await waitForAddr(
      r,
      (a) => a.state === 'bound' && a.endpoints.some((e) => e.port === 9103 && e.meta.version === 'v2'),
      'one updated',
    );
    await deregisterInstance(consul, `${svc}-9101`);
    await waitForAddr(r, boundTo(9103, 9104), 'one deregistered');

    // Every bound Addr after the first carries changes that turn the previous set into this one, and
    // endpoints not named in them are the very same objects.
    const bound = published.filter((a): a is Addr & { state: 'bound' } => a.state === 'bound');
    expect(bound[0]).toBe(first);
    const kinds: string[] = [];
    for (let i = 1; i < bound.length; i++) {
      const prev = bound[i - 1]!;
      const next = bound[i]!;
      expect(next.changes).toBeDefined();
      const mirrored = applyTo(prev.endpoints, next);
      expect(new Set(mirrored.values())).toEqual(new Set(next.endpoints));
      for (const e of next.endpoints) expect(mirrored.get(e.id)).toBe(e);
      const c = next.changes!;
      kinds.push(`+${c.added.length} -${c.removed.length} ~${c.updated.length}`);
    }
    expect(kinds).toEqual(['+0 -1 ~0', '+1 -0 ~0', '+0 -0 ~1', '+0 -1 ~0']);

    // The agent goes away: the same set turns stale, with empty changes (not the previous Addr's).
    await consul.kill();
    const stale = await waitForAddr(r, (a) => a.state === 'bound' && a.stale, 'stale');
    if (stale.state !== 'bound') throw new Error('unreachable');
    expect(stale.changes).toEqual({ added: [], removed: [], updated: [] });
  });
});
