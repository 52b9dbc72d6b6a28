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
const KEYS = new Set([
  'name',
  'type',
  'port',
  'targets',
  'servers',
  'minTtlMs',
  'maxTtlMs',
  'timeoutMs',
  'tries',
  'backoff',
]);

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

function num(path: string, v: unknown, min: number, max: number, def: number, integer = false): number {
  if (v === undefined) return def;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < min ||
    v > max ||
    (integer && !Number.isInteger(v))
  ) {
    throw new ConfigError(path, v, `${integer ? 'an integer' : 'a number'} in ${min}..${max}`);
  }
  return v;
}

function checkServer(server: unknown): boolean {
  if (typeof server !== 'string') return false;
  if (isIP(server) !== 0) return true;
  const m = /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/.exec(server) ?? /^([0-9.]+):([0-9]{1,5})$/.exec(server);
  if (m === null || isIP(m[1]!) === 0) return false;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535;
}

/**
 * Validates {@link DnsDiscoveryOptions} and applies the defaults. `prefix` starts each option path.
 *
 * @example
 * ```ts
 * resolveDnsOptions({ name: 'users.test', port: 8080 }, 'dnsDiscovery');
 * ```
 */
export function resolveDnsOptions(input: DnsDiscoveryOptions, prefix = 'dnsDiscovery'): ResolvedDnsOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(prefix, input, 'an options object');
  }
  const p = (k: string): string => `${prefix}.${k}`;
  for (const k of Object.keys(input)) {
    if (!KEYS.has(k))
      throw new ConfigError(
        p(k),
        (input as Record<string, unknown>)[k],
        `a known option (${[...KEYS].join(', ')})`,
      );
  }
  const o = input;
  if (o.name !== undefined) {
    const problem = dnsNameProblem(o.name);
    if (problem !== undefined) throw new ConfigError(p('name'), o.name, `a DNS name (this is ${problem})`);
  }
  const type = o.type ?? 'A';
  if (type !== 'A' && type !== 'AAAA' && type !== 'A+AAAA' && type !== 'SRV') {
    throw new ConfigError(p('type'), type, "'A', 'AAAA', 'A+AAAA' or 'SRV'");
  }
  let port: number | undefined;
  if (type === 'SRV') {
    if (o.port !== undefined) {
      throw new ConfigError(p('port'), o.port, 'no port with type SRV (each SRV record carries its port)');
    }
  } else {
    if (o.port === undefined)
      throw new ConfigError(p('port'), o.port, `the port of the ${type} addresses (1..65535)`);
    port = num(p('port'), o.port, 1, 65535, 0, true);
  }
  const targets = o.targets ?? 'A';
  if (targets !== 'A' && targets !== 'AAAA' && targets !== 'A+AAAA') {
    throw new ConfigError(p('targets'), targets, "'A', 'AAAA' or 'A+AAAA'");
  }
  if (o.targets !== undefined && type !== 'SRV') {
    throw new ConfigError(
      p('targets'),
      o.targets,
      "nothing unless type is 'SRV' (it says how SRV targets are looked up)",
    );
  }
  let servers: readonly string[] | undefined;
  if (o.servers !== undefined) {
    if (!Array.isArray(o.servers) || o.servers.length === 0) {
      throw new ConfigError(p('servers'), o.servers, 'a non-empty array of "ip" or "ip:port" strings');
    }
    o.servers.forEach((s: unknown, i: number) => {
      if (!checkServer(s)) {
        throw new ConfigError(
          `${p('servers')}[${i}]`,
          s,
          'an IP address, "ip:port" or "[ipv6]:port" (port 1..65535)',
        );
      }
    });
    servers = Object.freeze([...o.servers]);
  }
  const minTtlMs = num(p('minTtlMs'), o.minTtlMs, 0, 86_400_000, 1_000);
  const maxTtlMs = num(
    p('maxTtlMs'),
    o.maxTtlMs,
    Math.max(1, minTtlMs),
    86_400_000,
    Math.max(30_000, minTtlMs),
  );
  const timeoutMs = num(p('timeoutMs'), o.timeoutMs, 1, 600_000, 2_000);
  const tries = num(p('tries'), o.tries, 1, 16, 2, true);
  if (o.backoff !== undefined && (typeof o.backoff !== 'object' || o.backoff === null)) {
    throw new ConfigError(p('backoff'), o.backoff, 'an object { baseMs, maxMs }');
  }
  const backoffBaseMs = num(p('backoff.baseMs'), o.backoff?.baseMs, 1, 600_000, 250);
  const backoffMaxMs = num(
    p('backoff.maxMs'),
    o.backoff?.maxMs,
    backoffBaseMs,
    3_600_000,
    Math.max(10_000, backoffBaseMs),
  );
  return Object.freeze({
    name: o.name,
    type,
    port,
    targets,
    servers,
    minTtlMs,
    maxTtlMs,
    timeoutMs,
    tries,
    backoffBaseMs,
    backoffMaxMs,
  });
}
