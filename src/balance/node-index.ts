/**
 * The id -> position map that lets a distributor apply a discovery change in O(change): find a node by id,
 * append one, or remove one by moving the last node into its slot (swap-remove). Shared by the P2C and
 * round-robin distributors, which keep their nodes in a dense array for O(1) random access. The map is built
 * lazily, by the first incremental change after a full `update()`, so a full update stays as cheap as it was.
 */

/**
 * Positions of nodes (by id) in a distributor's dense node array.
 *
 * @example
 * ```ts
 * const index = new NodeIndex();
 * index.ensure(nodes);                 // O(n) once after a full update
 * const i = index.get('10.0.0.1:80');
 * index.swapRemove(nodes, i!);         // nodes[i] now holds what was the last node
 * ```
 */
export class NodeIndex {
  private readonly map = new Map<string, number>();
  private built = true;

  /** The node array was replaced wholesale: rebuild the map on the next {@link NodeIndex.ensure}. */
  invalidate(): void {
    this.built = false;
  }

  /** Builds the map from `nodes` if it is stale: O(n) once after each invalidation. */
  ensure(nodes: ReadonlyArray<{ readonly id: string }>): void {
    if (this.built) return;
    this.map.clear();
    for (let i = 0; i < nodes.length; i++) this.map.set(nodes[i]!.id, i);
    this.built = true;
  }

  /** The position of the node with `id`, if present. */
  get(id: string): number | undefined {
    return this.map.get(id);
  }

  /** Appends `node` to `nodes` and records its position; returns it. */
  push<N extends { readonly id: string }>(nodes: N[], node: N): number {
    const i = nodes.length;
    this.map.set(node.id, i);
    nodes.push(node);
    return i;
  }

  /**
   * Removes the node at position `i` by moving the last node into its slot: O(1). The caller moves its own
   * per-position data from `nodes.length - 1` (read before the call) to `i` the same way.
   */
  swapRemove<N extends { readonly id: string }>(nodes: N[], i: number): void {
    this.map.delete(nodes[i]!.id);
    const last = nodes.length - 1;
    if (i !== last) {
      const moved = nodes[last]!;
      nodes[i] = moved;
      this.map.set(moved.id, i);
    }
    nodes.pop();
  }
}
