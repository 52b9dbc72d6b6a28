/**
 * Validation of balancer options. A bad option is a {@link ConfigError} that names its path
 * (`balancer.tauMs`) and the value given, raised when the factory is called rather than on the first
 * request. Unknown keys are rejected too: a misspelt `tauMS` silently falling back to the default is the kind
 * of mistake that only shows up in production latency graphs.
 */
import { ConfigError } from '../core/errors.js';

/**
 * The option path prefix used in {@link ConfigError}s raised for balancer options.
 *
 * @example
 * ```ts
 * new ConfigError(`${OPTION_PREFIX}.tauMs`, 0, 'a finite number > 0');
 * ```
 */
export const OPTION_PREFIX = 'balancer';

/**
 * Checks that `options` is undefined or a plain object whose keys are all in `known`, and returns it as a record.
 *
 * @example
 * ```ts
 * const o = optionRecord({ tauMs: 5000 }, ['tauMs']); // { tauMs: 5000 }
 * optionRecord({ tauMS: 5000 }, ['tauMs']);           // throws ConfigError at balancer.tauMS
 * ```
 */
export function optionRecord(options: unknown, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(OPTION_PREFIX, options, 'an options object');
  }
  const record = options as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!known.includes(key)) {
      throw new ConfigError(`${OPTION_PREFIX}.${key}`, record[key], `a known option (${known.join(', ')})`);
    }
  }
  return record;
}

/**
 * Constraints on a numeric option.
 *
 * @example
 * ```ts
 * const positiveInteger: NumberRule = { min: 1, integer: true };
 * ```
 */
export interface NumberRule {
  /** Smallest allowed value. */
  min: number;
  /** True when `min` itself is not allowed (`> min` rather than `>= min`). */
  exclusiveMin?: boolean;
  /** Largest allowed value (inclusive); unbounded when absent. */
  max?: number;
  /** True when the value must be an integer. */
  integer?: boolean;
}

/**
 * Reads a numeric option: `undefined` gives `fallback`; anything else must be a finite number within `rule`.
 *
 * @example
 * ```ts
 * numberOption({ tauMs: 5000 }, 'tauMs', 10_000, { min: 0, exclusiveMin: true }); // 5000
 * ```
 */
export function numberOption(
  record: Record<string, unknown>,
  key: string,
  fallback: number,
  rule: NumberRule,
): number {
  const value = record[key];
  if (value === undefined) return fallback;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (rule.exclusiveMin ? value > rule.min : value >= rule.min) &&
    (rule.max === undefined || value <= rule.max) &&
    (!rule.integer || Number.isInteger(value));
  if (!ok) throw new ConfigError(`${OPTION_PREFIX}.${key}`, value, describeRule(rule));
  return value as number;
}

function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? 'an integer' : 'a finite number';
  const low = `${rule.exclusiveMin ? '>' : '>='} ${rule.min}`;
  return rule.max === undefined ? `${kind} ${low}` : `${kind} ${low} and <= ${rule.max}`;
}
