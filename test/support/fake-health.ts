/**
 * Fault injection for Consul discovery: a tiny loopback HTTP server that answers `/v1/health/service/:name`
 * the way an agent does (JSON array, `X-Consul-Index`, blocking queries held until something changes), and
 * can be switched to answer with a huge body, to test that discovery survives it. It is not an imitation of
 * Consul for the behaviour under test elsewhere (those tests run a real agent); it only produces answers a
 * real agent with tens of thousands of instances would, without registering them.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A health answer of about `bytes` bytes: valid JSON, `count` distinct passing instances on 10.x.y.z:8080
 * (each padded with service meta to about 1 KB), so that a client which reads it in full parses real work.
 *
 * @example
 * ```ts
 * const body = healthAnswer(23_000_000); // ~23 MB, ~22 000 instances
 * ```
 */
export function healthAnswer(bytes: number, service = 'users'): Buffer {
  const pad = 'x'.repeat(700);
  const parts: string[] = [];
  let size = 2;
  for (let i = 0; size < bytes; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const entry = JSON.stringify({
      Node: { Node: `node-${i}`, Address: ip, Datacenter: 'dc1' },
      Service: {
        ID: `${service}-${i}`,
        Service: service,
        Address: ip,
        Port: 8080,
        Tags: ['v1'],
        Meta: { pad },
        Weights: { Passing: 1, Warning: 1 },
      },
      Checks: [{ Node: `node-${i}`, CheckID: 'serfHealth', Status: 'passing' }],
    });
    parts.push(entry);
    size += entry.length + 1;
  }
  return Buffer.from(`[${parts.join(',')}]`);
}

/** What the fake agent answers to the next health query. */
export type HealthMode =
  | { kind: 'answer'; body: Buffer }
  /**
   * The body without a Content-Length (chunked), written in 64 KiB pieces, waiting for drain. With
   * `holdAfter`, only that many bytes are sent and the rest is held until the client closes the connection:
   * a client that reads answers whole would wait, one that stops at a limit is seen closing it.
   */
  | { kind: 'chunked'; body: Buffer; holdAfter?: number }
  /** The body with its Content-Length. */
  | { kind: 'declared'; body: Buffer };

/** How one huge answer went, seen from the server. */
export interface Delivery {
  /** Bytes the server handed to the socket before the client closed it (or all of them). */
  written: number;
  /** The whole body was written. */
  finished: boolean;
  /** The client closed the connection before the body was written in full. */
  abandoned: boolean;
}

export interface FakeHealthAgent {
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** Health queries received. */
  readonly queries: number;
  /** One entry per answer sent in a `chunked` or `declared` mode. */
  readonly deliveries: readonly Delivery[];
  /** Sets the answer and releases every held blocking query with it (its index goes up by one). */
  set(mode: HealthMode): void;
  close(): Promise<void>;
}

/**
 * Starts the fake agent. A query without `index` (or with an index older than the current one) is answered
 * at once; a blocking query with the current index is held until {@link FakeHealthAgent.set}.
 *
 * @example
 * ```ts
 * const agent = await startFakeHealthAgent({ kind: 'answer', body: healthAnswer(2_000) });
 * agent.set({ kind: 'chunked', body: healthAnswer(23_000_000) });
 * ```
 */
export async function startFakeHealthAgent(initial: HealthMode): Promise<FakeHealthAgent> {
  let mode = initial;
  let index = 1;
  let queries = 0;
  const deliveries: Delivery[] = [];
  const held: ServerResponse[] = [];

  const answer = (res: ServerResponse): void => {
    const headers = { 'content-type': 'application/json', 'x-consul-index': String(index) };
    if (mode.kind === 'answer') {
      res.writeHead(200, { ...headers, 'content-length': mode.body.length });
      res.end(mode.body);
      return;
    }
    const body = mode.body;
    const d: Delivery = { written: 0, finished: false, abandoned: false };
    deliveries.push(d);
    res.on('close', () => {
      if (!d.finished) d.abandoned = true;
    });
    if (mode.kind === 'declared') {
      res.writeHead(200, { ...headers, 'content-length': body.length });
    } else {
      res.writeHead(200, headers);
    }
    const step = 64 * 1024;
    const end = mode.kind === 'chunked' && mode.holdAfter !== undefined ? mode.holdAfter : body.length;
    const pump = (): void => {
      while (d.written < end && !res.destroyed) {
        const piece = body.subarray(d.written, Math.min(end, d.written + step));
        d.written += piece.length;
        if (!res.write(piece)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed && d.written >= body.length) {
        res.end(() => {
          d.finished = true;
        });
      }
    };
    pump();
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (!url.pathname.startsWith('/v1/health/service/')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    queries++;
    const asked = Number(url.searchParams.get('index') ?? '0');
    if (asked >= index) {
      held.push(res);
      res.on('close', () => {
        const i = held.indexOf(res);
        if (i >= 0) held.splice(i, 1);
      });
      return;
    }
    answer(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    get queries() {
      return queries;
    },
    deliveries,
    set(next) {
      mode = next;
      index++;
      for (const res of held.splice(0)) answer(res);
    },
    async close() {
      for (const res of held.splice(0)) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
