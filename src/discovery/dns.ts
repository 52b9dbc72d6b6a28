/**
 * DNS discovery: the public entry point. `dnsDiscovery(options)` is a {@link Discovery} the mesh resolves once
 * per destination; each resolver follows one name's A, AAAA or SRV records at the pace of their TTLs and
 * balances over every record (see `dns/resolver.ts` for the loop and the reasons behind it, and docs/dns.md for
 * Kubernetes headless services, Consul's DNS interface, options and failure behaviour).
 */
import { ConfigError } from '../core/errors.js';
import type { Discovery, DiscoveryContext } from './types.js';
import { DnsResolver } from './dns/resolver.js';
import {
  dnsNameProblem,
  resolveDnsOptions,
  type DnsDiscoveryOptions,
  type ResolvedDnsOptions,
} from './dns/options.js';

export type {
  DnsDiscoveryOptions,
  DnsRecordType,
  DnsAddressType,
  ResolvedDnsOptions,
} from './dns/options.js';
export { DnsResolver } from './dns/resolver.js';
export type { DnsResolverSnapshot, DnsResolverStats, SkippedTarget } from './dns/snapshot.js';
export { DnsQueryError } from './dns/records.js';
export type { DnsErrorKind } from './dns/records.js';

/**
 * A discovery source that follows DNS records.
 *
 * @example
 * ```ts
 * const users = new DnsDiscovery({ name: 'users.default.svc.cluster.local', port: 8080 });
 * createMesh({ services: { users: { discovery: users } } });
 * ```
 */
export class DnsDiscovery implements Discovery {
  readonly kind = 'dns';
  /** The validated options with defaults applied. */
  readonly options: ResolvedDnsOptions;

  constructor(options: DnsDiscoveryOptions) {
    this.options = resolveDnsOptions(options);
  }

  /**
   * Starts following `options.name` (or, without it, the logical service's name `ctx.service`). Throws a
   * {@link ConfigError} when that service name is not a DNS name.
   */
  resolve(ctx: DiscoveryContext): DnsResolver {
    const name = this.options.name ?? ctx.service;
    if (this.options.name === undefined) {
      const problem = dnsNameProblem(name);
      if (problem !== undefined) {
        throw new ConfigError(
          'dnsDiscovery.name',
          name,
          `a DNS name (the service name is ${problem}); set name`,
        );
      }
    }
    return new DnsResolver(ctx, this.options, name);
  }

  toJSON(): Record<string, unknown> {
    return { kind: this.kind, ...this.options };
  }
}

/**
 * Creates a {@link DnsDiscovery}: endpoints from a DNS name's records, refreshed as their TTLs run out.
 *
 * @example
 * ```ts
 * import { createMesh, dnsDiscovery } from 'meshfetch';
 * const mesh = createMesh({
 *   services: {
 *     users: { discovery: dnsDiscovery({ name: 'users.default.svc.cluster.local', port: 8080 }) },
 *     billing: { discovery: dnsDiscovery({ name: '_http._tcp.billing.default.svc.cluster.local', type: 'SRV' }) },
 *   },
 * });
 * ```
 */
export function dnsDiscovery(options: DnsDiscoveryOptions): DnsDiscovery {
  return new DnsDiscovery(options);
}
