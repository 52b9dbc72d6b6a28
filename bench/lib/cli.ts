/**
 * Flag parsing for the benchmarks: `--quick`, `--name value`, `--name=value`. Unknown flags are kept, so
 * `bench/run.ts` can pass the same flags to every benchmark and each picks what it knows.
 */

/** Parsed flags: booleans for bare flags, strings for valued ones. */
export type Flags = Record<string, string | boolean>;

/** Parses `argv` (without node and the script). */
export function parseFlags(argv: readonly string[]): Flags {
  const out: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out[a.slice(2)] = next;
      i++;
    } else {
      out[a.slice(2)] = true;
    }
  }
  return out;
}

/** A numeric flag with a default; throws a clear error for a bad value. */
export function numberFlag(flags: Flags, name: string, def: number): number {
  const v = flags[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n <= 0) {
    throw new Error(`--${name} expects a positive number, got ${JSON.stringify(v)}`);
  }
  return n;
}

/** A comma-separated list flag. */
export function listFlag(flags: Flags, name: string): string[] | undefined {
  const v = flags[name];
  if (typeof v !== 'string') return undefined;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
