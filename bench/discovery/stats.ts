/**
 * Small numeric and formatting helpers of the discovery benchmark: nearest-rank percentiles (so a reported
 * p99 is always a value that was actually measured; with 100 samples it is the second largest) and
 * markdown tables that print the same on the terminal and in RESULTS.md.
 */

/**
 * Summary of a sample set. `p50`, `p90`, `p99` are nearest-rank percentiles; every field is `null` when
 * there are no samples.
 */
export interface Summary {
  readonly count: number;
  readonly min: number | null;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly max: number | null;
  readonly mean: number | null;
}

/** The nearest-rank percentile `q` (0..1) of an ascending-sorted array. */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

/** Summarises `values` (not modified). */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  return {
    count: n,
    min: n ? sorted[0]! : null,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: n ? sorted[n - 1]! : null,
    mean: n ? sorted.reduce((s, v) => s + v, 0) / n : null,
  };
}

/** Rounds for display and JSON: 3 significant digits below 100, whole numbers above. */
export function round(v: number | null): number | null {
  if (v === null || !Number.isFinite(v)) return v;
  if (Math.abs(v) >= 100) return Math.round(v);
  return Number(v.toPrecision(3));
}

/** Formats a number for a table cell (`-` for null). */
export function fmt(v: number | null, unit = ''): string {
  if (v === null || !Number.isFinite(v)) return '-';
  const r = round(v)!;
  return `${r.toLocaleString('en-US', { maximumFractionDigits: 3 })}${unit}`;
}

/** A markdown table (aligned, so it also reads well on a terminal). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(Math.max(1, w - 1))}:`)).join(' | ')} |`;
  return [line(headers), sep, ...rows.map(line)].join('\n');
}
