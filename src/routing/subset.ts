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
  Resolver,
  Subscription,
} from '../discovery/types.js';
import { inSubset, type ResolvedSubset } from './config.js';

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

/** Filters a bound state to `subset`; other states pass through. */
function filterAddr(addr: Addr, subset: ResolvedSubset | undefined): Addr {
  if (subset === undefined || addr.state !== 'bound') return addr;
  return { ...addr, endpoints: addr.endpoints.filter((e) => inSubset(e, subset)) };
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
  private readonly listeners = new Set<(addr: Addr) => void>();
  private readonly upstream: Subscription;
  private closed = false;

  constructor(
    source: Resolver,
    private readonly subset: ResolvedSubset | undefined,
    private readonly onClose: () => Promise<void>,
  ) {
    this.current = filterAddr(source.addr, subset);
    this.upstream = source.subscribe((addr) => this.update(addr));
  }

  get addr(): Addr {
    return this.current;
  }

  private update(addr: Addr): void {
    const next = filterAddr(addr, this.subset);
    const prev = this.current;
    // Another subset's change: nothing to tell (a stale flag or a state change is still news).
    if (
      this.subset !== undefined &&
      next.state === 'bound' &&
      prev.state === 'bound' &&
      next.stale === prev.stale &&
      sameEndpoints(next.endpoints, prev.endpoints)
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
