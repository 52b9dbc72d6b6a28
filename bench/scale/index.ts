/**
 * bench/scale (issue 8, "Scale"): what the mesh costs as the number of endpoints and services grows.
 *
 * 1. Pick cost (pick.ts): each balancer's real distributor at 10, 1,000 and 10,000 endpoints, ns per request
 *    (pick + load bookkeeping, with loads changing between picks). Target: 10,000 endpoints cost at most
 *    2 x what 10 cost (no per-pick scan).
 * 2. Heap per endpoint and per configured service (memory.ts), static discovery, no traffic (pools are lazy).
 * 3. A mesh of 100 services x 50 endpoints (memory.ts): configured; after one call per service; after one call
 *    per endpoint (every pool created, one connection each).
 * 4. The cost of a Consul update of 5,000 instances where one changed is bench/discovery's (update-cost.ts);
 *    its committed result is quoted, not measured again.
 *
 * Run: `npm run bench -- --bench scale` (builds dist/ first and measures it), or this one alone (needs
 * --expose-gc):
 *   npm run build && npx tsx --expose-gc bench/scale/index.ts [--quick] [--rounds N] [--no-docs]
 * Full: about 1.5 minutes; --quick: about 30 s (fewer rounds, 2,000 endpoints and 200 services for the heap
 * figures; the pick sizes and the 100 x 50 mesh are the same).
 * Results: bench/results/scale.{json,md,svg} (quick: bench/results/quick/) and, for full runs, the block
 * between the scale markers of docs/benchmarks.md.
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { numberFlag, parseFlags, type Flags } from '../lib/cli.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { bigMesh, heapPerEndpoint, heapPerService } from './memory.js';
import { measurePicks, PICK_BALANCERS, type PickCell } from './pick.js';
import {
  consulUpdateRef,
  evaluateTargets,
  printTables,
  renderMarkdown,
  renderSvg,
  updateDocs,
  type ScaleResults,
} from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const SIZES = [10, 1_000, 10_000];

/** Runs the pick measurement of one balancer in a child process (this file with --pick-child). */
function pickInChild(id: string, rounds: number, loopMs: number): Promise<PickCell[]> {
  const child = fork(
    fileURLToPath(import.meta.url),
    ['--pick-child', id, '--rounds', String(rounds), '--loop-ms', String(loopMs)],
    {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  return new Promise((resolve, reject) => {
    let cells: PickCell[] | undefined;
    child.once('message', (m: PickCell[]) => (cells = m));
    child.once('error', reject);
    child.once('exit', (code) =>
      cells ? resolve(cells) : reject(new Error(`pick measurement of ${id} exited with ${code}`)),
    );
  });
}

/** The child side of {@link pickInChild}. */
function pickChild(flags: Flags): Promise<void> {
  const id = String(flags['pick-child']);
  const b = PICK_BALANCERS.find((x) => x.id === id);
  if (!b) throw new Error(`unknown balancer ${id}`);
  const cells = measurePicks(
    {
      sizes: SIZES,
      rounds: numberFlag(flags, 'rounds', 9),
      loopMs: numberFlag(flags, 'loop-ms', 200),
      log: () => {},
    },
    [b],
  );
  // Resolve once the message is out: main's caller exits the process right after.
  return new Promise((resolve) => process.send!(cells, undefined, {}, () => resolve()));
}

async function main(): Promise<void> {
  process.once('SIGTERM', () => process.exit(143));
  process.once('SIGINT', () => process.exit(130));
  const flags = parseFlags(process.argv.slice(2));
  if (flags['pick-child'] !== undefined) return pickChild(flags);
  const quick = flags.quick === true;
  const rounds = Math.round(numberFlag(flags, 'rounds', quick ? 3 : 9));
  const loopMs = quick ? 60 : 200;
  const memoryEndpoints = quick ? 2_000 : 10_000;
  const memoryServices = quick ? 200 : 1_000;
  const memoryReps = quick ? 2 : 5;
  const outDir = path.join(repo, 'bench', 'results', quick ? 'quick' : '');
  const command =
    process.env.MESHFETCH_BENCH_COMMAND ??
    `npx tsx --expose-gc bench/scale/index.ts ${process.argv.slice(2).join(' ')}`.trim();
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
    throw new Error('bench/scale needs --expose-gc (npm run bench passes it)');
  }
  const machine = machineInfo();
  console.log('# scale: pick cost and memory');
  console.log(`machine: ${describeMachine(machine)}`);
  const log = (l: string): void => console.log(l);

  console.log(`\n1. pick cost at ${SIZES.join(', ')} endpoints, ${rounds} rounds, one process per balancer`);
  const picks: PickCell[] = [];
  for (const b of PICK_BALANCERS) {
    const cells = await pickInChild(b.id, rounds, loopMs);
    for (const c of cells) {
      log(
        `  ${c.label.padEnd(32)} ${String(c.endpoints).padStart(6)} endpoints: ${c.perRequestNs.toFixed(1)} ns/request, pick alone ${c.pickNs.toFixed(1)} ns`,
      );
    }
    picks.push(...cells);
  }
  console.log(`\n2. heap per endpoint (${memoryEndpoints}) and per service (${memoryServices})`);
  const perEndpoint = await heapPerEndpoint(memoryEndpoints, memoryReps);
  const perService = await heapPerService(memoryServices, memoryReps);
  console.log('\n3. a mesh of 100 services x 50 endpoints');
  const big = await bigMesh(100, 50);

  const results: ScaleResults = {
    benchmark: 'scale',
    command,
    quick,
    machine,
    settings: { sizes: SIZES, rounds, loopMs, memoryEndpoints, memoryServices },
    picks,
    heapPerEndpoint: perEndpoint,
    heapPerService: perService,
    bigMesh: big,
    consulUpdate: consulUpdateRef(repo),
    targets: evaluateTargets(picks, SIZES),
  };
  console.log('');
  printTables(results);
  mkdirSync(outDir, { recursive: true });
  await writeJson(path.join(outDir, 'scale.json'), results);
  const md = await writeFormatted(path.join(outDir, 'scale.md'), renderMarkdown(results));
  writeFileSync(path.join(outDir, 'scale.svg'), renderSvg(results));
  console.log(`\nwrote ${path.relative(repo, outDir) || '.'}/scale.{json,md,svg}`);
  if (!quick && flags['no-docs'] !== true) updateDocs(repo, md);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
