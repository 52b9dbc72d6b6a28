/**
 * The overhead benchmark's report: result types, target evaluation, tables (terminal and Markdown) and the
 * generated block of docs/benchmarks.md. Kept apart from the measuring code so a result file can be
 * re-rendered without re-running (bench/overhead/rerender.ts).
 */
import { HAPROXY_INSTALL_HINT } from '../lib/haproxy.js';
import type { machineInfo } from '../lib/machine.js';
import { median, range, type LatencySummary } from '../lib/stats.js';
import { markdownTable, num, signed, type Align } from '../lib/table.js';
import { updateDocsBlock } from '../lib/output.js';
import type { fullStackRoles } from './variants.js';
import { BASELINE_OF, BASELINE_PREFIX, baselineId, type BaselineInfo } from './baseline.js';

/** One measured cell of one round. */
export interface RoundSample {
  round: number;
  /**
   * The group of clients it took turns with in its round (index.ts, GROUPS): a ratio pairs it
   * with the other client's sample of the same round and group. Absent in older results (one sample per round).
   */
  group?: number;
  count: number;
  errors: number;
  elapsedMs: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  clientCpuUs: number;
  /** The system (kernel) part of clientCpuUs; absent in results recorded before 2026-11-25. */
  clientSysUs?: number;
  serverCpuUs: number | null;
  haproxyCpuUs: number | null;
  /**
   * CPU the rest of the machine used meanwhile (other tenants of a shared machine), in cores: machine busy
   * time minus client, server and HAProxy, over the elapsed time. Null where /proc/stat is unavailable.
   */
  otherCores: number | null;
}

/** One variant at one concurrency, over all rounds. */
export interface Cell {
  variant: string;
  label: string;
  concurrency: number;
  count: number;
  errors: number;
  firstError: string | null;
  elapsedMs: number;
  rps: number;
  latency: LatencySummary;
  /** [percentile, µs] points from p50 to p99.99. */
  curve: Array<[number, number]>;
  clientCpuPerCallUs: number;
  serverCpuPerCallUs: number | null;
  haproxyCpuPerCallUs: number | null;
  rounds: RoundSample[];
}

/** A target check. */
export interface TargetResult {
  name: string;
  value: number | null;
  threshold: string;
  /** INFO lines are context for the targets (like-for-like ratios, CPU), not judged. */
  status: 'PASS' | 'MISS' | 'SKIP' | 'INFO';
  detail: string;
}

/** The whole result file. */
export interface OverheadResults {
  benchmark: 'overhead';
  command: string;
  quick: boolean;
  machine: ReturnType<typeof machineInfo>;
  /** `slices`: the measured slices a cell's `seconds` were cut into (absent in older results: one piece). */
  settings: {
    rounds: number;
    seconds: number;
    warmupSeconds: number;
    concurrency: number[];
    slices?: number;
  };
  fullStack: ReturnType<typeof fullStackRoles>;
  haproxy: { version: string; config: string } | { skipped: string };
  cpuResolutionUs: number;
  cells: Cell[];
  targets: TargetResult[];
  /** The other build the `[baseline]` clients ran on (`--baseline DIR`, baseline.ts); absent without it. */
  baseline?: BaselineInfo;
}

function cell(cells: readonly Cell[], id: string, c: number): Cell | undefined {
  return cells.find((x) => x.variant === id && x.concurrency === c);
}

/**
 * `b`'s sample that pairs with `a`'s sample `s`: the same round and group (they took turns, seconds apart),
 * else the same round.
 */
function partner(b: Cell, s: RoundSample): RoundSample | undefined {
  return (
    b.rounds.find((x) => x.round === s.round && x.group === s.group) ??
    b.rounds.find((x) => x.round === s.round)
  );
}

/** Throughput ratio a/b per round (paired: the same round and group ran both) and pooled. */
function ratio(a: Cell, b: Cell): { median: number; pooled: number; perRound: number[] } {
  const perRound = a.rounds.map((s) => s.rps / (partner(b, s)?.rps ?? NaN));
  return { median: median(perRound), pooled: a.rps / b.rps, perRound };
}

function fmtRatio(r: { median: number; pooled: number; perRound: number[] }): string {
  const [lo, hi] = range(r.perRound);
  return `${r.median.toFixed(3)} (median of ${r.perRound.length} paired rounds, range ${lo.toFixed(3)}-${hi.toFixed(3)}; pooled ${r.pooled.toFixed(3)})`;
}

/**
 * The hop target's ratio, judged on paired rounds: in each round the mesh's and the hop's p50 minus
 * `Pool.request`'s p50 in the same round, then the median over the rounds of each, and their ratio. A cell
 * whose p50 is far from its variant's other rounds moves one round's difference, not the result. On this
 * 2-vCPU VM that happens: a c=1 cell now and then runs in another scheduling regime (client and server on
 * one vCPU, or another tenant keeping both vCPUs awake) at a third of the usual p50 (37 against 108 µs),
 * and pooling every sample of every round (still shown) mixes that cell
 * into the baseline of every variant. The throughput targets have always been judged per round.
 */
function hopRatio(
  base: Cell,
  mesh: Cell,
  hop: Cell,
): {
  value: number;
  meshAdded: number;
  hopAdded: number;
  rounds: number;
  pooled: number;
  pooledMesh: number;
  pooledHop: number;
  outliers: string[];
} {
  const added = (x: Cell): number[] =>
    x.rounds.flatMap((s) => {
      const b = partner(base, s);
      return b === undefined ? [] : [s.p50Us - b.p50Us];
    });
  const meshDiffs = added(mesh);
  const hopDiffs = added(hop);
  const n = Math.min(meshDiffs.length, hopDiffs.length);
  const meshAdded = median(meshDiffs);
  const hopAdded = median(hopDiffs);
  const pooledMesh = mesh.latency.p50Us - base.latency.p50Us;
  const pooledHop = hop.latency.p50Us - base.latency.p50Us;
  const outliers: string[] = [];
  for (const x of [base, mesh, hop]) {
    const m = median(x.rounds.map((s) => s.p50Us));
    for (const s of x.rounds)
      if (Math.abs(s.p50Us - m) > 0.25 * m)
        outliers.push(
          `${x.label} round ${s.round}${s.group === undefined ? '' : `, group ${s.group + 1}`} (${num(s.p50Us)} against ${num(m)} µs)`,
        );
  }
  return {
    value: meshAdded / hopAdded,
    meshAdded,
    hopAdded,
    rounds: n,
    pooled: pooledMesh / pooledHop,
    pooledMesh,
    pooledHop,
    outliers,
  };
}

/** A hop ratio's detail line. */
function hopDetail(r: ReturnType<typeof hopRatio>): string {
  return (
    `the mesh adds ${num(r.meshAdded, 1)} µs, the hop ${num(r.hopAdded, 1)} µs (medians of ${r.rounds} paired ` +
    `rounds): ${r.value.toFixed(3)}, target <= 0.25; pooled p50s: ${num(r.pooledMesh, 1)} and ` +
    `${num(r.pooledHop, 1)} µs, ${r.pooled.toFixed(3)}` +
    (r.outliers.length > 0 ? `; cells far from their variant's median: ${r.outliers.join(', ')}` : '') +
    (r.meshAdded < 0 ? ' (negative: the noise exceeds the difference; use a full run)' : '')
  );
}

/**
 * Throughput targets are judged on the median of the per-round ratios (robust to one round disturbed by
 * another tenant of a shared machine); the hop targets (c=1 and c=64) on the medians of the per-round added
 * p50s ({@link hopRatio}), with the pooled figure shown beside them. With baseline clients in the cells
 * (`--baseline`), each current client's req/s at c=64 over its baseline twin's, judged against `baselineMin`,
 * and the c=1 hop ratios of the baseline's `mesh.request` (context).
 */
export function evaluateTargets(
  cells: readonly Cell[],
  haveHaproxy: boolean,
  baselineMin = 0.95,
): TargetResult[] {
  const out: TargetResult[] = [];
  const stacks: Array<['bal' | 'full', string]> = [
    ['bal', 'balancer only'],
    ['full', 'full stack'],
  ];
  const throughput = (name: string, aId: string, bId: string, min = 0.85): void => {
    const a = cell(cells, aId, 64);
    const b = cell(cells, bId, 64);
    if (!a || !b) {
      out.push({ name, value: null, threshold: `>= ${min}`, status: 'SKIP', detail: 'not measured' });
      return;
    }
    const r = ratio(a, b);
    out.push({
      name,
      value: r.median,
      threshold: `>= ${min}`,
      status: r.median >= min ? 'PASS' : 'MISS',
      detail: `${fmtRatio(r)}, target >= ${min}`,
    });
  };
  for (const [k, name] of stacks)
    throughput(`mesh.request (${name}) / Pool.request, req/s at c=64`, `mesh-request-${k}`, 'pool');
  for (const [k, name] of stacks)
    throughput(`mesh.fetch (${name}) / undici fetch, req/s at c=64`, `mesh-fetch-${k}`, 'undici-fetch');
  // The built-in fetch with mesh.dispatcher against the same fetch with a plain undici Agent (issue #19).
  for (const [k, name] of stacks)
    throughput(
      `fetch + mesh.dispatcher (${name}) / fetch + plain Agent, req/s at c=64`,
      `dispatcher-${k}`,
      'global-fetch-agent',
      0.95,
    );
  for (const c of [1, 64])
    for (const [k, name] of stacks) {
      const tname = `mesh.request (${name}) added p50 at c=${c} / the HAProxy hop's added p50`;
      const base = cell(cells, 'pool', c);
      const mesh = cell(cells, `mesh-request-${k}`, c);
      const hop = cell(cells, 'haproxy', c);
      if (!haveHaproxy || !base || !mesh || !hop) {
        out.push({
          name: tname,
          value: null,
          threshold: '<= 0.25',
          status: 'SKIP',
          detail: haveHaproxy ? 'not measured' : `HAProxy not available (install: ${HAPROXY_INSTALL_HINT})`,
        });
        continue;
      }
      const r = hopRatio(base, mesh, hop);
      out.push({
        name: tname,
        value: r.value,
        threshold: '<= 0.25',
        status: r.hopAdded > 0 && r.value <= 0.25 ? 'PASS' : 'MISS',
        detail: hopDetail(r),
      });
    }
  // --baseline: the current build against the baseline's, client by client, paired round by round.
  for (const id of BASELINE_OF) {
    const a = cell(cells, id, 64);
    const b = cell(cells, baselineId(id), 64);
    if (!b) continue;
    const name = `${b.label.replace(' [baseline]', '')}: current / baseline, req/s at c=64`;
    if (!a) {
      out.push({ name, value: null, threshold: `>= ${baselineMin}`, status: 'SKIP', detail: 'not measured' });
      continue;
    }
    const r = ratio(a, b);
    out.push({
      name,
      value: r.median,
      threshold: `>= ${baselineMin}`,
      status: r.median >= baselineMin ? 'PASS' : 'MISS',
      detail:
        `${fmtRatio(r)}, target >= ${baselineMin}; over all rounds ${num(a.rps)} against ${num(b.rps)} req/s, ` +
        `client CPU ${num(a.clientCpuPerCallUs, 1)} against ${num(b.clientCpuPerCallUs, 1)} µs per call`,
    });
  }
  // Context, not judged: the like-for-like fetch ratio, the hop's throughput ratio, and CPU added per call.
  const info = (name: string, detail: string, value: number | null = null): void => {
    out.push({ name, value, threshold: '-', status: 'INFO', detail });
  };
  // --baseline: the baseline's mesh.request hop ratio at c=1, computed as the current one's above.
  for (const [k, name] of stacks) {
    const base = cell(cells, 'pool', 1);
    const mesh = cell(cells, baselineId(`mesh-request-${k}`), 1);
    const hop = cell(cells, 'haproxy', 1);
    if (!base || !mesh || !hop) continue;
    const r = hopRatio(base, mesh, hop);
    info(
      `mesh.request (${name}) [baseline] added p50 at c=1 / the HAProxy hop's added p50`,
      hopDetail(r),
      r.value,
    );
  }
  for (const [k, name] of stacks) {
    const a = cell(cells, `mesh-fetch-${k}`, 64);
    const b = cell(cells, 'global-fetch', 64);
    if (a && b) {
      const r = ratio(a, b);
      info(`mesh.fetch (${name}) / the global fetch it is built on, req/s at c=64`, fmtRatio(r), r.median);
    }
  }
  // Tracing's cost (issue #6): the full stack with no SDK, and with the SDK and a no-op exporter, against the
  // same stack without the span modules.
  for (const c of [1, 64]) {
    const base = cell(cells, 'mesh-request-untraced', c);
    if (!base) continue;
    for (const [id, what] of [
      ['mesh-request-full', 'no SDK'],
      ['mesh-request-otel-noop', 'OTel SDK + no-op exporter'],
    ] as const) {
      const x = cell(cells, id, c);
      if (!x) continue;
      const r = ratio(x, base);
      info(
        `mesh.request full stack (${what}) / without span modules, req/s at c=${c}`,
        `${fmtRatio(r)}; CPU ${signed(x.clientCpuPerCallUs - base.clientCpuPerCallUs, 1)} µs per call`,
        r.median,
      );
    }
  }
  const g = cell(cells, 'global-fetch', 64);
  const u = cell(cells, 'undici-fetch', 64);
  if (g && u) {
    const r = ratio(g, u);
    info('global fetch (Node built-in) / undici package fetch, req/s at c=64', fmtRatio(r), r.median);
  }
  const hop64 = cell(cells, 'haproxy', 64);
  const pool64 = cell(cells, 'pool', 64);
  if (hop64 && pool64) {
    const r = ratio(hop64, pool64);
    info('HAProxy hop / Pool.request, req/s at c=64', fmtRatio(r), r.median);
  }
  for (const c of [1, 64]) {
    const base = cell(cells, 'pool', c);
    if (!base) continue;
    const parts: string[] = [];
    for (const id of ['mesh-request-bal', 'mesh-request-full']) {
      const x = cell(cells, id, c);
      if (x) parts.push(`${x.label} ${signed(x.clientCpuPerCallUs - base.clientCpuPerCallUs, 1)} µs`);
    }
    const hop = cell(cells, 'haproxy', c);
    if (hop && hop.haproxyCpuPerCallUs !== null) {
      const client = hop.clientCpuPerCallUs - base.clientCpuPerCallUs;
      parts.push(
        `HAProxy hop ${signed(client + hop.haproxyCpuPerCallUs, 1)} µs (client ${signed(client, 1)}, HAProxy ${num(hop.haproxyCpuPerCallUs, 1)})`,
      );
    }
    if (parts.length > 0)
      info(
        `CPU added per call over Pool.request at c=${c} (client process; HAProxy's own added for the hop)`,
        parts.join('; '),
      );
  }
  return out;
}

/** The tables' row order (the run's order is random per round); other variants follow in the run's order. */
const TABLE_ORDER = [
  'pool',
  'undici-fetch',
  'global-fetch',
  'mesh-request-bal',
  'mesh-request-full',
  'mesh-request-untraced',
  'mesh-request-otel-noop',
  'mesh-fetch-bal',
  'mesh-fetch-full',
  'global-fetch-agent',
  'dispatcher-bal',
  'dispatcher-full',
  'haproxy',
];

export function tableRows(
  cells: readonly Cell[],
  c: number,
): { headers: string[]; rows: string[][]; align: Align[] } {
  const base = cell(cells, 'pool', c);
  const headers = [
    'client',
    'req/s',
    'x Pool',
    'p50 µs',
    'p99 µs',
    'added p50',
    'added p99',
    'client CPU µs/call',
    'HAProxy CPU µs/call',
    'server CPU µs/call',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  // A baseline twin (`base:ID`) right after its current self.
  const rank = (x: Cell): number => {
    const twin = x.variant.startsWith(BASELINE_PREFIX);
    const i = TABLE_ORDER.indexOf(twin ? x.variant.slice(BASELINE_PREFIX.length) : x.variant);
    return (i === -1 ? TABLE_ORDER.length : i) + (twin ? 0.5 : 0);
  };
  const rows = cells
    .filter((x) => x.concurrency === c)
    .sort((a, b) => rank(a) - rank(b))
    .map((x) => [
      x.label + (x.errors ? ` (${x.errors} errors)` : ''),
      num(x.rps),
      base ? (x.rps / base.rps).toFixed(3) : '-',
      num(x.latency.p50Us),
      num(x.latency.p99Us),
      base && x !== base ? signed(x.latency.p50Us - base.latency.p50Us) : '-',
      base && x !== base ? signed(x.latency.p99Us - base.latency.p99Us) : '-',
      num(x.clientCpuPerCallUs, 1),
      x.haproxyCpuPerCallUs === null ? '-' : num(x.haproxyCpuPerCallUs, 1),
      x.serverCpuPerCallUs === null ? '-' : num(x.serverCpuPerCallUs, 1),
    ]);
  return { headers, rows, align };
}

export function renderMarkdown(r: OverheadResults): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpuModel}, ${m.cores} cores`);
  lines.push(
    `(${m.os}), Node ${m.node} (built-in undici ${m.builtinUndici}), undici ${m.undici}, commit ${m.gitCommit}` +
      `${m.srcDirty ? ' with uncommitted src/ changes' : ''}; load average at start ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; ` +
      `meshfetch from ${m.library ?? 'src/ through tsx (meshfetch-source)'}.`,
  );
  if (r.baseline)
    lines.push(
      `Baseline (the \`[baseline]\` clients, \`--baseline\`): the build in ${r.baseline.dir} at commit ${r.baseline.commit}` +
        `${r.baseline.srcDirty ? ' with uncommitted src/ changes' : ''}, on its own undici ${r.baseline.undici}.`,
    );
  lines.push(
    `${'version' in r.haproxy ? `HAProxy ${r.haproxy.version} (\`bench/overhead/haproxy.cfg\`, nbthread 1)` : `HAProxy skipped: ${r.haproxy.skipped}`}.`,
  );
  lines.push(
    r.settings.slices === undefined
      ? `${r.settings.rounds} rounds x ${r.settings.seconds} s per variant and concurrency (after ${r.settings.warmupSeconds} s of warm-up each), variants alternated within each round.`
      : `${r.settings.rounds} rounds x ${r.settings.seconds} s per variant and concurrency, in ${r.settings.slices} slices of ${num(r.settings.seconds / r.settings.slices, 2)} s: ` +
          `within a round the clients of a group (\`bench/overhead/index.ts\`, GROUPS) take turns, slice by slice, after ${r.settings.warmupSeconds} s of warm-up each; ratios pair a client with its reference in the same round and group.`,
  );
  lines.push(
    `Full stack = logical [${r.fullStack.logical.join(', ')}], concrete [${r.fullStack.concrete.join(', ')}], endpoint [${r.fullStack.endpoint.join(', ')}]; balancer only = none of them.`,
  );
  lines.push('');
  lines.push('```sh');
  lines.push(r.command);
  lines.push('```');
  for (const c of r.settings.concurrency) {
    const t = tableRows(r.cells, c);
    lines.push('');
    lines.push(`#### Concurrency ${c}`);
    lines.push('');
    lines.push(markdownTable(t.headers, t.rows, t.align));
  }
  const others = r.cells.flatMap((c) => c.rounds.map((x) => x.otherCores)).filter((x) => x !== null);
  if (others.length > 0) {
    lines.push('');
    lines.push(
      `Other tenants of the machine used ${(others.reduce((a, b) => a + b, 0) / others.length).toFixed(2)} cores on average during the measured cells (at most ${Math.max(...others).toFixed(2)} in one cell), from /proc/stat minus the benchmark's own processes.`,
    );
  }
  lines.push('');
  lines.push('#### Targets');
  lines.push('');
  for (const t of r.targets) lines.push(`- **${t.status}** ${t.name}: ${t.detail}`);
  lines.push('');
  lines.push(
    `"added" is the variant's percentile minus bare \`Pool.request\`'s at the same concurrency, in µs. CPU per call is process CPU time (user + system) divided by completed calls; /proc gives HAProxy's and the server's in ${num(r.cpuResolutionUs / 1000)} ms ticks, over ${r.settings.rounds * r.settings.seconds} s per cell.`,
  );
  return lines.join('\n') + '\n';
}

/** Replaces the generated overhead block of docs/benchmarks.md (between the markers), if there is one. */
export function updateDocs(repo: string, md: string): void {
  updateDocsBlock(repo, 'overhead', md);
}
