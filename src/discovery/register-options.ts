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
import { isValidHost, isValidPort } from './endpoint.js';

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

export function positive(path: string, v: unknown, def: number, min = 1): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw new ConfigError(path, v, `a number >= ${min}`);
  return v;
}

export function resolveOptions(o: RegisterServiceOptions): ResolvedRegistration {
  const p = (k: string): string => `registerService.${k}`;
  if (typeof o !== 'object' || o === null) throw new ConfigError('registerService', o, 'an options object');
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name)) {
    throw new ConfigError(p('name'), o.name, 'a Consul service name (letters, digits, "_", "-", ".")');
  }
  if (!isValidPort(o.port)) throw new ConfigError(p('port'), o.port, 'an integer in 1..65535');
  if (o.address !== undefined && !isValidHost(o.address)) {
    throw new ConfigError(p('address'), o.address, 'a hostname or IP address');
  }
  const id = o.id ?? `${o.name}-${hostname()}-${o.port}`;
  if (typeof id !== 'string' || id === '' || /[/\s]/.test(id))
    throw new ConfigError(p('id'), o.id, 'an id without "/" or spaces');
  const tags = o.tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string'))
    throw new ConfigError(p('tags'), o.tags, 'an array of strings');
  const meta = o.meta ?? {};
  if (typeof meta !== 'object' || meta === null || Object.values(meta).some((v) => typeof v !== 'string')) {
    throw new ConfigError(p('meta'), o.meta, 'an object of string values');
  }
  let weights: ResolvedRegistration['weights'];
  if (o.weights !== undefined) {
    if (typeof o.weights !== 'object' || o.weights === null) {
      throw new ConfigError(p('weights'), o.weights, 'an object { passing, warning? }');
    }
    const w = (k: 'passing' | 'warning', v: unknown): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
        throw new ConfigError(p(`weights.${k}`), v, 'an integer in 1..65535');
      }
      return v;
    };
    weights = { passing: w('passing', o.weights.passing), warning: w('warning', o.weights.warning ?? 1) };
  }
  let check: ResolvedRegistration['check'];
  const c = o.check ?? {};
  if (c === false) check = { kind: 'none' };
  else if (typeof c !== 'object' || c === null)
    throw new ConfigError(p('check'), c, '{ ttlMs } or { http } or false');
  else if ('http' in c) {
    if (typeof c.http !== 'string' || !/^https?:\/\//.test(c.http))
      throw new ConfigError(p('check.http'), c.http, 'an http(s) URL');
    check = {
      kind: 'http',
      http: c.http,
      intervalMs: positive(p('check.intervalMs'), c.intervalMs, 10_000, 100),
      timeoutMs: positive(p('check.timeoutMs'), c.timeoutMs, 5_000, 100),
    };
  } else {
    const ttlMs = positive(p('check.ttlMs'), c.ttlMs, 10_000, 100);
    const heartbeatMs = positive(
      p('check.heartbeatMs'),
      c.heartbeatMs,
      Math.max(50, Math.floor(ttlMs / 3)),
      10,
    );
    if (heartbeatMs >= ttlMs)
      throw new ConfigError(p('check.heartbeatMs'), heartbeatMs, `less than ttlMs (${ttlMs})`);
    check = { kind: 'ttl', ttlMs, heartbeatMs };
  }
  const dca = o.deregisterCriticalAfterMs;
  if (
    dca !== undefined &&
    dca !== false &&
    (typeof dca !== 'number' || !Number.isFinite(dca) || dca < 1_000)
  ) {
    throw new ConfigError(
      p('deregisterCriticalAfterMs'),
      dca,
      'a number of ms >= 1000 (Consul enforces 60 000 at least), or false',
    );
  }
  return {
    name: o.name,
    id,
    address: o.address,
    port: o.port,
    tags: [...tags],
    meta: { ...meta },
    weights,
    check,
    deregisterCriticalAfterMs: dca ?? 60_000,
    syncIntervalMs: positive(p('syncIntervalMs'), o.syncIntervalMs, 10_000, 10),
    requestTimeoutMs: positive(p('requestTimeoutMs'), o.requestTimeoutMs, 10_000),
    retries: positive(p('retry.retries'), o.retry?.retries, 6, 0),
    minTimeoutMs: positive(p('retry.minTimeoutMs'), o.retry?.minTimeoutMs, 200, 0),
    maxTimeoutMs: positive(p('retry.maxTimeoutMs'), o.retry?.maxTimeoutMs, 5_000, 0),
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
