/**
 * The overhead benchmark: what the mesh costs per call, against bare undici (the floor) and against a
 * HAProxy hop on loopback (the sidecar it replaces), measured side by side in one run.
 *
 * Workload: GET / against a node:http server in a separate process answering 200 with a 32-byte body,
 * keep-alive. Closed loop at concurrency 1 and 64 (N workers, each sending its next request when the last one
 * has finished). Each variant's client is a fresh process per round. Within a round the clients run in
 * groups (GROUPS below; the two sides of every target share one): a group's clients are alive together and
 * take turns in short slices (4 of 0.5 s per concurrency), so a client and its reference are measured seconds
 * apart, several times, and the host's slow windows hit both alike; no client waits long enough between its
 * slices to lose its optimized code. Ratios are computed per round (paired within the group) to show the
 * spread, and the targets are judged on their medians.
 *
 * Per variant and concurrency: requests/s, latency p50/p99 (µs), the latency it adds over bare
 * `Pool.request` at p50/p99, the client process's CPU time per call (`process.cpuUsage()`), and, for the
 * HAProxy hop, HAProxy's own CPU per call (utime + stime from /proc/<pid>/stat). The server's CPU per call is
 * shown for context (it is the same work in every row).
 *
 * Run: `npm run bench` (all benchmarks), or this one alone:
 *   npm run build && npx tsx --expose-gc bench/overhead/index.ts [--quick] [--rounds N]
 *     [--seconds S] [--warmup S] [--concurrency 1,64] [--only pool,mesh-request-full] [--no-haproxy]
 *     [--no-docs] [--pin] [--seed N] [--slices N] [--baseline DIR [--baseline-min 0.95]]
 * Results: bench/results/overhead.{json,svg,md} (with --quick: bench/results/quick/), and the tables between
 * the overhead markers of docs/benchmarks.md (full runs only).
 *
 * `--baseline DIR` (baseline.ts) adds baseline twins of `mesh.request` (balancer only and full), `mesh.fetch`
 * (full) and the built-in fetch + `mesh.dispatcher` (full), built on the meshfetch checkout in DIR, each in
 * its current self's group, and reports current / baseline; results go to overhead-baseline.{json,svg,md}
 * instead, and docs/benchmarks.md is left alone.
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
import { BASELINE_ENV, BASELINE_OF, baselineId, inspectBaseline, type BaselineInfo } from './baseline.js';
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
import type { RunResult } from './client-worker.js';
import { startWorker, type WorkerClient } from './worker-client.js';
import {
  findVariant,
  fullStackRoles,
  startServer,
  VARIANTS,
  type UpstreamServer,
  type VariantSpec,
} from './variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

const CURVE_PS = [50, 75, 90, 95, 99, 99.5, 99.9, 99.99];

/** The unmeasured run before each measured slice (ms): the client has just waited for the others. */
const SLICE_LEAD_MS = 100;

/**
 * The clients that take turns within a round: the two sides of every target (and of every INFO ratio but the
 * built-in fetch's against undici's) share a group. `Pool.request` is the reference of two groups, so it runs
 * in each and is paired with the clients of its own group.
 */
const GROUPS: readonly (readonly string[])[] = [
  [
    'pool',
    'mesh-request-bal',
    'mesh-request-full',
    'mesh-request-untraced',
    'mesh-request-otel-noop',
    'haproxy',
  ],
  ['undici-fetch', 'global-fetch', 'mesh-fetch-bal', 'mesh-fetch-full'],
  ['pool', 'global-fetch-agent', 'dispatcher-bal', 'dispatcher-full'],
];

/**
 * The groups of this run: {@link GROUPS} cut down to the chosen variants (a group left with `Pool.request`
 * alone is dropped), then the on-demand variants (`--only leaf,mesh-request-without:retries,...`), three at
 * a time with `Pool.request`.
 */
function planGroups(variants: readonly VariantSpec[]): VariantSpec[][] {
  const byId = new Map(variants.map((v) => [v.id, v]));
  const out: VariantSpec[][] = [];
  const placed = new Set<string>();
  for (const g of GROUPS) {
    // A baseline twin (--baseline) takes turns in its current self's group.
    const members = g.flatMap((id) => [id, baselineId(id)]).filter((id) => byId.has(id));
    members.forEach((id) => placed.add(id));
    if (members.some((id) => id !== 'pool')) out.push(members.map((id) => byId.get(id)!));
  }
  const rest = variants.filter((v) => !placed.has(v.id));
  for (let i = 0; i < rest.length; i += 3) out.push([byId.get('pool')!, ...rest.slice(i, i + 3)]);
  if (out.length === 0) out.push([byId.get('pool')!]);
  return out;
}

/** A round's sample of one client at one concurrency, before its slices are added up. */
function emptySample(round: number, group: number): RoundSample {
  return {
    round,
    group,
    count: 0,
    errors: 0,
    elapsedMs: 0,
    rps: 0,
    p50Us: 0,
    p99Us: 0,
    clientCpuUs: 0,
    clientSysUs: 0,
    serverCpuUs: 0,
    haproxyCpuUs: 0,
    otherCores: null,
  };
}

/** One measured slice of a client: its result, and the CPU the others used meanwhile (µs; undefined without /proc). */
interface Slice {
  res: RunResult;
  serverUs: number | undefined;
  haproxyUs: number | undefined;
  machineUs: number | undefined;
}

/** `b - a`, or undefined when either reading is missing. */
function delta(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined ? b - a : undefined;
}

/**
 * Measures one slice of `client` at concurrency `c`, after {@link SLICE_LEAD_MS} of unmeasured load (the client
 * has just waited for the others), reading the server's, HAProxy's and the machine's CPU around it. Exits the
 * benchmark if the client does not answer within a minute of the slice's end.
 */
async function measureSlice(
  client: WorkerClient,
  label: string,
  c: number,
  sliceMs: number,
  serverPid: number | undefined,
  haproxyPid: number | undefined,
): Promise<Slice> {
  const watchdog = setTimeout(() => {
    console.error(`overhead: ${label} at concurrency ${c} is stuck; giving up`);
    process.exit(2);
  }, sliceMs + 60_000);
  await client.run(c, SLICE_LEAD_MS, false);
  const srv0 = processCpuUs(serverPid);
  const hap0 = processCpuUs(haproxyPid);
  const all0 = machineBusyUs();
  const res = await client.run(c, sliceMs, true);
  const srv1 = processCpuUs(serverPid);
  const hap1 = processCpuUs(haproxyPid);
  const all1 = machineBusyUs();
  clearTimeout(watchdog);
  return { res, serverUs: delta(srv0, srv1), haproxyUs: delta(hap0, hap1), machineUs: delta(all0, all1) };
}

/**
 * Adds a slice to its client's sample of the round. `otherCores` sums other tenants' busy ms here; the caller
 * divides it by the elapsed time once the slices are in. A CPU reading missing in any slice makes the total null.
 */
function addSlice(a: RoundSample, { res, serverUs, haproxyUs, machineUs }: Slice): void {
  a.count += res.count;
  a.errors += res.errors;
  a.elapsedMs += res.elapsedMs;
  a.clientCpuUs += res.cpuUs;
  a.clientSysUs = (a.clientSysUs ?? 0) + res.sysUs;
  a.serverCpuUs = a.serverCpuUs !== null && serverUs !== undefined ? a.serverCpuUs + serverUs : null;
  a.haproxyCpuUs = a.haproxyCpuUs !== null && haproxyUs !== undefined ? a.haproxyCpuUs + haproxyUs : null;
  if (machineUs !== undefined && serverUs !== undefined) {
    const ours = res.cpuUs + serverUs + (haproxyUs ?? 0);
    a.otherCores = (a.otherCores ?? 0) + Math.max(0, machineUs - ours) / 1000;
  }
}

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
  if (flags.baseline === true) throw new Error('--baseline expects a directory');
  const baseline: BaselineInfo | undefined =
    typeof flags.baseline === 'string'
      ? inspectBaseline(flags.baseline, numberFlag(flags, 'baseline-min', 0.95))
      : undefined;
  // The client processes (client-worker.ts) inherit it.
  if (baseline) process.env[BASELINE_ENV] = baseline.dir;
  const stem = baseline ? 'overhead-baseline' : 'overhead';
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
  if (baseline)
    console.log(
      `baseline: ${baseline.dir} at ${baseline.commit}${baseline.srcDirty ? ' with uncommitted src/ changes' : ''}, ` +
        `its dist/ on its undici ${baseline.undici}; current / baseline req/s judged against >= ${baseline.min}`,
    );

  const server: UpstreamServer = await startServer();
  // --pin: the server on the last CPU, each client on the first, HAProxy unpinned (taskset). At c=1 it halves
  // the round-to-round spread of a client's added p50 (the scheduler no longer moves the client and the
  // server between cores), and it makes the HAProxy hop cheaper (16 against 19-22 µs): for focused
  // comparisons of mesh clients, not the default (docs/benchmarks.md, "Reading these figures").
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
  const chosen = [...VARIANTS, ...extra].filter(
    (v) => (!only || only.includes(v.id) || v.id === 'pool') && (!v.hop || haproxy !== undefined),
  );
  // --baseline: a twin of each chosen client that has one, on the baseline's build (baseline.ts).
  const variants = baseline
    ? chosen.flatMap((v) =>
        BASELINE_OF.includes(v.id)
          ? [v, { ...v, id: baselineId(v.id), label: `${v.label} [baseline]` }]
          : [v],
      )
    : chosen;
  const clients = new Map<string, WorkerClient>();
  const histograms = new Map<string, RecordableHistogram>();
  const groups = planGroups(variants);
  const slices = Math.max(1, Math.round(numberFlag(flags, 'slices', quick ? 2 : 4)));
  const sliceMs = (seconds * 1000) / slices;
  console.log(`groups: ${groups.map((g) => `[${g.map((v) => v.id).join(' ')}]`).join(' ')}`);
  let closing: Promise<unknown> | undefined;
  try {
    const rows = new Map<string, RoundSample[]>();
    const firstErrors = new Map<string, string>();
    for (let r = 1; r <= rounds; r++) {
      const u = mulberry32(seed + r);
      for (const gi of shuffled(
        groups.map((_, i) => i),
        u,
      )) {
        // A group's clients are alive together, each a fresh process for this round (see client-worker.ts),
        // and take turns: per concurrency, `slices` measured slices each, in a new random order every turn.
        // A client waits at most (group size - 1) slices between two of its own, a second or three: never
        // long enough for V8's memory reducer (it threw away the optimized code of clients that waited tens
        // of seconds; docs/benchmarks.md, "Idle processes"). The two sides of every target share a group, so
        // they are measured within seconds of each other, several times: this machine's vCPUs slow down by
        // up to 40 % for tens of seconds at a time (docs/benchmarks.md, "The host's slow windows"), and a
        // whole round (a minute and a half) could put a client and its reference in different windows.
        const group = shuffled(groups[gi]!, u);
        const members = await Promise.all([
          ...group.map((v) => startWorker(v.id, server.port, haproxyPort)),
          closing,
        ]);
        const started = members.slice(0, group.length) as WorkerClient[];
        started.forEach((client, i) => {
          clients.set(`${gi}:${group[i]!.id}`, client);
          if (pin && client.pid !== undefined)
            execFileSync('taskset', ['-a', '-p', '-c', '0', String(client.pid)], { stdio: 'ignore' });
        });
        for (const client of started) await client.run(Math.max(...concurrency), warmupSeconds * 2000, false);
        for (const c of concurrency) {
          for (const client of started) await client.run(c, warmupSeconds * 1000, false);
          const acc = group.map(() => ({
            ...emptySample(r, gi),
            h: newHistogram(),
          }));
          for (let k = 0; k < slices; k++) {
            for (const i of shuffled(
              group.map((_, j) => j),
              u,
            )) {
              const v = group[i]!;
              const client = started[i]!;
              const slice = await measureSlice(client, v.label, c, sliceMs, server.pid, haproxy?.pid);
              const key = `${v.id}@${c}`;
              let h = histograms.get(key);
              if (h === undefined) histograms.set(key, (h = newHistogram()));
              const a = acc[i]!;
              for (const ns of slice.res.samplesNs ?? []) {
                h.record(ns);
                a.h.record(ns);
              }
              if (slice.res.firstError && !firstErrors.has(key)) firstErrors.set(key, slice.res.firstError);
              addSlice(a, slice);
            }
          }
          group.forEach((v, i) => {
            const { h, ...sample } = acc[i]!;
            const lat = summarize(h);
            sample.rps = sample.count / (sample.elapsedMs / 1000);
            sample.p50Us = lat.p50Us;
            sample.p99Us = lat.p99Us;
            if (!v.hop) sample.haproxyCpuUs = null;
            // otherCores summed other tenants' busy ms over the slices: cores = that over the elapsed time.
            if (sample.otherCores !== null) sample.otherCores = sample.otherCores / sample.elapsedMs;
            const key = `${v.id}@${c}`;
            rows.set(key, [...(rows.get(key) ?? []), sample]);
            console.log(
              `round ${r}/${rounds}  c=${String(c).padEnd(3)} ${v.label.padEnd(40)} ${num(sample.rps).padStart(7)} req/s` +
                `  p50 ${num(sample.p50Us).padStart(6)} µs  p99 ${num(sample.p99Us).padStart(6)} µs` +
                `  cpu ${(sample.clientCpuUs / sample.count).toFixed(1)} (sys ${(sample.clientSysUs! / sample.count).toFixed(1)}) µs/call` +
                (sample.otherCores === null ? '' : `  others ${sample.otherCores.toFixed(2)} cores`) +
                (sample.errors ? `  ERRORS ${sample.errors}: ${firstErrors.get(key)}` : ''),
            );
          });
        }
        group.forEach((v) => clients.delete(`${gi}:${v.id}`));
        closing = Promise.all(started.map((client) => client.close()));
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

    const targets = evaluateTargets(cells, haproxy !== undefined, baseline?.min);
    const results: OverheadResults = {
      benchmark: 'overhead',
      command,
      quick,
      machine,
      settings: { rounds, seconds, warmupSeconds, concurrency, slices },
      fullStack,
      haproxy: haproxyInfo,
      cpuResolutionUs: processCpuResolutionUs(),
      cells,
      targets,
      ...(baseline ? { baseline } : {}),
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
    await writeJson(path.join(outDir, `${stem}.json`), results);
    const md = await writeFormatted(path.join(outDir, `${stem}.md`), renderMarkdown(results));
    writeFileSync(path.join(outDir, `${stem}.svg`), renderSvg(results));
    console.log(`\nwrote ${path.relative(repo, outDir) || '.'}/${stem}.{json,md,svg}`);
    if (!quick && !baseline && flags['no-docs'] !== true) updateDocs(repo, md);
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
