/**
 * The options of {@link dnsDiscovery}, their defaults, and their validation, in one place (docs/dns.md
 * mirrors this file), so that a bad option fails at construction with a {@link ConfigError} that names it,
 * never later inside the refresh loop.
 *
 * Names follow RFC 1035 section 2.3.4 (labels of at most 63 octets, a name of at most 253 characters in text
 * form without the final dot) with RFC 2782's underscore labels (`_http._tcp.users...`) allowed, as Consul and
 * Kubernetes use them.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../../core/errors.js';
import { optionPath } from '../../core/option-path.js';
import { array, custom, number, object, oneOf, optional } from '../../core/validate.js';
import { discoveryBackoff } from '../backoff-options.js';

/**
 * Which records name the endpoints: addresses (`A`, `AAAA`, or both) on a fixed `port`, or `SRV` records,
 * which carry the port, a weight and a priority for each target.
 *
 * @example
 * ```ts
 * dnsDiscovery({ name: '_http._tcp.users.default.svc.cluster.local', type: 'SRV' });
 * ```
 */
export type DnsRecordType = 'A' | 'AAAA' | 'A+AAAA' | 'SRV';

/** The address records looked up for SRV targets. */
export type DnsAddressType = 'A' | 'AAAA' | 'A+AAAA';

/**
 * Options of {@link dnsDiscovery}.
 *
 * @example
 * ```ts
 * dnsDiscovery({ name: 'users.default.svc.cluster.local', port: 8080 });
 * ```
 */
export interface DnsDiscoveryOptions {
  /**
   * The DNS name to follow. Default: the logical service name. Sent as given (Node's resolver does not apply
   * the search list), so give the fully qualified name, e.g. `users.default.svc.cluster.local`.
   */
  name?: string;
  /** `'A'` (default), `'AAAA'`, `'A+AAAA'` (both), or `'SRV'`. */
  type?: DnsRecordType;
  /** The port of every address (A / AAAA; required there). Not allowed with SRV: the records carry it. */
  port?: number;
  /** SRV only: the address records looked up for each target name. Default `'A'`. */
  targets?: DnsAddressType;
  /**
   * DNS servers, as `'127.0.0.1'`, `'127.0.0.1:5353'`, `'::1'` or `'[::1]:5353'`. Default: the system's
   * (`/etc/resolv.conf`).
   */
  servers?: readonly string[];
  /** Refresh no sooner than this after an answer (ms), whatever its TTL (Consul answers TTL 0). Default 1 000. */
  minTtlMs?: number;
  /** Refresh at least this often (ms), however long the TTL. Default 30 000. */
  maxTtlMs?: number;
  /** How long to wait for one answer before trying again (ms, per try). Default 2 000. */
  timeoutMs?: number;
  /** Tries per query and server before it fails. Default 2. */
  tries?: number;
  /** Backoff after a failed refresh: equal jitter over `min(maxMs, baseMs * 2^n)`. Default 250 / 10 000. */
  backoff?: { baseMs?: number; maxMs?: number };
}

/**
 * Validated options with defaults applied.
 *
 * @example
 * ```ts
 * dnsDiscovery({ name: 'users.test', port: 80 }).options.minTtlMs; // 1000
 * ```
 */
export interface ResolvedDnsOptions {
  readonly name: string | undefined;
  readonly type: DnsRecordType;
  readonly port: number | undefined;
  readonly targets: DnsAddressType;
  readonly servers: readonly string[] | undefined;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly timeoutMs: number;
  readonly tries: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

const LABEL_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
/**
 * Why `name` is not a DNS name to follow, or undefined when it is one.
 *
 * @example
 * ```ts
 * dnsNameProblem('users..svc'); // 'an empty label'
 * ```
 */
export function dnsNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '') return 'not a non-empty string';
  if (isIP(name) !== 0) return 'an IP address, not a name (use staticDiscovery for fixed addresses)';
  const text = name.endsWith('.') ? name.slice(0, -1) : name;
  if (text.length > 253) return 'longer than 253 characters';
  for (const label of text.split('.')) {
    if (label === '') return 'an empty label';
    if (label.length > 63) return `a label longer than 63 characters ("${label.slice(0, 20)}...")`;
    if (!LABEL_RE.test(label))
      return `a label with characters other than letters, digits, "-" and "_" ("${label}")`;
  }
  return undefined;
}

function checkServer(server: unknown): boolean {
  if (typeof server !== 'string') return false;
  if (isIP(server) !== 0) return true;
  const m = /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/.exec(server) ?? /^([0-9.]+):([0-9]{1,5})$/.exec(server);
  if (m === null || isIP(m[1]!) === 0) return false;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535;
}

/** The options and their defaults, declared once (`maxTtlMs` defaults from `minTtlMs`). */
const dnsOptions = object(
  {
    name: optional(
      custom((v, path) => {
        const problem = dnsNameProblem(v);
        if (problem !== undefined) throw new ConfigError(path, v, `a DNS name (this is ${problem})`);
        return v as string;
      }),
    ),
    type: oneOf(['A', 'AAAA', 'A+AAAA', 'SRV'], { default: 'A' }),
    port: optional(number({ min: 1, max: 65535, integer: true })),
    targets: optional(oneOf(['A', 'AAAA', 'A+AAAA'])),
    servers: optional(
      array(
        custom((v, path) => {
          if (!checkServer(v))
            throw new ConfigError(path, v, 'an IP address, "ip:port" or "[ipv6]:port" (port 1..65535)');
          return v as string;
        }),
        { minLength: 1, expected: 'a non-empty array of "ip" or "ip:port" strings' },
      ),
    ),
    minTtlMs: number({ min: 0, max: 86_400_000, default: 1_000 }),
    maxTtlMs: optional(number({ min: 1, max: 86_400_000 })),
    timeoutMs: number({ min: 1, max: 600_000, default: 2_000 }),
    tries: number({ min: 1, max: 16, integer: true, default: 2 }),
    backoff: discoveryBackoff,
  },
  {
    expected: 'an options object',
    required: true,
    check(o, path) {
      if (o.type === 'SRV' && o.port !== undefined)
        throw new ConfigError(
          optionPath(path, 'port'),
          o.port,
          'no port with type SRV (each SRV record carries its port)',
        );
      if (o.type !== 'SRV' && o.port === undefined)
        throw new ConfigError(
          optionPath(path, 'port'),
          o.port,
          `the port of the ${o.type} addresses (1..65535)`,
        );
      if (o.targets !== undefined && o.type !== 'SRV')
        throw new ConfigError(
          optionPath(path, 'targets'),
          o.targets,
          "nothing unless type is 'SRV' (it says how SRV targets are looked up)",
        );
      if (o.maxTtlMs !== undefined && o.maxTtlMs < o.minTtlMs)
        throw new ConfigError(
          optionPath(path, 'maxTtlMs'),
          o.maxTtlMs,
          `a number >= minTtlMs (${o.minTtlMs})`,
        );
    },
  },
);

/**
 * Validates {@link DnsDiscoveryOptions} and applies the defaults. `prefix` starts each option path.
 *
 * @example
 * ```ts
 * resolveDnsOptions({ name: 'users.test', port: 8080 }, 'dnsDiscovery');
 * ```
 */
export function resolveDnsOptions(input: DnsDiscoveryOptions, prefix = 'dnsDiscovery'): ResolvedDnsOptions {
  const { backoff, maxTtlMs, ...o } = dnsOptions.resolve(input, prefix);
  return Object.freeze({
    ...o,
    name: o.name,
    port: o.port,
    servers: o.servers,
    targets: o.targets ?? 'A',
    maxTtlMs: maxTtlMs ?? Math.max(30_000, o.minTtlMs),
    backoffBaseMs: backoff.baseMs,
    backoffMaxMs: backoff.maxMs,
  });
}
