/**
 * Failover tiers over any distributor. DNS SRV records carry a priority besides the weight: "a client MUST
 * attempt to contact the target host with the lowest-numbered priority it can reach" (RFC 2782), and only
 * within one priority are the weights a share of traffic. Envoy's priority levels are the same idea for
 * clusters. Here each tier (endpoints of one {@link BalancerNode.priority}) gets its own distributor from the
 * service's balancer factory, so P2C, Peak EWMA, weights and panic mode work within a tier exactly as they do
 * without tiers, and a pick goes to the lowest tier whose distributor offers a ready endpoint.
 *
 * Rules of a pick (`avoid` are the endpoints this call already tried):
 * - the lowest tier whose distributor picks a ready endpoint not in `avoid` serves;
 * - else a ready endpoint already tried (a retry stays in the lowest ready tier when it has nothing new);
 * - else whatever the lowest tier picks (every endpoint is busy or down: the balancers' own last resort).
 *
 * A tier whose distributor is in panic (more than half of it not ready, see p2c.ts) may hand back a node that
 * is not ready while others are; the pick then spills to the next tier for that call, so a mostly failing tier
 * sheds part of its traffic to the backup one, as Envoy's priority spill-over does, instead of overloading
 * its few healthy endpoints.
 *
 * With one tier, the common case, every call goes straight to that tier's distributor (one comparison more).
 * Changes cost O(change) when the tier's distributor has `apply`.
 */
import { applyChanges } from './types.js';
import type { BalancerEnv, BalancerFactory, BalancerNode, Distributor } from './types.js';

interface Tier<N extends BalancerNode> {
  readonly priority: number;
  readonly distributor: Distributor<N>;
  readonly nodes: Map<string, N>;
}

interface TierChange<N extends BalancerNode> {
  readonly added: N[];
  readonly removed: N[];
  readonly updated: N[];
}

function priorityOf(node: BalancerNode): number {
  return node.priority ?? 0;
}

/**
 * A distributor per failover tier, picking from the lowest tier that can serve.
 *
 * @example
 * ```ts
 * const d = new TieredDistributor(p2cPeakEwma(), { clock, rng });
 * d.update([primaryA, primaryB, backup]); // backup.priority = 1
 * d.pick(); // primaryA or primaryB while either is ready
 * ```
 */
export class TieredDistributor<N extends BalancerNode> implements Distributor<N> {
  /** Tiers in ascending priority; never an empty tier. */
  private tiers: Tier<N>[] = [];
  private readonly byPriority = new Map<number, Tier<N>>();
  private readonly tierOf = new Map<string, Tier<N>>();

  constructor(
    private readonly factory: BalancerFactory,
    private readonly env: BalancerEnv,
  ) {}

  /** Tiers in use now, lowest first, with their endpoint count (for tests and diagnostics). */
  get tierSizes(): Array<{ priority: number; endpoints: number }> {
    return this.tiers.map((t) => ({ priority: t.priority, endpoints: t.nodes.size }));
  }

  private tier(priority: number): Tier<N> {
    let t = this.byPriority.get(priority);
    if (t === undefined) {
      t = { priority, distributor: this.factory.newDistributor<N>(this.env), nodes: new Map() };
      this.byPriority.set(priority, t);
    }
    return t;
  }

  private reorder(): void {
    const list: Tier<N>[] = [];
    for (const [p, t] of this.byPriority) {
      if (t.nodes.size > 0) list.push(t);
      else this.byPriority.delete(p);
    }
    list.sort((a, b) => a.priority - b.priority);
    this.tiers = list;
  }

  update(nodes: readonly N[]): void {
    const groups = new Map<number, N[]>();
    for (const n of nodes) {
      const p = priorityOf(n);
      let g = groups.get(p);
      if (g === undefined) groups.set(p, (g = []));
      g.push(n);
    }
    for (const [p, t] of this.byPriority) {
      if (!groups.has(p)) {
        t.distributor.update([]);
        t.nodes.clear();
      }
    }
    this.tierOf.clear();
    for (const [p, list] of groups) {
      const t = this.tier(p);
      t.nodes.clear();
      for (const n of list) {
        t.nodes.set(n.id, n);
        this.tierOf.set(n.id, t);
      }
      t.distributor.update(list);
    }
    this.reorder();
  }

  apply(added: readonly N[], removed: readonly N[], updated: readonly N[]): void {
    const touched = new Map<Tier<N>, TierChange<N>>();
    const change = (t: Tier<N>): TierChange<N> => {
      let c = touched.get(t);
      if (c === undefined) touched.set(t, (c = { added: [], removed: [], updated: [] }));
      return c;
    };
    for (const n of removed) {
      const t = this.tierOf.get(n.id);
      if (t === undefined) continue;
      t.nodes.delete(n.id);
      this.tierOf.delete(n.id);
      change(t).removed.push(n);
    }
    let tiersChanged = false;
    for (const list of [updated, added]) {
      for (const n of list) {
        const p = priorityOf(n);
        const old = this.tierOf.get(n.id);
        if (old !== undefined && old.priority === p) {
          old.nodes.set(n.id, n);
          change(old).updated.push(n);
          continue;
        }
        if (old !== undefined) {
          // Moved to another tier: out of the old one's distributor, into the new one's.
          const was = old.nodes.get(n.id)!;
          old.nodes.delete(n.id);
          change(old).removed.push(was);
        }
        const t = this.tier(p);
        if (t.nodes.size === 0) tiersChanged = true;
        t.nodes.set(n.id, n);
        this.tierOf.set(n.id, t);
        change(t).added.push(n);
      }
    }
    for (const [t, c] of touched) {
      applyChanges(t.distributor, c.added, c.removed, c.updated, () => [...t.nodes.values()]);
      if (t.nodes.size === 0) tiersChanged = true;
    }
    if (tiersChanged) this.reorder();
  }

  pick(avoid?: ReadonlySet<string>, now?: number): N | undefined {
    const tiers = this.tiers;
    if (tiers.length === 1) return tiers[0]!.distributor.pick(avoid, now);
    let readyTried: N | undefined;
    let lastResort: N | undefined;
    for (let i = 0; i < tiers.length; i++) {
      const n = tiers[i]!.distributor.pick(avoid, now);
      if (n === undefined) continue;
      if (n.status === 'ready') {
        if (avoid === undefined || !avoid.has(n.id)) return n;
        readyTried ??= n;
      } else lastResort ??= n;
    }
    return readyTried ?? lastResort;
  }
}
