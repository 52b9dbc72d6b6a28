/**
 * The circuit breaker's settings: what can be set per service (`services.<name>.circuitBreaker`), Hystrix's
 * defaults, and their validation. Apart from the breaker itself (breaker.ts) so that configuration code can
 * read and check the options without the filter and its opossum dependency.
 *
 * Defaults are Hystrix's (Netflix Hystrix wiki, "Configuration": `circuitBreaker.errorThresholdPercentage` 50,
 * `circuitBreaker.requestVolumeThreshold` 20, `circuitBreaker.sleepWindowInMilliseconds` 5000,
 * `metrics.rollingStats.timeInMilliseconds` 10000 in `metrics.rollingStats.numBuckets` 10); opossum's own
 * (nodeshift/opossum, lib/circuit.js: volume 0, reset 30 s) open on a single failure and stay open long. See
 * docs/resilience.md.
 */
import { ConfigError } from '../core/errors.js';
import { defineParam } from '../core/params.js';

/**
 * Settings of the circuit breaker of one concrete destination.
 *
 * @example
 * ```ts
 * const strict: CircuitBreakerOptions = { ...defaultCircuitBreakerOptions, volumeThreshold: 50 };
 * ```
 */
export interface CircuitBreakerOptions {
  /**
   * The breaker opens when the failure percentage over the window is strictly above this (opossum's rule,
   * with `>`), once the window holds at least {@link CircuitBreakerOptions.volumeThreshold} requests.
   * In `[0, 100)`. Default 50.
   */
  readonly errorThresholdPercentage: number;
  /** Requests the window must hold before the breaker may open (an integer >= 0). Default 20. */
  readonly volumeThreshold: number;
  /** Length of the rolling window (ms). Default 10000. */
  readonly windowMs: number;
  /** Buckets the window is divided into; it slides one bucket at a time (an integer >= 1). Default 10. */
  readonly windowBuckets: number;
  /** How long the breaker stays open before it lets one trial call through (ms). Default 5000. */
  readonly resetTimeoutMs: number;
}

/**
 * The defaults: Hystrix's (50 % over 10 s in 10 buckets, at least 20 requests, 5 s open).
 *
 * @example
 * ```ts
 * defaultCircuitBreakerOptions.volumeThreshold; // 20
 * ```
 */
export const defaultCircuitBreakerOptions: Readonly<CircuitBreakerOptions> = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 20,
  windowMs: 10_000,
  windowBuckets: 10,
  resetTimeoutMs: 5_000,
});

const OPTION_KEYS: readonly (keyof CircuitBreakerOptions)[] = [
  'errorThresholdPercentage',
  'volumeThreshold',
  'windowMs',
  'windowBuckets',
  'resetTimeoutMs',
];

/** The largest delay a Node timer takes; a longer one silently becomes 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

function numberIn(
  record: Record<string, unknown>,
  key: keyof CircuitBreakerOptions,
  path: string,
  ok: (v: number) => boolean,
  expected: string,
): number {
  const v = record[key];
  if (v === undefined) return defaultCircuitBreakerOptions[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    throw new ConfigError(`${path}.${key}`, v, expected);
  return v;
}

/**
 * Validates circuit breaker settings and fills in the defaults. `undefined` and `true` give the defaults,
 * `false` disables the breaker; an object may set any subset of {@link CircuitBreakerOptions}. A wrong
 * value, or an unknown key, is a {@link ConfigError} naming `path.field` and the value.
 *
 * @example
 * ```ts
 * resolveCircuitBreakerOptions({ resetTimeoutMs: 10_000 }, 'services.users.circuitBreaker');
 * // { errorThresholdPercentage: 50, volumeThreshold: 20, windowMs: 10000, windowBuckets: 10, resetTimeoutMs: 10000 }
 * resolveCircuitBreakerOptions({ volumeThreshold: -1 }, 'services.users.circuitBreaker');
 * // throws ConfigError at services.users.circuitBreaker.volumeThreshold
 * ```
 */
export function resolveCircuitBreakerOptions(
  input: unknown,
  path = 'circuitBreaker',
): CircuitBreakerOptions | false {
  if (input === false) return false;
  if (input === undefined || input === true) return defaultCircuitBreakerOptions;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(path, input, 'false, true or an options object');
  }
  const record = input as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(`${path}.${key}`, record[key], `a known option (${OPTION_KEYS.join(', ')})`);
    }
  }
  const errorThresholdPercentage = numberIn(
    record,
    'errorThresholdPercentage',
    path,
    (v) => v >= 0 && v < 100,
    'a number in [0, 100)',
  );
  const volumeThreshold = numberIn(
    record,
    'volumeThreshold',
    path,
    (v) => Number.isInteger(v) && v >= 0,
    'an integer >= 0',
  );
  const windowMs = numberIn(
    record,
    'windowMs',
    path,
    (v) => v > 0 && v <= MAX_TIMER_MS,
    `a number of milliseconds in (0, ${MAX_TIMER_MS}]`,
  );
  const windowBuckets = numberIn(
    record,
    'windowBuckets',
    path,
    (v) => Number.isInteger(v) && v >= 1 && v <= 1000,
    'an integer in [1, 1000]',
  );
  if (windowMs / windowBuckets < 1) {
    throw new ConfigError(`${path}.windowBuckets`, windowBuckets, `at most windowMs (${windowMs}) buckets`);
  }
  const resetTimeoutMs = numberIn(
    record,
    'resetTimeoutMs',
    path,
    (v) => v > 0 && v <= MAX_TIMER_MS,
    `a number of milliseconds in (0, ${MAX_TIMER_MS}]`,
  );
  return { errorThresholdPercentage, volumeThreshold, windowMs, windowBuckets, resetTimeoutMs };
}

/**
 * The per-service circuit breaker setting: resolved options, or `false` to build no breaker for the
 * service. Unset, it reads as the defaults (or as the options given to `createCircuitBreakerModule`).
 *
 * @example
 * ```ts
 * const params = Params.empty.with(CircuitBreakerParam, resolveCircuitBreakerOptions({ volumeThreshold: 50 }));
 * const off = Params.empty.with(CircuitBreakerParam, false);
 * ```
 */
export const CircuitBreakerParam = defineParam<CircuitBreakerOptions | false>(
  'circuitBreaker',
  defaultCircuitBreakerOptions,
);
