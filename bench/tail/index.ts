/**
 * The tail-latency benchmark (issue 8; Buoyant's "Beyond Round Robin" experiment, scaled down): how each
 * balancing strategy's latency distribution holds up when one of 11 backends turns slow for a while.
 *
 * Workload: 11 backends on 127.0.0.1 in a separate process (bench/tail/backends.ts), each answering after a
 * delay drawn from a seeded normal distribution (median 10 ms, sd 1 ms). An open-loop load at a fixed rate
 * (500/s; send times computed up front, latency measured from the scheduled send time, so a stalled client is
 * charged for it: bench/tail/openloop.ts). During the middle half of the measured run, backend 0 answers every
 * request after 1 s. Every strategy gets the same schedule, the same window and the same seeded delays, one
 * strategy after another, each with freshly started backends (and a fresh HAProxy or mesh), after a short
 * warm-up at the same rate. The healthy baseline is mesh Peak-EWMA with no backend degraded, run first (and
 * once more at the end, only to show how much the shared machine drifted during the run).
 *
 * Strategies (bench/tail/strategies.ts): mesh round robin, mesh P2C least-loaded, mesh P2C Peak-EWMA,
 * Peak-EWMA with a 100 ms per-attempt timeout retried elsewhere, Peak-EWMA with backup requests at the p95
 * (when the `backupRequests` option exists in this build; otherwise reported as not available), and HAProxy
 * from Debian in roundrobin and leastconn mode (bench/tail/haproxy.cfg; skipped with a note when missing).
 *
 * Reports p50, p95, p99, p99.9 and max per strategy, ratios to the baseline, the targets (MET/MISS), per
 * second p99 and per-backend traffic share (requests each backend received, counted by the backends), the
 * generator's lateness, and CPU used by other tenants of the machine during each run.
 *
 * Run: `npm run bench -- --bench tail` (builds dist/ first and measures it), or this one alone:
 *   npm run build && npx tsx bench/tail/index.ts [--quick] [--seconds S] [--rate R]
 *     [--only baseline,peak-ewma,...] [--no-haproxy] [--no-docs]
 * Full: 60 s per strategy at 500/s (about 10 minutes); --quick: 10 s at 300/s (about 2 minutes).
 * Results: bench/results/tail.{json,md,svg} (quick: bench/results/quick/) and, for full runs, the block
 * between the tail markers of docs/benchmarks.md.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { findHaproxy, HAPROXY_INSTALL_HINT, startHaproxy, type RunningHaproxy } from '../lib/haproxy.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { freePort, machineBusyUs, processCpuUs } from '../lib/proc.js';
import { median } from '../lib/stats.js';
import { openLoop } from './openloop.js';
import {
  evaluateTargets,
  printTables,
  renderMarkdown,
  renderSvg,
  summarizeRun,
  updateDocs,
  type MeshView,
  type StrategyResult,
  type TailResults,
} from './report.js';
import {
  haproxyClient,
  meshClient,
  STRATEGIES,
  unavailableReason,
  type StrategySpec,
  type TailClient,
} from './strategies.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

const BACKENDS = 11;
const DEGRADED = 0;
const DEGRADED_DELAY_MS = 1_000;
const MEDIAN_MS = 10;
const SD_MS = 1;
const SEED = 8;

/** The backends' process. */
interface Backends {
  ports: number[];
  pid: number;
  send(m: object): void;
  arrivals(): Promise<number[][]>;
  stop(): Promise<void>;
}

function childExecArgv(): string[] {
  return process.execArgv.filter(
    (a) => !a.startsWith('--cpu-prof') && !a.startsWith('--prof') && a !== '--expose-gc',
  );
}

function startBackends(): Promise<Backends> {
  const file = fileURLToPath(new URL('./backends.ts', import.meta.url));
  const child: ChildProcess = fork(file, [BACKENDS, SEED, MEDIAN_MS, SD_MS].map(String), {
    execArgv: childExecArgv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the backends did not start within 20 s'));
    }, 20_000);
    child.once('error', reject);
    const early = (code: number | null): void => reject(new Error(`the backends exited early (${code})`));
    child.once('exit', early);
    child.once('message', (m: { type: string; ports: number[]; pid: number }) => {
      clearTimeout(t);
      child.off('exit', early);
      resolve({
        ports: m.ports,
        pid: m.pid,
        send: (msg) => child.send(msg),
        arrivals: () =>
          new Promise((res) => {
            child.once('message', (s: { arrivals: number[][] }) => res(s.arrivals));
            child.send({ type: 'stats' });
          }),
        async stop() {
          process.off('exit', killOnExit);
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.disconnect();
          const k = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(k);
        },
      });
    });
  });
}

/** What the mesh itself says about the degraded endpoint and its backups (null if the snapshot fails). */
function meshView(c: TailClient, degradedAddr: string): MeshView | null {
  try {
    const svc = c.snapshot?.();
    if (!svc) return null;
    const d = svc.endpoints.find((e) => e.address === degradedAddr);
    const others = svc.endpoints
      .filter((e) => e.address !== degradedAddr && typeof e.latencyMs === 'number')
      .map((e) => e.latencyMs!);
    const r1 = (x: number | null | undefined): number | null =>
      typeof x === 'number' ? Math.round(x * 10) / 10 : null;
    return {
      degraded: d
        ? {
            status: d.status,
            latencyMs: r1(d.latencyMs),
            inflight: d.inflight,
            accrual: d.accrual?.state ?? null,
          }
        : null,
      othersLatencyMs: others.length ? r1(median(others)) : null,
      backups: svc.backupRequests ?? null,
    };
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  process.once('SIGTERM', () => process.exit(143));
  process.once('SIGINT', () => process.exit(130));
  const flags = parseFlags(process.argv.slice(2));
  const quick = flags.quick === true;
  const seconds = numberFlag(flags, 'seconds', quick ? 10 : 60);
  const rate = numberFlag(flags, 'rate', quick ? 300 : 500);
  const warmupSeconds = numberFlag(flags, 'warmup', quick ? 1 : 3);
  const only = listFlag(flags, 'only');
  const outDir = path.join(repo, 'bench', 'results', quick ? 'quick' : '');
  const command =
    process.env.MESHFETCH_BENCH_COMMAND ??
    `npx tsx bench/tail/index.ts ${process.argv.slice(2).join(' ')}`.trim();
  const durationMs = seconds * 1000;
  const window = { fromMs: durationMs / 4, toMs: (3 * durationMs) / 4 };

  const machine = machineInfo();
  console.log('# tail latency under a degraded backend');
  console.log(`machine: ${describeMachine(machine)}`);
  console.log(
    `settings: ${BACKENDS} backends, normal(median ${MEDIAN_MS} ms, sd ${SD_MS} ms), open loop ${rate}/s, ` +
      `${seconds} s per strategy (+${warmupSeconds} s warm-up); backend ${DEGRADED} answers after ` +
      `${DEGRADED_DELAY_MS} ms from ${window.fromMs / 1000} s to ${window.toMs / 1000} s`,
  );

  const hap = flags['no-haproxy'] === true ? undefined : findHaproxy();
  if (!hap && flags['no-haproxy'] !== true) {
    console.log(
      `HAProxy is not installed: skipping its strategies. Install it with: ${HAPROXY_INSTALL_HINT}`,
    );
  }
  const specs = STRATEGIES.filter((s) => !only || only.includes(s.id) || s.id === 'baseline');
  const perStrategyS = seconds + warmupSeconds + 2;
  console.log(
    `${specs.length} strategies, about ${Math.ceil((specs.length * perStrategyS) / 60)} minutes in all`,
  );
  const results: StrategyResult[] = [];
  for (const spec of specs) {
    let skipped: string | undefined = await unavailableReason(spec);
    if (!skipped && spec.kind === 'haproxy' && !hap) {
      skipped = flags['no-haproxy'] === true ? 'skipped (--no-haproxy)' : `skipped (HAProxy not installed)`;
    }
    if (skipped) {
      console.log(`${spec.label.padEnd(40)} ${skipped}`);
      results.push({ id: spec.id, label: spec.label, kind: spec.kind, degraded: spec.degraded, skipped });
      continue;
    }
    results.push(await runStrategy(spec, { rate, durationMs, warmupMs: warmupSeconds * 1000, window, hap }));
  }

  const targets = evaluateTargets(results);
  const doc: TailResults = {
    benchmark: 'tail',
    command,
    quick,
    machine,
    haproxy: hap ? { version: hap.version, config: 'bench/tail/haproxy.cfg' } : null,
    settings: {
      backends: BACKENDS,
      medianMs: MEDIAN_MS,
      sdMs: SD_MS,
      seed: SEED,
      ratePerSec: rate,
      seconds,
      warmupSeconds,
      degradedBackend: DEGRADED,
      degradedDelayMs: DEGRADED_DELAY_MS,
      window: { fromS: window.fromMs / 1000, toS: window.toMs / 1000 },
    },
    strategies: results,
    targets,
  };
  console.log('');
  printTables(doc);
  mkdirSync(outDir, { recursive: true });
  await writeJson(path.join(outDir, 'tail.json'), doc);
  const md = await writeFormatted(path.join(outDir, 'tail.md'), renderMarkdown(doc));
  writeFileSync(path.join(outDir, 'tail.svg'), renderSvg(doc));
  console.log(`\nwrote ${path.relative(repo, outDir) || '.'}/tail.{json,md,svg}`);
  if (!quick && flags['no-docs'] !== true) updateDocs(repo, md);
}

interface RunSettings {
  rate: number;
  durationMs: number;
  warmupMs: number;
  window: { fromMs: number; toMs: number };
  hap: { bin: string; version: string } | undefined;
}

async function runStrategy(spec: StrategySpec, s: RunSettings): Promise<StrategyResult> {
  const backends = await startBackends();
  let haproxy: RunningHaproxy | undefined;
  let client: TailClient | undefined;
  try {
    if (spec.kind === 'haproxy') {
      const port = await freePort();
      const servers = backends.ports
        .map((p, i) => `    server b${i} 127.0.0.1:${p} check inter 1s`)
        .join('\n');
      haproxy = await startHaproxy(
        s.hap!.bin,
        path.join(here, 'haproxy.cfg'),
        { FRONTEND_PORT: port, BALANCE: spec.balance!, SERVERS: servers },
        port,
      );
      client = haproxyClient(port);
    } else {
      client = meshClient(spec, backends.ports);
    }
    await client.send(); // fails loudly here if the strategy is broken
    (globalThis as { gc?: () => void }).gc?.();
    const marks: { cpu?: NodeJS.CpuUsage; be?: number; hp?: number; all?: number; load?: number } = {};
    const hooks = [
      {
        atMs: 0,
        run: () => {
          backends.send({ type: 'reset' });
          marks.cpu = process.cpuUsage();
          marks.be = processCpuUs(backends.pid);
          marks.hp = processCpuUs(haproxy?.pid);
          marks.all = machineBusyUs();
        },
      },
    ];
    const degradedAddr = `127.0.0.1:${backends.ports[DEGRADED]}`;
    let atWindowEnd: MeshView | null = null;
    if (client.snapshot) {
      const c = client;
      hooks.push({ atMs: s.window.toMs - 1, run: () => (atWindowEnd = meshView(c, degradedAddr)) });
    }
    if (spec.degraded) {
      hooks.push(
        {
          atMs: s.window.fromMs,
          run: () => backends.send({ type: 'degrade', index: DEGRADED, delayMs: DEGRADED_DELAY_MS }),
        },
        { atMs: s.window.toMs, run: () => backends.send({ type: 'heal' }) },
      );
    }
    const watchdog = setTimeout(
      () => {
        console.error(`tail: ${spec.label} is stuck; giving up`);
        process.exit(2);
      },
      s.warmupMs + s.durationMs + 60_000,
    );
    const r = await openLoop(client.send, {
      ratePerSec: s.rate,
      warmupMs: s.warmupMs,
      durationMs: s.durationMs,
      drainMs: 5_000,
      backends: BACKENDS,
      hooks,
    });
    clearTimeout(watchdog);
    const cpu = process.cpuUsage(marks.cpu);
    const be1 = processCpuUs(backends.pid);
    const hp1 = processCpuUs(haproxy?.pid);
    const all1 = machineBusyUs();
    const arrivals = await backends.arrivals();
    const clientCpuUs = cpu.user + cpu.system;
    const backendCpuUs = be1 !== undefined && marks.be !== undefined ? be1 - marks.be : null;
    const haproxyCpuUs = hp1 !== undefined && marks.hp !== undefined ? hp1 - marks.hp : null;
    let otherCores: number | null = null;
    if (all1 !== undefined && marks.all !== undefined && backendCpuUs !== null) {
      const ours = clientCpuUs + backendCpuUs + (haproxyCpuUs ?? 0);
      otherCores = Math.max(0, all1 - marks.all - ours) / (r.elapsedMs * 1000);
    }
    const result = summarizeRun(spec, r, arrivals, { clientCpuUs, backendCpuUs, haproxyCpuUs, otherCores });
    if (client.snapshot) result.mesh = { atWindowEnd, atEnd: meshView(client, degradedAddr) };
    const l = result.latency!;
    console.log(
      `${spec.label.padEnd(40)} p50 ${l.p50Ms.toFixed(1).padStart(6)}  p99 ${l.p99Ms.toFixed(1).padStart(7)}  ` +
        `p99.9 ${l.p999Ms.toFixed(1).padStart(7)}  max ${l.maxMs.toFixed(1).padStart(7)} ms  ` +
        `ok ${r.ok}/${r.sent}` +
        (r.errors ? `  ERRORS ${r.errors} (${r.firstError})` : '') +
        (r.unfinished ? `  UNFINISHED ${r.unfinished}` : '') +
        (otherCores === null ? '' : `  others ${otherCores.toFixed(2)} cores`),
    );
    return result;
  } finally {
    await client?.close().catch(() => {});
    await haproxy?.stop();
    await backends.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
