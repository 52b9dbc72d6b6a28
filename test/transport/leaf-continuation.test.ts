// The pool leaf as a MappingService (src/core/service.ts): `callThen(req, ctx, k)` settles exactly as
// `call(req, ctx).then(k.answered, k.failed)` would, against a real server and a refusing port.
import { afterEach, describe, expect, it } from 'vitest';
import { CallContext } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MeshRequest, MeshResponse } from '../../src/core/message.js';
import type { Continuation } from '../../src/core/service.js';
import { defaultTransportOptions, PoolService } from '../../src/transport/pool.js';
import { closedPort, startServer, type TestServer } from '../support/servers.js';

let server: TestServer | undefined;
let leaf: PoolService | undefined;
afterEach(async () => {
  await leaf?.close();
  leaf = undefined;
  await server?.close();
  server = undefined;
});

const request = (): MeshRequest => ({
  method: 'GET',
  protocol: 'http:',
  authority: 'svc',
  service: 'svc',
  path: '/',
  headers: {},
  body: null,
});
const context = (): CallContext => new CallContext('svc', undefined, Infinity, undefined, 0, silentLogger);

function leafOn(address: string): PoolService {
  leaf = new PoolService(address, 'svc', address, defaultTransportOptions, 'logical');
  return leaf;
}

describe("the pool leaf's continuation", () => {
  it("hands the answer to `answered`, after the call has returned, and settles with what it returns", async () => {
    server = await startServer((_req, res) => {
      res.end('hello');
    });
    const calls: string[] = [];
    let inDispatch = true;
    const k: Continuation<string> = {
      answered: (res) => {
        calls.push(`answered ${res.statusCode} ${inDispatch ? 'sync' : 'later'}`);
        return (res.body as unknown as { text(): Promise<string> }).text();
      },
      failed: (err) => {
        calls.push('failed');
        throw err;
      },
    };
    const p = leafOn(server.address).callThen(request(), context(), k);
    inDispatch = false;
    expect(await p).toBe('hello');
    expect(calls).toEqual(['answered 200 later']);
  });

  it('a throw from `answered` rejects the call and is not handed to `failed`', async () => {
    server = await startServer((_req, res) => {
      res.end('x');
    });
    const calls: string[] = [];
    let body: MeshResponse['body'] | undefined;
    const k: Continuation<never> = {
      answered: (res) => {
        calls.push('answered');
        body = res.body;
        throw new Error('mapping broke');
      },
      failed: () => {
        calls.push('failed');
        throw new Error('should not run');
      },
    };
    await expect(leafOn(server.address).callThen(request(), context(), k)).rejects.toThrow('mapping broke');
    expect(calls).toEqual(['answered']);
    body?.destroy();
  });

  it('a refused connection goes to `failed`, which may recover', async () => {
    const port = await closedPort();
    const seen: unknown[] = [];
    const k: Continuation<string> = {
      answered: () => 'answered',
      failed: (err) => {
        seen.push(err);
        return 'recovered';
      },
    };
    expect(await leafOn(`127.0.0.1:${port}`).callThen(request(), context(), k)).toBe('recovered');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ name: 'TransportError', phase: 'connect' });
  });

  it('`call` is the continuation that hands the outcome on as it is', async () => {
    server = await startServer((_req, res) => {
      res.end('plain');
    });
    const res = await leafOn(server.address).call(request(), context());
    expect(res.statusCode).toBe(200);
    expect(await (res.body as unknown as { text(): Promise<string> }).text()).toBe('plain');
    const port = await closedPort();
    const other = new PoolService(
      `127.0.0.1:${port}`,
      'svc',
      `127.0.0.1:${port}`,
      defaultTransportOptions,
      'logical',
    );
    await expect(other.call(request(), context())).rejects.toMatchObject({ name: 'TransportError' });
    await other.close();
  });
});
