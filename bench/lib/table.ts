/**
 * Plain tables for the terminal and Markdown tables for docs/benchmarks.md, from the same rows.
 */

/** `l` aligns left, `r` right. */
export type Align = 'l' | 'r';

function pad(s: string, w: number, a: Align): string {
  return a === 'r' ? s.padStart(w) : s.padEnd(w);
}

function widths(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): number[] {
  return headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
}

/** A fixed-width table for the terminal. */
export function formatTable(
  headers: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
  align: readonly Align[] = [],
): string {
  const w = widths(headers, rows);
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => pad(c, w[i]!, align[i] ?? 'l'))
      .join('  ')
      .trimEnd();
  return [line(headers), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** A Markdown table (padded, so it reads well as text and passes prettier). */
export function markdownTable(
  headers: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
  align: readonly Align[] = [],
): string {
  const w = widths(headers, rows).map((n) => Math.max(n, 3));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => pad(c, w[i]!, align[i] ?? 'l')).join(' | ')} |`;
  const rule = `| ${w.map((n, i) => (align[i] === 'r' ? '-'.repeat(n - 1) + ':' : '-'.repeat(n))).join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

/** Formats a number with a fixed number of decimals, or '-' when it is missing or not finite. */
export function num(x: number | undefined | null, decimals = 0): string {
  if (x === undefined || x === null || !Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** Formats a signed number (`+12`, `-3`). */
export function signed(x: number | undefined | null, decimals = 0): string {
  if (x === undefined || x === null || !Number.isFinite(x)) return '-';
  const s = num(Math.abs(x), decimals);
  return x < 0 ? `-${s}` : `+${s}`;
}
