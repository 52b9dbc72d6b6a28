/**
 * Subsets without extra watches. Several concrete destinations of one service often read the same source
 * (Consul service `users` in dc1) and differ only in which of its endpoints they take (`version=v1`,
 * `version=v2`, `owner=alice`). One watch per subset would multiply the blocking queries on Consul for
 * nothing, so a service keeps one resolver per discovery source, shared and reference-counted, and each
 * destination reads it through a filtering view. The view publishes only when its own subset changed.
 */
import type {
  Addr,
  Discovery,
  DiscoveryContext,
  Endpoint,
  EndpointChanges,
  Resolver,
  Subscription,
} from '../discovery/types.js';
import { array, object, optional, record, string, type Spec } from '../core/validate.js';

/**
 * A subset of a discovery source's endpoints: those carrying every tag and every meta pair (Consul service tags
 * and meta, or the `tags`/`meta` of static endpoints).
 *
 * @example
 * ```ts
 * const v2: SubsetSelector = { meta: { version: 'v2' } };
 * ```
 */
export interface SubsetSelector {
  tags?: readonly string[];
  meta?: Readonly<Record<string, string>>;
}

/** A validated subset. `key` is its canonical text, e.g. `tag:canary,version=v2`. */
export interface ResolvedSubset {
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly key: string;
}

/** A subset selector, declared once: tags (each once, sorted) and meta pairs (sorted by key). */
export const subsetSelector: Spec<ResolvedSubset> = (() => {
  const shape = object(
    {
      tags: optional(array(string({ nonEmpty: true }), { expected: 'an array of tags' })),
      meta: optional(record(string(), { expected: 'an object of string values' })),
    },
    { required: true, expected: 'an object { tags?, meta? }' },
  );
  return {
    resolve(input, path) {
      const v = shape.resolve(input, path);
      const tags = [...new Set(v.tags ?? [])].sort();
      const meta: Record<string, string> = {};
      for (const k of Object.keys(v.meta ?? {}).sort()) meta[k] = v.meta![k]!;
      return subsetOf(tags, meta);
    },
  };
})();

/**
 * Validates a subset selector.
 *
 * @example
 * ```ts
 * resolveSubset({ tags: ['canary'], meta: { version: 'v2' } }, 'subset').key; // 'tag:canary,version=v2'
 * ```
 */
export function resolveSubset(v: unknown, path: string): ResolvedSubset | undefined {
  return v === undefined ? undefined : subsetSelector.resolve(v, path);
}

/** @internal Builds a {@link ResolvedSubset} from already-valid parts (sorted tags and meta keys). */
export function subsetOf(tags: readonly string[], meta: Readonly<Record<string, string>>): ResolvedSubset {
  const key = [...tags.map((t) => `tag:${t}`), ...Object.keys(meta).map((k) => `${k}=${meta[k]}`)].join(',');
  return Object.freeze({ tags: Object.freeze([...tags]), meta: Object.freeze({ ...meta }), key });
}

/**
 * True when `endpoint` carries every tag and meta pair of `subset`.
 *
 * @example
 * ```ts
 * inSubset(endpoint, { tags: [], meta: { version: 'v2' }, key: 'version=v2' });
 * ```
 */
export function inSubset(endpoint: Endpoint, subset: ResolvedSubset): boolean {
  for (const t of subset.tags) if (!endpoint.tags.includes(t)) return false;
  for (const k in subset.meta) if (endpoint.meta[k] !== subset.meta[k]) return false;
  return true;
}

interface SharedEntry {
  readonly resolver: Resolver;
  refs: number;
}

/**
 * The resolvers of one logical service, one per discovery source, shared by every destination that reads it.
 *
 * @example
 * ```ts
 * const shared = new SharedResolvers(ctx);
 * const v1 = shared.acquire(consul, { tags: [], meta: { version: 'v1' }, key: 'version=v1' });
 * const v2 = shared.acquire(consul, { tags: [], meta: { version: 'v2' }, key: 'version=v2' }); // same watch
 * await Promise.all([v1.close(), v2.close()]); // the watch stops with the last one
 * ```
 */
export class SharedResolvers {
  private readonly entries = new Map<Discovery, SharedEntry>();
  constructor(private readonly ctx: DiscoveryContext) {}

  /** A view of `discovery`'s endpoints in `subset` (all of them when undefined). Close it to release it. */
  acquire(discovery: Discovery, subset: ResolvedSubset | undefined): Resolver {
    let e = this.entries.get(discovery);
    if (!e) {
      e = { resolver: discovery.resolve(this.ctx), refs: 0 };
      this.entries.set(discovery, e);
    }
    e.refs++;
    const entry = e;
    return new SubsetResolver(entry.resolver, subset, () => this.release(discovery, entry));
  }

  /** Sources being watched now. */
  get size(): number {
    return this.entries.size;
  }

  private release(discovery: Discovery, entry: SharedEntry): Promise<void> {
    if (--entry.refs > 0) return Promise.resolve();
    if (this.entries.get(discovery) === entry) this.entries.delete(discovery);
    return entry.resolver.close();
  }
}

/**
 * The source's diff restricted to a subset, relative to the view's previous bound set (`before`, its ids):
 * an updated endpoint that left the subset is a removal, one that entered it an addition. O(change).
 */
function subsetChanges(
  changes: EndpointChanges,
  subset: ResolvedSubset,
  before: ReadonlySet<string>,
): EndpointChanges {
  const added: Endpoint[] = [];
  const removed: string[] = [];
  const updated: Endpoint[] = [];
  for (const e of changes.added) if (inSubset(e, subset)) added.push(e);
  for (const id of changes.removed) if (before.has(id)) removed.push(id);
  for (const e of changes.updated) {
    const was = before.has(e.id);
    const is = inSubset(e, subset);
    if (was && is) updated.push(e);
    else if (was) removed.push(e.id);
    else if (is) added.push(e);
  }
  return { added, removed, updated };
}

function isEmpty(c: EndpointChanges): boolean {
  return c.added.length === 0 && c.removed.length === 0 && c.updated.length === 0;
}

function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A read-only view of a shared resolver, filtered to a subset. Closing it releases the shared resolver.
 *
 * @example
 * ```ts
 * const view = new SubsetResolver(resolver, subset, () => resolver.close());
 * view.addr; // only the endpoints in the subset
 * ```
 */
export class SubsetResolver implements Resolver {
  private current: Addr;
  /** Ids in the current bound view (subset views only), to restrict the source's diffs to the subset. */
  private ids: Set<string> | undefined;
  private readonly listeners = new Set<(addr: Addr) => void>();
  private readonly upstream: Subscription;
  private closed = false;

  constructor(
    source: Resolver,
    private readonly subset: ResolvedSubset | undefined,
    private readonly onClose: () => Promise<void>,
  ) {
    this.current = this.view(source.addr, undefined);
    this.upstream = source.subscribe((addr) => this.update(addr));
  }

  get addr(): Addr {
    return this.current;
  }

  /**
   * The source's state as this view publishes it. A bound state keeps only the subset's endpoints, and its
   * `changes` are restated relative to this view's previous bound set (the Addr contract: a resolver's
   * changes are relative to its own previous bound Addr), so the destination applies them in O(change)
   * rather than seeing another subset's endpoints named and rebuilding.
   */
  private view(addr: Addr, prev: Addr | undefined): Addr {
    const subset = this.subset;
    if (subset === undefined) return addr;
    if (addr.state !== 'bound') {
      this.ids = undefined;
      return addr;
    }
    const endpoints = addr.endpoints.filter((e) => inSubset(e, subset));
    const before = this.ids;
    this.ids = new Set(endpoints.map((e) => e.id));
    const { changes: sourceChanges, ...rest } = addr;
    if (sourceChanges === undefined || before === undefined || prev?.state !== 'bound')
      return { ...rest, endpoints };
    return { ...rest, endpoints, changes: subsetChanges(sourceChanges, subset, before) };
  }

  private update(addr: Addr): void {
    const prev = this.current;
    const next = this.view(addr, prev);
    // Another subset's change: nothing to tell (a stale flag or a state change is still news).
    if (
      this.subset !== undefined &&
      next.state === 'bound' &&
      prev.state === 'bound' &&
      next.stale === prev.stale &&
      (next.changes !== undefined ? isEmpty(next.changes) : sameEndpoints(next.endpoints, prev.endpoints))
    ) {
      this.current = next; // fresher updatedAt, same endpoints: no news for the destination
      return;
    }
    this.current = next;
    for (const l of [...this.listeners]) l(next);
  }

  subscribe(listener: (addr: Addr) => void): Subscription {
    this.listeners.add(listener);
    return { unsubscribe: () => void this.listeners.delete(listener) };
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.upstream.unsubscribe();
    this.listeners.clear();
    return this.onClose();
  }
}
