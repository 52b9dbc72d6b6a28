/**
 * The HTTP side of Consul discovery and registration. Registration calls go through the `consul` npm package
 * ({@link ConsulApi.get}); discovery reads (`/v1/health/service`, `/v1/catalog/services`,
 * `/v1/acl/token/self`) go through undici ({@link ConsulApi.read}), because the `consul` package buffers a
 * whole answer before it can be looked at, and a discovery answer must be limited while it is read (a huge
 * one would otherwise be read and parsed in full, stalling the event loop). Both add what the mesh needs
 * around each call: a client-side timeout on the injected clock, cancellation of every in-flight request on
 * close, the response headers (`X-Consul-Index`), and errors that are typed, short and safe.
 *
 * Safety: the ACL token is held in a private field, sent only as the `X-Consul-Token` header, scrubbed from
 * any text that could echo it, and the raw client errors (which reference the request and its headers) are
 * never kept or exposed: a {@link ConsulRequestError} carries only the kind, the status and a short detail.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import Consul from 'consul';
import { Client as UndiciClient, Pool } from 'undici';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { ConfigError } from '../../core/errors.js';
import { isValidHost, isValidPort } from '../endpoint.js';

/**
 * What went wrong with a call to Consul: the agent could not be reached, the call timed out, ACLs refused
 * the token (HTTP 403), another HTTP error, an answer that is not what the API documents, an answer larger
 * than `maxResponseBytes`, or the client was closed.
 *
 * @example
 * ```ts
 * if (err instanceof ConsulRequestError && err.kind === 'unreachable') console.log('is the agent running?');
 * ```
 */
export type ConsulErrorKind =
  'unreachable' | 'timeout' | 'acl' | 'http' | 'malformed' | 'too-large' | 'closed';

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
 * A Consul answer larger than the `maxResponseBytes` option of `consulDiscovery`: it was abandoned at the
 * limit (or at once, from its `Content-Length`), never read or parsed in full. `option` names the option that
 * sets the limit, `limitBytes` is its value and `receivedBytes` how much of the answer was read.
 *
 * @example
 * ```ts
 * if (resolver.lastError instanceof ConsulResponseTooLargeError) console.log(resolver.lastError.option);
 * ```
 */
export class ConsulResponseTooLargeError extends ConsulRequestError {
  readonly option = 'maxResponseBytes';
  readonly limitBytes: number;
  readonly receivedBytes: number;
  /** The answer's `Content-Length`, when it declared one. */
  readonly declaredBytes: number | undefined;
  constructor(what: string, limitBytes: number, receivedBytes: number, declaredBytes: number | undefined) {
    super(
      'too-large',
      `Consul ${what} answered more than ${limitBytes} bytes (${formatBytes(limitBytes)}), the limit set by ` +
        `consulDiscovery({ maxResponseBytes })` +
        (declaredBytes !== undefined ? `: Content-Length ${declaredBytes}` : '') +
        `; the answer was abandoned after ${receivedBytes} bytes. Raise maxResponseBytes, or narrow the ` +
        `answer (tags, nodeMeta, passingOnly)`,
    );
    this.name = 'ConsulResponseTooLargeError';
    this.limitBytes = limitBytes;
    this.receivedBytes = receivedBytes;
    this.declaredBytes = declaredBytes;
  }
}

function formatBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;
}

/**
 * A query string value: a string, a number, `true` (sent as `1`), or several values (the key repeated).
 *
 * @example
 * ```ts
 * const q: ConsulQuery = { passing: true, tag: ['a', 'b'], index: '42', wait: '30000ms' };
 * ```
 */
export type ConsulQuery = Readonly<Record<string, string | number | boolean | readonly string[] | undefined>>;

/** How much of an error answer is read for its message. */
const ERROR_DETAIL_BYTES = 4 * 1024;

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
  readonly #reads = new Set<AbortController>();
  #pool: Pool | undefined;
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

  /**
   * Reads one discovery endpoint with undici, enforcing `maxBytes` while the answer arrives: an answer whose
   * `Content-Length` is larger is abandoned before its body is read, and a chunked one as soon as it passes
   * the limit (a {@link ConsulResponseTooLargeError}). A JSON answer is parsed; an empty one is `undefined`;
   * any other is text. A non-2xx answer is an error (`acl` for 403) carrying the first bytes of its body.
   *
   * @example
   * ```ts
   * const { body, headers } = await api.read('health query', '/v1/health/service/users', { passing: true }, 5_000, 16 * 1024 * 1024);
   * ```
   */
  async read(
    what: string,
    path: string,
    query: ConsulQuery,
    timeoutMs: number,
    maxBytes: number,
  ): Promise<ConsulAnswer> {
    if (this.#closed) throw new ConsulRequestError('closed', `Consul ${what}: the client is closed`);
    const ac = new AbortController();
    let timedOut = false;
    const timer: TimerHandle = this.#clock.setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    this.#reads.add(ac);
    try {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (this.#token) headers['x-consul-token'] = this.#token;
      this.#pool ??= new Pool(
        `${this.address.secure ? 'https' : 'http'}://${this.address.host}:${this.address.port}`,
        // Our own timeouts (on the injected clock) bound each call; a blocking query may wait for minutes.
        { connections: 2, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4_000 },
      );
      const res = await this.#pool.request({
        method: 'GET',
        path: `${path}${queryString(query)}`,
        headers,
        signal: ac.signal,
      });
      const status = res.statusCode;
      const ok = status >= 200 && status < 300;
      const limit = ok ? maxBytes : ERROR_DETAIL_BYTES;
      const cl = res.headers['content-length'];
      const declared = typeof cl === 'string' && /^[0-9]+$/.test(cl) ? Number(cl) : undefined;
      if (ok && declared !== undefined && declared > maxBytes) {
        res.body.destroy();
        throw new ConsulResponseTooLargeError(what, maxBytes, 0, declared);
      }
      const chunks: Buffer[] = [];
      let received = 0;
      let truncated = false;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (received + chunk.length > limit) {
          received += chunk.length;
          res.body.destroy();
          if (ok) throw new ConsulResponseTooLargeError(what, maxBytes, received, declared);
          chunks.push(chunk.subarray(0, Math.max(0, limit - (received - chunk.length))));
          truncated = true;
          break;
        }
        received += chunk.length;
        chunks.push(chunk);
      }
      const raw = Buffer.concat(chunks);
      if (!ok) {
        let detail = raw.toString('utf8').trim();
        if (truncated || detail.length > 200) detail = `${detail.slice(0, 197)}...`;
        detail = this.scrub(detail);
        throw new ConsulRequestError(
          status === 403 ? 'acl' : 'http',
          `Consul ${what} failed: HTTP ${status}${detail ? ` ${detail}` : ''}`,
          status,
        );
      }
      const mime = String(res.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      let body: unknown;
      if (raw.length === 0) body = undefined;
      else if (mime === 'application/json') {
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch (err) {
          throw new ConsulRequestError(
            'malformed',
            `Consul ${what} returned a malformed answer: ${this.scrub(String((err as Error).message))}`,
          );
        }
      } else body = raw.toString('utf8');
      return { body, headers: res.headers as IncomingHttpHeaders, statusCode: status };
    } catch (err) {
      if (err instanceof ConsulRequestError) {
        if (this.#closed) throw new ConsulRequestError('closed', `Consul ${what}: cancelled by close()`);
        throw err;
      }
      throw this.#toError(err, what, timedOut, timeoutMs);
    } finally {
      this.#clock.clearTimeout(timer);
      this.#reads.delete(ac);
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
    const cause = (e as { cause?: { code?: unknown } }).cause;
    const code =
      typeof e.code === 'string' && !e.code.startsWith('UND_ERR_')
        ? e.code
        : typeof cause?.code === 'string'
          ? cause.code
          : typeof e.code === 'string'
            ? e.code
            : undefined;
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
    for (const ac of [...this.#reads, ...this.#aborts]) ac.abort();
    this.#reads.clear();
    this.#aborts.clear();
    this.client.destroy();
    const pool = this.#pool;
    this.#pool = undefined;
    await Promise.all([pool?.destroy().catch(() => {}), this.#http?.destroy()]);
  }

  /** JSON form: the address only (never the token). */
  toJSON(): { address: string; token: boolean } {
    return { address: this.address.url, token: this.hasToken };
  }
}

/** `?a=1&b=x&b=y` from a query (undefined and false values left out), or '' when empty. */
function queryString(query: ConsulQuery): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === false) continue;
    const values = Array.isArray(v) ? (v as readonly string[]) : [v === true ? '1' : String(v)];
    for (const x of values) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(x)}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}
