// The package a user installs: `npm pack`, the tarball installed into an empty consumer project, and loaded
// the ways a consumer loads it (ESM import, CommonJS require, a strict TypeScript build with and without the
// DOM lib). It runs on whatever Node runs the suite, so CI checks it on every supported line.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../support/servers.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');

let dir = '';
let pkgDir = '';
let server: TestServer;

/** Runs `node` (the one running this suite) on a file of the consumer project. */
async function node(file: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, [file], {
    cwd: dir,
    env: { ...process.env, ...env },
    timeout: 30_000,
  });
  return stdout.trim();
}

beforeAll(async () => {
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), 'meshfetch-consumer-'));
  // prepack builds dist/; the tarball is what `npm publish` would upload.
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', dir], {
    cwd: root,
    timeout: 120_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const tarball = join(dir, packed.stdout.trim().split('\n').at(-1)!);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  const typesNode = JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8'))
    .version as string;
  await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
      tarball,
      `@types/node@${typesNode}`,
    ],
    { cwd: dir, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
  );
  pkgDir = join(dir, 'node_modules/meshfetch');
}, 300_000);

afterAll(async () => {
  await server?.close();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

const program = (loader: string): string => `
${loader}
const mesh = createMesh({ services: { svc: { endpoints: [process.env.ADDR] } } });
const a = await mesh.request('http://svc/a');
const b = await mesh.fetch('http://svc/b');
const c = await fetch('http://svc/c', { dispatcher: mesh.dispatcher });
const out = [a.statusCode, (await a.body.json()).url, b.status, (await b.json()).url, c.status, (await c.json()).url];
if (typeof FakeClock !== 'function') throw new Error('meshfetch/testing did not load');
if (typeof Filter !== 'function') throw new Error('meshfetch/extend did not load');
await mesh.close();
console.log(JSON.stringify(out));
`;

/** What {@link program} prints: each entry point's status and the path the backend saw. */
const EXPECTED = [200, '/a', 200, '/b', 200, '/c'];

describe('the packed package', () => {
  it('loads with import from an ES module and sends calls', async () => {
    writeFileSync(
      join(dir, 'esm.mjs'),
      program(
        "import { createMesh } from 'meshfetch';\nimport { FakeClock } from 'meshfetch/testing';\nimport { Filter } from 'meshfetch/extend';",
      ),
    );
    expect(JSON.parse(await node('esm.mjs', { ADDR: server.address }))).toEqual(EXPECTED);
  });

  it('loads with require from a CommonJS file', async () => {
    writeFileSync(
      join(dir, 'cjs.cjs'),
      `(async () => {${program(
        "const { createMesh } = require('meshfetch');\nconst { FakeClock } = require('meshfetch/testing');\nconst { Filter } = require('meshfetch/extend');",
      )}})().catch((e) => { console.error(e); process.exit(1); });`,
    );
    expect(JSON.parse(await node('cjs.cjs', { ADDR: server.address }))).toEqual(EXPECTED);
  });

  for (const lib of [['es2023'], ['es2023', 'dom']]) {
    it(`type-checks in a strict TypeScript consumer without skipLibCheck, lib ${lib.join(' + ')}`, async () => {
      const sub = join(dir, `ts-${lib.join('-')}`);
      mkdirSync(sub, { recursive: true });
      writeFileSync(
        join(sub, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            skipLibCheck: false,
            module: 'nodenext',
            moduleResolution: 'nodenext',
            target: 'es2023',
            lib,
            types: ['node'],
            noEmit: true,
          },
          include: ['*.ts', '*.cts'],
        }),
      );
      writeFileSync(join(sub, 'package.json'), JSON.stringify({ type: 'module' }));
      writeFileSync(
        join(sub, 'main.ts'),
        `import { createMesh, callOptions, type MeshConfig } from 'meshfetch';
import { FakeClock } from 'meshfetch/testing';
const config: MeshConfig = { services: { svc: { endpoints: ['127.0.0.1:1'] } } };
const mesh = createMesh(config);
const res: Response = await mesh.fetch('http://svc/', { headers: callOptions({ deadlineMs: 100 }) });
const { statusCode, body } = await mesh.request('http://svc/');
const data: unknown = await body.json();
const viaBuiltin: Response = await fetch('http://svc/', { dispatcher: mesh.dispatcher });
new FakeClock();
console.log(res.status, statusCode, data, viaBuiltin.status);
`,
      );
      writeFileSync(
        join(sub, 'cjs.cts'),
        `import meshfetch = require('meshfetch');
const mesh = meshfetch.createMesh({ services: {} });
void mesh.close();
`,
      );
      const r = await run(process.execPath, [tsc, '-p', sub], { cwd: sub, timeout: 120_000 }).catch(
        (e: { stdout: string; stderr: string }) => ({ stdout: e.stdout, stderr: e.stderr, failed: true }),
      );
      expect(r).not.toHaveProperty('failed');
    }, 120_000);
  }

  it('has every file its exports map and its README point at', () => {
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
    };
    const targets: string[] = [];
    for (const v of Object.values(pkg.exports)) {
      if (typeof v === 'string') targets.push(v);
      else targets.push(...Object.values(v));
    }
    expect(targets.length).toBeGreaterThan(5);
    for (const t of targets) expect(existsSync(join(pkgDir, t)), t).toBe(true);
    const readme = readFileSync(join(pkgDir, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)]
      .map((m) => m[1]!)
      .filter((l) => !/^[a-z]+:/i.test(l));
    expect(links.length).toBeGreaterThan(5);
    for (const l of links) expect(existsSync(join(dirname(join(pkgDir, 'README.md')), l)), l).toBe(true);
  });
});
