/**
 * Reconciles a freshly parsed endpoint set with the previous one: the diff that lets an update touch only what
 * changed. It keeps the previous {@link Endpoint} object for every unchanged endpoint (identity is stable
 * across updates) and lists what was added, removed and updated, which resolvers publish as `Addr.changes`.
 * Proportional to the size of both sets (the whole list is what a source like Consul sends); everything that
 * consumes `changes` afterwards is proportional to the change.
 */
import { sameEndpoint } from './endpoint.js';
import type { Endpoint, EndpointChanges } from './types.js';

/**
 * The outcome of {@link reconcileEndpoints}.
 *
 * @example
 * ```ts
 * const { added, removed, updated, changes }: Reconciled = reconcileEndpoints(previous, next);
 * ```
 */
export interface Reconciled {
  /** The new set; the previous array itself when nothing changed. */
  readonly endpoints: readonly Endpoint[];
  readonly changed: boolean;
  /** How many endpoints were added, removed, updated (the lengths of the lists in `changes`). */
  readonly added: number;
  readonly removed: number;
  readonly updated: number;
  /** What changed, for `Addr.changes` (empty lists when nothing did). */
  readonly changes: EndpointChanges;
}

/**
 * Reuses the previous {@link Endpoint} object for every endpoint that did not change ({@link sameEndpoint}),
 * so identity is stable across updates; returns the previous array when nothing changed at all (a reorder
 * alone is not a change). O(previous + next).
 *
 * @example
 * ```ts
 * const r = reconcileEndpoints(previous, parsed.endpoints);
 * if (r.changed) publish({ state: 'bound', endpoints: r.endpoints, changes: r.changes, ... });
 * ```
 */
export function reconcileEndpoints(previous: readonly Endpoint[], next: readonly Endpoint[]): Reconciled {
  const byId = new Map<string, Endpoint>();
  for (const e of previous) byId.set(e.id, e);
  const added: Endpoint[] = [];
  const updated: Endpoint[] = [];
  const out: Endpoint[] = new Array<Endpoint>(next.length);
  for (let i = 0; i < next.length; i++) {
    const n = next[i]!;
    const p = byId.get(n.id);
    if (p === undefined) {
      out[i] = n;
      added.push(n);
      continue;
    }
    // Seen: what is left in byId at the end was removed. (A duplicate id in `next` counts as added once more;
    // parsers drop duplicates before this.)
    byId.delete(n.id);
    if (sameEndpoint(p, n)) {
      out[i] = p;
    } else {
      out[i] = n;
      updated.push(n);
    }
  }
  const removed = [...byId.keys()];
  const changed = added.length > 0 || removed.length > 0 || updated.length > 0;
  return {
    endpoints: changed ? Object.freeze(out) : previous,
    changed,
    added: added.length,
    removed: removed.length,
    updated: updated.length,
    changes: changed ? Object.freeze({ added, removed, updated }) : NO_CHANGES,
  };
}

/**
 * The changes of an update in which nothing changed (e.g. a set that only turned fresh or stale).
 *
 * @example
 * ```ts
 * publish({ ...addr, stale: true, changes: NO_CHANGES });
 * ```
 */
export const NO_CHANGES: EndpointChanges = Object.freeze({
  added: Object.freeze([]),
  removed: Object.freeze([]),
  updated: Object.freeze([]),
});
