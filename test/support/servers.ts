// Real node:http servers on loopback, port 0, whose behaviour each test controls.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type TestHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;

export interface TestServer {
  readonly server: Server;
  readonly port: number;
  readonly address: string; // 127.0.0.1:port
  readonly received: Received[];
  handler: TestHandler;
  close(): Promise<void>;
  /** Sockets currently open on the server side. */
  readonly openSockets: number;
}

export const echoHandler: TestHandler = (req, res, body) => {
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') }),
  );
};

/**
 * Starts a server. By default it buffers the request body and answers with an echo; set `streamBody: true`
 * to get the request unread (the handler reads it).
 */
export async function startServer(
  handler: TestHandler = echoHandler,
  options: { streamBody?: boolean; keepAliveTimeout?: number } = {},
): Promise<TestServer> {
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  const state = { handler };
  const server = createServer((req, res) => {
    if (options.streamBody) {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.alloc(0) });
      void Promise.resolve(state.handler(req, res, Buffer.alloc(0))).catch((err) =>
        res.destroy(err as Error),
      );
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      void Promise.resolve(state.handler(req, res, body)).catch((err) => res.destroy(err as Error));
    });
  });
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    received,
    get handler() {
      return state.handler;
    },
    set handler(h: TestHandler) {
      state.handler = h;
    },
    get openSockets() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on which nothing listens (bound then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
