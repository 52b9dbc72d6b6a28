// Real node:https and node:http2 servers on loopback, port 0, for the TLS and HTTP/2 tests: they count TCP
// connections, TLS handshakes (and refused ones) and HTTP/2 sessions, so tests can assert how many the
// mesh opened.
import { once } from 'node:events';
import {
  createSecureServer,
  createServer as createH2cServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type ServerHttp2Stream,
  type IncomingHttpHeaders as H2Headers,
  type SecureServerOptions,
} from 'node:http2';
import {
  createServer as createHttpsServer,
  type Server as HttpsServer,
  type ServerOptions,
} from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface TlsTestServer {
  readonly port: number;
  readonly address: string;
  /** TCP connections accepted. */
  readonly connections: number;
  /** TLS handshakes completed. */
  readonly handshakes: number;
  /** TLS handshakes the server refused or that failed (tlsClientError). */
  readonly tlsErrors: Error[];
  /** Requests that reached the handler. */
  readonly requests: number;
  /** Sockets open now. */
  readonly openSockets: number;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

function track(server: NetServer, secure: boolean) {
  const sockets = new Set<Socket>();
  const stats = { connections: 0, handshakes: 0, tlsErrors: [] as Error[], requests: 0 };
  server.on('connection', (s: Socket) => {
    stats.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  if (secure) {
    server.on('secureConnection', () => stats.handshakes++);
    server.on('tlsClientError', (e: Error) => stats.tlsErrors.push(e));
  }
  return { sockets, stats };
}

async function listen(server: NetServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/**
 * An https server (HTTP/1.1) with the given TLS options. The default handler answers `ok <CN of the client
 * certificate, if any>`.
 */
export async function startHttpsServer(
  options: ServerOptions,
  handler: Handler = (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate?.();
    res.end(`ok ${peer?.subject?.CN ?? ''}`.trim());
  },
): Promise<TlsTestServer & { server: HttpsServer; handler: Handler }> {
  const state = { handler };
  const server = createHttpsServer(options, (req, res) => {
    t.stats.requests++;
    void Promise.resolve(state.handler(req, res)).catch((e) => res.destroy(e as Error));
  });
  const t = track(server, true);
  const port = await listen(server);
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    get handler() {
      return state.handler;
    },
    set handler(h: Handler) {
      state.handler = h;
    },
    get connections() {
      return t.stats.connections;
    },
    get handshakes() {
      return t.stats.handshakes;
    },
    get tlsErrors() {
      return t.stats.tlsErrors;
    },
    get requests() {
      return t.stats.requests;
    },
    get openSockets() {
      return t.sockets.size;
    },
    close: () => closeServer(server, t.sockets),
  };
}

export type StreamHandler = (
  stream: ServerHttp2Stream,
  headers: H2Headers,
  session: Http2Session,
) => void | Promise<void>;

export interface H2TestServer extends TlsTestServer {
  readonly server: Http2SecureServer | Http2Server;
  /** HTTP/2 sessions opened. */
  readonly sessions: Http2Session[];
  /** Streams that reached the handler. */
  handler: StreamHandler;
}

/**
 * An HTTP/2 server: over TLS (`tls` given; `allowHTTP1` as set) or cleartext (h2c, prior knowledge). The
 * default handler answers `ok <http version>`.
 */
export async function startH2Server(
  tls: SecureServerOptions | undefined,
  handler: StreamHandler = (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('ok 2.0');
  },
  compat?: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
): Promise<H2TestServer> {
  const state = { handler };
  const sessions: Http2Session[] = [];
  const server = tls ? createSecureServer(tls, compat) : createH2cServer(compat);
  const t = track(server, tls !== undefined);
  server.on('session', (s: Http2Session) => sessions.push(s));
  if (compat === undefined) {
    server.on('stream', (stream, headers) => {
      t.stats.requests++;
      stream.on('error', () => {});
      void Promise.resolve(state.handler(stream, headers, stream.session!)).catch(() => stream.destroy());
    });
  } else {
    server.on('request', () => t.stats.requests++);
  }
  const port = await listen(server);
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    sessions,
    get handler() {
      return state.handler;
    },
    set handler(h: StreamHandler) {
      state.handler = h;
    },
    get connections() {
      return t.stats.connections;
    },
    get handshakes() {
      return t.stats.handshakes;
    },
    get tlsErrors() {
      return t.stats.tlsErrors;
    },
    get requests() {
      return t.stats.requests;
    },
    get openSockets() {
      return t.sockets.size;
    },
    close: () => {
      for (const s of sessions) if (!s.destroyed) s.destroy();
      return closeServer(server, t.sockets);
    },
  };
}

function closeServer(server: NetServer, sockets: Set<Socket>): Promise<void> {
  return new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });
}
