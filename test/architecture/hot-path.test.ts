// The shape of a call through the default stacks (docs/architecture.md, "the hot path"): every level hands
// the caller's continuation down (MappingService), so a call settles in one reaction over the transport's
// promise, whatever the number of levels and modules. Counted as the promises meshfetch's own code creates
// while a call is made (all of them are created in that synchronous stretch), against a real server.
import { createHook } from 'node:async_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from '../../src/index.js';
import { startServer, type TestServer } from '../support/servers.js';

/** The source file (under src/) that created each promise made while `fn` runs. */
function promisesMadeBy(fn: () => unknown): string[] {
  const made: string[] = [];
  let on = false;
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 50;
  const hook = createHook({
    init(_id, type) {
      if (!on || type !== 'PROMISE') return;
      // The first frame below this hook that is not Node's own (async_hooks) or a built-in (`new Promise`,
      // `Promise.then`, which have no file).
      const frame = new Error()
        .stack!.split('\n')
        .slice(2)
        .find((l) => /\(.*\.[cm]?[jt]s:\d+:\d+\)$/.test(l) && !l.includes('(node:'));
      const m = frame?.match(/\/src\/(.+?):\d+:\d+\)$/);
      if (m) made.push(m[1]!);
    },
  }).enable();
  try {
    on = true;
    fn();
  } finally {
    on = false;
    hook.disable();
    Error.stackTraceLimit = limit;
  }
  return made;
}

describe('a call through the default stacks', () => {
  let server: TestServer;
  let mesh: Mesh;

  beforeAll(async () => {
    server = await startServer((_req, res) => {
      res.end('ok');
    });
    mesh = createMesh({ services: { users: { endpoints: [server.address], timeoutMs: 5_000 } } });
    // Warm: the first call opens the connection.
    await (await mesh.request('http://users/')).body.text();
  });

  afterAll(async () => {
    await mesh.close();
    await server.close();
  });

  it("settles in one reaction over the transport's promise (mesh.request)", async () => {
    let pending: Promise<{ body: { text(): Promise<string> } }> | undefined;
    const made = promisesMadeBy(() => {
      pending = mesh.request('http://users/');
    });
    expect(await (await pending!).body.text()).toBe('ok');
    // The pool's promise, and one reaction in which every level, the entry point's mapping included, runs.
    expect(made).toEqual(['transport/pool.ts', 'core/service.ts']);
  });

  it("settles in one reaction over the transport's promise (mesh.dispatcher)", async () => {
    const chunks: Buffer[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const made = promisesMadeBy(() => {
      mesh.dispatcher.dispatch(
        { origin: 'http://users', path: '/', method: 'GET', headers: {} },
        {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData(_c, chunk) {
            chunks.push(chunk);
          },
          onResponseEnd() {
            done();
          },
          onResponseError(_c, err) {
            throw err;
          },
        },
      );
    });
    await finished;
    expect(Buffer.concat(chunks).toString()).toBe('ok');
    expect(made).toEqual(['transport/pool.ts', 'core/service.ts']);
  });
});
