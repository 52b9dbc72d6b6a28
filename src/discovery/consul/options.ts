/**
 * The options of {@link consulDiscovery}, their defaults, and their validation. Kept apart from the loop so
 * the defaults live in one place (docs/consul.md mirrors this file) and a bad option fails at construction
 * with a {@link ConfigError} that names it, never later inside the watch loop.
 */
import { ConfigError } from '../../core/errors.js';
import { optionPath } from '../../core/option-path.js';
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
const OPTION_KEYS = [
  'address',
  'token',
  'service',
  'datacenter',
  'tags',
  'nodeMeta',
  'consistency',
  'passingOnly',
  'waitMs',
  'timeoutMs',
  'requestTimeoutMs',
  'minIntervalMs',
  'burst',
  'backoff',
  'maxResponseBytes',
];

function num(path: string, v: unknown, min: number, max: number, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new ConfigError(path, v, `a number in ${min}..${max}`);
  }
  return v;
}

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
  const o: ConsulDiscoveryOptions = input ?? {};
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new ConfigError(prefix, o, 'an options object');
  }
  const p = (k: string): string => `${prefix}.${k}`;
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.includes(k)) {
      throw new ConfigError(
        optionPath(prefix, k),
        k === 'token' ? '<redacted>' : (o as Record<string, unknown>)[k],
        `no such option (known: ${OPTION_KEYS.join(', ')})`,
      );
    }
  }
  const address = parseAgentAddress(o.address ?? defaultAgentAddress(), p('address'));
  let token: string | undefined = o.token ?? (process.env.CONSUL_HTTP_TOKEN || undefined);
  if (token !== undefined && (typeof token !== 'string' || /[\r\n]/.test(token))) {
    // Never echo a token, even a malformed one.
    throw new ConfigError(p('token'), '<redacted>', 'a string without line breaks');
  }
  if (token === '') token = undefined;
  if (o.service !== undefined && (typeof o.service !== 'string' || !NAME_RE.test(o.service))) {
    throw new ConfigError(p('service'), o.service, 'a Consul service name (letters, digits, "_", "-", ".")');
  }
  if (o.datacenter !== undefined && (typeof o.datacenter !== 'string' || !NAME_RE.test(o.datacenter))) {
    throw new ConfigError(p('datacenter'), o.datacenter, 'a datacenter name');
  }
  const tagList = o.tags === undefined ? [] : typeof o.tags === 'string' ? [o.tags] : o.tags;
  if (!Array.isArray(tagList) || tagList.some((t) => typeof t !== 'string' || t === '')) {
    throw new ConfigError(p('tags'), o.tags, 'a tag or an array of non-empty tags');
  }
  const nodeMeta: string[] = [];
  if (o.nodeMeta !== undefined) {
    if (typeof o.nodeMeta !== 'object' || o.nodeMeta === null || Array.isArray(o.nodeMeta)) {
      throw new ConfigError(p('nodeMeta'), o.nodeMeta, 'an object of string values');
    }
    for (const [k, v] of Object.entries(o.nodeMeta)) {
      if (typeof v !== 'string' || k === '' || k.includes(':')) {
        throw new ConfigError(optionPath(p('nodeMeta'), k), v, 'a string value (and a key without ":")');
      }
      nodeMeta.push(`${k}:${v}`);
    }
  }
  const consistency = o.consistency ?? 'default';
  if (consistency !== 'default' && consistency !== 'stale' && consistency !== 'consistent') {
    throw new ConfigError(p('consistency'), consistency, "'default', 'stale' or 'consistent'");
  }
  if (o.passingOnly !== undefined && typeof o.passingOnly !== 'boolean') {
    throw new ConfigError(p('passingOnly'), o.passingOnly, 'a boolean');
  }
  const waitMs = num(p('waitMs'), o.waitMs, 1, 600_000, 30_000);
  const timeoutMs = num(p('timeoutMs'), o.timeoutMs, 1, 3_600_000, Math.ceil(waitMs + waitMs / 16 + 2_000));
  if (timeoutMs <= waitMs + waitMs / 16) {
    throw new ConfigError(
      p('timeoutMs'),
      timeoutMs,
      `more than waitMs + waitMs / 16 (${Math.ceil(waitMs * 1.0625)})`,
    );
  }
  const requestTimeoutMs = num(p('requestTimeoutMs'), o.requestTimeoutMs, 1, 600_000, 10_000);
  const minIntervalMs = num(p('minIntervalMs'), o.minIntervalMs, 0, 600_000, 250);
  const burst = num(p('burst'), o.burst, 1, 1_000, 3);
  if (o.backoff !== undefined && (typeof o.backoff !== 'object' || o.backoff === null)) {
    throw new ConfigError(p('backoff'), o.backoff, 'an object { baseMs, maxMs }');
  }
  for (const k of Object.keys(o.backoff ?? {})) {
    if (k !== 'baseMs' && k !== 'maxMs') {
      throw new ConfigError(
        optionPath(p('backoff'), k),
        (o.backoff as Record<string, unknown>)[k],
        'no such option (known: baseMs, maxMs)',
      );
    }
  }
  const backoffBaseMs = num(p('backoff.baseMs'), o.backoff?.baseMs, 1, 600_000, 250);
  const backoffMaxMs = num(
    p('backoff.maxMs'),
    o.backoff?.maxMs,
    backoffBaseMs,
    3_600_000,
    Math.max(10_000, backoffBaseMs),
  );
  const maxResponseBytes = num(
    p('maxResponseBytes'),
    o.maxResponseBytes,
    1024,
    MAX_RESPONSE_BYTES_LIMIT,
    DEFAULT_MAX_RESPONSE_BYTES,
  );
  if (!Number.isInteger(maxResponseBytes)) {
    throw new ConfigError(p('maxResponseBytes'), maxResponseBytes, 'a whole number of bytes');
  }
  return {
    token,
    options: Object.freeze({
      address,
      service: o.service,
      datacenter: o.datacenter,
      tags: Object.freeze([...tagList]),
      nodeMeta: Object.freeze(nodeMeta),
      consistency,
      passingOnly: o.passingOnly ?? true,
      waitMs,
      timeoutMs,
      requestTimeoutMs,
      minIntervalMs,
      burst: Math.floor(burst),
      backoffBaseMs,
      backoffMaxMs,
      maxResponseBytes,
    }),
  };
}
