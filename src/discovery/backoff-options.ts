/**
 * The backoff option that Consul and DNS discovery share (`backoff: { baseMs, maxMs }`: equal jitter over
 * `min(maxMs, baseMs * 2^n)` after a failed refresh), declared once through core/validate so both read,
 * default and reject it the same way.
 */
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { number, object, optional, type Spec } from '../core/validate.js';

/**
 * The backoff after a failed discovery refresh, resolved: `maxMs` defaults to 10 000 (or `baseMs` if larger).
 *
 * @example
 * ```ts
 * discoveryBackoff.resolve({ baseMs: 500 }, 'dnsDiscovery.backoff'); // { baseMs: 500, maxMs: 10000 }
 * ```
 */
export const discoveryBackoff: Spec<{ readonly baseMs: number; readonly maxMs: number }> = {
  resolve(input, path) {
    const b = spec.resolve(input, path);
    return Object.freeze({ baseMs: b.baseMs, maxMs: b.maxMs ?? Math.max(10_000, b.baseMs) });
  },
};

const spec = object(
  {
    baseMs: number({ min: 1, max: 600_000, default: 250 }),
    maxMs: optional(number({ min: 1, max: 3_600_000 })),
  },
  {
    expected: 'an object { baseMs, maxMs }',
    check(b, path) {
      if (b.maxMs !== undefined && b.maxMs < b.baseMs)
        throw new ConfigError(optionPath(path, 'maxMs'), b.maxMs, `a number >= baseMs (${b.baseMs})`);
    },
  },
);
