/**
 * The options of {@link consulDiscovery}, their defaults, and their validation. Kept apart from the loop so
 * the defaults live in one place (docs/consul.md mirrors this file) and a bad option fails at construction
 * with a {@link ConfigError} that names it, never later inside the watch loop.
 */
import { ConfigError } from '../../core/errors.js';
import { optionPath } from '../../core/option-path.js';
import {
  boolean,
  custom,
  isPlainObject,
  number,
  object,
  oneOf,
  optional,
  string,
} from '../../core/validate.js';
import { discoveryBackoff } from '../backoff-options.js';
import { defaultAgentAddress, parseAgentAddress, type AgentAddress } from './client.js';

/**
 * How Consul servers answer reads (Consul's `?stale` / `?consistent` query parameters): `default` reads from
 * the leader, `stale` from any server (faster, spreads load, may lag), `consistent` confirms leadership first.
 *
 * @example
 * ```ts
 * consulDiscovery({ consistency: 'stale' });
 * ```
 */
export type ConsulConsistency = 'default' | 'stale' | 'consistent';

/**
 * Options of {@link consulDiscovery}. All are optional.
 *
 * @example
 * ```ts
 * consulDiscovery({ address: '127.0.0.1:8500', tags: ['v2'], datacenter: 'eu1', consistency: 'stale' });
 * ```
 */
export interface ConsulDiscoveryOptions {
  /** Consul agent HTTP address. Default `$CONSUL_HTTP_ADDR`, else `http://127.0.0.1:8500`. */
  address?: string;
  /** ACL token (sent as `X-Consul-Token`; never logged). Default `$CONSUL_HTTP_TOKEN`, else none. */
  token?: string;
  /** The Consul service name. Default: the logical service name the mesh resolves. */
  service?: string;
  /** Datacenter to query. Default: the agent's own. */
  datacenter?: string;
  /** Only instances carrying all these tags. Default: no filter. */
  tags?: string | readonly string[];
  /** Only instances on nodes with this metadata (`?node-meta=key:value`, all must match). Default none. */
  nodeMeta?: Readonly<Record<string, string>>;
  /** Read consistency. Default `'default'`; `'stale'` spreads reads over all servers. */
  consistency?: ConsulConsistency;
  /**
   * Only instances whose checks all pass (Consul's `?passing`). Default true. With false, instances in
   * `warning` are kept with their `Weights.Warning` weight; `critical` ones are always left out.
   */
  passingOnly?: boolean;
  /** How long one blocking query may wait for a change (ms, Consul's `wait`, max 600 000). Default 30 000. */
  waitMs?: number;
  /**
   * Client timeout of a blocking query (ms). Must exceed `waitMs`. Default `waitMs + waitMs / 16 + 2000`
   * (Consul adds up to `wait / 16` of jitter to the wait).
   */
  timeoutMs?: number;
  /** Client timeout of non-blocking calls (the first query, catalog lookups) (ms). Default 10 000. */
  requestTimeoutMs?: number;
  /** One query token is refilled every `minIntervalMs` (ms). Default 250. 0 turns the limit off. */
  minIntervalMs?: number;
  /** Queries allowed back to back after a quiet period (the bucket size). Default 3. */
  burst?: number;
  /** Backoff after a failed query: equal jitter over `min(maxMs, baseMs * 2^n)`. Default 250 / 10 000. */
  backoff?: { baseMs?: number; maxMs?: number };
  /**
   * The largest answer read from Consul (bytes, 1 KiB..256 MiB). Enforced while reading: a bigger answer is
   * abandoned at the limit (or at once, from its `Content-Length`), never read or parsed in full; it is an
   * error (`ConsulResponseTooLargeError`) and the last good endpoint set is kept. Default 16 MiB.
   */
  maxResponseBytes?: number;
}

/** The default of {@link ConsulDiscoveryOptions.maxResponseBytes}: 16 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** The largest {@link ConsulDiscoveryOptions.maxResponseBytes} allowed: 256 MiB. */
export const MAX_RESPONSE_BYTES_LIMIT = 256 * 1024 * 1024;

/**
 * Validated options with defaults applied (the token is kept apart).
 *
 * @example
 * ```ts
 * consulDiscovery().options.waitMs; // 30000
 * ```
 */
export interface ResolvedConsulOptions {
  readonly address: AgentAddress;
  readonly service: string | undefined;
  readonly datacenter: string | undefined;
  readonly tags: readonly string[];
  readonly nodeMeta: readonly string[];
  readonly consistency: ConsulConsistency;
  readonly passingOnly: boolean;
  readonly waitMs: number;
  readonly timeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly minIntervalMs: number;
  readonly burst: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly maxResponseBytes: number;
}

const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/** The options and their defaults, declared once (`timeoutMs` and `backoff.maxMs` default from others). */
const consulOptions = object(
  {
    address: custom((v, path) => parseAgentAddress(v ?? defaultAgentAddress(), path)),
    token: custom((v, path) => {
      const token: unknown = v ?? (process.env.CONSUL_HTTP_TOKEN || undefined);
      // Never echo a token, even a malformed one.
      if (token !== undefined && (typeof token !== 'string' || /[\r\n]/.test(token)))
        throw new ConfigError(path, '<redacted>', 'a string without line breaks');
      return token === '' ? undefined : token;
    }),
    service: optional(
      string({ pattern: NAME_RE, expected: 'a Consul service name (letters, digits, "_", "-", ".")' }),
    ),
    datacenter: optional(string({ pattern: NAME_RE, expected: 'a datacenter name' })),
    tags: custom((v, path): readonly string[] => {
      const list: unknown = v === undefined ? [] : typeof v === 'string' ? [v] : v;
      if (!Array.isArray(list) || list.some((t) => typeof t !== 'string' || t === ''))
        throw new ConfigError(path, v, 'a tag or an array of non-empty tags');
      return Object.freeze([...(list as string[])]);
    }),
    nodeMeta: custom((v, path): readonly string[] => {
      if (v === undefined) return Object.freeze([]);
      if (!isPlainObject(v)) throw new ConfigError(path, v, 'an object of string values');
      const out: string[] = [];
      for (const [k, x] of Object.entries(v)) {
        if (typeof x !== 'string' || k === '' || k.includes(':'))
          throw new ConfigError(optionPath(path, k), x, 'a string value (and a key without ":")');
        out.push(`${k}:${x}`);
      }
      return Object.freeze(out);
    }),
    consistency: oneOf(['default', 'stale', 'consistent'], { default: 'default' }),
    passingOnly: boolean({ default: true }),
    waitMs: number({ min: 1, max: 600_000, default: 30_000 }),
    timeoutMs: optional(number({ min: 1, max: 3_600_000 })),
    requestTimeoutMs: number({ min: 1, max: 600_000, default: 10_000 }),
    minIntervalMs: number({ min: 0, max: 600_000, default: 250 }),
    burst: number({ min: 1, max: 1_000, default: 3 }),
    backoff: discoveryBackoff,
    maxResponseBytes: number({
      min: 1024,
      max: MAX_RESPONSE_BYTES_LIMIT,
      integer: true,
      default: DEFAULT_MAX_RESPONSE_BYTES,
    }),
  },
  {
    expected: 'an options object',
    check(o, path) {
      if (o.timeoutMs !== undefined && o.timeoutMs <= o.waitMs + o.waitMs / 16)
        throw new ConfigError(
          optionPath(path, 'timeoutMs'),
          o.timeoutMs,
          `more than waitMs + waitMs / 16 (${Math.ceil(o.waitMs * 1.0625)})`,
        );
    },
  },
);

/**
 * Validates {@link ConsulDiscoveryOptions} and applies the defaults. `prefix` starts each option path.
 *
 * @example
 * ```ts
 * const { options, token } = resolveConsulOptions({ waitMs: 5_000 }, 'consulDiscovery');
 * ```
 */
export function resolveConsulOptions(
  input: ConsulDiscoveryOptions | undefined,
  prefix = 'consulDiscovery',
): { options: ResolvedConsulOptions; token: string | undefined } {
  const { token, timeoutMs, backoff, burst, ...o } = consulOptions.resolve(input, prefix);
  return {
    token,
    options: Object.freeze({
      ...o,
      service: o.service,
      datacenter: o.datacenter,
      timeoutMs: timeoutMs ?? Math.ceil(o.waitMs + o.waitMs / 16 + 2_000),
      burst: Math.floor(burst),
      backoffBaseMs: backoff.baseMs,
      backoffMaxMs: backoff.maxMs,
    }),
  };
}
