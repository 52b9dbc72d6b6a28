/**
 * Consul discovery: the public entry point. `consulDiscovery(options)` is a {@link Discovery} the mesh
 * resolves once per destination; each resolver watches `/v1/health/service/:name` with blocking queries (see
 * `consul/resolver.ts` for the loop and the reasons behind it, and docs/consul.md for options and failure
 * behaviour).
 */
import type { Discovery, DiscoveryContext } from './types.js';
import { ConsulResolver } from './consul/resolver.js';
import {
  resolveConsulOptions,
  type ConsulDiscoveryOptions,
  type ResolvedConsulOptions,
} from './consul/options.js';

export type { ConsulDiscoveryOptions, ConsulConsistency } from './consul/options.js';
export { ConsulResolver } from './consul/resolver.js';
export type { ConsulResolverSnapshot, ConsulResolverStats } from './consul/resolver.js';
export type { SkippedInstance } from './consul/entries.js';
export { ConsulRequestError, ConsulResponseTooLargeError } from './consul/client.js';
export { DEFAULT_MAX_RESPONSE_BYTES } from './consul/options.js';
export type { ConsulErrorKind } from './consul/client.js';

/**
 * A discovery source backed by a Consul agent. The token lives in a private field: it is not enumerable,
 * not in `JSON.stringify`, and not in any message.
 *
 * @example
 * ```ts
 * const consul = new ConsulDiscovery({ address: '127.0.0.1:8500', token: process.env.CONSUL_TOKEN });
 * createMesh({ services: { users: { discovery: consul } } });
 * ```
 */
export class ConsulDiscovery implements Discovery {
  readonly kind = 'consul';
  /** The validated options with defaults applied (without the token). */
  readonly options: ResolvedConsulOptions;
  readonly #token: string | undefined;
  readonly #input: ConsulDiscoveryOptions;

  constructor(options: ConsulDiscoveryOptions = {}) {
    const { options: resolved, token } = resolveConsulOptions(options);
    this.options = resolved;
    this.#token = token;
    this.#input = { ...options };
  }

  /**
   * The same source (agent, token, options) reading another datacenter through the same agent. Routing uses
   * it for a destination's `datacenter` and an override's `@dc`.
   *
   * @example
   * ```ts
   * const dc2 = consulDiscovery({ address: '127.0.0.1:8500' }).inDatacenter('dc2');
   * ```
   */
  inDatacenter(datacenter: string): ConsulDiscovery {
    return new ConsulDiscovery({ ...this.#input, datacenter });
  }

  /** Starts watching the service `ctx.service` (or `options.service`). */
  resolve(ctx: DiscoveryContext): ConsulResolver {
    return new ConsulResolver(ctx, this.options, this.#token);
  }

  toJSON(): Record<string, unknown> {
    const { address, ...rest } = this.options;
    return { kind: this.kind, address: address.url, token: this.#token !== undefined, ...rest };
  }
}

/**
 * Creates a {@link ConsulDiscovery}: endpoints from Consul's health API, passing instances only by default.
 *
 * @example
 * ```ts
 * import { createMesh, consulDiscovery } from 'meshfetch';
 * const mesh = createMesh({
 *   services: { users: { discovery: consulDiscovery({ address: '127.0.0.1:8500', tags: ['v2'] }) } },
 * });
 * ```
 */
export function consulDiscovery(options: ConsulDiscoveryOptions = {}): ConsulDiscovery {
  return new ConsulDiscovery(options);
}
