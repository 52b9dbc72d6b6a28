/**
 * bench/scale's output: the pick-cost and memory tables, the target of issue 8 (10,000 endpoints cost at most
 * 2 x what 10 cost), the Consul update cost quoted from bench/discovery's committed result (not measured
 * again here), the Markdown block for docs/benchmarks.md (between the scale markers) and the SVG.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MachineInfo } from '../lib/machine.js';
import { barChart, svgDocument, type Panel } from '../lib/svg.js';
import { formatTable, markdownTable, num, type Align } from '../lib/table.js';
import { updateDocsBlock } from '../lib/output.js';
import type { BigMesh, PerEndpoint, PerService } from './memory.js';
import type { PickCell } from './pick.js';

/** A target, judged. */
export interface Target {
  status: 'MET' | 'MISS' | 'INFO';
  name: string;
  detail: string;
}

/** The 5,000-instance row of bench/results/discovery.json, if that file exists. */
export interface ConsulUpdateRef {
  file: string;
  date: string;
  command: string;
  instances: number;
  scenario: string;
  beforeDiffP50Us: number;
  applyP50Us: number;
  applyAloneP50Us: number | null;
  /** The Destination's full rebuild over the same sets, when the discovery run measured it. */
  applyFullP50Us: number | null;
}

/** The whole result document (bench/results/scale.json). */
export interface ScaleResults {
  benchmark: 'scale';
  command: string;
  quick: boolean;
  machine: MachineInfo;
  settings: {
    sizes: number[];
    rounds: number;
    loopMs: number;
    memoryEndpoints: number;
    memoryServices: number;
  };
  picks: PickCell[];
  heapPerEndpoint: PerEndpoint[];
  heapPerService: PerService;
  bigMesh: BigMesh;
  consulUpdate: ConsulUpdateRef | null;
  targets: Target[];
}

/** Reads the Consul update cost for 5,000 instances from bench/discovery's committed result. */
export function consulUpdateRef(repo: string): ConsulUpdateRef | null {
  const file = path.join(repo, 'bench', 'results', 'discovery.json');
  if (!existsSync(file)) return null;
  try {
    const d = JSON.parse(readFileSync(file, 'utf8')) as {
      run: { date: string; command: string };
      updateCost: {
        rows: Array<{
          instances: number;
          scenario: string;
          beforeDiffUs: { p50: number };
          applyUs: { p50: number };
          applyAloneUs: { p50: number } | null;
          applyFullUs?: { p50: number } | null;
        }>;
      };
    };
    const row = d.updateCost.rows.find((r) => r.instances === 5_000 && r.scenario === 'remove');
    if (!row) return null;
    return {
      file: 'bench/results/discovery.json',
      date: d.run.date,
      command: d.run.command,
      instances: row.instances,
      scenario: row.scenario,
      beforeDiffP50Us: row.beforeDiffUs.p50,
      applyP50Us: row.applyUs.p50,
      applyAloneP50Us: row.applyAloneUs?.p50 ?? null,
      applyFullP50Us: row.applyFullUs?.p50 ?? null,
    };
  } catch {
    return null;
  }
}

const CONFIGURABLE = ['p2c-peak-ewma', 'p2c-least-loaded', 'round-robin'];

/** Judges the pick-cost target for each configurable balancer (the weighted row is INFO). */
export function evaluateTargets(picks: readonly PickCell[], sizes: readonly number[]): Target[] {
  const lo = Math.min(...sizes);
  const hi = Math.max(...sizes);
  const out: Target[] = [];
  for (const id of [...new Set(picks.map((p) => p.balancer))]) {
    const a = picks.find((p) => p.balancer === id && p.endpoints === lo)!;
    const b = picks.find((p) => p.balancer === id && p.endpoints === hi)!;
    const ratio = b.perRequestNs / a.perRequestNs;
    const pickRatio = b.pickNs / a.pickNs;
    out.push({
      status: CONFIGURABLE.includes(id) ? (ratio <= 2 ? 'MET' : 'MISS') : 'INFO',
      name: `${a.label}: cost per request at ${num(hi)} endpoints <= 2 x at ${num(lo)}`,
      detail: `${num(b.perRequestNs, 1)} ns / ${num(a.perRequestNs, 1)} ns = ${ratio.toFixed(2)} x (pick alone, bookkeeping subtracted: ${num(b.pickNs, 1)} / ${num(a.pickNs, 1)} ns = ${pickRatio.toFixed(2)} x)`,
    });
  }
  return out;
}

function pickTable(r: ScaleResults): { headers: string[]; rows: string[][]; align: Align[] } {
  const sizes = r.settings.sizes;
  const lo = Math.min(...sizes);
  const hi = Math.max(...sizes);
  const ids = [...new Set(r.picks.map((p) => p.balancer))];
  const headers = [
    'balancer',
    ...sizes.map((n) => `${num(n)} ep ns/req`),
    `x (${num(hi)} / ${num(lo)})`,
    ...sizes.map((n) => `pick alone ${num(n)}`),
    'pick x',
  ];
  const align: Align[] = ['l', ...sizes.map(() => 'r' as const), 'r', ...sizes.map(() => 'r' as const), 'r'];
  const rows = ids.map((id) => {
    const cell = (n: number): PickCell => r.picks.find((p) => p.balancer === id && p.endpoints === n)!;
    return [
      cell(lo).label,
      ...sizes.map((n) => num(cell(n).perRequestNs, 1)),
      (cell(hi).perRequestNs / cell(lo).perRequestNs).toFixed(2),
      ...sizes.map((n) => num(cell(n).pickNs, 1)),
      (cell(hi).pickNs / cell(lo).pickNs).toFixed(2),
    ];
  });
  return { headers, rows, align };
}

const kib = (b: number): string => num(b / 1024, 2);
const mib = (b: number): string => num(b / 2 ** 20, 1);

function memoryTables(r: ScaleResults): { a: string[][]; b: string[][] } {
  const a: string[][] = r.heapPerEndpoint.map((e) => [
    `one endpoint (static, no traffic), ${e.balancer}`,
    kib(e.bytesPerEndpoint),
    `${num(e.endpoints)} endpoints in one service`,
  ]);
  const s = r.heapPerService;
  const ewma = r.heapPerEndpoint.find((e) => e.balancer === 'p2c-peak-ewma');
  a.push([
    'one configured service with one endpoint (default stacks)',
    kib(s.bytesPerService),
    `${num(s.services)} services`,
  ]);
  if (ewma)
    a.push([
      'the same, less its endpoint',
      kib(s.bytesPerService - ewma.bytesPerEndpoint),
      'per-endpoint figure subtracted',
    ]);
  a.push(['an empty mesh (no service)', kib(s.emptyMeshBytes), '']);
  const before = r.bigMesh.before;
  const idle = r.bigMesh.stages.find((x) => x.stage.startsWith('configured, no traffic (round robin'));
  const warm = r.bigMesh.stages.find((x) => x.stage.startsWith('after one call per endpoint'));
  if (idle && warm && warm.pools > 0) {
    a.push([
      'an endpoint after its first call (its undici Pool and one kept-alive connection)',
      kib((warm.heapUsedBytes - idle.heapUsedBytes) / warm.pools),
      `${num(warm.pools)} endpoints of the ${r.bigMesh.services} x ${r.bigMesh.endpointsPerService} mesh`,
    ]);
  }
  const b = r.bigMesh.stages.map((x) => [
    x.stage,
    num(x.pools),
    mib(x.heapUsedBytes - before.heapUsedBytes),
    mib(x.externalBytes - before.externalBytes),
    mib(x.rssBytes - before.rssBytes),
  ]);
  return { a, b };
}

/** Prints the tables and targets. */
export function printTables(r: ScaleResults): void {
  const p = pickTable(r);
  console.log('## pick cost (ns per request: pick + load start/observe/end; median of rounds)');
  console.log(formatTable(p.headers, p.rows, p.align));
  const m = memoryTables(r);
  console.log('\n## heap');
  console.log(formatTable(['what', 'KiB each', 'measured over'], m.a, ['l', 'r', 'l']));
  console.log(`\n## a mesh of ${r.bigMesh.services} services x ${r.bigMesh.endpointsPerService} endpoints`);
  console.log(
    formatTable(['stage', 'pools', 'heap MiB', 'external MiB', 'rss MiB'], m.b, ['l', 'r', 'r', 'r', 'r']),
  );
  if (r.consulUpdate) {
    const c = r.consulUpdate;
    console.log(
      `\nConsul update of ${num(c.instances)} instances, one changed (from ${c.file}, ${c.date.slice(0, 10)}): ` +
        `parse + diff ${num(c.beforeDiffP50Us)} µs, apply ${num(c.applyP50Us, 1)} µs (medians)`,
    );
  }
  console.log('\n## targets');
  if (r.quick) console.log('(quick mode: fewer rounds and smaller sets, indicative only)');
  for (const t of r.targets) console.log(`${t.status.padEnd(4)}  ${t.name}: ${t.detail}`);
}

/** The Markdown block for docs/benchmarks.md (and bench/results/scale.md). */
export function renderMarkdown(r: ScaleResults): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpuModel}, ${m.cores} cores`);
  lines.push(
    `(${m.os}), Node ${m.node}, undici ${m.undici}, commit ${m.gitCommit}` +
      `${m.srcDirty ? ' with uncommitted src/ changes' : ''}; load average at start ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; ` +
      `meshfetch from ${m.library ?? 'src/ through tsx (meshfetch-source)'}.`,
  );
  lines.push(
    `Pick cost: ${r.settings.rounds} rounds, about ${r.settings.loopMs} ms per loop, one process per balancer, sizes alternated within each round; medians.`,
  );
  lines.push('');
  lines.push('```sh');
  lines.push(r.command);
  lines.push('```');
  lines.push('');
  lines.push(
    '**Pick cost**, ns per request: `pick()` plus the load bookkeeping the request causes (`start`, then `observe` and `end` 32 requests later), production clock and rng; "pick alone" subtracts the same bookkeeping done on random endpoints without picking.',
  );
  lines.push('');
  const p = pickTable(r);
  lines.push(markdownTable(p.headers, p.rows, p.align));
  lines.push('');
  const t = memoryTables(r);
  lines.push('**Heap** (`heapUsed` after forced GCs; medians of repetitions):');
  lines.push('');
  lines.push(markdownTable(['what', 'KiB each', 'measured over'], t.a, ['l', 'r', 'l']));
  lines.push('');
  lines.push(
    `**A mesh of ${r.bigMesh.services} services x ${r.bigMesh.endpointsPerService} endpoints** (static discovery; growth over the process before the mesh existed; servers in another process):`,
  );
  lines.push('');
  lines.push(
    markdownTable(['stage', 'pools', 'heap MiB', 'external MiB', 'rss MiB'], t.b, ['l', 'r', 'r', 'r', 'r']),
  );
  lines.push('');
  if (r.consulUpdate) {
    const c = r.consulUpdate;
    lines.push(
      `**Consul update of ${num(c.instances)} instances where one changed**: not measured again here; from bench/discovery's committed run ` +
        `(\`${c.file}\`, ${c.date.slice(0, 10)}, \`${c.command}\`), medians: parse + diff ${num(c.beforeDiffP50Us)} µs, ` +
        `everything after the diff ${num(c.applyP50Us, 1)} µs${c.applyAloneP50Us === null ? '' : ` (${num(c.applyAloneP50Us, 1)} µs measured alone)`}` +
        `${c.applyFullP50Us === null ? '' : `, against ${num(c.applyFullP50Us)} µs for a full rebuild of the destination in the same run`}. See the Discovery section.`,
    );
  } else {
    lines.push(
      '**Consul update of 5,000 instances**: bench/results/discovery.json not found; run the discovery benchmark.',
    );
  }
  lines.push('');
  lines.push('#### Targets');
  lines.push('');
  for (const g of r.targets) lines.push(`- **${g.status}** ${g.name}: ${g.detail}`);
  lines.push('');
  return lines.join('\n');
}

/** Replaces the block between the scale markers of docs/benchmarks.md (read just before writing). */
export function updateDocs(repo: string, md: string): void {
  updateDocsBlock(repo, 'scale', md);
}

/** Renders the SVG: pick cost per balancer and size, and the big mesh's memory by stage. */
export function renderSvg(r: ScaleResults): string {
  const sizes = r.settings.sizes;
  const ids = [...new Set(r.picks.map((p) => p.balancer))];
  const label = (id: string): string => r.picks.find((p) => p.balancer === id)!.label;
  const panels: Panel[] = [];
  panels.push(
    barChart({
      title: 'Balancer cost per request (pick + load bookkeeping) by number of endpoints',
      unit: 'ns per request (median of rounds)',
      categories: ids.map(label),
      series: sizes.map((n) => ({
        name: `${num(n)} endpoints`,
        values: ids.map((id) => r.picks.find((p) => p.balancer === id && p.endpoints === n)!.perRequestNs),
      })),
      valueDecimals: 0,
    }),
  );
  const before = r.bigMesh.before;
  panels.push(
    barChart({
      title: `Memory of a mesh of ${r.bigMesh.services} services x ${r.bigMesh.endpointsPerService} endpoints`,
      unit: 'MiB over the process before the mesh existed',
      categories: r.bigMesh.stages.map((s) => s.stage),
      series: [
        {
          name: 'heap used',
          values: r.bigMesh.stages.map((s) => (s.heapUsedBytes - before.heapUsedBytes) / 2 ** 20),
        },
        { name: 'rss', values: r.bigMesh.stages.map((s) => (s.rssBytes - before.rssBytes) / 2 ** 20) },
      ],
      width: 900,
      valueDecimals: 1,
    }),
  );
  const m = r.machine;
  return svgDocument(
    panels,
    'meshfetch at scale: pick cost and memory',
    `${m.date.slice(0, 10)} · ${m.cpuModel}, ${m.cores} cores (shared) · Node ${m.node}${r.quick ? ' · quick' : ''}`,
  );
}
