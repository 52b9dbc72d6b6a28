/**
 * A tiny dependency-free SVG chart writer: horizontal grouped bar charts and line charts, stacked as panels
 * in one document. Enough for the benchmark plots in docs/benchmarks.md; no interactivity, system fonts,
 * readable on GitHub's light and dark themes (a white background is drawn).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** A drawn panel: its size and its SVG markup with the origin at its top-left corner. */
export interface Panel {
  width: number;
  height: number;
  body: string;
}

/** Default series colours (colour-blind safe, Okabe-Ito). */
export const PALETTE = [
  '#0072B2',
  '#E69F00',
  '#009E73',
  '#D55E00',
  '#CC79A7',
  '#56B4E9',
  '#000000',
  '#7F7F7F',
];

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** Escapes text for SVG. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e6) return `${+(x / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${+(x / 1e3).toFixed(1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** Tick values from 0 (or lo) to at least hi with a 1-2-5 step. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = start; v < hi + step * 0.999; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

/** One series of a bar chart: a value per category (null = not measured). */
export interface BarSeries {
  name: string;
  values: ReadonlyArray<number | null>;
  color?: string;
  /** Draw nothing (instead of "n/a") where a value is null. */
  hideMissing?: boolean;
}

/** A horizontal grouped bar chart. */
export interface BarChartSpec {
  title: string;
  /** Axis label, e.g. "requests/s" or "µs". */
  unit: string;
  categories: readonly string[];
  series: readonly BarSeries[];
  width?: number;
  /** Vertical reference lines (e.g. a target ratio). */
  refLines?: ReadonlyArray<{ value: number; label: string }>;
  /** Text after each value label (e.g. "×"). */
  valueSuffix?: string;
  /** Decimal places of the value labels (default: automatic). */
  valueDecimals?: number;
}

/** Draws a horizontal grouped bar chart. */
export function barChart(spec: BarChartSpec): Panel {
  const width = spec.width ?? 860;
  const labelW = Math.max(120, 16 + Math.max(...spec.categories.map((c) => c.length)) * 6.8);
  const right = 70;
  const top = 44 + (spec.series.length > 1 ? 18 : 0);
  const barH = 13;
  const barGap = 2;
  const groupGap = 10;
  const plotW = width - labelW - right;
  const groupH = spec.series.length * (barH + barGap) - barGap;
  const plotH = spec.categories.length * (groupH + groupGap) - groupGap;
  const height = top + plotH + 34;
  let max = 0;
  for (const s of spec.series) for (const v of s.values) if (v !== null && v > max) max = v;
  for (const r of spec.refLines ?? []) if (r.value > max) max = r.value;
  const ticks = niceTicks(0, max || 1);
  const xmax = ticks[ticks.length - 1]!;
  const x = (v: number): number => labelW + (Math.max(0, v) / xmax) * plotW;
  const out: string[] = [];
  out.push(`<text x="10" y="22" font-size="15" font-weight="600" ${FONT}>${esc(spec.title)}</text>`);
  if (spec.series.length > 1) {
    let lx = labelW;
    spec.series.forEach((s, i) => {
      const c = s.color ?? PALETTE[i % PALETTE.length]!;
      out.push(`<rect x="${lx}" y="34" width="12" height="12" fill="${c}"/>`);
      out.push(`<text x="${lx + 16}" y="44" font-size="12" ${FONT}>${esc(s.name)}</text>`);
      lx += 28 + s.name.length * 7;
    });
  }
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    out.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${top + plotH}" stroke="#ddd"/>`);
    out.push(
      `<text x="${tx}" y="${top + plotH + 16}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${fmt(t)}</text>`,
    );
  }
  out.push(
    `<text x="${labelW + plotW / 2}" y="${top + plotH + 31}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${esc(spec.unit)}</text>`,
  );
  spec.categories.forEach((cat, ci) => {
    const gy = top + ci * (groupH + groupGap);
    out.push(
      `<text x="${labelW - 8}" y="${gy + groupH / 2 + 4}" font-size="12" text-anchor="end" ${FONT}>${esc(cat)}</text>`,
    );
    spec.series.forEach((s, si) => {
      const v = s.values[ci];
      const by = gy + si * (barH + barGap);
      if (v === null || v === undefined || !Number.isFinite(v)) {
        if (s.hideMissing) return;
        out.push(
          `<text x="${labelW + 4}" y="${by + barH - 3}" font-size="10" fill="#888" ${FONT}>n/a</text>`,
        );
        return;
      }
      const c = s.color ?? PALETTE[si % PALETTE.length]!;
      const w = Math.max(1, x(v) - labelW);
      out.push(
        `<rect x="${labelW}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${c}"><title>${esc(`${s.name}: ${v}`)}</title></rect>`,
      );
      const label =
        (spec.valueDecimals === undefined ? fmt(v) : v.toFixed(spec.valueDecimals)) +
        (spec.valueSuffix ?? '');
      out.push(
        `<text x="${(labelW + w + 4).toFixed(1)}" y="${by + barH - 3}" font-size="10" fill="#333" ${FONT}>${esc(label)}</text>`,
      );
    });
  });
  for (const r of spec.refLines ?? []) {
    const rx = x(r.value).toFixed(1);
    out.push(
      `<line x1="${rx}" y1="${top - 8}" x2="${rx}" y2="${top + plotH}" stroke="#c00" stroke-dasharray="4 3"/>`,
    );
    out.push(
      `<text x="${rx}" y="${top - 10}" font-size="10" text-anchor="middle" fill="#c00" ${FONT}>${esc(r.label)}</text>`,
    );
  }
  return { width, height, body: out.join('\n') };
}

/** An axis of a line chart; custom ticks replace the automatic ones (e.g. for a percentile axis). */
export interface Axis {
  label: string;
  min?: number;
  max?: number;
  /** Logarithmic (base 10) scale; values must be > 0. */
  log?: boolean;
  ticks?: ReadonlyArray<{ value: number; label: string }>;
}

/** One line of a line chart. */
export interface LineSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
  dashed?: boolean;
}

/** A line chart. */
export interface LineChartSpec {
  title: string;
  x: Axis;
  y: Axis;
  series: readonly LineSeries[];
  width?: number;
  height?: number;
}

/** Draws a line chart with a legend on the right. */
export function lineChart(spec: LineChartSpec): Panel {
  const width = spec.width ?? 860;
  const height = spec.height ?? 320;
  const left = 70;
  const legendW = Math.max(160, 50 + Math.max(...spec.series.map((s) => s.name.length)) * 6.2);
  const top = 40;
  const bottom = 48;
  const plotW = width - left - legendW - 10;
  const plotH = height - top - bottom;
  const all = spec.series.flatMap((s) => s.points);
  const ext = (i: 0 | 1, a: Axis): [number, number] => {
    let lo = a.min ?? Math.min(...all.map((p) => p[i]));
    let hi = a.max ?? Math.max(...all.map((p) => p[i]));
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
    if (a.log) {
      lo = 10 ** Math.floor(Math.log10(Math.max(lo, 1e-9)));
      hi = 10 ** Math.ceil(Math.log10(Math.max(hi, lo * 10)));
    } else if (!a.ticks) {
      const t = niceTicks(a.min ?? Math.min(0, lo), hi);
      lo = t[0]!;
      hi = t[t.length - 1]!;
    }
    return [lo, hi === lo ? lo + 1 : hi];
  };
  const [x0, x1] = ext(0, spec.x);
  const [y0, y1] = ext(1, spec.y);
  const tf = (v: number, a: Axis): number => (a.log ? Math.log10(Math.max(v, 1e-12)) : v);
  const sx = (v: number): number =>
    left + ((tf(v, spec.x) - tf(x0, spec.x)) / (tf(x1, spec.x) - tf(x0, spec.x))) * plotW;
  const sy = (v: number): number =>
    top + plotH - ((tf(v, spec.y) - tf(y0, spec.y)) / (tf(y1, spec.y) - tf(y0, spec.y))) * plotH;
  const ticksOf = (a: Axis, lo: number, hi: number): Array<{ value: number; label: string }> => {
    if (a.ticks) return [...a.ticks];
    if (a.log) {
      const t: Array<{ value: number; label: string }> = [];
      for (let v = lo; v <= hi * 1.0001; v *= 10) t.push({ value: v, label: fmt(v) });
      return t;
    }
    return niceTicks(lo, hi).map((v) => ({ value: v, label: fmt(v) }));
  };
  const out: string[] = [];
  out.push(`<text x="10" y="22" font-size="15" font-weight="600" ${FONT}>${esc(spec.title)}</text>`);
  for (const t of ticksOf(spec.x, x0, x1)) {
    const tx = sx(t.value).toFixed(1);
    out.push(`<line x1="${tx}" y1="${top}" x2="${tx}" y2="${top + plotH}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${tx}" y="${top + plotH + 16}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${esc(t.label)}</text>`,
    );
  }
  for (const t of ticksOf(spec.y, y0, y1)) {
    const ty = sy(t.value).toFixed(1);
    out.push(`<line x1="${left}" y1="${ty}" x2="${left + plotW}" y2="${ty}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${left - 6}" y="${(+ty + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#555" ${FONT}>${esc(t.label)}</text>`,
    );
  }
  out.push(
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
    `<text x="${left + plotW / 2}" y="${height - 12}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${esc(spec.x.label)}</text>`,
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${esc(spec.y.label)}</text>`,
  );
  spec.series.forEach((s, i) => {
    const c = s.color ?? PALETTE[i % PALETTE.length]!;
    const d = s.points
      .map((p, j) => `${j === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`)
      .join(' ');
    out.push(
      `<path d="${d}" fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 3"' : ''}><title>${esc(s.name)}</title></path>`,
    );
    const ly = top + 6 + i * 18;
    const lx = left + plotW + 16;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 3"' : ''}/>`,
      `<text x="${lx + 28}" y="${ly + 4}" font-size="11" ${FONT}>${esc(s.name)}</text>`,
    );
  });
  return { width, height, body: out.join('\n') };
}

/** Stacks panels vertically into one SVG document, under a title and an optional subtitle. */
export function svgDocument(panels: readonly Panel[], title: string, subtitle?: string): string {
  const width = Math.max(...panels.map((p) => p.width));
  const head = subtitle ? 52 : 34;
  let y = head;
  const parts: string[] = [];
  for (const p of panels) {
    parts.push(`<g transform="translate(0 ${y})">\n${p.body}\n</g>`);
    y += p.height + 12;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="24" font-size="18" font-weight="700" ${FONT}>${esc(title)}</text>`,
    subtitle ? `<text x="10" y="42" font-size="11" fill="#555" ${FONT}>${esc(subtitle)}</text>` : '',
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

/** Writes an SVG file, creating its folder. */
export function writeSvg(file: string, svg: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, svg);
}
