/**
 * The queue of newly added endpoints a distributor offers before any draw (issue 20: new endpoints are probed,
 * not starved). Finagle gives an endpoint never measured a cost of 0, so it wins every comparison it is drawn
 * into; but with P2C it is drawn into only 2/n of the picks, so at 100 endpoints its first request could take
 * dozens of picks. A node added while its metric says `probing` is queued here and offered the next pick,
 * if it is eligible then; otherwise it is dropped and competes in the draw like any other.
 */
import type { BalancerNode } from './types.js';

/**
 * Newly added nodes, in the order they were added: O(1) amortised per node, per offer.
 *
 * @example
 * ```ts
 * const q = new Newcomers<MyNode>();
 * q.reset(nodes);          // after update(): the nodes whose metric is probing
 * q.add([added]);          // after apply()
 * q.remove([removed]);
 * const node = q.take((n) => n.status === 'ready'); // the next eligible one, or undefined
 * ```
 */
export class Newcomers<N extends BalancerNode> {
  private queue: N[] = [];
  private head = 0;

  /** True when a node may be waiting (check before calling {@link Newcomers.take} on the hot path). */
  get waiting(): boolean {
    return this.head < this.queue.length;
  }

  /** Replaces the queue with the nodes of `nodes` whose metric is probing: O(n), like the update itself. */
  reset(nodes: readonly N[]): void {
    this.queue = nodes.filter((node) => node.load.probing === true);
    this.head = 0;
  }

  /** Queues the added nodes whose metric is probing. */
  add(added: readonly N[]): void {
    for (const node of added) if (node.load.probing === true) this.queue.push(node);
  }

  /** Drops removed nodes (by id) from the queue: O(queue), only while something is queued. */
  remove(removed: readonly N[]): void {
    if (removed.length === 0 || !this.waiting) return;
    const gone = new Set(removed.map((node) => node.id));
    this.queue = this.queue.slice(this.head).filter((node) => !gone.has(node.id));
    this.head = 0;
  }

  /**
   * The next queued node that is still probing and `eligible`, or undefined. Nodes passed over on the way
   * leave the queue.
   */
  take(eligible: (node: N) => boolean): N | undefined {
    const queue = this.queue;
    let found: N | undefined;
    while (this.head < queue.length) {
      const node = queue[this.head++]!;
      if (node.load.probing === true && eligible(node)) {
        found = node;
        break;
      }
    }
    if (this.head >= queue.length) {
      this.queue = [];
      this.head = 0;
    }
    return found;
  }
}
