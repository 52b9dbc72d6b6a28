/**
 * The endpoint leaf: one undici `Pool` per resolved address, called with `pool.request()` (2-3x the
 * throughput of `fetch`). The pool is created on the first request, so a service with thousands of
 * endpoints costs nothing until it sends. When discovery removes the endpoint, {@link PoolService.close}
 * stops new requests and lets in-flight ones finish before the sockets close.
 *
 * Keep-alive: the client's idle timeout (4 s) sits below common server idle timeouts (Node's http server
 * closes idle sockets after 5 s), and undici honours a server's `Keep-Alive: timeout=N` hint minus a
 * threshold, so the client closes an idle socket before the server does (the idle-close race,
 * nodejs/undici#3492). undici's own 300 s headers/body timeouts are disabled: the mesh's deadline module owns
 * time, so they can never be the limit a user meets unknowingly.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import type { CallContext } from '../core/context.js';
import { InvalidRequestError, TransportError, type Phase } from '../core/errors.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import type { Service, ServiceStatus } from '../core/service.js';
import { MeshRequestHandler } from './handler.js';

/** TLS options for the connections to a service's endpoints. */
export interface TlsOptions {
  /** SNI server name; defaults to the logical service name when the URL is https. */
  servername?: string;
  ca?: string | Buffer | Array<string | Buffer>;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized?: boolean;
}

/**
 * Connection settings for a service's endpoints.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: ['10.0.0.1:443'], transport: { connections: 32, http2: true } } } });
 * ```
 */
export interface TransportOptions {
  /** Maximum connections per endpoint. Default 128. */
  connections: number;
  /** Idle time after which the client closes a kept-alive socket (ms). Default 4000. */
  keepAliveTimeoutMs: number;
  /** Upper bound on a server's Keep-Alive hint (ms). Default 600000. */
  keepAliveMaxTimeoutMs: number;
  /** Subtracted from the server's Keep-Alive hint so the client closes first (ms). Default 1000. */
  keepAliveTimeoutThresholdMs: number;
  /** TCP (and TLS) connect timeout (ms). Default 10000. */
  connectTimeoutMs: number;
  /** Negotiate HTTP/2 over TLS (ALPN). Default false. */
  http2: boolean;
  /** TLS settings for https services. */
  tls: TlsOptions | undefined;
}

/** The transport defaults. */
export const defaultTransportOptions: Readonly<TransportOptions> = Object.freeze({
  connections: 128,
  keepAliveTimeoutMs: 4_000,
  keepAliveMaxTimeoutMs: 600_000,
  keepAliveTimeoutThresholdMs: 1_000,
  connectTimeoutMs: 10_000,
  http2: false,
  tls: undefined,
});

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Codes with which a peer's close of a kept-alive socket reaches a request sent on it (nodejs/undici#3492). */
const IDLE_CLOSE_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * Socket errors raised on a socket that had already read a response (a reused, kept-alive connection). undici
 * attaches the socket's byte counts to its own `SocketError` ("other side closed"), but a reset (`ECONNRESET`)
 * or a write to a closed socket (`EPIPE`), the commonest forms of the idle-close race, reach the request as
 * the socket's plain system error. undici publishes every new connection on the `undici:client:connected`
 * diagnostics channel (public API, once per connection, not per request): each socket gets a listener that
 * notes, when an error happens on it, whether it had read anything before. A WeakSet, so nothing is added to
 * an error another library might see, and nothing is kept.
 */
const reusedSocketErrors = new WeakSet<object>();
let watchingSockets = false;

function noteSocketError(this: Socket, err: Error): void {
  if (this.bytesRead > 0) reusedSocketErrors.add(err);
}

function watchSockets(): void {
  if (watchingSockets) return;
  watchingSockets = true;
  subscribe('undici:client:connected', (message) => {
    const socket = (message as { socket?: Socket }).socket;
    if (socket !== undefined && typeof socket.on === 'function') socket.on('error', noteSocketError);
  });
}

/**
 * Maps an undici/system error to a {@link TransportError} with its phase. A failure to connect is
 * `retryable` (the request provably never reached the server).
 *
 * `idleClose` marks the idle-close race: a reused socket (one that had read an earlier response) that failed
 * before any byte of this request's response with "other side closed", `ECONNRESET` or `EPIPE`. It is a fact
 * about the connection, not a licence to resend: the server may have read the request before it closed. The
 * retry filter resends it at once, free of budget, only when the request is idempotent (Go's net/http rule);
 * for any other request the error stays `retryable: false`.
 */
export function toTransportError(
  err: unknown,
  service: string,
  endpoint: string,
  gotHeaders: boolean,
): unknown {
  if (!(err instanceof Error)) return err;
  if (
    err.name === 'AbortError' ||
    err.name === 'TimeoutError' ||
    (err as { code?: string }).code === 'MESH_DEADLINE_EXCEEDED'
  )
    return err;
  if ('code' in err && typeof err.code === 'string' && err.code.startsWith('MESH_')) return err;
  const code = (err as { code?: string }).code;
  // undici refused the request's own arguments (a header, the body, a length): the caller's mistake, which
  // the entry points' validation should have caught; never a transport failure of the endpoint.
  if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH')
    return new InvalidRequestError('request', err.message, 'a request undici accepts');
  const connect = code !== undefined && CONNECT_CODES.has(code);
  const phase: Phase = connect ? 'connect' : gotHeaders ? 'body' : 'headers';
  // undici's SocketError carries the socket's byte counts; a system error on one of the pools' sockets was
  // noted by the socket's own listener (above).
  const socket = (err as { socket?: { bytesRead?: number } }).socket;
  const idleClose =
    !gotHeaders &&
    code !== undefined &&
    IDLE_CLOSE_CODES.has(code) &&
    ((socket !== undefined && (socket.bytesRead ?? 0) > 0) || reusedSocketErrors.has(err));
  return new TransportError(
    `${err.message} (${code ?? err.name}) talking to ${endpoint} for service "${service}"`,
    {
      phase,
      retryable: connect,
      service,
      endpoint,
      cause: err,
      causeCode: code,
      idleClose,
    },
  );
}

/**
 * One endpoint's connection pool as a {@link Service}.
 *
 * @example
 * ```ts
 * const leaf = new PoolService('127.0.0.1:8080', 'users', '127.0.0.1:8080', defaultTransportOptions, 'users');
 * const res = await leaf.call(req, ctx);
 * ```
 */
export class PoolService implements Service {
  private http: Pool | undefined;
  private https: Pool | undefined;
  private closed = false;
  private readonly hostHeader: string | undefined;

  constructor(
    /** `host:port` of the endpoint; the scheme comes from each request. */
    readonly address: string,
    readonly service: string,
    readonly endpoint: string,
    private readonly options: Readonly<TransportOptions>,
    /** The Host header: 'logical' sends the URL authority, undefined the endpoint address, any other string as is. */
    hostHeader: string | undefined,
  ) {
    this.hostHeader = hostHeader;
  }

  get status(): ServiceStatus {
    return this.closed ? 'down' : 'ready';
  }

  /** The pools' statistics (http and https), undefined before the first request of that scheme. */
  get stats(): { http: Pool['stats'] | undefined; https: Pool['stats'] | undefined } {
    return { http: this.http?.stats, https: this.https?.stats };
  }

  private createPool(protocol: 'http:' | 'https:'): Pool {
    const o = this.options;
    const tls = protocol === 'https:' ? o.tls : undefined;
    const opts: Pool.Options = {
      connections: o.connections,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      keepAliveMaxTimeout: o.keepAliveMaxTimeoutMs,
      keepAliveTimeoutThreshold: o.keepAliveTimeoutThresholdMs,
      headersTimeout: 0,
      bodyTimeout: 0,
      allowH2: o.http2,
      connect: {
        timeout: o.connectTimeoutMs,
        ...(tls
          ? {
              servername: tls.servername,
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
              rejectUnauthorized: tls.rejectUnauthorized,
            }
          : {}),
      },
    };
    watchSockets();
    return new Pool(`${protocol}//${this.address}`, opts);
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    if (this.closed) {
      return Promise.reject(
        new TransportError(`Endpoint ${this.endpoint} was removed from service "${this.service}"`, {
          phase: 'connect',
          retryable: true,
          service: this.service,
          endpoint: this.endpoint,
        }),
      );
    }
    const pool =
      req.protocol === 'http:'
        ? (this.http ??= this.createPool('http:'))
        : (this.https ??= this.createPool('https:'));
    const headers = req.headers;
    if (headers.host === undefined) {
      const h = this.hostHeader;
      if (h === 'logical') headers.host = req.authority;
      else if (h !== undefined) headers.host = h;
    }
    // undici's dispatch with the mesh's own handler (./handler.ts): no AsyncResource, no per-call closures for
    // the signal; the body is undici's BodyReadable as with pool.request.
    const method = req.method;
    const body = req.body;
    const signal = ctx.signal;
    const opts: Dispatcher.DispatchOptions = {
      method: method as Dispatcher.HttpMethod,
      path: req.path,
      headers,
      body: body as Dispatcher.DispatchOptions['body'],
    };
    // Plain http: a constant server name, so undici does not derive one from the Host header on every
    // request (net.isIP and a split, bench/overhead's profile); it is only ever used for TLS.
    if (req.protocol === 'http:') (opts as { servername?: string }).servername = this.address;
    return new Promise<MeshResponse>((resolve, reject) => {
      pool.dispatch(opts, new MeshRequestHandler(resolve, reject, signal, method, body, this.mapError));
    });
  }

  private readonly mapError = (err: unknown): unknown =>
    toTransportError(err, this.service, this.endpoint, false);

  /** Takes no new requests; resolves when in-flight requests have finished and the sockets are closed. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [this.http, this.https].map((p) => (p && !p.closed && !p.destroyed ? p.close() : undefined)),
    );
  }

  /** Aborts in-flight requests and closes the sockets now. */
  async destroy(err?: Error): Promise<void> {
    this.closed = true;
    await Promise.all(
      [this.http, this.https].map((p) => (p && !p.destroyed ? p.destroy(err ?? null) : undefined)),
    );
  }
}
