/**
 * A thin layer over the `consul` npm package (which does the HTTP, query strings and JSON) that adds what the
 * mesh needs around each call: a client-side timeout on the injected clock, cancellation of every in-flight
 * request on close, the response headers (`X-Consul-Index`), and errors that are typed, short and safe.
 *
 * Safety: the ACL token is held in a private field, sent only as the `X-Consul-Token` header, scrubbed from
 * any text that could echo it, and the raw client errors (which reference the request and its headers) are
 * never kept or exposed: a {@link ConsulRequestError} carries only the kind, the status and a short detail.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import Consul from 'consul';
import { Client as UndiciClient } from 'undici';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { ConfigError } from '../../core/errors.js';
import { isValidHost, isValidPort } from '../endpoint.js';

/**
 * What went wrong with a call to Consul: the agent could not be reached, the call timed out, ACLs refused
 * the token (HTTP 403), another HTTP error, an answer that is not what the API documents, or the client was closed.
 *
 * @example
 * ```ts
 * if (err instanceof ConsulRequestError && err.kind === 'unreachable') console.log('is the agent running?');
 * ```
 */
export type ConsulErrorKind = 'unreachable' | 'timeout' | 'acl' | 'http' | 'malformed' | 'closed';

/**
 * A failed call to the Consul HTTP API. `kind` says what failed (`acl` for an HTTP 403: the token was not
 * found or lacks a permission), `statusCode` the HTTP status when there was one. Never contains the token.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof ConsulRequestError && e.kind === 'acl') console.log('check the ACL token'); }
 * ```
 */
export class ConsulRequestError extends Error {
  readonly kind: ConsulErrorKind;
  readonly statusCode: number | undefined;
  constructor(kind: ConsulErrorKind, message: string, statusCode?: number) {
    super(message);
    this.name = 'ConsulRequestError';
    this.kind = kind;
    this.statusCode = statusCode;
  }
}

/**
 * A parsed Consul agent address.
 *
 * @example
 * ```ts
 * const a: AgentAddress = parseAgentAddress('https://consul.internal:8501', 'address');
 * ```
 */
export interface AgentAddress {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  /** `http://host:port`, for messages and logs. */
  readonly url: string;
}

/**
 * The agent address used when none is given: `$CONSUL_HTTP_ADDR`, else `http://127.0.0.1:8500`.
 *
 * @example
 * ```ts
 * parseAgentAddress(defaultAgentAddress(), 'address');
 * ```
 */
export function defaultAgentAddress(): string {
  return process.env.CONSUL_HTTP_ADDR || 'http://127.0.0.1:8500';
}

/**
 * Parses an agent address: `host:port`, `http://host:port`, `https://host:port` or `[v6]:port`
 * (the forms `CONSUL_HTTP_ADDR` takes). Throws a {@link ConfigError} naming `path`.
 *
 * @example
 * ```ts
 * parseAgentAddress('127.0.0.1:8500', 'consulDiscovery.address'); // { host: '127.0.0.1', port: 8500, secure: false, ... }
 * ```
 */
export function parseAgentAddress(input: unknown, path: string): AgentAddress {
  const expected = 'a Consul agent address like "127.0.0.1:8500" or "http://127.0.0.1:8500"';
  if (typeof input !== 'string' || input.length === 0) throw new ConfigError(path, input, expected);
  const withScheme = /^[a-z]+:\/\//i.test(input) ? input : `http://${input}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(path, input, expected);
  }
  if (
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    (url.pathname !== '/' && url.pathname !== '')
  ) {
    throw new ConfigError(path, input, expected);
  }
  const secure = url.protocol === 'https:';
  const port = url.port === '' ? (secure ? 443 : 8500) : Number(url.port);
  const bare = url.hostname.replace(/^\[|\]$/g, '');
  if (!isValidHost(bare) || !isValidPort(port)) throw new ConfigError(path, input, expected);
  const host = bare.includes(':') ? `[${bare}]` : bare;
  return { host, port, secure, url: `${url.protocol}//${host}:${port}` };
}

/**
 * One answer: the decoded body and the response headers.
 *
 * @example
 * ```ts
 * const { body, headers } = await api.get('catalog lookup', (o) => api.client.catalog.service.list(o as never), {}, 5_000);
 * ```
 */
export interface ConsulAnswer {
  readonly body: unknown;
  readonly headers: IncomingHttpHeaders;
  readonly statusCode: number;
}

type Call = (options: Record<string, unknown>) => Promise<unknown>;
type Ctx = EventEmitter & { includeResponse?: boolean };
interface Res {
  statusCode?: number;
  headers?: IncomingHttpHeaders;
  body?: unknown;
}

/**
 * One connection to a Consul agent through the `consul` package, with timeouts on the injected clock and
 * cancellation of everything in flight on {@link ConsulApi.close}.
 *
 * @example
 * ```ts
 * const api = new ConsulApi(parseAgentAddress('127.0.0.1:8500', 'address'), undefined, systemClock);
 * const { body, headers } = await api.get('health query', (o) => api.client.health.service(o as never), { service: 'users' }, 5_000);
 * await api.close();
 * ```
 */
export class ConsulApi {
  /** The underlying `consul` client (its keep-alive agent is destroyed on close). */
  readonly client: Consul;
  readonly address: AgentAddress;
  readonly #token: string | undefined;
  readonly #clock: Clock;
  readonly #inflight = new Set<Ctx>();
  readonly #aborts = new Set<AbortController>();
  #http: UndiciClient | undefined;
  #closed = false;

  constructor(address: AgentAddress, token: string | undefined, clock: Clock) {
    this.address = address;
    this.#token = token === '' ? undefined : token;
    this.#clock = clock;
    this.client = new Consul({ host: address.host, port: address.port, secure: address.secure });
    // papi's Client is an EventEmitter; an 'error' without a listener would crash the process.
    (this.client as unknown as EventEmitter).on('error', () => {});
  }

  /** True when a token is configured (the token itself is never readable). */
  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  /** Replaces every occurrence of the token in `text`. */
  scrub(text: string): string {
    return this.#token ? text.split(this.#token).join('<redacted>') : text;
  }

  /**
   * Runs one call of the `consul` client with the token, a timeout and cancellation; `what` names the call
   * in error messages.
   */
  async get(
    what: string,
    call: Call,
    options: Record<string, unknown>,
    timeoutMs: number,
  ): Promise<ConsulAnswer> {
    if (this.#closed) throw new ConsulRequestError('closed', `Consul ${what}: the client is closed`);
    const ctx: Ctx = new EventEmitter();
    ctx.includeResponse = true;
    let timedOut = false;
    const timer: TimerHandle = this.#clock.setTimeout(() => {
      timedOut = true;
      ctx.emit('cancel');
    }, timeoutMs);
    this.#inflight.add(ctx);
    try {
      const out = await call({ ...options, ...(this.#token ? { token: this.#token } : {}), ctx });
      const [res, body] = (Array.isArray(out) ? out : [undefined, out]) as [Res | undefined, unknown];
      return { body, headers: res?.headers ?? {}, statusCode: res?.statusCode ?? 200 };
    } catch (err) {
      throw this.#toError(err, what, timedOut, timeoutMs);
    } finally {
      this.#clock.clearTimeout(timer);
      this.#inflight.delete(ctx);
    }
  }

  #toError(err: unknown, what: string, timedOut: boolean, timeoutMs: number): ConsulRequestError {
    if (this.#closed) return new ConsulRequestError('closed', `Consul ${what}: cancelled by close()`);
    if (timedOut)
      return new ConsulRequestError('timeout', `Consul ${what} timed out after ${Math.round(timeoutMs)} ms`);
    const e = (typeof err === 'object' && err !== null ? err : {}) as {
      isResponse?: boolean;
      isCodec?: boolean;
      code?: unknown;
      message?: unknown;
      response?: Res;
    };
    if (e.isResponse && e.response) {
      const status = e.response.statusCode ?? 0;
      const body = e.response.body;
      let detail = typeof body === 'string' ? body.trim() : typeof e.message === 'string' ? e.message : '';
      detail = detail.replace(/^consul: [\w.]+: /, '');
      if (detail.length > 200) detail = `${detail.slice(0, 197)}...`;
      detail = this.scrub(detail);
      const kind: ConsulErrorKind = status === 403 ? 'acl' : 'http';
      return new ConsulRequestError(
        kind,
        `Consul ${what} failed: HTTP ${status}${detail ? ` ${detail}` : ''}`,
        status,
      );
    }
    const message = this.scrub(typeof e.message === 'string' ? e.message : String(err)).replace(
      /^consul: [\w.]+: /,
      '',
    );
    if (e.isCodec)
      return new ConsulRequestError('malformed', `Consul ${what} returned a malformed answer: ${message}`);
    const code = typeof e.code === 'string' ? e.code : undefined;
    return new ConsulRequestError(
      'unreachable',
      `Consul ${what} failed: agent ${this.address.url} unreachable (${code ?? message})`,
    );
  }

  /**
   * `PUT path` with a JSON body straight through the agent's HTTP API (undici), for the fields the `consul`
   * package drops: its `agent.service.register` builds the body from a fixed list of keys without `Weights`
   * (consul/lib/utils.js, `_createService`). Same token, timeout on the injected clock, cancellation on close
   * and error kinds as {@link ConsulApi.get}.
   *
   * @example
   * ```ts
   * await api.put('registration of "users-1"', '/v1/agent/service/register', { Name: 'users', Weights: { Passing: 3, Warning: 1 } }, 5_000);
   * ```
   */
  async put(what: string, path: string, body: unknown, timeoutMs: number): Promise<void> {
    if (this.#closed) throw new ConsulRequestError('closed', `Consul ${what}: the client is closed`);
    // No keep-alive (`pipelining: 0`): registrations are rare (at start, after an agent restart), and an idle
    // socket left behind would outlive the call for nothing.
    this.#http ??= new UndiciClient(this.address.url, { pipelining: 0 });
    const abort = new AbortController();
    let timedOut = false;
    const timer: TimerHandle = this.#clock.setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeoutMs);
    this.#aborts.add(abort);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.#token) headers['x-consul-token'] = this.#token;
      const res = await this.#http.request({
        method: 'PUT',
        path,
        headers,
        body: JSON.stringify(body),
        signal: abort.signal,
      });
      const text = await res.body.text();
      if (res.statusCode >= 300) {
        let detail = this.scrub(text.trim());
        if (detail.length > 200) detail = `${detail.slice(0, 197)}...`;
        throw new ConsulRequestError(
          res.statusCode === 403 ? 'acl' : 'http',
          `Consul ${what} failed: HTTP ${res.statusCode}${detail ? ` ${detail}` : ''}`,
          res.statusCode,
        );
      }
    } catch (err) {
      if (err instanceof ConsulRequestError) throw err;
      if (this.#closed) throw new ConsulRequestError('closed', `Consul ${what}: cancelled by close()`);
      if (timedOut)
        throw new ConsulRequestError('timeout', `Consul ${what} timed out after ${Math.round(timeoutMs)} ms`);
      const code = (err as { code?: unknown })?.code;
      throw new ConsulRequestError(
        'unreachable',
        `Consul ${what} failed: agent ${this.address.url} unreachable (${typeof code === 'string' ? code : this.scrub(String((err as Error)?.message ?? err))})`,
      );
    } finally {
      this.#clock.clearTimeout(timer);
      this.#aborts.delete(abort);
    }
  }

  /** Cancels every request in flight and closes the keep-alive sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const ctx of [...this.#inflight]) ctx.emit('cancel');
    this.#inflight.clear();
    for (const a of [...this.#aborts]) a.abort();
    this.#aborts.clear();
    this.client.destroy();
    await this.#http?.destroy();
  }

  /** JSON form: the address only (never the token). */
  toJSON(): { address: string; token: boolean } {
    return { address: this.address.url, token: this.hasToken };
  }
}
