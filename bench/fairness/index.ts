/**
 * The fairness benchmark (issue 20): does each balancer give new, idle, cold-started and rate-limiting
 * endpoints the share they should get? Real parts only: backends in another process (bench/fairness/
 * backends.ts, a fresh set for every run), a real `consul agent -dev` on loopback for the scale-out case
 * (test/support/consul.ts), and a mesh made by `createMesh` with the balancer under test and its defaults.
 *
 * Scenarios, each run `--runs` times (default 3) for each balancer (P2C Peak-EWMA, the default; P2C
 * least-loaded; round robin), each run with a fresh mesh and fresh backends:
 *
 * 1. `sequential`: 3 identical backends (1 ms), 300 sequential calls: each backend's share (target 20-47 %).
 * 2. `scale-out`: 4 identical backends registered in Consul, an open loop at 400 calls/s; after 3 s a 5th is
 *    registered. Time from the registration call to its 10th request (target <= 500 ms) and its share of the
 *    requests in the 2 s after (target >= 10 %; fair: 20 %).
 * 3. `cold-first`: 3 backends, the third answers its first request after 200 ms (a cold start); open loop at
 *    300/s: its share in the second second of the run (target >= 20 %; fair: 33 %).
 * 4. `429`, `429-ra`, `503-ra0`: 4 backends, the fourth answers at once with 429 (without, then with
 *    `Retry-After: 1`) or 503 with `Retry-After: 0`; open loop at 400/s for 4 s with default retries: its
 *    share of the attempts (target <= 12.5 %) and the callers' error rate (target <= 1 %).
 *
 * Every run also reports the client's event-loop stalls (`monitorEventLoopDelay`, 10 ms resolution): a run
 * whose loop stalled for more than 50 ms is flagged, since a stalled client inflates every latency estimate
 * and hides exactly the behaviour measured here. Per-backend shares over time (100 ms bins) of one run of
 * scenarios 2-4 are plotted.
 *
 * Run (Consul from `npm run consul:install`, or CONSUL_BIN / PATH):
 *   npx tsx --conditions=meshfetch-source bench/fairness/index.ts [--quick] [--runs N]
 *     [--only sequential,scale-out,...] [--balancers p2c-peak-ewma,...] [--no-consul] [--out DIR]
 * or with the others: `npm run bench -- --bench fairness` (measures dist/). About 5 minutes with the
 * defaults, 2 with --quick (one run each). Results: bench/results/fairness.{json,md,svg} (quick:
 * bench/results/quick/).
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { consulDiscovery, createMesh, type Mesh, type ServiceConfig } from 'meshfetch';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { lineChart, PALETTE, svgDocument, writeSvg, type Panel } from '../lib/svg.js';
import { markdownTable } from '../lib/table.js';
import {
  deregisterInstance,
  registerInstance,
  startConsul,
  type ConsulAgent,
} from '../../test/support/consul.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const SERVICE = 'fair';
const BALANCERS = ['p2c-peak-ewma', 'p2c-least-loaded', 'round-robin'] as const;
type Balancer = (typeof BALANCERS)[number];
const SCENARIOS = ['sequential', 'scale-out', 'cold-first', '429', '429-ra', '503-ra0'] as const;
type Scenario = (typeof SCENARIOS)[number];
type Mode = 'ok' | 'slow-first' | '429' | '429-ra' | '503-ra0';
/** A run whose client event loop stalled longer than this is flagged. */
const STALL_MS = 50;
const BIN_MS = 100;

const wallMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------- backends

interface Backends {
  start(modes: Mode[]): Promise<number[]>;
  arrivals(): Promise<number[][]>;
  stop(): void;
}

function startBackends(): Promise<Backends> {
  const file = fileURLToPath(new URL('./backends.ts', import.meta.url));
  const child: ChildProcess = fork(file, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const on = (m: { type: string } & T): void => {
        if (m.type !== type) return;
        child.off('message', on);
        resolve(m);
      };
      child.on('message', on);
    });
  const killOnExit = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  return next<{ pid: number }>('hello').then(() => ({
    async start(modes) {
      const ready = next<{ ports: number[] }>('ready');
      child.send({ type: 'start', count: modes.length, modes, delayMs: 1 });
      return (await ready).ports;
    },
    async arrivals() {
      const got = next<{ at: number[][] }>('arrivals');
      child.send({ type: 'arrivals' });
      return (await got).at;
    },
    stop() {
      child.disconnect();
    },
  }));
}

// ------------------------------------------------------------------------------------------- the client

interface Stalls {
  maxMs: number;
  p99Ms: number;
}

function stallMonitor(): { stop(): Stalls } {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  return {
    stop() {
      h.disable();
      // The histogram includes the resolution itself: subtract it, as a delay.
      return { maxMs: Math.max(0, h.max / 1e6 - 10), p99Ms: Math.max(0, h.percentile(99) / 1e6 - 10) };
    },
  };
}

/** One call: 'ok' for a 200, else the status or the error code. */
async function call(mesh: Mesh): Promise<string> {
  try {
    const res = await mesh.request(`http://${SERVICE}/`);
    await res.body.text();
    return res.statusCode === 200 ? 'ok' : String(res.statusCode);
  } catch (err) {
    return String((err as { code?: unknown }).code ?? (err as Error).name);
  }
}

interface LoopResult {
  startWall: number;
  sent: number;
  errors: number;
  firstError: string | undefined;
}

/**
 * An open loop: calls at a fixed rate, sent at their scheduled time whether or not earlier ones answered;
 * `hooks` run at given offsets. Waits for the calls in flight at most 5 s after the last send.
 */
async function openLoop(
  mesh: Mesh,
  rate: number,
  durationMs: number,
  hooks: Array<{ atMs: number; run: () => Promise<void> }> = [],
): Promise<LoopResult> {
  const interval = 1000 / rate;
  const total = Math.round((durationMs * rate) / 1000);
  const startWall = wallMs();
  const pending: Promise<void>[] = [];
  const r: LoopResult = { startWall, sent: 0, errors: 0, firstError: undefined };
  const hookRuns: Promise<void>[] = [];
  let h = 0;
  for (let k = 0; k < total; k++) {
    const due = startWall + k * interval;
    const ahead = due - wallMs();
    if (ahead >= 1) await sleep(ahead);
    while (h < hooks.length && hooks[h]!.atMs <= k * interval) hookRuns.push(hooks[h++]!.run());
    r.sent++;
    pending.push(
      call(mesh).then((outcome) => {
        if (outcome !== 'ok') {
          r.errors++;
          r.firstError ??= outcome;
        }
      }),
    );
  }
  await Promise.race([Promise.all(pending), sleep(5_000)]);
  await Promise.all(hookRuns);
  return r;
}

function newMesh(balancer: Balancer, service: Partial<ServiceConfig>): Mesh {
  return createMesh({ services: { [SERVICE]: { balancer, ...service } as ServiceConfig } });
}

// -------------------------------------------------------------------------------------------- analysis

/** Share of each backend among the arrivals in [from, to) (wall ms). */
function sharesIn(at: number[][], from: number, to: number): number[] {
  const counts = at.map((xs) => xs.filter((t) => t >= from && t < to).length);
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total === 0 ? 0 : c / total));
}

/** Per-backend share in consecutive bins from `from` for `ms`. */
function shareSeries(at: number[][], from: number, ms: number): number[][] {
  const bins: number[][] = [];
  for (let t = 0; t < ms; t += BIN_MS) bins.push(sharesIn(at, from + t, from + t + BIN_MS));
  return bins;
}

interface RunResult {
  scenario: Scenario;
  balancer: Balancer;
  run: number;
  /** Scenario figures (see the file comment); undefined when not reached. */
  figures: Record<string, number | null>;
  stalls: Stalls;
  stalled: boolean;
  /** The first error a caller saw (a status or an error code), when any did. */
  firstError?: string | undefined;
  /** Per-bin, per-backend shares (plotted for run 1), with the time of bin 0 relative to the run start. */
  series?: { offsetMs: number; bins: number[][] };
}

// ------------------------------------------------------------------------------------------- scenarios

async function sequential(b: Backends, balancer: Balancer): Promise<Omit<RunResult, 'run'>> {
  const ports = await b.start(['ok', 'ok', 'ok']);
  const mesh = newMesh(balancer, { endpoints: ports.map((p) => `127.0.0.1:${p}`) });
  const mon = stallMonitor();
  let errors = 0;
  for (let k = 0; k < 300; k++) if ((await call(mesh)) !== 'ok') errors++;
  const stalls = mon.stop();
  await mesh.close({ gracePeriodMs: 200 });
  const at = await b.arrivals();
  const s = sharesIn(at, 0, Infinity);
  return {
    scenario: 'sequential',
    balancer,
    figures: { lowestShare: Math.min(...s), highestShare: Math.max(...s), errors },
    stalls,
    stalled: stalls.maxMs > STALL_MS,
  };
}

async function scaleOut(
  b: Backends,
  balancer: Balancer,
  consul: ConsulAgent,
  run: number,
): Promise<Omit<RunResult, 'run'>> {
  const ports = await b.start(['ok', 'ok', 'ok', 'ok', 'ok']);
  const ids = ports.map((_, i) => `${SERVICE}-${balancer}-${run}-${i}`);
  for (let i = 0; i < 4; i++)
    await registerInstance(consul, { name: SERVICE, id: ids[i]!, address: '127.0.0.1', port: ports[i]! });
  const mesh = newMesh(balancer, { discovery: consulDiscovery({ address: consul.httpAddr }) });
  const endpoints = (): number =>
    mesh.snapshot().services.find((s) => s.name === SERVICE)?.endpoints.length ?? 0;
  for (let t = 0; t < 200 && endpoints() < 4; t++) await sleep(25);
  let registeredAt = NaN;
  const mon = stallMonitor();
  const loop = await openLoop(mesh, 400, 5_500, [
    {
      atMs: 3_000,
      run: async () => {
        registeredAt = wallMs();
        await registerInstance(consul, { name: SERVICE, id: ids[4]!, address: '127.0.0.1', port: ports[4]! });
      },
    },
  ]);
  const stalls = mon.stop();
  await mesh.close({ gracePeriodMs: 200 });
  for (const id of ids) await deregisterInstance(consul, id);
  const at = await b.arrivals();
  const mine = at[4]!.filter((t) => t >= registeredAt).sort((x, y) => x - y);
  const tenth = mine.length >= 10 ? mine[9]! - registeredAt : null;
  const share = sharesIn(at, registeredAt, registeredAt + 2_000)[4]!;
  return {
    scenario: 'scale-out',
    balancer,
    figures: {
      tenthCallMs: tenth,
      shareNext2s: share,
      errorRate: loop.errors / loop.sent,
    },
    stalls,
    stalled: stalls.maxMs > STALL_MS,
    firstError: loop.firstError,
    series: { offsetMs: 0, bins: shareSeries(at, loop.startWall, 5_500) },
  };
}

async function coldFirst(b: Backends, balancer: Balancer): Promise<Omit<RunResult, 'run'>> {
  const ports = await b.start(['ok', 'ok', 'slow-first']);
  const mesh = newMesh(balancer, { endpoints: ports.map((p) => `127.0.0.1:${p}`) });
  const mon = stallMonitor();
  const loop = await openLoop(mesh, 300, 3_000);
  const stalls = mon.stop();
  await mesh.close({ gracePeriodMs: 200 });
  const at = await b.arrivals();
  return {
    scenario: 'cold-first',
    balancer,
    figures: {
      shareSecond2: sharesIn(at, loop.startWall + 1_000, loop.startWall + 2_000)[2]!,
      shareFirst2s: sharesIn(at, loop.startWall, loop.startWall + 2_000)[2]!,
      errorRate: loop.errors / loop.sent,
    },
    stalls,
    stalled: stalls.maxMs > STALL_MS,
    firstError: loop.firstError,
    series: { offsetMs: 0, bins: shareSeries(at, loop.startWall, 3_000) },
  };
}

async function rateLimited(
  b: Backends,
  balancer: Balancer,
  scenario: '429' | '429-ra' | '503-ra0',
): Promise<Omit<RunResult, 'run'>> {
  const ports = await b.start(['ok', 'ok', 'ok', scenario]);
  const mesh = newMesh(balancer, { endpoints: ports.map((p) => `127.0.0.1:${p}`) });
  const mon = stallMonitor();
  const loop = await openLoop(mesh, 400, 4_000);
  const stalls = mon.stop();
  await mesh.close({ gracePeriodMs: 200 });
  const at = await b.arrivals();
  return {
    scenario,
    balancer,
    figures: {
      attemptShare: sharesIn(at, 0, Infinity)[3]!,
      errorRate: loop.errors / loop.sent,
    },
    stalls,
    stalled: stalls.maxMs > STALL_MS,
    firstError: loop.firstError,
    series: { offsetMs: 0, bins: shareSeries(at, loop.startWall, 4_000) },
  };
}

// ----------------------------------------------------------------------------------------------- report

const pct = (x: number | null | undefined): string =>
  x === null || x === undefined ? '-' : `${(x * 100).toFixed(1)} %`;
const ms = (x: number | null | undefined): string =>
  x === null || x === undefined ? 'never' : `${Math.round(x)} ms`;

const TARGETS: Record<
  Scenario,
  { figure: string; label: string; ok: (x: number | null) => boolean; fmt: (x: number | null) => string }[]
> = {
  sequential: [
    {
      figure: 'lowestShare',
      label: 'lowest share (target >= 20 %)',
      ok: (x) => x !== null && x >= 0.2,
      fmt: pct,
    },
    {
      figure: 'highestShare',
      label: 'highest share (target <= 47 %)',
      ok: (x) => x !== null && x <= 0.47,
      fmt: pct,
    },
  ],
  'scale-out': [
    {
      figure: 'tenthCallMs',
      label: "5th endpoint's 10th call after registration (target <= 500 ms)",
      ok: (x) => x !== null && x <= 500,
      fmt: ms,
    },
    {
      figure: 'shareNext2s',
      label: 'its share over the next 2 s (target >= 10 %, fair 20 %)',
      ok: (x) => x !== null && x >= 0.1,
      fmt: pct,
    },
  ],
  'cold-first': [
    {
      figure: 'shareSecond2',
      label: "cold endpoint's share in second 2 (target >= 20 %, fair 33 %)",
      ok: (x) => x !== null && x >= 0.2,
      fmt: pct,
    },
  ],
  '429': [
    {
      figure: 'attemptShare',
      label: '429 endpoint: share of attempts (target <= 12.5 %)',
      ok: (x) => x !== null && x <= 0.125,
      fmt: pct,
    },
    {
      figure: 'errorRate',
      label: "callers' error rate (target <= 1 %)",
      ok: (x) => x !== null && x <= 0.01,
      fmt: pct,
    },
  ],
  '429-ra': [
    {
      figure: 'attemptShare',
      label: '429 + Retry-After: 1 endpoint: share of attempts (target <= 12.5 %)',
      ok: (x) => x !== null && x <= 0.125,
      fmt: pct,
    },
    {
      figure: 'errorRate',
      label: "callers' error rate (target <= 1 %)",
      ok: (x) => x !== null && x <= 0.01,
      fmt: pct,
    },
  ],
  '503-ra0': [
    {
      figure: 'attemptShare',
      label: '503 + Retry-After: 0 endpoint: share of attempts (target <= 12.5 %)',
      ok: (x) => x !== null && x <= 0.125,
      fmt: pct,
    },
    {
      figure: 'errorRate',
      label: "callers' error rate (target <= 1 %)",
      ok: (x) => x !== null && x <= 0.01,
      fmt: pct,
    },
  ],
};

function renderMarkdown(
  results: RunResult[],
  header: string,
  scenarios: Scenario[],
  balancers: Balancer[],
): string {
  const lines = [header, ''];
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    for (const t of TARGETS[scenario]) {
      const row = [t.label];
      for (const balancer of balancers) {
        const runs = results.filter((r) => r.scenario === scenario && r.balancer === balancer);
        const cells = runs.map((r) => {
          const x = r.figures[t.figure] ?? null;
          return `${t.fmt(x)}${t.ok(x) ? '' : ' ✗'}${r.stalled ? ' (stalled)' : ''}`;
        });
        row.push(cells.join(', ') || '-');
      }
      rows.push(row);
    }
  }
  lines.push(
    markdownTable(['figure (each run)', ...balancers], rows, ['l', ...balancers.map(() => 'l' as const)]),
  );
  lines.push('');
  lines.push(
    `✗: target missed. (stalled): the client's event loop stalled for more than ${STALL_MS} ms during the run.`,
  );
  lines.push('');
  const stallRows = balancers.map((balancer) => {
    const runs = results.filter((r) => r.balancer === balancer);
    const worst = Math.max(...runs.map((r) => r.stalls.maxMs));
    const p99 = Math.max(...runs.map((r) => r.stalls.p99Ms));
    return [
      balancer,
      `${worst.toFixed(1)} ms`,
      `${p99.toFixed(1)} ms`,
      String(runs.filter((r) => r.stalled).length),
    ];
  });
  lines.push(
    markdownTable(
      ['client event loop', 'worst stall', 'worst p99 delay', `runs over ${STALL_MS} ms`],
      stallRows,
      ['l', 'r', 'r', 'r'],
    ),
  );
  lines.push('');
  return lines.join('\n');
}

function renderSvg(
  results: RunResult[],
  scenarios: Scenario[],
  balancers: Balancer[],
  subtitle: string,
): string {
  const panels: Panel[] = [];
  for (const scenario of scenarios) {
    if (scenario === 'sequential') continue;
    for (const balancer of balancers) {
      const r = results.find((x) => x.scenario === scenario && x.balancer === balancer && x.run === 1);
      if (r?.series === undefined) continue;
      const n = r.series.bins[0]?.length ?? 0;
      const series = Array.from({ length: n }, (_, i) => ({
        name: `backend ${i}${scenario === 'scale-out' && i === 4 ? ' (added at 3 s)' : scenario === 'cold-first' && i === 2 ? ' (cold)' : scenario.match(/^(429|503)/) && i === 3 ? ` (${scenario})` : ''}`,
        color: PALETTE[i % PALETTE.length],
        points: r.series!.bins.map((bin, k) => [((k + 0.5) * BIN_MS) / 1000, bin[i]! * 100] as const),
      }));
      panels.push(
        lineChart({
          title: `${scenario}: ${balancer} (run 1), share of requests per ${BIN_MS} ms`,
          x: { label: 'seconds into the run', min: 0 },
          y: { label: 'share %', min: 0, max: 100 },
          series,
          height: 230,
        }),
      );
    }
  }
  return svgDocument(panels, 'Per-backend share of requests over time (bench/fairness)', subtitle);
}

// ------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const quick = flags.quick === true;
  const runs = numberFlag(flags, 'runs', quick ? 1 : 3);
  const scenarios = (listFlag(flags, 'only') ?? [...SCENARIOS]) as Scenario[];
  const balancers = (listFlag(flags, 'balancers') ?? [...BALANCERS]) as Balancer[];
  const outDir =
    typeof flags.out === 'string'
      ? path.resolve(flags.out)
      : path.join(repo, 'bench', 'results', quick ? 'quick' : '');
  const machine = machineInfo();
  let consul: ConsulAgent | undefined;
  if (scenarios.includes('scale-out') && flags['no-consul'] !== true) {
    try {
      consul = await startConsul();
      console.log(`consul dev agent on ${consul.httpAddr}`);
    } catch (err) {
      console.log(`scale-out skipped: no Consul agent (${(err as Error).message}); npm run consul:install`);
    }
  }
  const backends = await startBackends();
  const results: RunResult[] = [];
  try {
    for (let run = 1; run <= runs; run++) {
      for (const balancer of balancers) {
        for (const scenario of scenarios) {
          let r: Omit<RunResult, 'run'>;
          if (scenario === 'sequential') r = await sequential(backends, balancer);
          else if (scenario === 'scale-out') {
            if (consul === undefined) continue;
            r = await scaleOut(backends, balancer, consul, run);
          } else if (scenario === 'cold-first') r = await coldFirst(backends, balancer);
          else r = await rateLimited(backends, balancer, scenario);
          const full = { ...r, run };
          results.push(full);
          const figs = Object.entries(full.figures)
            .map(([k, v]) => `${k}=${v === null ? 'null' : k.endsWith('Ms') ? Math.round(v) : v.toFixed(3)}`)
            .join(' ');
          console.log(
            `run ${run} ${balancer.padEnd(16)} ${scenario.padEnd(10)} ${figs}  stall max ${full.stalls.maxMs.toFixed(1)} ms${full.stalled ? ' STALLED' : ''}${full.firstError !== undefined ? `  first error ${full.firstError}` : ''}`,
          );
        }
      }
    }
  } finally {
    backends.stop();
    await consul?.stop();
  }
  const header = [
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${describeMachine(machine)}; meshfetch from ${process.execArgv.some((a) => a.includes('meshfetch-source')) ? 'src/' : 'dist/'}.`,
    `${runs} run(s) per balancer and scenario, each with a fresh mesh and fresh backends (another process; 1 ms answers).`,
    '',
    '```sh',
    'npx tsx --conditions=meshfetch-source bench/fairness/index.ts',
    '```',
  ].join('\n');
  const md = renderMarkdown(results, header, scenarios, balancers);
  console.log(`\n${md}`);
  await writeJson(path.join(outDir, 'fairness.json'), { machine, runs, results });
  await writeFormatted(path.join(outDir, 'fairness.md'), md);
  writeSvg(
    path.join(outDir, 'fairness.svg'),
    renderSvg(
      results,
      scenarios,
      balancers,
      `${describeMachine(machine)}; backends in another process; ${BIN_MS} ms bins`,
    ),
  );
  console.log(`wrote ${path.relative(repo, path.join(outDir, 'fairness.{json,md,svg}'))}`);
}

await main();
