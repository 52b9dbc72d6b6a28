/**
 * Output of the discovery benchmark: the result document (bench/results/discovery.json), a hand-written SVG
 * with two panels (the convergence distribution as a CDF; the update cost per stage against the number of
 * instances, log-log, with an "∝ n" guide), the tables printed on the terminal, and RESULTS.md. No plotting
 * dependency: the SVG is a few paths and labels.
 */
import type { ConvergenceResult } from './convergence.js';
import { fmt, round, table, type Summary } from './stats.js';
import type { UpdateCostResult, UpdateCostRow } from './update-cost.js';

/** Machine and run metadata. */
export interface RunInfo {
  readonly date: string;
  readonly mode: 'full' | 'quick';
  readonly command: string;
  readonly machine: {
    readonly cpu: string;
    readonly cores: number;
    readonly memoryGiB: number;
    readonly os: string;
    readonly node: string;
  };
  readonly durationS: number;
  /** 1-minute load average when the run started and ended (other work on the machine skews timings). */
  readonly loadAverage1m: { readonly start: number; readonly end: number };
}

/** The whole result document. */
export interface DiscoveryResults {
  readonly benchmark: 'discovery';
  readonly run: RunInfo;
  readonly target: { readonly convergenceP99Ms: number };
  readonly convergence: ConvergenceResult | { readonly skipped: string };
  readonly convergenceVerdict: 'PASS' | 'MISS' | 'NOT RUN';
  /** Set when the convergence part was not re-run (`--only update-cost`) and is carried over from this run. */
  readonly convergenceFrom?: { readonly date: string; readonly command: string };
  readonly updateCost: UpdateCostResult;
  readonly findings: string[];
}

/** Rounds every number in a summary (for the JSON file). */
export function roundSummary<T extends Summary>(s: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) out[k] = typeof v === 'number' && k !== 'count' ? round(v) : v;
  return out as T;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

interface Panel {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

function convergencePanel(p: Panel, c: DiscoveryResults['convergence'], targetMs: number): string {
  const out: string[] = [];
  out.push(
    `<text x="${p.x + p.w / 2}" y="${p.y - 28}" text-anchor="middle" font-weight="bold">Convergence after a TTL check flip (CDF)</text>`,
  );
  if ('skipped' in c) {
    out.push(
      `<text x="${p.x + p.w / 2}" y="${p.y + p.h / 2}" text-anchor="middle">not run: ${esc(c.skipped.slice(0, 80))}</text>`,
    );
    return out.join('\n');
  }
  const removal = c.samples.filter((s) => s.direction === 'critical' && s.convergedMs !== null);
  const recovery = c.samples.filter((s) => s.direction === 'passing' && s.convergedMs !== null);
  const all = [...removal, ...recovery].map((s) => s.convergedMs!).filter((v) => v > 0);
  // Log scale: the samples sit far below the target, and both must be readable.
  const decades = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];
  const lo = Math.min(targetMs, ...all);
  const hi = Math.max(targetMs, ...all);
  const xMin = [...decades].reverse().find((d) => d <= lo * 0.8) ?? decades[0]!;
  const xMax = decades.find((d) => d >= hi * 1.25) ?? decades[decades.length - 1]!;
  const sx = (v: number): number =>
    p.x + ((Math.log10(Math.max(v, xMin)) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * p.w;
  const sy = (f: number): number => p.y + p.h - f * p.h;
  out.push(`<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" fill="none" stroke="#999"/>`);
  for (const v of decades.filter((d) => d >= xMin && d <= xMax)) {
    out.push(`<line x1="${sx(v)}" y1="${p.y}" x2="${sx(v)}" y2="${p.y + p.h}" stroke="#eee"/>`);
    out.push(`<text x="${sx(v)}" y="${p.y + p.h + 16}" text-anchor="middle">${v}</text>`);
  }
  for (let f = 0; f <= 1.0001; f += 0.25) {
    out.push(`<line x1="${p.x}" y1="${sy(f)}" x2="${p.x + p.w}" y2="${sy(f)}" stroke="#eee"/>`);
    out.push(`<text x="${p.x - 6}" y="${sy(f) + 4}" text-anchor="end">${Math.round(f * 100)}%</text>`);
  }
  out.push(
    `<text x="${p.x + p.w / 2}" y="${p.y + p.h + 34}" text-anchor="middle">ms from the check flip to the balancer's updated node set (log scale)</text>`,
  );
  out.push(
    `<line x1="${sx(targetMs)}" y1="${p.y}" x2="${sx(targetMs)}" y2="${p.y + p.h}" stroke="#d62728" stroke-dasharray="5,4"/>`,
    `<text x="${sx(targetMs) - 4}" y="${p.y + p.h - 8}" text-anchor="end" fill="#d62728">target p99 ${targetMs} ms</text>`,
  );
  const series: [string, string, number[], Summary][] = [
    ['removal (critical)', COLORS[0]!, removal.map((s) => s.convergedMs!), c.removal],
    ['recovery (passing)', COLORS[1]!, recovery.map((s) => s.convergedMs!), c.recovery],
  ];
  series.forEach(([label, color, values, sum], i) => {
    const sorted = [...values].sort((a, b) => a - b);
    if (sorted.length > 0) {
      let d = `M${sx(sorted[0]!).toFixed(1)},${sy(0).toFixed(1)}`;
      sorted.forEach((v, k) => {
        d += ` H${sx(v).toFixed(1)} V${sy((k + 1) / sorted.length).toFixed(1)}`;
      });
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    }
    const ly = p.y + p.h + 60 + i * 16;
    out.push(
      `<line x1="${p.x}" y1="${ly - 4}" x2="${p.x + 18}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${p.x + 22}" y="${ly}">${esc(label)}: p50 ${fmt(sum.p50)} · p99 ${fmt(sum.p99)} · max ${fmt(sum.max)} ms</text>`,
    );
  });
  out.push(
    `<text x="${p.x}" y="${p.y + p.h + 60 + 2 * 16}" fill="#555">${removal.length} removals, ${recovery.length} recoveries; ${c.instances} instances; Consul ${esc(c.consulVersion)} on loopback</text>`,
  );
  return out.join('\n');
}

function costPanel(p: Panel, u: UpdateCostResult): string {
  const out: string[] = [];
  out.push(
    `<text x="${p.x + p.w / 2}" y="${p.y - 28}" text-anchor="middle" font-weight="bold">Applying one Consul answer where one instance changed (median)</text>`,
  );
  const rows = u.rows.filter((r) => r.scenario === 'remove');
  const sizes = rows.map((r) => r.instances);
  const pick = (f: (r: UpdateCostRow) => Summary): number[] => rows.map((r) => f(r).p50 ?? NaN);
  const series: [string, number[]][] = [
    ['JSON.parse (consul client)', pick((r) => r.jsonParseUs)],
    ['parseHealthEntries', pick((r) => r.parseEntriesUs)],
    ['reconcileEndpoints (diff)', pick((r) => r.reconcileUs)],
    ['(b) apply to Destination (changes)', pick((r) => r.applyUs)],
    ['(b) alone, full rebuild (no changes)', rows.map((r) => r.applyFullUs?.p50 ?? NaN)],
    ['(b) alone, with changes', rows.map((r) => r.applyAloneUs?.p50 ?? NaN)],
  ];
  const values = series.flatMap(([, v]) => v).filter((v) => Number.isFinite(v) && v > 0);
  if (sizes.length === 0 || values.length === 0) return out.join('\n');
  const yLo = Math.floor(Math.log10(Math.min(...values)));
  const yHi = Math.ceil(Math.log10(Math.max(...values)));
  const xLo = Math.log10(Math.min(...sizes)) - 0.15;
  const xHi = Math.log10(Math.max(...sizes)) + 0.15;
  const sx = (n: number): number => p.x + ((Math.log10(n) - xLo) / (xHi - xLo)) * p.w;
  const sy = (v: number): number => p.y + p.h - ((Math.log10(v) - yLo) / Math.max(1, yHi - yLo)) * p.h;
  out.push(`<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" fill="none" stroke="#999"/>`);
  for (let e = yLo; e <= yHi; e++) {
    const v = 10 ** e;
    const label = v >= 1000 ? `${v / 1000} ms` : `${v} µs`;
    out.push(`<line x1="${p.x}" y1="${sy(v)}" x2="${p.x + p.w}" y2="${sy(v)}" stroke="#eee"/>`);
    out.push(`<text x="${p.x - 6}" y="${sy(v) + 4}" text-anchor="end">${label}</text>`);
  }
  for (const n of sizes) {
    out.push(`<line x1="${sx(n)}" y1="${p.y}" x2="${sx(n)}" y2="${p.y + p.h}" stroke="#eee"/>`);
    out.push(
      `<text x="${sx(n)}" y="${p.y + p.h + 16}" text-anchor="middle">${n.toLocaleString('en-US')}</text>`,
    );
  }
  out.push(
    `<text x="${p.x + p.w / 2}" y="${p.y + p.h + 34}" text-anchor="middle">instances in the service (log scale)</text>`,
  );
  // A guide with slope 1 through the first apply point: a stage parallel to it costs O(n).
  const apply0 = series[3]![1][0];
  if (apply0 !== undefined && Number.isFinite(apply0) && apply0 > 0) {
    const n0 = sizes[0]!;
    const n1 = sizes[sizes.length - 1]!;
    out.push(
      `<line x1="${sx(n0)}" y1="${sy(apply0)}" x2="${sx(n1)}" y2="${sy((apply0 * n1) / n0)}" stroke="#888" stroke-dasharray="2,4"/>`,
      `<line x1="${p.x + 230}" y1="${p.y + p.h + 56}" x2="${p.x + 248}" y2="${p.y + p.h + 56}" stroke="#888" stroke-dasharray="2,4"/>`,
      `<text x="${p.x + 252}" y="${p.y + p.h + 60}" fill="#555">∝ n, through (b) at ${n0.toLocaleString('en-US')}</text>`,
    );
  }
  series.forEach(([label, vs], i) => {
    const color = COLORS[i]!;
    const pts = vs.map((v, k) => [sizes[k]!, v] as const).filter(([, v]) => Number.isFinite(v) && v > 0);
    if (pts.length > 0) {
      const d = pts
        .map(([n, v], k) => `${k === 0 ? 'M' : 'L'}${sx(n).toFixed(1)},${sy(v).toFixed(1)}`)
        .join(' ');
      out.push(
        `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${i >= 4 ? ' stroke-dasharray="6,3"' : ''}/>`,
      );
      for (const [n, v] of pts)
        out.push(`<circle cx="${sx(n).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="3" fill="${color}"/>`);
    }
    const ly = p.y + p.h + 60 + i * 16;
    out.push(
      `<line x1="${p.x}" y1="${ly - 4}" x2="${p.x + 18}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${i >= 4 ? ' stroke-dasharray="6,3"' : ''}/>`,
      `<text x="${p.x + 22}" y="${ly}" xml:space="preserve">${esc(label)}</text>`,
    );
  });
  return out.join('\n');
}

/** The SVG document (two panels side by side). */
export function renderSvg(r: DiscoveryResults): string {
  const W = 1080;
  const H = 560;
  const left: Panel = { x: 70, y: 60, w: 420, h: 300 };
  const right: Panel = { x: 620, y: 60, w: 420, h: 300 };
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    convergencePanel(left, r.convergence, r.target.convergenceP99Ms),
    costPanel(right, r.updateCost),
    `<text x="${W / 2}" y="${H - 8}" text-anchor="middle" fill="#666">meshfetch bench/discovery · ${esc(r.run.mode)} run · ${esc(r.run.date)} · ${esc(r.run.machine.cpu)} x${r.run.machine.cores} · Node ${esc(r.run.machine.node)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

/** The convergence table (markdown). */
export function convergenceTable(c: ConvergenceResult): string {
  const row = (label: string, s: Summary, extra: string): string[] => [
    label,
    String(s.count),
    fmt(s.p50),
    fmt(s.p90),
    fmt(s.p99),
    fmt(s.max),
    extra,
  ];
  return table(
    ['flip', 'samples', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'timeouts'],
    [
      row('removal: critical -> balancer stops picking', c.removal, String(c.removal.timeouts)),
      row('recovery: passing -> balancer picks again', c.recovery, String(c.recovery.timeouts)),
      row('(the check-flip HTTP call itself)', c.checkApi, '-'),
      row('(traffic: last request routed to it, after flip)', c.trafficRemoval, '-'),
    ],
  );
}

/** The update cost tables (markdown): the split per size, then the scenarios. */
export function updateCostTables(u: UpdateCostResult): { split: string; scenarios: string } {
  const remove = u.rows.filter((r) => r.scenario === 'remove');
  const split = table(
    [
      'instances',
      'answer size',
      'JSON.parse µs',
      'parseHealthEntries µs',
      'reconcile µs',
      '(a) parse+diff µs',
      '(b) apply µs',
      '(b) alone µs',
      '(b) full rebuild µs',
      'balancer apply() µs',
      'balancer update() µs',
      '(b) share',
    ],
    remove.map((r) => {
      const b = u.balancerUpdateUs.find((x) => x.instances === r.instances)?.us.p50 ?? null;
      const ba = u.balancerApplyUs?.find((x) => x.instances === r.instances)?.us.p50 ?? null;
      const a = r.beforeDiffUs.p50 ?? 0;
      const apply = r.applyUs.p50 ?? 0;
      return [
        r.instances.toLocaleString('en-US'),
        `${fmt(r.bodyBytes / 1024)} KiB`,
        fmt(r.jsonParseUs.p50),
        fmt(r.parseEntriesUs.p50),
        fmt(r.reconcileUs.p50),
        fmt(r.beforeDiffUs.p50),
        fmt(r.applyUs.p50),
        fmt(r.applyAloneUs?.p50 ?? null),
        fmt(r.applyFullUs?.p50 ?? null),
        fmt(ba),
        fmt(b),
        `${fmt((100 * apply) / (a + apply))} %`,
      ];
    }),
  );
  const scenarios = table(
    [
      'instances',
      'change',
      'updates timed',
      '(a) p50 µs',
      '(a) p90 µs',
      '(b) p50 µs',
      '(b) p90 µs',
      'total p50 µs',
    ],
    u.rows.map((r) => [
      r.instances.toLocaleString('en-US'),
      r.scenario === 'remove'
        ? 'one removed / re-added'
        : r.scenario === 'update'
          ? 'one meta changed'
          : 'none (not published)',
      String(r.reps),
      fmt(r.beforeDiffUs.p50),
      fmt(r.beforeDiffUs.p90),
      fmt(r.applyUs.p50),
      fmt(r.applyUs.p90),
      fmt(r.totalUs.p50),
    ]),
  );
  return { split, scenarios };
}

/** What the numbers say about src/, computed from them (so a rerun keeps the text honest). */
export function findings(u: UpdateCostResult): string[] {
  const out: string[] = [];
  const remove = u.rows.filter((r) => r.scenario === 'remove');
  const small = remove[0];
  const large = remove[remove.length - 1];
  if (!small || !large || small === large) return out;
  const n = (x: number): string => x.toLocaleString('en-US');
  const p50 = (s: Summary | null | undefined): number => s?.p50 ?? NaN;
  const ratioN = large.instances / small.instances;
  const applyRatio = p50(large.applyUs) / p50(small.applyUs);
  const aloneRatio = p50(large.applyAloneUs) / p50(small.applyAloneUs);
  const beforeRatio = p50(large.beforeDiffUs) / p50(small.beforeDiffUs);
  const bal = u.balancerUpdateUs.find((b) => b.instances === large.instances)?.us ?? null;
  const balSmall = u.balancerUpdateUs.find((b) => b.instances === small.instances)?.us ?? null;
  const balRatio = p50(bal) / p50(balSmall);
  const share = (100 * p50(large.applyUs)) / (p50(large.beforeDiffUs) + p50(large.applyUs));
  out.push(
    `(a) parse + diff grows ${fmt(beforeRatio)}x from ${n(small.instances)} to ${n(large.instances)} instances (${fmt(ratioN)}x the instances): proportional to the answer, as expected, since Consul always sends the whole list. JSON.parse of the ${fmt(large.bodyBytes / 2 ** 20)} MiB answer is the largest part (${fmt(p50(large.jsonParseUs))} of ${fmt(p50(large.beforeDiffUs))} µs at ${n(large.instances)}). All of it runs on the event loop: every Consul answer for a ${n(large.instances)}-instance service stalls the process's requests for about ${fmt(p50(large.beforeDiffUs) / 1000)} ms on this machine.`,
  );
  const full = (r: UpdateCostRow): number => p50(r.applyFullUs);
  const bApply = u.balancerApplyUs?.find((b) => b.instances === large.instances)?.us ?? null;
  const bApplySmall = u.balancerApplyUs?.find((b) => b.instances === small.instances)?.us ?? null;
  if (Math.min(applyRatio, aloneRatio) > ratioN / 10) {
    out.push(
      `(b) everything after the diff grows with the number of instances, not with the change: ${fmt(p50(small.applyUs))} µs at ${n(small.instances)} instances, ${fmt(p50(large.applyUs))} µs at ${n(large.instances)} (${fmt(applyRatio)}x for ${fmt(ratioN)}x the instances; alone ${fmt(aloneRatio)}x). The issue expects it to be proportional to the change: check that the resolver publishes \`changes\` and that the Destination and the distributor take the incremental path.`,
    );
  } else {
    out.push(
      `(b) everything after the diff is proportional to the change: the Destination applies the diff the resolver publishes (\`Addr.changes\`) and the balancer's incremental \`apply()\` takes it, so a one-instance change costs ${fmt(p50(small.applyUs))} µs at ${n(small.instances)} instances and ${fmt(p50(large.applyUs))} µs at ${n(large.instances)} (${fmt(applyRatio)}x for ${fmt(ratioN)}x the instances); measured alone, without the parse's garbage around it, ${fmt(p50(small.applyAloneUs))} µs and ${fmt(p50(large.applyAloneUs))} µs (${fmt(aloneRatio)}x). The balancer's \`apply()\` alone: ${fmt(p50(bApplySmall))} µs and ${fmt(p50(bApply))} µs. What (b) does per update (nodes made, statuses and weights read, the balancer's full \`update()\` never called) is counted equal at 50 and 5,000 endpoints by test/client/incremental-update.test.ts; the in-loop figure runs right after the parse of the whole answer and is the one to expect in production, the alone figure is the work itself.`,
    );
    out.push(
      `The same sets published without \`changes\` (a full replacement: a first answer, a custom resolver, and every update before the diff was carried) take the Destination's O(n) rebuild: ${fmt(full(small))} µs at ${n(small.instances)} and ${fmt(full(large))} µs at ${n(large.instances)} (${fmt(full(large) / full(small))}x), of which the balancer's \`update()\` is ${fmt(p50(balSmall))} µs and ${fmt(p50(bal))} µs (${fmt(balRatio)}x). With the diff, (b) at ${n(large.instances)} instances is ${fmt(full(large) / p50(large.applyAloneUs))}x cheaper measured alone, and ${fmt(share)} % of a one-instance update: the parse is all that is left.`,
    );
  }
  const unchanged = u.rows.filter((r) => r.scenario === 'unchanged').at(-1);
  if (unchanged) {
    out.push(
      `An answer in which nothing changed costs only (a): ${fmt(p50(unchanged.beforeDiffUs))} µs at ${n(unchanged.instances)}. reconcileEndpoints returns the previous array, and the resolver publishes nothing, so (b) is ${fmt(p50(unchanged.applyUs))} µs.`,
    );
  }
  return out;
}

/** RESULTS.md. */
export function renderMarkdown(r: DiscoveryResults, rerun: string): string {
  const m = r.run.machine;
  const lines: string[] = [];
  lines.push('# bench/discovery: results', '');
  lines.push(
    'Written by `bench/discovery/index.ts` on a full run, with bench/results/discovery.json and discovery.svg (a `--quick` run writes only under bench/results/quick/). See the header of `index.ts` for what is measured and how.',
    '',
  );
  lines.push(
    `- Date: ${r.run.date}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.os}`,
    `- Node: ${m.node}`,
    `- Command: \`${r.run.command}\` (${r.run.mode} mode, ${Math.round(r.run.durationS)} s)`,
    `- Rerun: \`${rerun}\``,
    `- Load average (1 min) at start / end: ${r.run.loadAverage1m.start} / ${r.run.loadAverage1m.end} on ${m.cores} cores`,
    '',
  );
  if (Math.max(r.run.loadAverage1m.start, r.run.loadAverage1m.end) > m.cores * 0.75) {
    lines.push(
      'Other work shared the machine during this run (load near or above the core count): absolute times are inflated and the p90 columns are noisy; the ratios measured side by side in the same iterations (the (a) / (b) split, the growth from 50 to 5,000) hold better.',
      '',
    );
  }
  lines.push('![convergence CDF and update cost per stage](../results/discovery.svg)', '');
  lines.push('## Convergence', '');
  if (r.convergenceFrom) {
    lines.push(
      `Not re-run in this run (\`--only update-cost\`): carried over from the run of ${r.convergenceFrom.date} (\`${r.convergenceFrom.command}\`), whose machine and load it was measured under.`,
      '',
    );
  }
  const c = r.convergence;
  if ('skipped' in c) {
    lines.push(`Not run: ${c.skipped}`, '');
  } else {
    lines.push(
      `Consul ${c.consulVersion} dev agent on 127.0.0.1; ${c.instances} instances of one service, each a real HTTP server on 127.0.0.1 with a TTL check; a mesh from \`createMesh\` with \`consulDiscovery\` (defaults: waitMs ${c.discoveryOptions.waitMs}, minIntervalMs ${c.discoveryOptions.minIntervalMs}, burst ${c.discoveryOptions.burst}, passingOnly ${c.discoveryOptions.passingOnly}) and the default balancer (${c.balancer}). ${c.flips} cycles, ${c.cycleMs} ms apart: one instance (in turn) set critical, then passing again ${c.cycleMs / 2} ms later. Measured from just before the HTTP call that flips the check to the moment the Destination has applied the Consul answer (a resolver listener that runs right after the Destination's own, confirmed with \`destination.endpoints()\`).`,
      '',
    );
    lines.push(convergenceTable(c), '');
    lines.push(
      `**${r.convergenceVerdict}**: removal p99 ${fmt(c.removal.p99)} ms against the target p99 <= ${r.target.convergenceP99Ms} ms on loopback (p99 is nearest-rank: with ${c.removal.count} samples it is the ${ordinal(Math.ceil(0.99 * c.removal.count))} smallest).`,
      '',
    );
    const polled = c.samples.filter((x) => x.observedBy === 'poll').length;
    lines.push(
      `Traffic during the run (one request at a time, ~1 ms apart, through \`mesh.request\`): ${c.traffic.requests.toLocaleString('en-US')} requests (${fmt(c.traffic.perSecond)}/s), ${c.traffic.errors} errors, per backend ${c.traffic.perBackend.join(' / ')}. Requests sent after the balancer was updated that still reached the removed instance: **${c.traffic.routedAfterRemoval}**. In ${c.trafficRemoval.count} of ${c.removal.count} removals a request reached the flipped instance between the flip and the update; the last one was sent ${fmt(c.trafficRemoval.p50)} ms (p50) / ${fmt(c.trafficRemoval.max)} ms (max) after the flip. ${polled === 0 ? 'Every flip was seen first by the resolver listener (the 5 ms poll fallback never won).' : `${polled} flip(s) were seen first by the 5 ms poll fallback, not the listener.`}`,
      '',
    );
    lines.push(
      `Resolver counters at the end: ${Object.entries(c.resolverStats)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}.`,
      '',
    );
  }
  const t = updateCostTables(r.updateCost);
  lines.push('## Applying an update of 5,000 instances where one changed', '');
  lines.push(
    `Synthetic answers shaped like Consul 1.8's \`/v1/health/service/:name?passing=true\`, fed to the functions the resolver uses (\`JSON.parse\` as the consul client does, then \`parseHealthEntries\` and \`reconcileEndpoints\` from src/discovery/consul/entries.ts), and the reconciled set, with its diff as \`changes\` the way ConsulResolver publishes it, delivered to a real \`Destination\` built by \`createMesh\` (default stacks, ${r.updateCost.balancer}). (a) = parse + diff, (b) = everything after the diff. "(b) alone" publishes the two reconciled sets alternately without parsing in between; "(b) full rebuild" does the same without \`changes\` (the Destination's O(n) path, taken by a first answer or a custom resolver, and by every update before the diff was carried); the balancer columns time \`apply()\` (one node removed or re-added) and \`update()\` (the whole set) alone. Medians; one instance removed, then re-added, alternately.`,
    '',
  );
  lines.push(t.split, '');
  lines.push('All scenarios (each update changes one instance, or none):', '');
  lines.push(t.scenarios, '');
  lines.push('### What the split shows', '');
  for (const f of r.findings) lines.push(`- ${f}`);
  lines.push('');
  return lines.join('\n');
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}
