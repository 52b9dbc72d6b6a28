// A stranger's one-shot script: start a call, `await mesh.close({ gracePeriodMs })`, then await the call.
// docs/client.md promises that a call in progress keeps the process alive until it settles and that close()
// aborts what is still in flight when the grace period ends, so the script must print the call's outcome
// (an error) and exit 0, never exit 13 (Node's "unsettled top-level await") with the call silently lost.
//
// close() releases its own process hold, not the calls': each aborted call keeps the process alive until it
// settles, and the hold's handle goes with the last one.
import { execFile } from 'node:child_process';
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

function runScript(args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [
        '--conditions=meshfetch-source',
        '--import',
        'tsx',
        resolve('test/stranger/fixtures/close-in-flight.mts'),
        ...args,
      ],
      { timeout: 15_000 },
      (err, stdout, stderr) =>
        done({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** A server that takes the request and never answers (until the test closes it). */
async function silentServer(): Promise<string> {
  const s = await startServer(() => {});
  servers.push(s);
  return s.address;
}

describe('a one-shot script that closes the mesh with a call in flight', () => {
  it.each(['request', 'fetch', 'dispatcher'])(
    '%s: the call settles with an error once the grace period is over, and the script exits 0',
    async (entry) => {
      const r = await runScript([await silentServer(), entry, '50']);
      expect(r.stderr).not.toContain('unsettled top-level await');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ settled: 'error' });
    },
  );

  it.each(['request', 'fetch', 'dispatcher'])(
    '%s: with gracePeriodMs 0 the call settles with an error and the script exits 0',
    async (entry) => {
      const r = await runScript([await silentServer(), entry, '0']);
      expect(r.stderr).not.toContain('unsettled top-level await');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ settled: 'error' });
    },
  );
});
