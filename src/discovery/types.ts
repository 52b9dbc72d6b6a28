/**
 * What discovery tells the rest of the mesh. An {@link Addr} has explicit states (after Finagle's `Addr`):
 * `pending` before the first answer, `bound` to a set of endpoints (possibly `stale` when the source is
 * down and the last good set keeps serving), `negative` when the source says the service does not exist,
 * and `failed` when it could not answer and has no earlier set to fall back on.
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { Rng } from '../core/rng.js';

/**
 * One resolved address.
 *
 * @example
 * ```ts
 * const e: Endpoint = { id: '127.0.0.1:8080', host: '127.0.0.1', port: 8080, weight: 1, tags: [], meta: {} };
 * ```
 */
export interface Endpoint {
  /** `host:port` (`[v6]:port` for IPv6): unique within a destination, and the key that keeps state across updates. */
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** Relative share of traffic (> 0; 1 by default; Consul's `Weights.Passing`). */
  readonly weight: number;
  /** Tags (e.g. Consul service tags), for routing subsets. */
  readonly tags: readonly string[];
  /** Metadata (e.g. Consul service meta), for routing subsets. */
  readonly meta: Readonly<Record<string, string>>;
  /**
   * Failover tier (a DNS SRV priority): the lowest tier with a ready endpoint serves, the next one takes over
   * when it has none. Absent: 0, one tier for every endpoint (static lists and Consul by default).
   */
  readonly priority?: number;
}

/**
 * What changed between two bound {@link Addr}s of one resolver, so that consumers can apply an update in time
 * proportional to the change instead of re-walking every endpoint.
 *
 * @example
 * ```ts
 * const changes: EndpointChanges = { added: [endpoint], removed: ['10.0.0.9:80'], updated: [] };
 * ```
 */
export interface EndpointChanges {
  /** Endpoints whose id was not in the previous set. */
  readonly added: readonly Endpoint[];
  /** Ids of the previous set's endpoints that are gone. */
  readonly removed: readonly string[];
  /** Endpoints whose id was in the previous set with different data (weight, tags, meta): the new objects. */
  readonly updated: readonly Endpoint[];
}

/**
 * The state of a discovered service.
 *
 * A `bound` Addr may carry `changes`: the difference from the **previous bound Addr published by the same
 * resolver** (every endpoint not listed is the very same {@link Endpoint} object as before). Consumers that
 * mirror the previous set apply just that (the mesh's destination does, in O(change)); `endpoints` always holds
 * the whole set for readers that want it. `changes` absent means "treat this as a full replacement": the first
 * answer, the first after a `negative` or `failed` state, or a resolver that does not compute a diff (a custom
 * one). A bound Addr that only flips `stale` carries empty changes. A resolver must never attach `changes`
 * relative to anything but its own previous bound Addr.
 *
 * @example
 * ```ts
 * resolver.subscribe((addr) => {
 *   if (addr.state === 'bound' && addr.changes) console.log(addr.changes.added.length, 'added');
 * });
 * ```
 */
export type Addr =
  | { readonly state: 'pending' }
  | {
      readonly state: 'bound';
      readonly endpoints: readonly Endpoint[];
      /** True when the source is failing and this is the last good set. */
      readonly stale: boolean;
      /** Mesh-clock time (ms) of the answer this set came from, so its age can be shown. */
      readonly updatedAt: number;
      /** The difference from this resolver's previous bound Addr; absent: a full replacement (see above). */
      readonly changes?: EndpointChanges;
    }
  | { readonly state: 'negative'; readonly reason: string }
  | { readonly state: 'failed'; readonly error: Error };

/** Stops a subscription. */
export interface Subscription {
  unsubscribe(): void;
}

/**
 * A live view of one service's endpoints.
 *
 * @example
 * ```ts
 * const sub = resolver.subscribe((addr) => console.log(addr.state));
 * sub.unsubscribe();
 * ```
 */
export interface Resolver {
  /** The current state. */
  readonly addr: Addr;
  /** Calls `listener` after every change of {@link Resolver.addr}. */
  subscribe(listener: (addr: Addr) => void): Subscription;
  /** Stops watching the source; releases timers and sockets. */
  close(): Promise<void>;
}

/** What a discovery source gets from the mesh. */
export interface DiscoveryContext {
  /** The logical service that asked. */
  readonly service: string;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly logger: Logger;
}

/**
 * A source of endpoints (static list, Consul, ...). `resolve` is called once per destination that uses it.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { discovery: staticDiscovery(['127.0.0.1:8080']) } } });
 * ```
 */
export interface Discovery {
  readonly kind: string;
  resolve(ctx: DiscoveryContext): Resolver;
}

/** Describes an {@link Addr} in a few words, for errors and logs. */
export function describeAddr(addr: Addr): string {
  switch (addr.state) {
    case 'pending':
      return 'has not answered yet (pending)';
    case 'bound':
      return `is bound to ${addr.endpoints.length} endpoint(s)${addr.stale ? ' (stale: the source is failing)' : ''}`;
    case 'negative':
      return `says the service does not exist (${addr.reason})`;
    case 'failed':
      return `failed: ${addr.error.message}`;
  }
}
