/**
 * Text output for the demo: colours (only on a terminal, and never with NO_COLOR), aligned tables that know
 * ANSI codes take no room, share bars, and number formats.
 */

// eslint-disable-next-line no-control-regex -- matching the ANSI escape character is the point
const ANSI_RE = /\x1b\[[0-9;?]*[A-Za-z]/g;

/** Colour functions; identity when colour is off. */
export interface Style {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

export function makeStyle(enabled: boolean): Style {
  const wrap =
    (open: number, close: number) =>
    (s: string): string =>
      enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s;
  return {
    enabled,
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  };
}

/** Printed width of a string (ANSI codes removed). */
export function width(s: string): number {
  return [...s.replace(ANSI_RE, '')].length;
}

function pad(s: string, w: number, align: 'l' | 'r'): string {
  const fill = ' '.repeat(Math.max(0, w - width(s)));
  return align === 'l' ? s + fill : fill + s;
}

/** A column of {@link table}. */
export interface Column {
  readonly title: string;
  readonly align: 'l' | 'r';
  /** Minimum width, so that a live table does not jump when a number grows. */
  readonly min?: number;
}

/** Lays out a table: a title row, a rule, the rows; two spaces between columns. */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], st: Style): string[] {
  const widths = columns.map((c, i) =>
    Math.max(c.min ?? 0, width(c.title), ...rows.map((r) => width(r[i] ?? ''))),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => pad(cell, widths[i]!, columns[i]!.align))
      .join('  ')
      .trimEnd();
  return [
    st.bold(line(columns.map((c) => c.title))),
    st.dim(widths.map((w) => '─'.repeat(w)).join('──')),
    ...rows.map(line),
  ];
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** A horizontal bar of `cells` characters for a fraction in [0, 1]. */
export function bar(fraction: number, cells: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const eighths = Math.round(f * cells * 8);
  const full = Math.floor(eighths / 8);
  const s = '█'.repeat(full) + EIGHTHS[eighths % 8];
  return s + ' '.repeat(cells - width(s));
}

/** Milliseconds with one decimal (or none from 100 on); a dash for NaN. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return '–';
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

/** A fraction as a percentage with one decimal; a dash for NaN. */
export function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '–';
}
