/**
 * The overhead benchmark: what the mesh costs per call, against bare undici (the floor) and against a
 * HAProxy hop on loopback (the sidecar it replaces), measured side by side in one run.
 *
 * Workload: GET / against a node:http server in a separate process answering 200 with a 32-byte body,
 * keep-alive. Closed loop at concurrency 1 and 64 (N workers, each sending its next request when the last one
 * has finished). Each round runs every variant once, in a seeded random order of its own, so slow drift of
 * the machine, and whatever a client leaves behind for the next one, hit all of them alike; ratios are also
 * computed per round (paired) to show the spread. A variant's client is a fresh process per round that warms up and runs its
 * cells back to back, never idle in between (see the loop below).
 *
 * Per variant and concurrency: requests/s, latency p50/p99 (µs), the latency it adds over bare
 * `Pool.request` at p50/p99, the client process's CPU time per call (`process.cpuUsage()`), and, for the
 * HAProxy hop, HAProxy's own CPU per call (utime + stime from /proc/<pid>/stat). The server's CPU per call is
 * shown for context (it is the same work in every row).
 *
 * Run: `npm run bench` (all benchmarks), or this one alone:
 *   npm run build && npx tsx --expose-gc bench/overhead/index.ts [--quick] [--rounds N]
 *     [--seconds S] [--warmup S] [--concurrency 1,64] [--only pool,mesh-request-full] [--no-haproxy]
 *     [--no-docs] [--pin] [--seed N]
 * Results: bench/results/overhead.{json,svg,md} (with --quick: bench/results/quick/), and the tables between
 * the overhead markers of docs/benchmarks.md (full runs only).
 */
import type { RecordableHistogram } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { findHaproxy, HAPROXY_INSTALL_HINT, startHaproxy, type RunningHaproxy } from '../lib/haproxy.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { freePort, machineBusyUs, processCpuResolutionUs, processCpuUs } from '../lib/proc.js';
import { newHistogram, percentileCurve, summarize } from '../lib/stats.js';
import { formatTable, num } from '../lib/table.js';
import { mulberry32 } from '../tail/rng.js';
import { renderSvg } from './plot.js';
import {
  evaluateTargets,
  renderMarkdown,
  tableRows,
  updateDocs,
  type Cell,
  type OverheadResults,
  type RoundSample,
} from './report.js';
import { startWorker, type WorkerClient } from './worker-client.js';
import { findVariant, fullStackRoles, startServer, VARIANTS, type UpstreamServer } from './variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

const CURVE_PS = [50, 75, 90, 95, 99, 99.5, 99.9, 99.99];

/** A copy of `xs` in a random order (Fisher-Yates with the given generator). */
function shuffled<T>(xs: readonly T[], u: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function main(): Promise<void> {
  // Turn SIGTERM/SIGINT (bench/run.ts's time limit, Ctrl-C) into a normal exit, so 'exit' handlers stop
  // HAProxy; the server child exits by itself when its IPC channel closes.
  process.once('SIGTERM', () => process.exit(143));
  process.once('SIGINT', () => process.exit(130));
  const flags = parseFlags(process.argv.slice(2));
  const quick = flags.quick === true;
  const rounds = Math.round(numberFlag(flags, 'rounds', quick ? 2 : 8));
  const seconds = numberFlag(flags, 'seconds', quick ? 1 : 2);
  const warmupSeconds = numberFlag(flags, 'warmup', quick ? 0.2 : 0.5);
  const concurrency = (listFlag(flags, 'concurrency') ?? ['1', '64']).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`--concurrency: bad value ${s}`);
    return n;
  });
  const only = listFlag(flags, 'only');
  const seed = Math.round(numberFlag(flags, 'seed', 7));
  const outDir = path.join(repo, 'bench', 'results', quick ? 'quick' : '');
  const command =
    process.env.MESHFETCH_BENCH_COMMAND ??
    `npm run build && npx tsx bench/overhead/index.ts ${process.argv.slice(2).join(' ')}`.trim();

  const machine = machineInfo();
  console.log(`# overhead: meshfetch vs bare undici vs a HAProxy hop`);
  console.log(`machine: ${describeMachine(machine)}`);
  console.log(
    `settings: ${rounds} rounds x ${seconds}s per cell (+${warmupSeconds}s warm-up), concurrency ${concurrency.join(', ')}, order seed ${seed}`,
  );
  const fullStack = fullStackRoles();
  console.log(
    `full stack: logical [${fullStack.logical.join(', ')}] concrete [${fullStack.concrete.join(', ')}] ` +
      `endpoint [${fullStack.endpoint.join(', ')}]`,
  );

  const server: UpstreamServer = await startServer();
  // --pin: the server on the last CPU, each client on the first, HAProxy unpinned (taskset). At c=1 it halves
  // the round-to-round spread of a client's added p50 (the scheduler no longer moves the client and the
  // server between cores), and it makes the HAProxy hop cheaper (16 against 19-22 µs): for focused
  // comparisons of mesh clients, not the default (docs/benchmarks.md, session 6).
  const pin = flags.pin === true;
  const cpus = availableParallelism();
  if (pin)
    execFileSync('taskset', ['-a', '-p', '-c', String(cpus - 1), String(server.pid)], { stdio: 'ignore' });
  let haproxy: RunningHaproxy | undefined;
  let haproxyInfo: OverheadResults['haproxy'];
  let haproxyPort: number | undefined;
  const found = flags['no-haproxy'] === true ? undefined : findHaproxy();
  if (flags['no-haproxy'] === true) {
    haproxyInfo = { skipped: 'disabled with --no-haproxy' };
  } else if (!found) {
    haproxyInfo = { skipped: 'haproxy not found on PATH' };
    console.log(
      `HAProxy is not installed: skipping the HAProxy hop. Install it with: ${HAPROXY_INSTALL_HINT}`,
    );
  } else {
    try {
      haproxyPort = await freePort();
      haproxy = await startHaproxy(
        found.bin,
        path.join(here, 'haproxy.cfg'),
        { FRONTEND_PORT: haproxyPort, BACKEND_PORT: server.port },
        haproxyPort,
      );
      haproxyInfo = { version: found.version, config: 'bench/overhead/haproxy.cfg' };
      console.log(`HAProxy ${found.version} on 127.0.0.1:${haproxyPort} (pid ${haproxy.pid}, nbthread 1)`);
    } catch (err) {
      haproxyPort = undefined;
      haproxyInfo = { skipped: (err as Error).message };
      console.log(`HAProxy failed to start, skipping the hop: ${(err as Error).message}`);
    }
  }

  const extra = (only ?? [])
    .filter((id) => !VARIANTS.some((v) => v.id === id))
    .map((id) => {
      const v = findVariant(id);
      if (v === undefined) throw new Error(`unknown variant ${id}`);
      return v;
    });
  const variants = [...VARIANTS, ...extra].filter(
    (v) => (!only || only.includes(v.id) || v.id === 'pool') && (!v.hop || haproxy !== undefined),
  );
  const clients = new Map<string, WorkerClient>();
  const histograms = new Map<string, RecordableHistogram>();
  let closing: Promise<void> | undefined;
  try {
    const rows = new Map<string, RoundSample[]>();
    const firstErrors = new Map<string, string>();
    for (let r = 1; r <= rounds; r++) {
      // Each round runs the clients in its own order, a seeded shuffle (--seed replays a run's schedule).
      // Until session 7 a round started one client further along, which varied who ran first but kept every
      // client's predecessor: the balancer-only client always followed the built-in fetch, Pool.request
      // always followed HAProxy; a client's state after its predecessor then biased the same comparison in
      // every round (docs/benchmarks.md, session 7).
      const order = shuffled(variants, mulberry32(seed + r));
      for (const v of order) {
        // A fresh process per variant and round (see client-worker.ts), which runs its warm-up and all its
        // cells back to back and exits: a client process never sits idle between its cells. An idle V8
        // process gets a memory-reducing GC after some seconds, and that GC threw away the optimized code of
        // every client process that waited for the other clients' cells (the whole run until session 6: a
        // client's c=64 cell came about 35 s after its c=1 cell); the code optimized again afterwards cost
        // 0 to 6 µs more per call, for as long as the process lived, and differently in every process
        // (docs/benchmarks.md, "Idle processes"; bench/overhead/idle.ts measures it).
        // The previous client exits while this one starts (neither is measured meanwhile).
        const [client] = await Promise.all([startWorker(v.id, server.port, haproxyPort), closing]);
        if (pin && client.pid !== undefined)
          execFileSync('taskset', ['-a', '-p', '-c', '0', String(client.pid)], { stdio: 'ignore' });
        clients.set(v.id, client);
        await client.run(Math.max(...concurrency), warmupSeconds * 2000, false);
        for (const c of concurrency) {
          await client.run(c, warmupSeconds * 1000, false);
          const watchdog = setTimeout(
            () => {
              console.error(`overhead: ${v.label} at concurrency ${c} is stuck; giving up`);
              process.exit(2);
            },
            seconds * 1000 + 60_000,
          );
          const srv0 = processCpuUs(server.pid);
          const hap0 = processCpuUs(haproxy?.pid);
          const all0 = machineBusyUs();
          const res = await client.run(c, seconds * 1000, true);
          const srv1 = processCpuUs(server.pid);
          const hap1 = processCpuUs(haproxy?.pid);
          const all1 = machineBusyUs();
          clearTimeout(watchdog);
          const key = `${v.id}@${c}`;
          let h = histograms.get(key);
          if (h === undefined) histograms.set(key, (h = newHistogram()));
          for (const ns of res.samplesNs ?? []) h.record(ns);
          if (res.firstError && !firstErrors.has(key)) firstErrors.set(key, res.firstError);
          const s = { p50Us: res.p50Us, p99Us: res.p99Us };
          const sample: RoundSample = {
            round: r,
            count: res.count,
            errors: res.errors,
            elapsedMs: res.elapsedMs,
            rps: res.count / (res.elapsedMs / 1000),
            p50Us: s.p50Us,
            p99Us: s.p99Us,
            clientCpuUs: res.cpuUs,
            clientSysUs: res.sysUs,
            serverCpuUs: srv0 !== undefined && srv1 !== undefined ? srv1 - srv0 : null,
            haproxyCpuUs: hap0 !== undefined && hap1 !== undefined ? hap1 - hap0 : null,
            otherCores: null,
          };
          if (all0 !== undefined && all1 !== undefined && srv0 !== undefined && srv1 !== undefined) {
            const ours = sample.clientCpuUs + sample.serverCpuUs! + (sample.haproxyCpuUs ?? 0);
            sample.otherCores = Math.max(0, all1 - all0 - ours) / (res.elapsedMs * 1000);
          }
          rows.set(key, [...(rows.get(key) ?? []), sample]);
          console.log(
            `round ${r}/${rounds}  c=${String(c).padEnd(3)} ${v.label.padEnd(40)} ${num(sample.rps).padStart(7)} req/s` +
              `  p50 ${num(s.p50Us).padStart(6)} µs  p99 ${num(s.p99Us).padStart(6)} µs` +
              `  cpu ${(res.cpuUs / res.count).toFixed(1)} (sys ${(res.sysUs / res.count).toFixed(1)}) µs/call` +
              (sample.otherCores === null ? '' : `  others ${sample.otherCores.toFixed(2)} cores`) +
              (res.errors ? `  ERRORS ${res.errors}: ${res.firstError}` : ''),
          );
        }
        clients.delete(v.id);
        closing = client.close();
      }
    }

    const cells: Cell[] = [];
    for (const [key, rs] of rows) {
      const [id, cs] = key.split('@') as [string, string];
      const v = variants.find((x) => x.id === id)!;
      const c = Number(cs);
      const h = histograms.get(key)!;
      const lat = { latency: summarize(h), curve: percentileCurve(h, CURVE_PS) };
      const count = rs.reduce((a, s) => a + s.count, 0);
      const elapsedMs = rs.reduce((a, s) => a + s.elapsedMs, 0);
      const sumOrNull = (f: (s: RoundSample) => number | null): number | null =>
        rs.every((s) => f(s) !== null) ? rs.reduce((a, s) => a + f(s)!, 0) : null;
      const srv = sumOrNull((s) => s.serverCpuUs);
      const hap = v.hop ? sumOrNull((s) => s.haproxyCpuUs) : null;
      cells.push({
        variant: v.id,
        label: v.label,
        concurrency: c,
        count,
        errors: rs.reduce((a, s) => a + s.errors, 0),
        firstError: firstErrors.get(key) ?? null,
        elapsedMs,
        rps: count / (elapsedMs / 1000),
        latency: lat.latency,
        curve: lat.curve,
        clientCpuPerCallUs: rs.reduce((a, s) => a + s.clientCpuUs, 0) / count,
        serverCpuPerCallUs: srv === null ? null : srv / count,
        haproxyCpuPerCallUs: hap === null ? null : hap / count,
        rounds: rs,
      });
    }

    const targets = evaluateTargets(cells, haproxy !== undefined);
    const results: OverheadResults = {
      benchmark: 'overhead',
      command,
      quick,
      machine,
      settings: { rounds, seconds, warmupSeconds, concurrency },
      fullStack,
      haproxy: haproxyInfo,
      cpuResolutionUs: processCpuResolutionUs(),
      cells,
      targets,
    };

    console.log('');
    for (const c of concurrency) {
      const t = tableRows(cells, c);
      console.log(`## concurrency ${c}`);
      console.log(formatTable(t.headers, t.rows, t.align));
      console.log('');
    }
    console.log('## targets');
    if (quick) console.log('(quick mode: two 1 s rounds per cell, indicative only; judge on a full run)');
    for (const t of targets) console.log(`${t.status.padEnd(4)}  ${t.name}: ${t.detail}`);

    mkdirSync(outDir, { recursive: true });
    await writeJson(path.join(outDir, 'overhead.json'), results);
    const md = await writeFormatted(path.join(outDir, 'overhead.md'), renderMarkdown(results));
    writeFileSync(path.join(outDir, 'overhead.svg'), renderSvg(results));
    console.log(`\nwrote ${path.relative(repo, outDir) || '.'}/overhead.{json,md,svg}`);
    if (!quick && flags['no-docs'] !== true) updateDocs(repo, md);
  } finally {
    await Promise.allSettled([closing, ...[...clients.values()].map((c) => c.close())]);
    await haproxy?.stop();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
