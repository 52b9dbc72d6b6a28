/**
 * The overhead benchmark's SVG: throughput relative to bare undici, the latency the mesh and the HAProxy hop
 * add, CPU per call (client and HAProxy), and the latency percentile curves.
 */
import { barChart, lineChart, svgDocument, type Panel } from '../lib/svg.js';
import type { Cell, OverheadResults } from './report.js';

/** -log10(1 - p/100): spreads p50 .. p99.99 evenly (the HdrHistogram percentile axis). */
function pAxis(p: number): number {
  return -Math.log10(1 - p / 100);
}

/** The request-style clients, compared with the hop; fetch-style ones only appear in the ratio and CPU plots. */
const HOP_COMPARISON = ['mesh-request-bal', 'mesh-request-full', 'haproxy'];
const CURVES: Record<string, string> = {
  pool: '#000000',
  'mesh-request-bal': '#0072B2',
  'mesh-request-full': '#0072B2',
  haproxy: '#D55E00',
  'undici-fetch': '#009E73',
  'global-fetch': '#7F7F7F',
  'mesh-fetch-full': '#CC79A7',
};

/** Renders the whole SVG document. */
export function renderSvg(r: OverheadResults): string {
  const ids = [...new Set(r.cells.map((c) => c.variant))];
  const byId = (id: string, c: number): Cell | undefined =>
    r.cells.find((x) => x.variant === id && x.concurrency === c);
  const label = (id: string): string => r.cells.find((c) => c.variant === id)?.label ?? id;
  const concs = r.settings.concurrency;
  const panels: Panel[] = [];

  panels.push(
    barChart({
      title: 'Throughput relative to bare undici Pool.request (same run)',
      unit: 'ratio of requests/s (1 = Pool.request)',
      categories: ids.map(label),
      series: concs.map((c) => ({
        name: `concurrency ${c}`,
        values: ids.map((id) => {
          const a = byId(id, c);
          const b = byId('pool', c);
          return a && b ? a.rps / b.rps : null;
        }),
      })),
      refLines: [{ value: 0.85, label: 'target 0.85' }],
      valueSuffix: '×',
      valueDecimals: 2,
    }),
  );

  const hopIds = HOP_COMPARISON.filter((id) => ids.includes(id));
  for (const c of concs) {
    if (hopIds.length === 0) break;
    panels.push(
      barChart({
        title: `Latency added over bare Pool.request at concurrency ${c}: the mesh vs a HAProxy hop`,
        unit: 'µs (percentile of the variant minus the same percentile of Pool.request)',
        categories: hopIds.map(label),
        series: (['p50', 'p99'] as const).map((p) => ({
          name: p,
          values: hopIds.map((id) => {
            const a = byId(id, c);
            const b = byId('pool', c);
            if (!a || !b) return null;
            return p === 'p50' ? a.latency.p50Us - b.latency.p50Us : a.latency.p99Us - b.latency.p99Us;
          }),
        })),
      }),
    );
  }

  panels.push(
    barChart({
      title: 'CPU time per call: the client process, and HAProxy for the hop',
      unit: 'µs of CPU per call',
      categories: ids.map(label),
      series: concs.flatMap((c, i) => [
        {
          name: `client, c=${c}`,
          values: ids.map((id) => byId(id, c)?.clientCpuPerCallUs ?? null),
          color: ['#0072B2', '#56B4E9'][i % 2],
        },
        {
          name: `HAProxy, c=${c}`,
          values: ids.map((id) => byId(id, c)?.haproxyCpuPerCallUs ?? null),
          hideMissing: true,
          color: ['#D55E00', '#E69F00'][i % 2],
        },
      ]),
    }),
  );

  const ticks = [50, 90, 99, 99.9, 99.99].map((p) => ({ value: pAxis(p), label: `p${p}` }));
  const curveIds = Object.keys(CURVES).filter((id) => ids.includes(id));
  for (const c of concs) {
    panels.push(
      lineChart({
        title: `Latency by percentile at concurrency ${c}`,
        x: { label: 'percentile', ticks, min: pAxis(50), max: pAxis(99.99) },
        y: { label: 'latency (µs, log scale)', log: true },
        series: curveIds.flatMap((id) => {
          const x = byId(id, c);
          return x
            ? [
                {
                  name: label(id),
                  points: x.curve.map(([p, us]) => [pAxis(p), us] as const),
                  dashed: id.endsWith('-bal'),
                  color: CURVES[id],
                },
              ]
            : [];
        }),
        height: 320,
      }),
    );
  }

  const m = r.machine;
  return svgDocument(
    panels,
    'meshfetch overhead: mesh vs bare undici vs a HAProxy hop',
    `${m.date.slice(0, 10)} · ${m.cpuModel}, ${m.cores} cores (shared) · Node ${m.node} · undici ${m.undici} · ` +
      `${r.settings.rounds} rounds × ${r.settings.seconds} s${r.quick ? ' (quick)' : ''} · GET, 32-byte body, keep-alive`,
  );
}
