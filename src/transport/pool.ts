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
import type { Socket } from 'node:net';
import { buildConnector, Pool, type Dispatcher } from 'undici';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { InvalidRequestError, TransportError, type Phase } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import {
  observeSocket,
  toTlsError,
  type ConnectionSnapshot,
  type ConnectionState,
  type EndpointTransportSnapshot,
  type TlsOptions,
} from './tls.js';
import { tlsMaterialOf } from './tls-material.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import type { Service, ServiceStatus } from '../core/service.js';
import { wireHeaders } from '../core/header-case.js';
import { MeshRequestHandler } from './handler.js';

export type { TlsOptions } from './tls.js';

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
  /**
   * HTTP/2: `true` negotiates it over TLS (ALPN, falling back to HTTP/1.1 when the server does not offer it;
   * `http:` stays HTTP/1.1); `'h2c'` also speaks it in cleartext to `http:` URLs (prior knowledge: every
   * endpoint must speak HTTP/2). Default false.
   */
  http2: boolean | 'h2c';
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
 * the socket's plain system error. The pools' connector gives each new socket a listener (once per
 * connection, not per request) that notes, when an error happens on it, whether it had read anything before.
 * A WeakSet, so nothing is added to an error another library might see, and nothing is kept.
 */
const reusedSocketErrors = new WeakSet<object>();

function noteSocketError(this: Socket, err: Error): void {
  if (this.bytesRead > 0) reusedSocketErrors.add(err);
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
      // undici's HTTPParserError comes without its code: its name is the most precise cause there is.
      causeCode: code ?? (err.name !== 'Error' ? err.name : undefined),
      idleClose,
    },
  );
}

/** NGHTTP2_REFUSED_STREAM: the server did not process the stream (RFC 9113 section 8.7). */
const REFUSED_STREAM = 7;

/**
 * HTTP/2 streams the server provably did not process: refused (REFUSED_STREAM) or above the last stream id
 * of a GOAWAY. undici replays such a stream once itself when its body can be sent again; when it gives up the
 * error reaches the mesh, which retries it whatever the method (it is `unprocessed`, phase `send`).
 */
function toH2Unprocessed(err: unknown, service: string, endpoint: string): TransportError | undefined {
  if (!(err instanceof Error)) return undefined;
  const e = err as { code?: string; http2ErrorCode?: number };
  const refused = e.http2ErrorCode === REFUSED_STREAM;
  const goaway =
    (e.code === 'UND_ERR_INFO' || e.code === 'UND_ERR_SOCKET') && err.message.includes('"GOAWAY" frame');
  if (!refused && !goaway) return undefined;
  return new TransportError(
    `${refused ? 'HTTP/2 stream refused (REFUSED_STREAM)' : err.message} by ${endpoint} for service "${service}": not processed`,
    {
      phase: 'send',
      retryable: true,
      service,
      endpoint,
      cause: err,
      causeCode: refused ? 'REFUSED_STREAM' : 'GOAWAY',
      unprocessed: true,
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
  private readonly logger: Logger;
  /** What the connections of each scheme negotiated (snapshots, spans). */
  private readonly conn: { http: ConnectionState; https: ConnectionState } = {
    http: { protocol: undefined, opened: 0, open: 0, tls: undefined },
    https: { protocol: undefined, opened: 0, open: 0, tls: undefined },
  };
  /** Stops following the TLS material (files) of the service. */
  private releaseTls: (() => void) | undefined;
  /** https pools replaced by a certificate rotation, draining. */
  private readonly retired = new Set<Pool>();

  constructor(
    /** `host:port` of the endpoint; the scheme comes from each request. */
    readonly address: string,
    readonly service: string,
    readonly endpoint: string,
    private readonly options: Readonly<TransportOptions>,
    /** The Host header: 'logical' sends the URL authority, undefined the endpoint address, any other string as is. */
    hostHeader: string | undefined,
    logger: Logger = silentLogger,
    private readonly clock?: Clock,
  ) {
    this.hostHeader = hostHeader;
    this.logger = logger;
  }

  get status(): ServiceStatus {
    return this.closed ? 'down' : 'ready';
  }

  /** The pools' statistics (http and https), undefined before the first request of that scheme. */
  get stats(): { http: Pool['stats'] | undefined; https: Pool['stats'] | undefined } {
    return { http: this.http?.stats, https: this.https?.stats };
  }

  /**
   * What this endpoint's connections negotiated, per scheme: the protocol (`h2` or `http/1.1`), connections
   * opened and open, and for https the TLS version, cipher, server name, the server's certificate and the
   * version of the client material in use. Undefined for a scheme never used.
   */
  get connections(): { http: ConnectionState | undefined; https: ConnectionState | undefined } {
    return {
      http: this.conn.http.opened > 0 ? this.conn.http : undefined,
      https: this.conn.https.opened > 0 ? this.conn.https : undefined,
    };
  }

  /**
   * The HTTP version the last connection negotiated, as `network.protocol.version` spells it (`1.1`, `2`);
   * undefined before any connection.
   */
  protocolVersion(protocol: 'http:' | 'https:'): string | undefined {
    const p = (protocol === 'https:' ? this.conn.https : this.conn.http).protocol;
    return p === undefined ? undefined : p === 'h2' ? '2' : '1.1';
  }

  /** The `transport` part of this endpoint's snapshot; undefined before its first connection. */
  transportSnapshot(): EndpointTransportSnapshot | undefined {
    const { http, https } = this.connections;
    if (http === undefined && https === undefined) return undefined;
    const one = (c: ConnectionState, secure: boolean): ConnectionSnapshot => {
      const out: ConnectionSnapshot = { protocol: c.protocol ?? null, opened: c.opened, open: c.open };
      const t = c.tls;
      if (secure && t !== undefined) {
        const material = this.options.tls === undefined ? undefined : tlsMaterialOf(this.options.tls);
        const cc = material?.current.clientCertificate;
        out.tls = {
          version: t.version,
          cipher: t.cipher ?? null,
          servername: t.servername ?? null,
          authorized: t.authorized,
          authorizationError: t.authorizationError ?? null,
          peerCertificate: t.peerCertificate ?? null,
          materialVersion: material?.current.version ?? 0,
          clientCertificate:
            cc === undefined
              ? null
              : {
                  subject: cc.subject,
                  serialNumber: cc.serialNumber,
                  validTo: cc.validTo,
                  fingerprint256: cc.fingerprint256,
                },
          reloadError: material?.lastError?.message ?? null,
        };
      }
      return out;
    };
    return {
      ...(http !== undefined ? { http: one(http, false) } : {}),
      ...(https !== undefined ? { https: one(https, true) } : {}),
    };
  }

  private createPool(protocol: 'http:' | 'https:'): Pool {
    const o = this.options;
    const secure = protocol === 'https:';
    const tls = secure ? o.tls : undefined;
    const material = tls === undefined ? undefined : tlsMaterialOf(tls);
    if (material !== undefined && this.releaseTls === undefined)
      this.releaseTls = material.acquire(this.rotate, this.logger, this.clock);
    const m = material?.current;
    const h2c = !secure && o.http2 === 'h2c';
    const allowH2 = secure ? o.http2 !== false : h2c;
    const base = buildConnector({
      timeout: o.connectTimeoutMs,
      allowH2,
      ...(allowH2 ? { preferH2: true } : {}),
      ...(h2c ? { useH2c: true } : {}),
      ...(tls
        ? {
            servername: tls.servername,
            ca: m!.ca,
            cert: m!.cert,
            key: m!.key,
            rejectUnauthorized: tls.rejectUnauthorized,
          }
        : {}),
    } as buildConnector.BuildOptions);
    const state = secure ? this.conn.https : this.conn.http;
    // Every https connection is observed (protocol, TLS state), with or without TLS options.
    const tlsInfo = !secure
      ? undefined
      : {
          servername: tls?.servername,
          clientCert: m?.cert !== undefined,
          materialVersion: m?.version ?? 0,
        };
    // undici prefers the name it derives from each request's Host header over the connector's: a configured
    // servername must win, so it is put in the per-connection options.
    const servername = tls?.servername;
    const connect: buildConnector.connector = (o, callback) => {
      const opts = servername === undefined ? o : { ...o, servername };
      return base(opts, (err, socket) => {
        if (err === null && socket !== null) {
          const s = socket as Socket;
          s.on('error', noteSocketError); // the idle-close race in its ECONNRESET / EPIPE forms
          observeSocket(
            s,
            state,
            tlsInfo === undefined
              ? undefined
              : { ...tlsInfo, servername: tlsInfo.servername ?? opts.servername ?? undefined },
            h2c,
          );
        }
        callback(err as Error & null, socket as Socket & null);
      });
    };
    const opts: Pool.Options = {
      connections: o.connections,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      keepAliveMaxTimeout: o.keepAliveMaxTimeoutMs,
      keepAliveTimeoutThreshold: o.keepAliveTimeoutThresholdMs,
      headersTimeout: 0,
      bodyTimeout: 0,
      allowH2,
      connect,
    };
    return new Pool(`${protocol}//${this.address}`, opts);
  }

  /**
   * The service's certificate files changed: the next request opens connections with the new material;
   * the current pool drains (its requests finish, then its sockets close).
   */
  private readonly rotate = (): void => {
    const old = this.https;
    if (old === undefined || this.closed) return;
    this.https = undefined;
    this.retired.add(old);
    old
      .close()
      .catch(() => {})
      .finally(() => this.retired.delete(old));
  };

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
    const method = req.method as Dispatcher.HttpMethod;
    const body = req.body as Dispatcher.DispatchOptions['body'];
    // Names as the caller wrote them (src/core/header-case.ts).
    const wire = wireHeaders(headers);
    // Plain http: a constant server name, so undici does not derive one from the Host header on every
    // request (net.isIP and a split, bench/overhead's profile); it is only ever used for TLS. (Two literals:
    // a property added afterwards would grow the object on every call.)
    const opts: Dispatcher.DispatchOptions =
      req.protocol === 'http:'
        ? { method, path: req.path, headers: wire, body, servername: this.address }
        : { method, path: req.path, headers: wire, body };
    // No executor closure: the handler settles the promise.
    const { promise, resolve, reject } = Promise.withResolvers<MeshResponse>();
    try {
      pool.dispatch(
        opts,
        new MeshRequestHandler(resolve, reject, ctx.attemptSignal, method, body, this.mapError),
      );
    } catch (err) {
      reject(err);
    }
    return promise;
  }

  /**
   * Maps an undici error before the headers (the call rejects) or after them (`gotHeaders`: the body errors,
   * phase `body`).
   */
  private readonly mapError = (err: unknown, gotHeaders = false): unknown =>
    gotHeaders
      ? this.h2cHint(toTransportError(err, this.service, this.endpoint, true))
      : ((this.options.tls !== undefined || this.https !== undefined
          ? toTlsError(err, this.service, this.endpoint, this.options.tls?.servername)
          : undefined) ??
        toH2Unprocessed(err, this.service, this.endpoint) ??
        this.h2cHint(toTransportError(err, this.service, this.endpoint, false)));

  /** With h2c, a protocol error most often means the endpoint does not speak HTTP/2 in cleartext: say so. */
  private h2cHint(err: unknown): unknown {
    if (
      this.options.http2 !== 'h2c' ||
      !(err instanceof TransportError) ||
      err.causeCode !== 'ERR_HTTP2_ERROR' ||
      this.conn.http.opened === 0
    )
      return err;
    return new TransportError(
      `${err.message}: with transport.http2 'h2c' the endpoint must speak HTTP/2 in cleartext (prior knowledge); is it an HTTP/1.1 server?`,
      {
        phase: err.phase,
        retryable: err.retryable,
        service: this.service,
        endpoint: this.endpoint,
        cause: err.cause,
        causeCode: err.causeCode,
      },
    );
  }

  /** Takes no new requests; resolves when in-flight requests have finished and the sockets are closed. */
  async close(): Promise<void> {
    this.closed = true;
    this.releaseTls?.();
    await Promise.all(
      [this.http, this.https, ...this.retired].map((p) =>
        p && !p.closed && !p.destroyed ? p.close() : undefined,
      ),
    );
  }

  /** Aborts in-flight requests and closes the sockets now. */
  async destroy(err?: Error): Promise<void> {
    this.closed = true;
    this.releaseTls?.();
    await Promise.all(
      [this.http, this.https, ...this.retired].map((p) =>
        p && !p.destroyed ? p.destroy(err ?? null) : undefined,
      ),
    );
  }
}
