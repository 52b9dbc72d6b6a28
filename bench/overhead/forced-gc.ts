/**
 * What a forced GC between cells does to the overhead benchmark's figures (docs/benchmarks.md, "The forced
 * GC"). Each variant runs in its own long-lived process, as in the overhead benchmark; every round, each
 * process runs a 1 s warm-up cell then a 2 s measured cell at concurrency 64, and with `--gc` calls `gc()`
 * between the two (what bench/overhead did until 2026-11-25). Prints the client CPU per call of every round,
 * so a jump from one round to the next shows. With `--pin` the clients run on core 0 and the server on core 1
 * (`taskset`), which removes most of the noise of the scheduler on a 2-core machine.
 *
 * Run:
 *   npm run build && npx tsx bench/overhead/forced-gc.ts [--gc] [--pin] [--rounds 6]
 *     [--variants pool,leaf,mesh-request-bal,mesh-request-full]
 * Add V8 flags to the clients with `--v8=--trace-deopt` to see the deoptimizations (the
 * "weak objects" marks follow each forced collection).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { closedLoop } from '../lib/load.js';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { median } from '../lib/stats.js';
import { findVariant, makeClient, startServer } from './variants.js';

interface Cell {
  durationMs: number;
  gcAfter: boolean;
}

async function child(id: string, port: number): Promise<void> {
  const v = findVariant(id);
  if (v === undefined) throw new Error(`unknown variant ${id}`);
  const client = makeClient(v, { serverPort: port });
  await client.call();
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', (m: Cell) => {
    void (async () => {
      const c0 = process.cpuUsage();
      const r = await closedLoop(client.call, { concurrency: 64, durationMs: m.durationMs });
      const c = process.cpuUsage(c0);
      if (m.gcAfter) gc?.();
      process.send!({ cpuUs: (c.user + c.system) / r.count });
    })();
  });
  process.send!({ ready: true });
  process.once('disconnect', () => process.exit(0));
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (typeof flags.child === 'string') return child(flags.child, numberFlag(flags, 'port', 0));
  const variants = listFlag(flags, 'variants') ?? ['pool', 'leaf', 'mesh-request-bal', 'mesh-request-full'];
  const rounds = numberFlag(flags, 'rounds', 6);
  const forceGc = flags.gc === true;
  const v8Flags = typeof flags.v8 === 'string' ? flags.v8.split(' ') : [];
  const server = await startServer();
  if (flags.pin === true) {
    execFileSync('taskset', ['-a', '-p', '-c', '1', String(server.pid)], { stdio: 'ignore' });
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  }
  const kids = new Map<string, ChildProcess>();
  const ask = (c: ChildProcess, m: Cell): Promise<{ cpuUs: number }> =>
    new Promise((resolve) => {
      c.once('message', resolve);
      c.send(m);
    });
  try {
    for (const id of variants) {
      const c = fork(fileURLToPath(import.meta.url), ['--child', id, '--port', String(server.port)], {
        execArgv: ['--import', 'tsx', '--expose-gc', ...v8Flags],
      });
      await new Promise((r) => c.once('message', r));
      kids.set(id, c);
    }
    const cpu = new Map<string, number[]>(variants.map((v) => [v, []]));
    for (const id of variants) await ask(kids.get(id)!, { durationMs: 1500, gcAfter: false });
    for (let r = 0; r < rounds; r++) {
      for (const id of variants) {
        const c = kids.get(id)!;
        await ask(c, { durationMs: 1000, gcAfter: forceGc }); // the warm-up cell
        cpu.get(id)!.push((await ask(c, { durationMs: 2000, gcAfter: false })).cpuUs);
      }
    }
    console.log(`forced GC after each warm-up: ${forceGc ? 'yes' : 'no'}; client CPU µs per call, c=64`);
    for (const id of variants) {
      const xs = cpu.get(id)!;
      console.log(
        `${id.padEnd(20)} median ${median(xs).toFixed(2).padStart(6)}   rounds ${xs.map((x) => x.toFixed(1)).join(' ')}`,
      );
    }
  } finally {
    for (const c of kids.values()) c.kill();
    await server.stop();
  }
}

await main();
