/**
 * What a `DnsResolver` reports about itself: its counters, the SRV targets that gave no endpoint, and
 * the JSON-safe snapshot, kept apart from the loop that fills them (resolver.ts).
 */
import type { Addr } from '../types.js';
import type { ResolvedDnsOptions } from './options.js';

/**
 * Counters of one resolver's loop.
 *
 * @example
 * ```ts
 * resolver.snapshot().stats.lookups;
 * ```
 */
export interface DnsResolverStats {
  /** Refreshes started (each one query, or one per record type, plus the SRV targets). */
  lookups: number;
  /** DNS queries sent (SRV targets and each type of A+AAAA count apiece). */
  queries: number;
  /** Failed refreshes. */
  errors: number;
  /** Changes of `addr` published to subscribers. */
  updates: number;
  /** NXDOMAIN answers for the name. */
  nxdomain: number;
  /** NODATA answers for the name (the name exists without records of the type asked). */
  nodata: number;
  /** SRV target lookups that failed (the target kept its previous addresses). */
  targetErrors: number;
}

/**
 * An SRV target that gave no endpoint in the last refresh.
 *
 * @example
 * ```ts
 * resolver.skipped; // [{ target: 'pod-9.users.test', port: 8080, reason: 'NXDOMAIN' }]
 * ```
 */
export interface SkippedTarget {
  readonly target: string;
  readonly port: number;
  readonly reason: string;
}

/**
 * A JSON-safe view of a `DnsResolver`.
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(resolver)); // same as resolver.snapshot()
 * ```
 */
export interface DnsResolverSnapshot {
  readonly kind: 'dns';
  readonly service: string;
  readonly name: string;
  readonly type: ResolvedDnsOptions['type'];
  /** The servers asked (empty: the system's). */
  readonly servers: readonly string[];
  readonly state: Addr['state'];
  readonly endpoints: number;
  readonly stale: boolean;
  /** Mesh-clock ms of the answer the current set came from (bound only). */
  readonly updatedAt: number | undefined;
  /** How long ago DNS last confirmed the set (ms, bound only); grows while the server fails. */
  readonly ageMs: number | undefined;
  /** The delay before the next refresh that the last answer's TTL gave (ms), within minTtlMs..maxTtlMs. */
  readonly refreshMs: number | undefined;
  readonly consecutiveErrors: number;
  readonly lastError: string | undefined;
  readonly skipped: readonly SkippedTarget[];
  readonly stats: Readonly<DnsResolverStats>;
}
