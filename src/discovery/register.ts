/**
 * Self-registration with the local Consul agent, for the services that use meshfetch: register (name, id,
 * address, port, tags, meta, a TTL or HTTP check, DeregisterCriticalServiceAfter), keep a TTL check passing,
 * notice when the agent lost the registration (an agent restart forgets every service registered through
 * its HTTP API) and register again, and on shutdown deregister first.
 *
 * The registration itself is a `PUT /v1/agent/service/register` sent with undici (`ConsulApi.put`): the
 * `consul` package's `agent.service.register` builds its body from a fixed list of keys and drops `Weights`
 * (consul/lib/utils.js, `_createService`), which Consul's SRV answers and `consulDiscovery` balance by. The
 * other calls (check pass, service list, deregistration) go through the `consul` package.
 *
 * Registration calls are retried with p-retry (its exponential backoff with randomisation fits a one-shot
 * call like this; it reads the ambient clock for its delays, which is why the periodic heartbeat itself runs
 * on the injected {@link Clock}). Its AbortSignal lets {@link ServiceRegistration.close} stop a retry loop at
 * once.
 *
 * Shutdown order (see {@link shutdownGracefully}): deregister, so that watchers stop sending new calls; give
 * them a moment to see it while in-flight calls drain; then close the server and the mesh.
 */
import { hostname } from 'node:os';
import pRetry, { AbortError } from 'p-retry';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { isValidHost, isValidPort } from './endpoint.js';
import type { Subscription } from './types.js';
import { ConsulApi, ConsulRequestError, defaultAgentAddress, parseAgentAddress } from './consul/client.js';

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
 * Options of {@link registerService}.
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

/**
 * Where a registration stands.
 *
 * @example
 * ```ts
 * if (reg.state === 'lost') console.log('the agent forgot us; registering again');
 * ```
 */
export type RegistrationState = 'registering' | 'registered' | 'lost' | 'deregistered';

/**
 * What a registration reports to subscribers.
 *
 * @example
 * ```ts
 * reg.subscribe((e) => { if (e.type === 'reregistered') console.log('agent restarted; registered again'); });
 * ```
 */
export type RegistrationEvent =
  | { readonly type: 'registered' | 'reregistered' | 'deregistered'; readonly id: string }
  | { readonly type: 'lost'; readonly id: string; readonly reason: string }
  | { readonly type: 'error'; readonly id: string; readonly error: Error };

interface Resolved {
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

function positive(path: string, v: unknown, def: number, min = 1): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw new ConfigError(path, v, `a number >= ${min}`);
  return v;
}

function resolveOptions(o: RegisterServiceOptions): Resolved {
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
  let weights: Resolved['weights'];
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
  let check: Resolved['check'];
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
 * A service registered with the local Consul agent. Made by {@link registerService}.
 *
 * @example
 * ```ts
 * const reg = await registerService({ name: 'users', port: 8080 });
 * reg.subscribe((e) => console.log(e.type));
 * await reg.close(); // deregisters, stops the heartbeat
 * ```
 */
export class ServiceRegistration {
  readonly id: string;
  readonly name: string;
  readonly #o: Resolved;
  readonly #api: ConsulApi;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  readonly #listeners = new Set<(e: RegistrationEvent) => void>();
  #state: RegistrationState = 'registering';
  #registrations = 0;
  #lastError: Error | undefined;
  #timer: TimerHandle | undefined;
  #busy: Promise<void> | undefined;
  #deregistering: Promise<void> | undefined;
  #closed = false;
  #unlink: (() => void) | undefined;

  /** @internal Use {@link registerService}. */
  constructor(options: RegisterServiceOptions) {
    this.#o = resolveOptions(options);
    this.id = this.#o.id;
    this.name = this.#o.name;
    let token = options.token ?? (process.env.CONSUL_HTTP_TOKEN || undefined);
    if (token !== undefined && typeof token !== 'string') {
      throw new ConfigError('registerService.token', '<redacted>', 'a string');
    }
    if (token === '') token = undefined;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger;
    if (options.signal) {
      const signal = options.signal;
      const onAbort = (): void => void this.close();
      if (signal.aborted) this.#abort.abort(signal.reason);
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        this.#unlink = () => signal.removeEventListener('abort', onAbort);
      }
    }
    this.#api = new ConsulApi(
      parseAgentAddress(options.agent ?? defaultAgentAddress(), 'registerService.agent'),
      token,
      this.#clock,
    );
  }

  /** Where the registration stands. */
  get state(): RegistrationState {
    return this.#state;
  }

  /** How many times the service was registered (1 after start; more after the agent lost it). */
  get registrations(): number {
    return this.#registrations;
  }

  /** The last error talking to the agent (safe to show), if any. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** Calls `listener` on registration events. */
  subscribe(listener: (e: RegistrationEvent) => void): Subscription {
    this.#listeners.add(listener);
    return { unsubscribe: () => void this.#listeners.delete(listener) };
  }

  /** @internal First registration (with retries); starts the heartbeat. */
  async start(): Promise<void> {
    await this.#registerWithRetry();
    this.#schedule();
  }

  /**
   * Deregisters the service (stops the heartbeat and any retry first). Rejects if the agent cannot be told;
   * Consul then removes it after `deregisterCriticalAfterMs` once its TTL check expired. Idempotent.
   */
  deregister(): Promise<void> {
    this.#deregistering ??= this.#doDeregister();
    return this.#deregistering;
  }

  /** Deregisters (logging, not throwing, if that fails) and releases the client. Idempotent. */
  async close(): Promise<void> {
    try {
      await this.deregister();
    } catch (err) {
      this.#log.warn(
        { service: this.name, id: this.id, error: (err as Error).message },
        'consul deregistration failed',
      );
    }
    if (!this.#closed) {
      this.#closed = true;
      this.#unlink?.();
      await this.#api.close();
      this.#listeners.clear();
    }
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      id: this.id,
      state: this.#state,
      registrations: this.#registrations,
      agent: this.#api.address.url,
      token: this.#api.hasToken,
      lastError: this.#lastError?.message,
    };
  }

  async #doDeregister(): Promise<void> {
    this.#state = 'deregistered';
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort.abort(new Error('registration closed'));
    await this.#busy?.catch(() => {});
    await this.#api.get(
      `deregistration of "${this.id}"`,
      (o) => this.#api.client.agent.service.deregister(o as never),
      { id: this.id },
      this.#o.requestTimeoutMs,
    );
    this.#emit({ type: 'deregistered', id: this.id });
    this.#log.info({ service: this.name, id: this.id }, 'deregistered from consul');
  }

  /**
   * The body of `PUT /v1/agent/service/register` in the agent API's own field names (sent with undici by
   * {@link ConsulApi.put}: the `consul` package's `register` would drop `Weights`).
   */
  #body(): Record<string, unknown> {
    const o = this.#o;
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

  #registerWithRetry(): Promise<void> {
    const run = pRetry(
      async () => {
        if (this.#gone()) throw new AbortError('registration closed');
        await this.#api.put(
          `registration of "${this.id}"`,
          '/v1/agent/service/register',
          this.#body(),
          this.#o.requestTimeoutMs,
        );
        if (this.#o.check.kind === 'ttl') await this.#pass();
      },
      {
        retries: this.#o.retries,
        minTimeout: this.#o.minTimeoutMs,
        maxTimeout: this.#o.maxTimeoutMs,
        randomize: true,
        unref: true,
        signal: this.#abort.signal,
        shouldRetry: ({ error }) =>
          this.#state !== 'deregistered' &&
          !(
            error instanceof ConsulRequestError &&
            (error.kind === 'acl' || error.statusCode === 400 || error.kind === 'closed')
          ),
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          this.#lastError = error;
          this.#log.warn(
            { service: this.name, id: this.id, attempt: attemptNumber, retriesLeft, error: error.message },
            'consul registration failed',
          );
        },
      },
    ).then(() => {
      if (this.#gone()) return;
      const again = this.#registrations > 0;
      this.#registrations++;
      this.#state = 'registered';
      this.#lastError = undefined;
      this.#emit({ type: again ? 'reregistered' : 'registered', id: this.id });
      this.#log.info(
        { service: this.name, id: this.id, again },
        again ? 'registered again with consul' : 'registered with consul',
      );
    });
    const tracked = run.finally(() => {
      if (this.#busy === tracked) this.#busy = undefined;
    });
    this.#busy = tracked;
    return tracked;
  }

  async #pass(): Promise<void> {
    await this.#api.get(
      `TTL update of "${this.id}"`,
      (o) => this.#api.client.agent.check.pass(o as never),
      { id: `service:${this.id}` },
      this.#o.requestTimeoutMs,
    );
  }

  #schedule(): void {
    if (this.#gone()) return;
    const every = this.#o.check.kind === 'ttl' ? this.#o.check.heartbeatMs : this.#o.syncIntervalMs;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#tick().finally(() => this.#schedule());
    }, every);
  }

  async #tick(): Promise<void> {
    if (this.#gone() || this.#busy) return;
    let lostReason: string | undefined;
    try {
      if (this.#o.check.kind === 'ttl') {
        await this.#pass();
      } else {
        const answer = await this.#api.get(
          'agent service list',
          (o) => this.#api.client.agent.service.list(o as never),
          {},
          this.#o.requestTimeoutMs,
        );
        const services = answer.body;
        if (
          typeof services === 'object' &&
          services !== null &&
          !Object.prototype.hasOwnProperty.call(services, this.id)
        ) {
          lostReason = 'the agent no longer lists the service';
        }
      }
      if (!lostReason) {
        if (this.#state === 'lost') this.#state = 'registered';
        this.#lastError = undefined;
        return;
      }
    } catch (err) {
      if (this.#gone()) return;
      const e = err instanceof ConsulRequestError ? err : new Error(String((err as Error)?.message ?? err));
      this.#lastError = e;
      // An HTTP answer (404 "unknown check", 500 "does not have associated TTL") means the agent is up but
      // no longer has our check: it restarted or was told to forget us. Anything else (agent down, timeout):
      // keep trying on the next tick; when the agent is back it will answer one of those.
      if (e instanceof ConsulRequestError && e.kind === 'http') {
        lostReason = e.message;
      } else {
        this.#emit({ type: 'error', id: this.id, error: e });
        this.#log.debug({ service: this.name, id: this.id, error: e.message }, 'consul heartbeat failed');
        return;
      }
    }
    this.#state = 'lost';
    this.#emit({ type: 'lost', id: this.id, reason: lostReason });
    this.#log.warn(
      { service: this.name, id: this.id, reason: lostReason },
      'consul lost the registration; registering again',
    );
    try {
      await this.#registerWithRetry();
    } catch (err) {
      if (this.#gone()) return;
      this.#lastError = err as Error;
      this.#emit({ type: 'error', id: this.id, error: err as Error });
      this.#log.error(
        { service: this.name, id: this.id, error: (err as Error).message },
        'consul re-registration failed; will retry',
      );
    }
  }

  /** A method, not a field comparison, so TypeScript does not narrow the state across awaits. */
  #gone(): boolean {
    return this.#state === 'deregistered';
  }

  #emit(e: RegistrationEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch (err) {
        this.#log.error({ service: this.name, error: String(err) }, 'a registration listener threw');
      }
    }
  }
}

/**
 * Registers this service with the local Consul agent and keeps it registered. Resolves once registered
 * (retrying with p-retry); rejects with the last error if that fails, or on an ACL error at once.
 *
 * @example
 * ```ts
 * const reg = await registerService({
 *   name: 'users', port: 8080, address: '10.0.0.5', tags: ['v2'],
 *   check: { ttlMs: 10_000 }, deregisterCriticalAfterMs: 60_000,
 * });
 * process.once('SIGTERM', () => shutdownGracefully({ registration: reg, close: [server, mesh] }));
 * ```
 */
export async function registerService(options: RegisterServiceOptions): Promise<ServiceRegistration> {
  const reg = new ServiceRegistration(options);
  try {
    await reg.start();
  } catch (err) {
    await reg.close().catch(() => {});
    throw err;
  }
  return reg;
}

/**
 * Something with an async `close()`: a mesh, a wrapped HTTP server, a database pool.
 *
 * @example
 * ```ts
 * const server: Closeable = { close: () => new Promise<void>((r) => httpServer.close(() => r())) };
 * ```
 */
export interface Closeable {
  close(): Promise<void>;
}

/**
 * Options of {@link shutdownGracefully}.
 *
 * @example
 * ```ts
 * const opts: ShutdownOptions = { registration: reg, propagationDelayMs: 2_000, close: [server, mesh] };
 * ```
 */
export interface ShutdownOptions {
  /** Deregistered first, so watchers stop sending new calls. */
  registration?: { deregister(): Promise<void>; close?(): Promise<void> } | undefined;
  /**
   * How long to keep serving after deregistering, while other clients' blocking queries see the change and
   * in-flight calls drain (ms). Default 2 000.
   */
  propagationDelayMs?: number;
  /** Closed one after the other after the delay (e.g. the HTTP server, then the mesh with its own grace period). */
  close?: readonly Closeable[];
  clock?: Clock;
  logger?: Logger;
}

/**
 * The shutdown order for a registered service: 1. deregister from Consul (failures are logged, not fatal: the
 * TTL check then expires and Consul reaps the service); 2. wait `propagationDelayMs` while watchers drop this
 * instance and in-flight calls finish; 3. close each of `close` in order (an HTTP server's close waits for
 * its in-flight requests; the mesh's `close({ gracePeriodMs })` drains outgoing calls). Never rejects for
 * step 1; rejects with the first error of step 3 after trying them all.
 *
 * @example
 * ```ts
 * process.once('SIGTERM', async () => {
 *   await shutdownGracefully({
 *     registration: reg,
 *     close: [{ close: () => new Promise<void>((r) => server.close(() => r())) }, { close: () => mesh.close({ gracePeriodMs: 5_000 }) }],
 *   });
 * });
 * ```
 */
export async function shutdownGracefully(options: ShutdownOptions): Promise<void> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? silentLogger;
  const delay = positive('shutdownGracefully.propagationDelayMs', options.propagationDelayMs, 2_000, 0);
  if (options.registration) {
    try {
      await options.registration.deregister();
    } catch (err) {
      log.warn(
        { error: (err as Error).message },
        'deregistration failed during shutdown; the TTL check will expire',
      );
    }
  }
  if (delay > 0) await new Promise<void>((r) => clock.setTimeout(r, delay));
  let first: unknown;
  for (const c of options.close ?? []) {
    try {
      await c.close();
    } catch (err) {
      first ??= err;
      log.error({ error: (err as Error)?.message }, 'close failed during shutdown');
    }
  }
  if (options.registration?.close) await options.registration.close().catch(() => {});
  if (first !== undefined) throw first;
}
