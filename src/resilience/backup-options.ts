/**
 * The options of backup requests (backup.ts), declared once with their defaults through core/validate, in a
 * file of their own so that the filter's file stays readable. Finagle's `BackupRequestFilter` takes the same
 * knobs (`maxExtraLoad`, the latency window).
 */
import { ConfigError } from '../core/errors.js';
import { defineParam } from '../core/params.js';
import { duration, number, object, toggle } from '../core/validate.js';

/** Backup request settings of a service. */
export interface BackupRequestOptions {
  /**
   * Send the backup when the attempt has not answered by this latency percentile (0 < p < 1). Default 0.99:
   * in steady state at most 1 % of attempts get a backup (Finagle's `maxExtraLoad` of 1 %, whose percentile
   * is `1 - maxExtraLoad`).
   */
  percentile: number;
  /** Lower bound on the delay (ms). Default 1. */
  minDelayMs: number;
  /** Upper bound on the delay (ms); `Infinity` for none (the default). */
  maxDelayMs: number;
  /** Samples the window must hold before any backup is sent. Default 10. */
  minSamples: number;
  /** How far back latency samples count (ms), in 3 slices. Default 30000 (Finagle: 3 buckets of 10 s). */
  windowMs: number;
}

/** The options and their defaults, declared once. */
const backupRequestOptions = toggle<Readonly<BackupRequestOptions>>(
  object(
    {
      percentile: number({
        min: 0,
        exclusiveMin: true,
        max: 1,
        exclusiveMax: true,
        default: 0.99,
        expected: 'a number > 0 and < 1 (0.99: a backup after the 99th percentile, about 1 % extra load)',
      }),
      minDelayMs: duration({ min: 0, default: 1 }),
      maxDelayMs: duration({ min: 0, exclusiveMin: true, infinity: true, default: Infinity }),
      minSamples: number({ min: 1, integer: true, default: 10 }),
      windowMs: duration({ min: 30, default: 30_000 }),
    },
    {
      check(o, path) {
        if (o.maxDelayMs < o.minDelayMs)
          throw new ConfigError(`${path}.maxDelayMs`, o.maxDelayMs, `at least minDelayMs (${o.minDelayMs})`);
      },
    },
  ),
  { whenAbsent: 'off', expected: 'true, false, or an object of backup request options' },
);

/**
 * The defaults. The percentile is Finagle's (1 % extra load). The 30 s window in 3 slices is the one Finagle
 * found to track latency well. Ten samples are the floor below which a percentile is a guess; with fewer
 * samples than `1 / (1 - percentile)` the estimate is the largest sample, which errs on the side of fewer
 * backups.
 *
 * @example
 * ```ts
 * const late = { ...BACKUP_REQUEST_DEFAULTS, percentile: 0.95 };
 * ```
 */
export const BACKUP_REQUEST_DEFAULTS: Readonly<BackupRequestOptions> = backupRequestOptions.defaults;

/**
 * Input form of `services.<name>.backupRequests`: `false` (the default: off), `true` (the defaults) or some of
 * the options.
 *
 * @example
 * ```ts
 * const input: BackupRequestOptionsInput = { percentile: 0.95, maxDelayMs: 500 };
 * ```
 */
export type BackupRequestOptionsInput = boolean | Partial<BackupRequestOptions>;

/**
 * The resolved backup request settings of a service (`false`: off, the default).
 *
 * @example
 * ```ts
 * const params = Params.empty.with(BackupRequestParam, BACKUP_REQUEST_DEFAULTS);
 * ```
 */
export const BackupRequestParam = defineParam<Readonly<BackupRequestOptions> | false>(
  'backupRequests',
  false,
);

/**
 * Validates `backupRequests`; throws a {@link ConfigError} naming the field
 * (`services.users.backupRequests.percentile`).
 *
 * @example
 * ```ts
 * resolveBackupRequestOptions({ percentile: 0.95 }, 'services.users.backupRequests');
 * ```
 */
export function resolveBackupRequestOptions(
  input: unknown,
  path: string,
): Readonly<BackupRequestOptions> | false {
  return backupRequestOptions.resolve(input, path);
}
