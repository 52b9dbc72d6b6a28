// A call in progress keeps the process alive until it settles, as undici's own request does: a one-shot
// script whose only work is one mesh call must print that call's outcome, whatever the call waits on (a
// retry backoff, a Retry-After, the deadline), and background timers must not hold the process after it.
import { execFile } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a fixture script with the project's Node (the one running the suite), on the sources. */
function runScript(file: string, args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--conditions=meshfetch-source', '--import', 'tsx', resolve('test/fixtures', file), ...args],
      { timeout: 15_000 },
      (err, stdout, stderr) =>
        done({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** A port on loopback that refuses connections (bound, then closed). */
async function refusedAddress(): Promise<string> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `127.0.0.1:${port}`;
}

async function busyServer(): Promise<string> {
  const s = await startServer((_req, res) => {
    res.writeHead(503, { 'retry-after': '1' });
    res.end('busy');
  });
  servers.push(s);
  return s.address;
}

describe('a one-shot script', () => {
  it('ESM: mesh.request to an endpoint that refuses connections settles with the error (backoff keeps the process alive)', async () => {
    const r = await runScript('one-shot.mts', [await refusedAddress(), 'request']);
    expect(r.stderr).not.toContain('unsettled top-level await');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ settled: 'error', code: 'MESH_TRANSPORT' });
  });

  it('ESM: mesh.fetch to a 503 with Retry-After: 1 settles with the response after the waits', async () => {
    const r = await runScript('one-shot.mts', [await busyServer(), 'fetch']);
    expect(r.stderr).not.toContain('unsettled top-level await');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ settled: 'response', status: 503 });
  });

  it('ESM: mesh.request to a 503 with Retry-After: 1 settles with the response after the waits', async () => {
    const r = await runScript('one-shot.mts', [await busyServer(), 'request']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ settled: 'response', status: 503 });
  });

  it('CommonJS: the call is not silently lost: its outcome is printed before the process exits', async () => {
    const refused = await runScript('one-shot.cts', [await refusedAddress()]);
    expect(refused.code).toBe(0);
    expect(JSON.parse(refused.stdout)).toEqual({ settled: 'error', code: 'MESH_TRANSPORT' });
    const busy = await runScript('one-shot.cts', [await busyServer()]);
    expect(busy.code).toBe(0);
    expect(JSON.parse(busy.stdout)).toEqual({ settled: 'response', status: 503 });
  });

  it('await mesh.close() with a response body left unread settles after the grace period before the process exits', async () => {
    const s = await startServer();
    servers.push(s);
    const r = await runScript('close-unread.mts', [s.address]);
    expect(r.stderr).not.toContain('unsettled top-level await');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ closed: true, status: 200 });
  });

  it('exits once the call has settled: background timers (discovery, windows) do not hold it', async () => {
    const s = await startServer();
    servers.push(s);
    const t0 = performance.now();
    const r = await runScript('one-shot.mts', [s.address, 'request']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ settled: 'response', status: 200 });
    // The breaker's window rotation and the pool's idle sockets are unref'ed: no wait for them (generous).
    expect(performance.now() - t0).toBeLessThan(8_000);
  });
});
