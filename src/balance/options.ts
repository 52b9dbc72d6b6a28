/**
 * Validation of balancer options. A bad option is a {@link ConfigError} that names its path
 * (`balancer.tauMs`) and the value given, raised when the factory is called rather than on the first
 * request. Unknown keys are rejected too: a misspelt `tauMS` silently falling back to the default is the kind
 * of mistake that only shows up in production latency graphs. The checks themselves are core/validate's, shared
 * by every module's options.
 */
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { isPlainObject, number, rejectUnknownKeys, type NumberRule } from '../core/validate.js';

export type { NumberRule } from '../core/validate.js';

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
  if (!isPlainObject(options)) throw new ConfigError(OPTION_PREFIX, options, 'an options object');
  rejectUnknownKeys(options, known, OPTION_PREFIX);
  return options;
}

/**
 * Reads a numeric option: `undefined` gives `fallback`; anything else must be a finite number within `rule`
 * (core/validate's {@link number} spec, so the message reads as every other option's).
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
  return number({ ...rule, default: fallback }).resolve(record[key], optionPath(OPTION_PREFIX, key));
}
