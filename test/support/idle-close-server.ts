// Fault injection for the idle-close race: a minimal HTTP/1.1 server on loopback that keeps connections alive
// without advertising `Keep-Alive`, and closes a reused connection when a request arrives on it after it has
// been idle for `idleMs`, as a server closing idle sockets does when the client's request crosses its close.
// `mode: 'reset'` closes with a TCP RST (the client reads ECONNRESET), `'fin'` with a plain close (undici's
// "other side closed"). The request is counted as received either way: it reached the server.
import { createServer, type Server, type Socket } from 'node:net';

export interface IdleCloseServer {
  readonly address: string;
  /** Requests that reached the server, by method and `x-id` header, in arrival order. */
  readonly received: Array<{ method: string; id: string }>;
  /** Connections the server closed on a request. */
  closedOnRequest: number;
  close(): Promise<void>;
}

export async function startIdleCloseServer(options: {
  idleMs: number;
  mode: 'reset' | 'fin';
}): Promise<IdleCloseServer> {
  const sockets = new Set<Socket>();
  const state: IdleCloseServer = {
    address: '',
    received: [],
    closedOnRequest: 0,
    close: () => close(),
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let served = 0;
    let idleSince = 0;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1').split('\r\n');
        const [method = ''] = head[0]!.split(' ');
        const headers = new Map(
          head.slice(1).map((l) => {
            const i = l.indexOf(':');
            return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as const;
          }),
        );
        const length = Number(headers.get('content-length') ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        state.received.push({ method, id: headers.get('x-id') ?? '' });
        if (served > 0 && performance.now() - idleSince >= options.idleMs) {
          state.closedOnRequest++;
          if (options.mode === 'reset') socket.resetAndDestroy();
          else socket.destroy();
          return;
        }
        served++;
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
        idleSince = performance.now();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (state as { address: string }).address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  function close(): Promise<void> {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  }
  return state;
}
