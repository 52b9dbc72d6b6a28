#!/usr/bin/env node
// Runs undici's own fetch tests (test/fetch/*.js of an undici checkout) three ways and prints the pass
// counts per entry point:
//   builtin     Node's built-in fetch (the reference),
//   fetch       mesh.fetch,
//   dispatcher  the built-in fetch with `dispatcher: mesh.dispatcher`,
// with `localhost` and `127.0.0.1` as mesh services (preload.mjs). Not part of `npm test` or CI: undici's tests
// are fetched at development time and never committed.
//
//   git clone --depth 1 --branch v8.10.0 https://github.com/nodejs/undici /tmp/undici
//   (cd /tmp/undici && npm install --ignore-scripts)    # its test dependencies
//   node scripts/undici-fetch-suite/run.mjs /tmp/undici [--node <node binary>] [--modes builtin,fetch,dispatcher]
//        [--files <substring>] [--timeout <ms per file>] [--out <results.json>] [--no-build]
//
// It builds meshfetch first (`npm run build`; the tests load dist/). Each test file runs in its own process
// (`node --test`), one at a time, killed after --timeout (default 240 s; undici's own runner gives a test 180 s); a test a killed file never reported
// counts as not finished.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');

function parseArgs(argv) {
  const o = {
    node: process.execPath,
    modes: ['builtin', 'fetch', 'dispatcher'],
    timeout: 60_000,
    build: true,
  };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--node') o.node = argv[++i];
    else if (a === '--modes') o.modes = argv[++i].split(',');
    else if (a === '--files') o.files = argv[++i];
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (a === '--out') o.out = argv[++i];
    else if (a === '--no-build') o.build = false;
    else rest.push(a);
  }
  if (rest.length !== 1) {
    console.error(
      'usage: node scripts/undici-fetch-suite/run.mjs <undici checkout> [options] (see the file header)',
    );
    process.exit(2);
  }
  o.undici = path.resolve(rest[0]);
  return o;
}

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

function runFile(o, mode, file) {
  return new Promise((resolve) => {
    const child = spawn(
      o.node,
      [
        '--expose-gc',
        '--test',
        `--test-reporter=${path.join(here, 'reporter.mjs')}`,
        '--test-timeout=180000',
        file,
      ],
      {
        cwd: o.undici,
        env: {
          ...process.env,
          NODE_OPTIONS: `--import=${path.join(here, 'preload.mjs')}`,
          MESHFETCH_SUITE_MODE: mode,
          MESHFETCH_SUITE_UNDICI: o.undici,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group: a test process that outlives the runner's (an HTTP/2 session left open)
        // is ended with it.
        detached: true,
      },
    );
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', () => {});
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      killGroup(child.pid);
    }, o.timeout);
    child.on('exit', () => killGroup(child.pid));
    child.on('close', () => {
      clearTimeout(timer);
      const tests = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          tests.push(JSON.parse(line));
        } catch {
          // a line of the test's own output
        }
      }
      resolve({ killed, tests });
    });
  });
}

const o = parseArgs(process.argv.slice(2));
if (o.build) {
  const b = spawnSync('npm', ['run', 'build'], { cwd: repo, stdio: 'inherit' });
  if (b.status !== 0) process.exit(1);
}
const dir = path.join(o.undici, 'test/fetch');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.js') && (o.files === undefined || f.includes(o.files)))
  .sort();
const version = spawnSync(o.node, ['-p', 'process.version + " (undici " + process.versions.undici + ")"'], {
  encoding: 'utf8',
}).stdout.trim();
console.log(`Node ${version}; ${files.length} files of ${dir}`);

const results = {};
for (const mode of o.modes) {
  results[mode] = {};
  for (const f of files) {
    const r = await runFile(o, mode, path.join(dir, f));
    const seen = new Map();
    const tests = {};
    for (const t of r.tests) {
      const base = `${f} > ${t.name}`;
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      tests[n === 1 ? base : `${base} #${n}`] = t;
    }
    results[mode][f] = { killed: r.killed, tests };
    process.stderr.write(`${mode} ${f}${r.killed ? ' (killed)' : ''}\n`);
  }
}

/** Every test id any mode reported. */
const all = new Set();
for (const mode of o.modes)
  for (const f of files) for (const id of Object.keys(results[mode][f].tests)) all.add(id);
const outcome = (mode, id) => {
  const f = id.slice(0, id.indexOf(' > '));
  return results[mode][f].tests[id]?.result ?? 'not finished';
};

console.log(
  `\n${'entry point'.padEnd(12)} ${'pass'.padStart(5)} ${'fail'.padStart(5)} ${'skip'.padStart(5)} ${'unfinished'.padStart(10)}   of ${all.size}`,
);
for (const mode of o.modes) {
  const c = { pass: 0, fail: 0, skip: 0, 'not finished': 0 };
  for (const id of all) {
    const r = outcome(mode, id);
    c[r === 'todo' ? 'skip' : r]++;
  }
  console.log(
    `${mode.padEnd(12)} ${String(c.pass).padStart(5)} ${String(c.fail).padStart(5)} ${String(c.skip).padStart(5)} ${String(c['not finished']).padStart(10)}`,
  );
}
if (o.modes.includes('builtin')) {
  for (const mode of o.modes.filter((m) => m !== 'builtin')) {
    const diff = [...all].filter((id) => outcome('builtin', id) === 'pass' && outcome(mode, id) !== 'pass');
    console.log(`\n${mode}: ${diff.length} passed by the built-in fetch and not here`);
    for (const id of diff) {
      const f = id.slice(0, id.indexOf(' > '));
      const e = results[mode][f].tests[id]?.error;
      console.log(`  ${id}: ${outcome(mode, id)}${e ? `\n      ${e}` : ''}`);
    }
  }
}
if (o.out !== undefined) writeFileSync(o.out, JSON.stringify({ node: version, results }, null, 1));
