/**
 * Round robin: each node in turn, skipping nodes that are not ready (panic: when none is ready, every node
 * in turn). The baseline the latency-aware balancers are measured against.
 */
import { PendingLoad } from './pending.js';
import type { BalancerFactory, BalancerNode, Distributor } from './types.js';

/**
 * A round-robin distributor.
 *
 * @example
 * ```ts
 * const d = new RoundRobinDistributor();
 * d.update(nodes);
 * d.pick();
 * ```
 */
export class RoundRobinDistributor<N extends BalancerNode> implements Distributor<N> {
  private nodes: readonly N[] = [];
  private cursor = 0;

  update(nodes: readonly N[]): void {
    this.nodes = nodes;
    if (this.cursor >= nodes.length) this.cursor = 0;
  }

  pick(avoid?: ReadonlySet<string>): N | undefined {
    const nodes = this.nodes;
    const n = nodes.length;
    if (n === 0) return undefined;
    // Bounded effort: look at most at a few nodes for a ready, untried one (O(1) per pick, like P2C's
    // maxEffort), then fall back to plain rotation.
    const effort = Math.min(n, 4);
    let fallback: N | undefined;
    for (let i = 0; i < effort; i++) {
      const node = nodes[this.cursor]!;
      this.cursor = this.cursor + 1 === n ? 0 : this.cursor + 1;
      if (node.status === 'ready') {
        if (avoid === undefined || !avoid.has(node.id)) return node;
        fallback ??= node;
      }
    }
    if (fallback) return fallback;
    const node = nodes[this.cursor]!;
    this.cursor = this.cursor + 1 === n ? 0 : this.cursor + 1;
    return node;
  }
}

/**
 * Round robin over the endpoints, load tracked as pending requests.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: ['127.0.0.1:8080'], balancer: roundRobin() } } });
 * ```
 */
export function roundRobin(): BalancerFactory {
  return {
    kind: 'round-robin',
    newLoad: () => new PendingLoad(),
    newDistributor: <N extends BalancerNode>() => new RoundRobinDistributor<N>(),
  };
}
