/**
 * Self-registration with the local Consul agent, for the services that use meshfetch: register (name, id,
 * address, port, tags, meta, a TTL or HTTP check, DeregisterCriticalServiceAfter), keep a TTL check passing,
 * notice when the agent lost the registration (an agent restart forgets every service registered through
 * its HTTP API) and register again, and deregister when closed. The options and the registration body are in
 * register-options.ts; the shutdown order ({@link shutdownGracefully}) in register-shutdown.ts.
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
 */
import pRetry, { AbortError } from 'p-retry';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Subscription } from './types.js';
import { ConsulApi, ConsulRequestError, defaultAgentAddress, parseAgentAddress } from './consul/client.js';
import {
  registrationBody,
  resolveOptions,
  type RegisterServiceOptions,
  type ResolvedRegistration,
} from './register-options.js';

export type { RegisterServiceOptions, RegistrationCheck } from './register-options.js';
export { shutdownGracefully, type Closeable, type ShutdownOptions } from './register-shutdown.js';

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
  readonly #o: ResolvedRegistration;
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

  #registerWithRetry(): Promise<void> {
    const run = pRetry(
      async () => {
        if (this.#gone()) throw new AbortError('registration closed');
        await this.#api.put(
          `registration of "${this.id}"`,
          '/v1/agent/service/register',
          registrationBody(this.#o),
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
