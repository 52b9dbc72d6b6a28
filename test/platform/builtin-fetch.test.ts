// The built-in fetch of the Node line running the suite (undici 6 in Node 22, 7 in Node 24, 8 in Node 26),
// with the mesh's dispatcher: each line hands the dispatcher a different handler API, and every one of them
// must get the same answers. CI runs this file on 22, 24 and 26.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, MeshClosedError, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

const run = promisify(execFile);
let mesh: Mesh | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function meshOn(handler?: Parameters<typeof startServer>[0]): Promise<{ m: Mesh; s: TestServer }> {
  const s = await startServer(handler);
  servers.push(s);
  mesh = createMesh({ services: { svc: { endpoints: [s.address] }, other: { endpoints: [s.address] } } });
  return { m: mesh, s };
}

describe(`the built-in fetch with mesh.dispatcher on Node ${process.versions.node}`, () => {
  it('GET: status, headers and body as the backend sent them', async () => {
    const { m } = await meshOn((_req, res) => {
      res.setHeader('content-type', 'text/x-test; charset=utf-8');
      res.setHeader('x-multi', ['a', 'b']);
      res.end('hello');
    });
    const res = await fetch('http://svc/x', { dispatcher: m.dispatcher });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/x-test; charset=utf-8');
    expect(res.headers.get('x-multi')).toBe('a, b');
    expect(await res.text()).toBe('hello');
  });

  it('POST with a stream body: the backend receives every byte', async () => {
    const { m, s } = await meshOn();
    const body = Readable.toWeb(Readable.from([Buffer.from('one,'), Buffer.from('two')]));
    const res = await fetch('http://svc/post', {
      method: 'POST',
      body: body as ReadableStream,
      duplex: 'half',
      dispatcher: m.dispatcher,
    } as RequestInit);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(s.received.at(-1)!.body.toString()).toBe('one,two');
    expect(s.received.at(-1)!.method).toBe('POST');
  });

  it('an abort mid-body rejects the read with the reason and closes the connection', async () => {
    const { m, s } = await meshOn((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(1024, 1));
      // never ends
    });
    const ac = new AbortController();
    const res = await fetch('http://svc/slow', { dispatcher: m.dispatcher, signal: ac.signal });
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(reader.read()).rejects.toBe(reason);
    await expect.poll(() => s.openSockets, { timeout: 5_000 }).toBe(0);
  });

  it('follows a redirect to another mesh service', async () => {
    const { m } = await meshOn((req, res) => {
      if (req.url === '/from') {
        res.writeHead(302, { location: 'http://other/to' });
        res.end();
        return;
      }
      res.end(`at ${req.headers.host} ${req.url}`);
    });
    const res = await fetch('http://svc/from', { dispatcher: m.dispatcher });
    expect(res.status).toBe(200);
    expect(res.redirected).toBe(true);
    expect(res.url).toBe('http://other/to');
    expect(await res.text()).toMatch(/ \/to$/);
  });

  it('rejects at once after close(), with MeshClosedError as the cause', async () => {
    const { m } = await meshOn();
    await m.close();
    const started = process.hrtime.bigint();
    const err = (await fetch('http://svc/', { dispatcher: m.dispatcher }).catch((e: unknown) => e)) as Error;
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(err).toBeInstanceOf(TypeError);
    expect(err.cause).toBeInstanceOf(MeshClosedError);
    expect(ms).toBeLessThan(1_000);
  });
});

describe('importing meshfetch changes nothing global', () => {
  // Run in a fresh process: loads meshfetch first, then uses the built-in fetch without a dispatcher.
  const probe = `
import { createServer } from 'node:http';
const server = createServer((_req, res) => res.end('ok')).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const url = 'http://127.0.0.1:' + server.address().port + '/';
await import('meshfetch');
const undici = await import('undici');
// The slot this Node's built-in fetch reads: .2 for undici 8 (Node 26), .1 before.
const slot = Symbol.for('undici.globalDispatcher.' + (Number(process.versions.undici.split('.')[0]) >= 8 ? 2 : 1));
const before = globalThis[slot];
const builtin = await (await fetch(url)).text();
const pkg = await (await undici.request(url)).body.text();
const out = {
  builtin,
  pkg,
  nodeOwn: before !== undefined && !(before instanceof undici.Dispatcher),
  unchanged: globalThis[slot] === before,
};
server.close();
console.log(JSON.stringify(out));
`;

  it("leaves the built-in fetch on Node's own dispatcher, and undici's own API working", async () => {
    const { stdout } = await run(
      process.execPath,
      ['--conditions=meshfetch-source', '--import=tsx', '--input-type=module', '-e', probe],
      { cwd: resolve(import.meta.dirname, '../..'), timeout: 30_000 },
    );
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({
      builtin: 'ok',
      pkg: 'ok',
      nodeOwn: true,
      unchanged: true,
    });
  });
});
