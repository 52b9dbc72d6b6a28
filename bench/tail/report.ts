/**
 * The tail benchmark's output: per-strategy summaries from the open-loop runs, the targets of issue 8
 * (MET/MISS), terminal tables, the Markdown block for docs/benchmarks.md (between the tail markers) and the
 * SVG (latency by percentile, p99 per second, the degraded backend's share of requests per second, and the
 * per-backend share over time for two strategies).
 */
import type { RecordableHistogram } from 'node:perf_hooks';
import type { MachineInfo } from '../lib/machine.js';
import { lineChart, svgDocument, type Panel } from '../lib/svg.js';
import { formatTable, markdownTable, num, type Align } from '../lib/table.js';
import { updateDocsBlock } from '../lib/output.js';
import type { OpenLoopResult } from './openloop.js';
import type { StrategySpec } from './strategies.js';

/** Latency percentiles of a run, in ms. */
export interface Latency {
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** One strategy's outcome (only the first four fields when it was skipped). */
export interface StrategyResult {
  id: string;
  label: string;
  kind: 'mesh' | 'haproxy';
  degraded: boolean;
  /** Why it did not run. */
  skipped?: string;
  sent?: number;
  ok?: number;
  errors?: number;
  firstError?: string | null;
  unfinished?: number;
  latency?: Latency;
  /** [percentile, ms] */
  curve?: Array<[number, number]>;
  /** Per second of the measured run, by scheduled send time. */
  perSecond?: Array<{ count: number; p50Ms: number; p99Ms: number; maxMs: number }>;
  /** Requests each backend received per second (counted by the backends; includes retries and backups). */
  arrivals?: number[][];
  /** Successful answers per backend per second (by the answering backend). */
  responses?: number[][];
  /** Share of the requests the backends received that went to the degraded one, inside and outside the window. */
  degradedShare?: { inWindow: number; outside: number };
  /** The generator's own lateness (actual send minus scheduled), ms. */
  lateness?: { p99Ms: number; maxMs: number };
  /** Mesh strategies: the mesh's snapshot just before the window ends and after the run. */
  mesh?: { atWindowEnd: MeshView | null; atEnd: MeshView | null };
  cpu?: {
    clientUs: number;
    backendUs: number | null;
    haproxyUs: number | null;
    /** Cores used by other processes of the machine during the run (from /proc/stat). */
    otherCores: number | null;
  };
}

/** The mesh's own view (its snapshot) of the degraded endpoint, at one instant. */
export interface MeshView {
  degraded: { status: string; latencyMs: number | null; inflight: number; accrual: string | null } | null;
  /** Median Peak-EWMA estimate of the other endpoints (ms). */
  othersLatencyMs: number | null;
  backups: { delayMs: number | null; sent: number; won: number; budgetExhausted: number } | null;
}

/** A target of the issue, judged. */
export interface Target {
  status: 'MET' | 'MISS' | 'SKIP' | 'INFO';
  name: string;
  detail: string;
}

/** The whole result document (bench/results/tail.json). */
export interface TailResults {
  benchmark: 'tail';
  command: string;
  quick: boolean;
  machine: MachineInfo;
  haproxy: { version: string; config: string } | null;
  settings: {
    backends: number;
    medianMs: number;
    sdMs: number;
    seed: number;
    ratePerSec: number;
    seconds: number;
    warmupSeconds: number;
    degradedBackend: number;
    degradedDelayMs: number;
    window: { fromS: number; toS: number };
  };
  strategies: StrategyResult[];
  targets: Target[];
}

const CURVE_PS = [50, 75, 90, 95, 98, 99, 99.5, 99.9, 99.95, 99.99];
const r2 = (x: number): number => Math.round(x * 100) / 100;
const ms = (h: RecordableHistogram, p: number): number => (h.count === 0 ? 0 : r2(h.percentile(p) / 1e6));

/** Builds a {@link StrategyResult} from an open-loop run and the backends' counts. */
export function summarizeRun(
  spec: StrategySpec,
  r: OpenLoopResult,
  arrivals: number[][],
  cpu: {
    clientCpuUs: number;
    backendCpuUs: number | null;
    haproxyCpuUs: number | null;
    otherCores: number | null;
  },
): StrategyResult {
  const h = r.histogram;
  const seconds = r.perSecond.length;
  const arr = arrivals.map((row) => Array.from({ length: seconds }, (_, s) => row[s] ?? 0));
  return {
    id: spec.id,
    label: spec.label,
    kind: spec.kind,
    degraded: spec.degraded,
    sent: r.sent,
    ok: r.ok,
    errors: r.errors,
    firstError: r.firstError ?? null,
    unfinished: r.unfinished,
    latency: {
      meanMs: h.count === 0 ? 0 : r2(h.mean / 1e6),
      p50Ms: ms(h, 50),
      p95Ms: ms(h, 95),
      p99Ms: ms(h, 99),
      p999Ms: ms(h, 99.9),
      maxMs: h.count === 0 ? 0 : r2(h.max / 1e6),
    },
    curve: CURVE_PS.map((p) => [p, ms(h, p)]),
    perSecond: r.perSecond.map((x) => ({
      count: x.count,
      p50Ms: ms(x, 50),
      p99Ms: ms(x, 99),
      maxMs: x.count === 0 ? 0 : r2(x.max / 1e6),
    })),
    arrivals: arr,
    responses: r.responses,
    lateness: { p99Ms: ms(r.lateness, 99), maxMs: r.lateness.count === 0 ? 0 : r2(r.lateness.max / 1e6) },
    cpu: {
      clientUs: Math.round(cpu.clientCpuUs),
      backendUs: cpu.backendCpuUs === null ? null : Math.round(cpu.backendCpuUs),
      haproxyUs: cpu.haproxyCpuUs === null ? null : Math.round(cpu.haproxyCpuUs),
      otherCores: cpu.otherCores === null ? null : r2(cpu.otherCores),
    },
  };
}

/** Adds the degraded backend's traffic share (needs the window, so done once all settings are known). */
function degradedShare(s: StrategyResult, t: TailResults): { inWindow: number; outside: number } | undefined {
  if (!s.arrivals) return undefined;
  const d = t.settings.degradedBackend;
  const { fromS, toS } = t.settings.window;
  let inAll = 0;
  let inD = 0;
  let outAll = 0;
  let outD = 0;
  const seconds = s.arrivals[0]?.length ?? 0;
  for (let k = 0; k < seconds; k++) {
    const total = s.arrivals.reduce((a, row) => a + (row[k] ?? 0), 0);
    const mine = s.arrivals[d]?.[k] ?? 0;
    // Whole seconds inside the window only; the two seconds at its edges are neither.
    if (k >= fromS && k + 1 <= toS) {
      inAll += total;
      inD += mine;
    } else if (k + 1 <= fromS || k >= toS) {
      outAll += total;
      outD += mine;
    }
  }
  return { inWindow: inAll ? inD / inAll : NaN, outside: outAll ? outD / outAll : NaN };
}

function find(rs: readonly StrategyResult[], id: string): StrategyResult | undefined {
  return rs.find((x) => x.id === id && x.latency !== undefined);
}

function clean(s: StrategyResult): string {
  const bad = (s.errors ?? 0) + (s.unfinished ?? 0);
  return bad === 0 ? '' : `; ${s.errors} errors and ${s.unfinished} unfinished requests, so not MET`;
}

/** Judges the targets of issue 8 on one run's strategies. */
export function evaluateTargets(rs: readonly StrategyResult[]): Target[] {
  const out: Target[] = [];
  const base = find(rs, 'baseline');
  const ewma = find(rs, 'peak-ewma');
  const backup = find(rs, 'peak-ewma-backup');
  const hrr = find(rs, 'haproxy-rr');
  const hlc = find(rs, 'haproxy-lc');
  const ok = (s: StrategyResult): boolean => (s.errors ?? 0) + (s.unfinished ?? 0) === 0;
  const skipWhy = (id: string): string =>
    rs.find((x) => x.id === id)?.skipped ?? `${id} did not run (--only)`;

  // Issue 20's target: the fairness changes (probes, re-probes, failure cost) must keep the degraded
  // backend out as well as before.
  const name1 = 'mesh Peak-EWMA p99 <= 1.1 x the healthy baseline p99';
  if (base && ewma) {
    const ratio = ewma.latency!.p99Ms / base.latency!.p99Ms;
    out.push({
      status: ratio <= 1.1 && ok(ewma) ? 'MET' : 'MISS',
      name: name1,
      detail: `${ewma.latency!.p99Ms} ms / ${base.latency!.p99Ms} ms = ${ratio.toFixed(2)} x${clean(ewma)}`,
    });
  } else out.push({ status: 'SKIP', name: name1, detail: base ? skipWhy('peak-ewma') : skipWhy('baseline') });

  for (const [h, id] of [
    [hrr, 'haproxy-rr'],
    [hlc, 'haproxy-lc'],
  ] as const) {
    const label = id === 'haproxy-rr' ? 'HAProxy roundrobin' : 'HAProxy leastconn';
    const name = `mesh Peak-EWMA p99 below ${label}'s p99`;
    if (ewma && h) {
      out.push({
        status: ewma.latency!.p99Ms < h.latency!.p99Ms && ok(ewma) ? 'MET' : 'MISS',
        name,
        detail: `${ewma.latency!.p99Ms} ms vs ${h.latency!.p99Ms} ms (${(ewma.latency!.p99Ms / h.latency!.p99Ms).toFixed(3)} x)${clean(ewma)}`,
      });
    } else out.push({ status: 'SKIP', name, detail: ewma ? skipWhy(id) : skipWhy('peak-ewma') });
  }

  const name4 = 'Peak-EWMA with backup requests p99.9 <= 2 x the healthy baseline p99.9';
  if (base && backup) {
    const ratio = backup.latency!.p999Ms / base.latency!.p999Ms;
    out.push({
      status: ratio <= 2 && ok(backup) ? 'MET' : 'MISS',
      name: name4,
      detail: `${backup.latency!.p999Ms} ms / ${base.latency!.p999Ms} ms = ${ratio.toFixed(2)} x${clean(backup)}`,
    });
  } else
    out.push({
      status: 'SKIP',
      name: name4,
      detail: base ? skipWhy('peak-ewma-backup') : skipWhy('baseline'),
    });

  const again = find(rs, 'baseline-end');
  if (base && again) {
    out.push({
      status: 'INFO',
      name: 'drift of the machine: the healthy baseline run again at the end vs first',
      detail: `p50 ${again.latency!.p50Ms} vs ${base.latency!.p50Ms} ms, p99 ${again.latency!.p99Ms} vs ${base.latency!.p99Ms} ms, p99.9 ${again.latency!.p999Ms} vs ${base.latency!.p999Ms} ms`,
    });
  }
  const order = ['round-robin', 'least-loaded', 'peak-ewma'].map((id) => find(rs, id));
  if (order.every((x) => x !== undefined)) {
    const [rr, ll, pe] = order as [StrategyResult, StrategyResult, StrategyResult];
    const fmt = (k: 'p99Ms' | 'p999Ms'): string =>
      `round robin ${rr.latency![k]}, least-loaded ${ll.latency![k]}, Peak-EWMA ${pe.latency![k]} ms`;
    const holds = (k: 'p99Ms' | 'p999Ms'): boolean =>
      rr.latency![k] >= ll.latency![k] && ll.latency![k] >= pe.latency![k];
    out.push({
      status: 'INFO',
      name: 'expected ordering of tail quality (round robin worst, least-loaded next, Peak-EWMA best)',
      detail: `p99: ${fmt('p99Ms')} (${holds('p99Ms') ? 'holds' : 'does not hold'}); p99.9: ${fmt('p999Ms')} (${holds('p999Ms') ? 'holds' : 'does not hold'})`,
    });
  }
  return out;
}

function tableRows(t: TailResults): { headers: string[]; rows: string[][]; align: Align[] } {
  const base = find(t.strategies, 'baseline');
  const headers = [
    'strategy',
    'ok / sent',
    'errors',
    'p50 ms',
    'p95 ms',
    'p99 ms',
    'p99.9 ms',
    'max ms',
    'p99 x base',
    'p99.9 x base',
    'to degraded, in window',
    'others (cores)',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const rows = t.strategies.map((s) => {
    if (!s.latency) return [s.label, s.skipped ?? '-', '', '', '', '', '', '', '', '', '', ''];
    const l = s.latency;
    const ratio = (k: 'p99Ms' | 'p999Ms'): string =>
      base && s.id !== 'baseline' ? (l[k] / base.latency![k]).toFixed(2) : '-';
    const share = degradedShare(s, t);
    return [
      s.label,
      `${num(s.ok)} / ${num(s.sent)}`,
      String((s.errors ?? 0) + (s.unfinished ?? 0)),
      num(l.p50Ms, 1),
      num(l.p95Ms, 1),
      num(l.p99Ms, 1),
      num(l.p999Ms, 1),
      num(l.maxMs, 1),
      ratio('p99Ms'),
      ratio('p999Ms'),
      s.degraded && share ? `${(share.inWindow * 100).toFixed(2)} %` : '-',
      num(s.cpu?.otherCores, 2),
    ];
  });
  return { headers, rows, align };
}

function meshViewTable(views: readonly StrategyResult[]): [string[], string[][], Align[]] {
  const headers = [
    'strategy',
    'degraded: estimate ms',
    'others: estimate ms',
    'degraded: status',
    'accrual',
    'backups sent / won',
    'backup delay ms',
  ];
  const rows = views.map((x) => {
    const v = x.mesh!.atWindowEnd!;
    return [
      x.label,
      num(v.degraded?.latencyMs, 1),
      num(v.othersLatencyMs, 1),
      v.degraded?.status ?? '-',
      v.degraded?.accrual ?? '-',
      v.backups ? `${num(v.backups.sent)} / ${num(v.backups.won)}` : '-',
      num(v.backups?.delayMs, 1),
    ];
  });
  return [headers, rows, ['l', 'r', 'r', 'l', 'l', 'r', 'r']];
}

/** Prints the table and the targets. */
export function printTables(t: TailResults): void {
  for (const s of t.strategies) if (s.arrivals) s.degradedShare = degradedShare(s, t);
  const x = tableRows(t);
  console.log(formatTable(x.headers, x.rows, x.align));
  const views = t.strategies.filter((v) => v.mesh?.atWindowEnd);
  if (views.length > 0) {
    console.log('\n## inside the mesh just before the window ends');
    console.log(formatTable(...meshViewTable(views)));
  }
  console.log('\n## targets');
  if (t.quick) console.log('(quick mode: short runs, indicative only; judge on a full run)');
  for (const g of t.targets) console.log(`${g.status.padEnd(4)}  ${g.name}: ${g.detail}`);
}

/** The Markdown block for docs/benchmarks.md (and bench/results/tail.md). */
export function renderMarkdown(t: TailResults): string {
  const m = t.machine;
  const s = t.settings;
  const lines: string[] = [];
  lines.push(`Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpuModel}, ${m.cores} cores`);
  lines.push(
    `(${m.os}), Node ${m.node}, undici ${m.undici}, commit ${m.gitCommit}` +
      `${m.srcDirty ? ' with uncommitted src/ changes' : ''}; load average at start ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; ` +
      `meshfetch from ${m.library ?? 'src/ through tsx (meshfetch-source)'}.`,
  );
  lines.push(
    t.haproxy
      ? `HAProxy ${t.haproxy.version} (\`${t.haproxy.config}\`).`
      : 'HAProxy: not installed, its rows are skipped.',
  );
  lines.push(
    `${s.backends} backends, delay normal(median ${s.medianMs} ms, sd ${s.sdMs} ms), seed ${s.seed}; open loop at ` +
      `${s.ratePerSec}/s for ${s.seconds} s per strategy after ${s.warmupSeconds} s of warm-up; backend ` +
      `${s.degradedBackend} answers after ${s.degradedDelayMs} ms from ${s.window.fromS} s to ${s.window.toS} s ` +
      `(every row except the baseline). Latency from the scheduled send time to the end of the body.`,
  );
  lines.push('');
  lines.push('```sh');
  lines.push(t.command);
  lines.push('```');
  lines.push('');
  const x = tableRows(t);
  lines.push(markdownTable(x.headers, x.rows, x.align));
  lines.push('');
  lines.push(
    '"errors" counts failed and unfinished requests (their latency is not in the percentiles). ' +
      '"to degraded, in window": share of the requests the backends received (retries and backup requests ' +
      'included) that reached the degraded backend during whole seconds of the window; 1/11 = 9.09 % is an even ' +
      'share. "others": cores used by other tenants of the machine during the run (/proc/stat minus the ' +
      "benchmark's own processes).",
  );
  const late = t.strategies.filter((x) => x.lateness);
  if (late.length > 0) {
    const worst = Math.max(...late.map((x) => x.lateness!.maxMs));
    const p99 = Math.max(...late.map((x) => x.lateness!.p99Ms));
    lines.push(
      `The load generator sent within ${p99.toFixed(2)} ms of the schedule at p99 in every run (worst single send ${worst.toFixed(1)} ms late).`,
    );
  }
  const views = t.strategies.filter((x) => x.mesh?.atWindowEnd);
  if (views.length > 0) {
    lines.push('');
    lines.push(
      `Inside the mesh just before the window ends (\`mesh.snapshot()\`): the balancer's latency estimate of the degraded backend against the median of the others (Peak-EWMA only), its status and failure-accrual state, and the backup requests sent and won over the run so far.`,
    );
    lines.push('');
    lines.push(markdownTable(...meshViewTable(views)));
  }
  lines.push('');
  lines.push('#### Targets');
  lines.push('');
  for (const g of t.targets) lines.push(`- **${g.status}** ${g.name}: ${g.detail}`);
  const errs = t.strategies.filter((x) => x.firstError);
  if (errs.length > 0) {
    lines.push('');
    for (const e of errs) lines.push(`- ${e.label}: first error \`${e.firstError}\``);
  }
  lines.push('');
  return lines.join('\n');
}

/** Replaces the block between the tail markers of docs/benchmarks.md (read just before writing). */
export function updateDocs(repo: string, md: string): void {
  updateDocsBlock(repo, 'tail', md);
}

/** -log10(1 - p/100): spreads p50 .. p99.99 evenly (the HdrHistogram percentile axis). */
function pAxis(p: number): number {
  return -Math.log10(1 - p / 100);
}

const COLORS: Record<string, string> = {
  baseline: '#000000',
  'baseline-end': '#7F7F7F',
  'round-robin': '#D55E00',
  'least-loaded': '#E69F00',
  'peak-ewma': '#0072B2',
  'peak-ewma-retries': '#56B4E9',
  'peak-ewma-backup': '#009E73',
  'haproxy-rr': '#CC79A7',
  'haproxy-lc': '#8B4513',
};

/** Renders the SVG document. */
export function renderSvg(t: TailResults): string {
  const ran = t.strategies.filter((s) => s.latency);
  const s = t.settings;
  const panels: Panel[] = [];
  const ticks = [50, 90, 99, 99.9, 99.99].map((p) => ({ value: pAxis(p), label: `p${p}` }));
  panels.push(
    lineChart({
      title: 'Latency by percentile (from the scheduled send time)',
      x: { label: 'percentile', ticks, min: pAxis(50), max: pAxis(99.99) },
      y: { label: 'latency (ms, log scale)', log: true },
      series: ran.map((x) => ({
        name: x.label,
        points: x.curve!.map(([p, v]) => [pAxis(p), Math.max(v, 0.1)] as const),
        color: COLORS[x.id],
        dashed: !x.degraded || x.kind === 'haproxy',
      })),
      height: 360,
    }),
  );
  const secs = (x: StrategyResult): number => x.perSecond!.length;
  panels.push(
    lineChart({
      title: `p99 per second (backend ${s.degradedBackend} slow from ${s.window.fromS} s to ${s.window.toS} s)`,
      x: { label: 'second of the run (by scheduled send time)', min: 0, max: s.seconds },
      y: { label: 'p99 (ms, log scale)', log: true },
      series: ran.map((x) => ({
        name: x.label,
        points: x.perSecond!.map((p, k) => [k + 0.5, Math.max(p.p99Ms, 0.1)] as const),
        color: COLORS[x.id],
        dashed: !x.degraded || x.kind === 'haproxy',
      })),
      height: 340,
    }),
  );
  const shareOf = (x: StrategyResult, b: number): Array<readonly [number, number]> =>
    Array.from({ length: secs(x) }, (_, k) => {
      const total = x.arrivals!.reduce((a, row) => a + (row[k] ?? 0), 0);
      return [k + 0.5, total ? (100 * (x.arrivals![b]?.[k] ?? 0)) / total : 0] as const;
    });
  panels.push(
    lineChart({
      title: `Share of requests reaching the degraded backend ${s.degradedBackend}, per second (even share 9.1 %)`,
      x: { label: 'second of the run', min: 0, max: s.seconds },
      y: { label: '% of the requests the backends received', min: 0 },
      series: ran.map((x) => ({
        name: x.label,
        points: shareOf(x, s.degradedBackend),
        color: COLORS[x.id],
        dashed: !x.degraded || x.kind === 'haproxy',
      })),
      height: 320,
    }),
  );
  for (const id of ['round-robin', 'peak-ewma', 'peak-ewma-backup', 'haproxy-lc']) {
    const x = ran.find((r) => r.id === id);
    if (!x) continue;
    panels.push(
      lineChart({
        title: `Per-backend share of requests per second: ${x.label}`,
        x: { label: 'second of the run', min: 0, max: s.seconds },
        y: { label: '% of requests', min: 0 },
        series: x.arrivals!.map((_, b) => ({
          name: b === s.degradedBackend ? `backend ${b} (degraded)` : `backend ${b}`,
          points: shareOf(x, b),
          color: b === s.degradedBackend ? '#D55E00' : ['#7F7F7F', '#A9A9A9', '#56B4E9'][b % 3],
        })),
        height: 300,
      }),
    );
  }
  const m = t.machine;
  return svgDocument(
    panels,
    'meshfetch tail latency: 11 backends, one slow (1 s) for the middle half',
    `${m.date.slice(0, 10)} · ${m.cpuModel}, ${m.cores} cores (shared) · Node ${m.node} · open loop ${s.ratePerSec}/s, ` +
      `${s.seconds} s per strategy${t.quick ? ' (quick)' : ''} · backends normal(${s.medianMs} ms, sd ${s.sdMs} ms)`,
  );
}
