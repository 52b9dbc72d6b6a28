/**
 * HTTP servers on several loopback addresses (127.0.0.1, 127.0.0.2, ...: all of 127.0.0.0/8 is loopback on
 * Linux) sharing one port, the shape of a DNS name with many A records on one service port (a Kubernetes
 * headless service: every pod IP, the same container port). Each answers 200 with its own address and counts
 * its requests, so a test can tell which records took traffic.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface LoopbackFleet {
  readonly port: number;
  /** Requests per address (e.g. `hits.get('127.0.0.2')`). */
  readonly hits: Map<string, number>;
  /** Called on every request with the address that took it (benchmarks time arrivals with it). */
  onRequest: ((host: string) => void) | undefined;
  /** Adds a server on `host` (same port). */
  add(host: string): Promise<void>;
  /** Stops the server on `host` (its port then refuses connections). */
  remove(host: string): Promise<void>;
  close(): Promise<void>;
}

async function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Starts servers on `hosts` (loopback addresses), all on one free port.
 *
 * @example
 * ```ts
 * const fleet = await startLoopbackFleet(['127.0.0.1', '127.0.0.2']);
 * fleet.hits.get('127.0.0.2');
 * ```
 */
export async function startLoopbackFleet(hosts: readonly string[]): Promise<LoopbackFleet> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const servers = new Map<string, { server: Server; sockets: Set<Socket> }>();
    const hits = new Map<string, number>();
    const hooks: { onRequest: ((host: string) => void) | undefined } = { onRequest: undefined };
    let port = 0;
    const make = async (host: string): Promise<void> => {
      const sockets = new Set<Socket>();
      const server = createServer((req, res) => {
        hits.set(host, (hits.get(host) ?? 0) + 1);
        hooks.onRequest?.(host);
        req.resume();
        req.on('end', () => res.end(host));
      });
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      port = await listen(server, port, host);
      servers.set(host, { server, sockets });
    };
    const stop = async (host: string): Promise<void> => {
      const s = servers.get(host);
      if (!s) return;
      servers.delete(host);
      for (const sock of s.sockets) sock.destroy();
      await new Promise<void>((r) => s.server.close(() => r()));
    };
    try {
      for (const h of hosts) await make(h);
    } catch (err) {
      for (const h of [...servers.keys()]) await stop(h);
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
      throw err;
    }
    return {
      get port() {
        return port;
      },
      hits,
      get onRequest() {
        return hooks.onRequest;
      },
      set onRequest(f: ((host: string) => void) | undefined) {
        hooks.onRequest = f;
      },
      add: make,
      remove: stop,
      close: async () => {
        for (const h of [...servers.keys()]) await stop(h);
      },
    };
  }
  throw new Error('no port free on every loopback address');
}
