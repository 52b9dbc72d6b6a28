/**
 * The options of a Consul self-registration (`registerService`): what the caller may give, how each value
 * is checked and defaulted (once, when the registration is made), and the body of the agent's
 * `PUT /v1/agent/service/register` built from them in the agent API's own field names (Consul's agent HTTP API,
 * "Register Service": `Name`, `ID`, `Address`, `Port`, `Tags`, `Meta`, `Weights`, and a `Check` with `TTL` or
 * `HTTP`/`Interval`/`Timeout` and `DeregisterCriticalServiceAfter`). The body is sent with undici
 * (`ConsulApi.put`): the `consul` package's `agent.service.register` builds its body from a fixed list of keys
 * and drops `Weights` (consul/lib/utils.js, `_createService`), which Consul's SRV answers and `consulDiscovery`
 * balance by.
 *
 * Apart from the registration's lifecycle (register.ts) so that the rules for a value sit in one place.
 */
import { hostname } from 'node:os';
import type { Clock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { optionPath } from '../core/option-path.js';
import { custom, isPlainObject, number, numberAllowed, object, optional, string } from '../core/validate.js';
import { isValidHost } from './endpoint.js';

/**
 * The health check registered with the service: a TTL check the registration keeps passing (default), an
 * HTTP check Consul runs itself, or none (`false`).
 *
 * @example
 * ```ts
 * const ttl: RegistrationCheck = { ttlMs: 10_000 };
 * const http: RegistrationCheck = { http: 'http://127.0.0.1:8080/health', intervalMs: 5_000 };
 * ```
 */
export type RegistrationCheck =
  | { ttlMs?: number; heartbeatMs?: number }
  | { http: string; intervalMs?: number; timeoutMs?: number }
  | false;

/**
 * Options of `registerService`.
 *
 * @example
 * ```ts
 * const opts: RegisterServiceOptions = { name: 'users', port: 8080, address: '10.0.0.5', tags: ['v2'] };
 * ```
 */
export interface RegisterServiceOptions {
  /** Consul service name. */
  name: string;
  /** Unique instance id. Default `<name>-<hostname>-<port>`. */
  id?: string;
  /** Address others should call. Default: none (Consul then hands out the node's address). */
  address?: string;
  port: number;
  tags?: readonly string[];
  meta?: Readonly<Record<string, string>>;
  /**
   * Consul's `Weights`: the relative share of traffic while the instance passes its checks (`passing`) and while
   * one of them warns (`warning`). Integers in 1..65535 (Consul's DNS sends `passing` as the SRV weight).
   * `consulDiscovery` and `dnsDiscovery` (SRV) balance by them. Default `{ passing: 1, warning: 1 }`.
   */
  weights?: { passing: number; warning?: number };
  /** Default `{ ttlMs: 10_000 }` with a heartbeat every `ttlMs / 3`. */
  check?: RegistrationCheck;
  /**
   * Consul removes the service after its check was critical this long (ms; Consul's minimum is 60 000 and
   * its reaper runs every 30 s). Default 60 000; `false` to never.
   */
  deregisterCriticalAfterMs?: number | false;
  /** Agent HTTP address. Default `$CONSUL_HTTP_ADDR`, else `http://127.0.0.1:8500`. */
  agent?: string;
  /** ACL token (needs service:write on the name). Default `$CONSUL_HTTP_TOKEN`. Never logged. */
  token?: string;
  /** For non-TTL checks: how often to verify the agent still has the registration (ms). Default 10 000. */
  syncIntervalMs?: number;
  /** Timeout of each call to the agent (ms). Default 10 000. */
  requestTimeoutMs?: number;
  /** p-retry settings for (re-)registration. Default 6 retries, 200 ms .. 5 000 ms, randomised. */
  retry?: { retries?: number; minTimeoutMs?: number; maxTimeoutMs?: number };
  /** Aborting it stops the first registration's retries (registerService then rejects) and deregisters. */
  signal?: AbortSignal;
  clock?: Clock;
  logger?: Logger;
}

/** The options once checked and defaulted. */
export interface ResolvedRegistration {
  name: string;
  id: string;
  address: string | undefined;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  weights: { passing: number; warning: number } | undefined;
  check:
    | { kind: 'ttl'; ttlMs: number; heartbeatMs: number }
    | { kind: 'http'; http: string; intervalMs: number; timeoutMs: number }
    | { kind: 'none' };
  deregisterCriticalAfterMs: number | false;
  syncIntervalMs: number;
  requestTimeoutMs: number;
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/**
 * A number of at least `min` (`def` when absent), at `path`: the rule of most registration timings.
 *
 * @example
 * ```ts
 * positive('shutdownGracefully.propagationDelayMs', undefined, 2_000, 0); // 2000
 * ```
 */
export function positive(path: string, v: unknown, def: number, min = 1): number {
  return number({ min, default: def }).resolve(v, path);
}

/** Any value: read as given (the token and the agent are checked where they are used). */
const passed = optional(custom((v) => v));

const ttlCheck = object(
  { ttlMs: number({ min: 100, default: 10_000 }), heartbeatMs: optional(number({ min: 10 })) },
  {
    check(c, path) {
      const heartbeatMs = c.heartbeatMs ?? Math.max(50, Math.floor(c.ttlMs / 3));
      if (heartbeatMs >= c.ttlMs)
        throw new ConfigError(optionPath(path, 'heartbeatMs'), heartbeatMs, `less than ttlMs (${c.ttlMs})`);
    },
  },
);

const httpCheck = object({
  http: string({ pattern: /^https?:\/\//, expected: 'an http(s) URL' }),
  intervalMs: number({ min: 100, default: 10_000 }),
  timeoutMs: number({ min: 100, default: 5_000 }),
});

/** The options of `registerService` and their defaults, declared once. */
const registration = object(
  {
    name: string({ pattern: NAME_RE, expected: 'a Consul service name (letters, digits, "_", "-", ".")' }),
    port: number({ min: 1, max: 65535, integer: true }),
    address: optional(
      custom((v, path) => {
        if (!isValidHost(v)) throw new ConfigError(path, v, 'a hostname or IP address');
        return v;
      }),
    ),
    id: optional(string({ pattern: /^[^/\s]+$/, expected: 'an id without "/" or spaces' })),
    tags: custom(
      (v, path): string[] => {
        if (!Array.isArray(v) || v.some((t) => typeof t !== 'string'))
          throw new ConfigError(path, v, 'an array of strings');
        return v as string[];
      },
      { default: [] },
    ),
    meta: custom(
      (v, path): Record<string, string> => {
        if (!isPlainObject(v) || Object.values(v).some((x) => typeof x !== 'string'))
          throw new ConfigError(path, v, 'an object of string values');
        return v as Record<string, string>;
      },
      { default: {} },
    ),
    weights: optional(
      object(
        {
          passing: number({ min: 1, max: 65535, integer: true }),
          warning: number({ min: 1, max: 65535, integer: true, default: 1 }),
        },
        { required: true, expected: 'an object { passing, warning? }' },
      ),
    ),
    check: custom((v, path): ResolvedRegistration['check'] => {
      if (v === false) return { kind: 'none' };
      if (v !== undefined && !isPlainObject(v))
        throw new ConfigError(path, v, '{ ttlMs } or { http } or false');
      if (v !== undefined && 'http' in v) return { kind: 'http', ...httpCheck.resolve(v, path) };
      const c = ttlCheck.resolve(v, path);
      return {
        kind: 'ttl',
        ttlMs: c.ttlMs,
        heartbeatMs: c.heartbeatMs ?? Math.max(50, Math.floor(c.ttlMs / 3)),
      };
    }),
    deregisterCriticalAfterMs: custom(
      (v, path): number | false => {
        if (v !== false && !numberAllowed(v, { min: 1_000 }))
          throw new ConfigError(
            path,
            v,
            'a number of ms >= 1000 (Consul enforces 60 000 at least), or false',
          );
        return v;
      },
      { default: 60_000 },
    ),
    agent: passed,
    token: passed,
    syncIntervalMs: number({ min: 10, default: 10_000 }),
    requestTimeoutMs: number({ min: 1, default: 10_000 }),
    retry: object({
      retries: number({ min: 0, default: 6 }),
      minTimeoutMs: number({ min: 0, default: 200 }),
      maxTimeoutMs: number({ min: 0, default: 5_000 }),
    }),
    signal: passed,
    clock: passed,
    logger: passed,
  },
  { required: true, expected: 'an options object' },
);

export function resolveOptions(o: RegisterServiceOptions): ResolvedRegistration {
  const r = registration.resolve(o, 'registerService');
  return {
    name: r.name,
    id: r.id ?? `${r.name}-${hostname()}-${r.port}`,
    address: r.address as string | undefined,
    port: r.port,
    tags: [...r.tags],
    meta: { ...r.meta },
    weights: r.weights === undefined ? undefined : { ...r.weights },
    check: r.check,
    deregisterCriticalAfterMs: r.deregisterCriticalAfterMs,
    syncIntervalMs: r.syncIntervalMs,
    requestTimeoutMs: r.requestTimeoutMs,
    retries: r.retry.retries,
    minTimeoutMs: r.retry.minTimeoutMs,
    maxTimeoutMs: r.retry.maxTimeoutMs,
  };
}

const dur = (ms: number): string => `${Math.round(ms)}ms`;

/**
 * The body of `PUT /v1/agent/service/register` in the agent API's own field names (sent with undici by
 * `ConsulApi.put`: the `consul` package's `register` would drop `Weights`).
 */
export function registrationBody(o: ResolvedRegistration): Record<string, unknown> {
  const body: Record<string, unknown> = {
    Name: o.name,
    ID: o.id,
    Port: o.port,
    Tags: o.tags,
    Meta: o.meta,
  };
  if (o.address !== undefined) body.Address = o.address;
  if (o.weights !== undefined) body.Weights = { Passing: o.weights.passing, Warning: o.weights.warning };
  const dca =
    o.deregisterCriticalAfterMs === false
      ? {}
      : { DeregisterCriticalServiceAfter: dur(o.deregisterCriticalAfterMs) };
  if (o.check.kind === 'ttl') {
    body.Check = { Name: `${o.name} TTL`, TTL: dur(o.check.ttlMs), Status: 'passing', ...dca };
  } else if (o.check.kind === 'http') {
    body.Check = {
      Name: `${o.name} HTTP`,
      HTTP: o.check.http,
      Interval: dur(o.check.intervalMs),
      Timeout: dur(o.check.timeoutMs),
      ...dca,
    };
  }
  return body;
}
