/**
 * Static discovery: a fixed list of addresses, changeable at run time with {@link StaticDiscovery.set}.
 * The workhorse of tests, demos and services that sit behind a fixed set of hosts.
 */
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { array, custom } from '../core/validate.js';
import type { Clock } from '../core/clock.js';
import { parseEndpoint, type EndpointInput } from './endpoint.js';
import { reconcileEndpoints } from './reconcile.js';
import type {
  Addr,
  Discovery,
  DiscoveryContext,
  Endpoint,
  EndpointChanges,
  Resolver,
  Subscription,
} from './types.js';

/**
 * A discovery source over a list the caller controls.
 *
 * @example
 * ```ts
 * const users = staticDiscovery(['127.0.0.1:8080', '127.0.0.1:8081']);
 * const mesh = createMesh({ services: { users: { discovery: users } } });
 * users.set(['127.0.0.1:8082']); // the mesh follows at once; removed endpoints drain
 * ```
 */
export class StaticDiscovery implements Discovery {
  readonly kind = 'static';
  private endpoints: readonly Endpoint[];
  private readonly resolvers = new Set<StaticResolver>();

  constructor(endpoints: readonly EndpointInput[], path = 'endpoints') {
    this.endpoints = parseList(endpoints, path);
  }

  /**
   * Replaces the endpoint list. Throws a {@link ConfigError} (and changes nothing) on a malformed entry.
   * Unchanged endpoints keep their {@link Endpoint} object, and the update carries what changed
   * (`Addr.changes`), so the mesh touches only the added, removed and updated endpoints (a list that did not
   * change is still published, with empty changes and a new `updatedAt`).
   */
  set(endpoints: readonly EndpointInput[]): void {
    const r = reconcileEndpoints(this.endpoints, parseList(endpoints, 'endpoints'));
    this.endpoints = r.endpoints;
    for (const resolver of this.resolvers) resolver.update(this.endpoints, r.changes);
  }

  /** The current list. */
  get current(): readonly Endpoint[] {
    return this.endpoints;
  }

  resolve(ctx: DiscoveryContext): Resolver {
    const r = new StaticResolver(this.endpoints, ctx.clock, () => this.resolvers.delete(r));
    this.resolvers.add(r);
    return r;
  }
}

/** A list of endpoints, each as {@link parseEndpoint} reads it, declared once. */
const endpointList = array(
  custom((v, path) => parseEndpoint(v as EndpointInput, path)),
  { expected: 'an array of endpoints' },
);

function parseList(endpoints: readonly EndpointInput[], path: string): readonly Endpoint[] {
  const list = endpointList.resolve(endpoints, path);
  const seen = new Set<string>();
  list.forEach((ep, i) => {
    if (seen.has(ep.id))
      throw new ConfigError(optionPath(path, i), endpoints[i], `a unique address (${ep.id} is listed twice)`);
    seen.add(ep.id);
  });
  return list;
}

class StaticResolver implements Resolver {
  addr: Addr;
  private readonly listeners = new Set<(addr: Addr) => void>();
  constructor(
    endpoints: readonly Endpoint[],
    private readonly clock: Clock,
    private readonly onClose: () => void,
  ) {
    this.addr = { state: 'bound', endpoints, stale: false, updatedAt: clock.now() };
  }
  /** Every resolver starts from the discovery's current list, so `changes` is relative to its own last Addr. */
  update(endpoints: readonly Endpoint[], changes: EndpointChanges): void {
    this.addr = { state: 'bound', endpoints, stale: false, updatedAt: this.clock.now(), changes };
    for (const l of [...this.listeners]) l(this.addr);
  }
  subscribe(listener: (addr: Addr) => void): Subscription {
    this.listeners.add(listener);
    return { unsubscribe: () => this.listeners.delete(listener) };
  }
  async close(): Promise<void> {
    this.listeners.clear();
    this.onClose();
  }
}

/**
 * Creates a {@link StaticDiscovery}.
 *
 * @example
 * ```ts
 * staticDiscovery(['127.0.0.1:8080', { host: '127.0.0.1', port: 8081, weight: 3 }]);
 * ```
 */
export function staticDiscovery(endpoints: readonly EndpointInput[]): StaticDiscovery {
  return new StaticDiscovery(endpoints);
}
