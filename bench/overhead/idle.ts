/**
 * Idle gaps and the JIT: what a client process costs per call at concurrency 64 after it sat idle for as long
 * as a client would if a round ran all its c=1 cells and then all its c=64 cells (each client process would
 * wait about 35 s between its two cells; index.ts's schedule avoids that).
 *
 * An idle V8 process gets memory-reducing full collections from V8's memory reducer a few seconds after its
 * allocation rate drops. With `--log-deopt`, such a collection deoptimizes nearly all optimized code at once
 * ("dependency-change, weak objects": Node's streams, timers and task queues, undici's request path, the
 * mesh's stack), because the maps that code was specialised for belonged to per-call objects that were all
 * dead. The code optimized again afterwards is slower in some processes than before, by up to 6 µs per call,
 * and stays so (five 2 s cells in a row after the gap: no recovery).
 *
 * This script replays a whole run's schedule for the variants given (`--slots`, whole-run positions; `-` is
 * a slot whose cells are only waited for): start every client, warm them up one after another, run each
 * one's c=1 cell, then each one's c=64 cell (and `--after N - 1` more). `--node FLAG,...` passes V8 flags to
 * the clients (`no-memory-reducer` removes the effect; `log-deopt,logfile=/tmp/v8-%p.log,no-logfile-per-isolate`
 * shows it).
 *
 *   npm run build && npx tsx bench/overhead/idle.ts --rounds 2 --after 3 [--node no-memory-reducer]
 *
 * docs/benchmarks.md ("Idle processes") has the results.
 */
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { startServer } from './variants.js';
import { startWorker, type WorkerClient } from './worker-client.js';

const WHOLE_RUN = 'pool,-,-,mesh-request-bal,mesh-request-full,mesh-request-untraced,-,-,-,-,-,-';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const slots = listFlag(flags, 'slots') ?? WHOLE_RUN.split(',');
  const rounds = Math.round(numberFlag(flags, 'rounds', 2));
  const after = Math.round(numberFlag(flags, 'after', 1));
  const nodeFlags = (listFlag(flags, 'node') ?? []).map((a) => `--${a}`);
  const server = await startServer();
  const table = new Map<string, number[]>();
  const ids = slots.filter((x) => x !== '-');
  try {
    for (let r = 1; r <= rounds; r++) {
      const ws = new Map<string, WorkerClient>();
      for (const id of ids) ws.set(id, await startWorker(id, server.port, undefined, nodeFlags));
      for (const id of slots) {
        if (id === '-') await sleep(2000);
        else await ws.get(id)!.run(64, 2000, false);
      }
      const order = slots.map((_, i) => slots[(i + r - 1) % slots.length]!);
      for (const c of [1, 64]) {
        for (const id of order) {
          if (id === '-') {
            await sleep(3000);
            continue;
          }
          await ws.get(id)!.run(c, 1000, false);
          for (let k = 0; k < (c === 64 ? after : 1); k++) {
            const res = await ws.get(id)!.run(c, 2000, true);
            const cpu = res.cpuUs / res.count;
            const key = `${id}@${c}${k > 0 ? `+${k}` : ''}`;
            table.set(key, [...(table.get(key) ?? []), cpu]);
            console.log(
              `round ${r} ${key.padEnd(30)} ${cpu.toFixed(1)} (sys ${(res.sysUs / res.count).toFixed(1)}) µs/call`,
            );
          }
        }
      }
      await Promise.all([...ws.values()].map((w) => w.close()));
    }
  } finally {
    await server.stop();
  }
  console.log('\nclient CPU µs per call, one column per round:');
  for (const [k, v] of table) console.log(k.padEnd(30), v.map((x) => x.toFixed(1)).join(' '));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
