/**
 * Backoff between retries and the parsing of `Retry-After`.
 *
 * Backoff is jittered exponential (Envoy's retry back-off: base 25 ms, cap 250 ms, "full jitter" from the AWS
 * architecture blog): attempt n waits a uniform random time in [0, min(cap, base * 2^(n-1))]. Full jitter
 * spreads a burst of simultaneous failures over the whole interval instead of re-synchronising them.
 */
import type { Rng } from '../core/rng.js';

/** Backoff settings. */
export interface BackoffOptions {
  /** First retry's upper bound (ms). Default 25. */
  baseMs: number;
  /** Largest delay (ms). Default 250. */
  maxMs: number;
}

/** Envoy's defaults. */
export const BACKOFF_DEFAULTS: Readonly<BackoffOptions> = Object.freeze({ baseMs: 25, maxMs: 250 });

/**
 * The delay before retry number `retry` (1 for the first retry).
 *
 * @example
 * ```ts
 * backoffDelay(BACKOFF_DEFAULTS, 3, rng); // uniform in [0, 100]
 * ```
 */
export function backoffDelay(options: Readonly<BackoffOptions>, retry: number, rng: Rng): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(30, retry - 1));
  return rng.next() * ceiling;
}

/**
 * Parses a `Retry-After` value (RFC 9110 §10.2.3): a number of seconds, or an HTTP date. Returns the delay in
 * ms (0 for a date in the past), or undefined when the value is neither.
 *
 * @example
 * ```ts
 * parseRetryAfter('2', clock.wallNow()); // 2000
 * parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', clock.wallNow()); // 0 (in the past)
 * ```
 */
export function parseRetryAfter(value: string | undefined, wallNow: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^[0-9]{1,10}$/.test(v)) return Number(v) * 1000;
  if (v.length < 10 || v.length > 40 || !/^[A-Za-z]{3},? /.test(v)) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - wallNow);
}
