/**
 * The options of failure accrual (accrual.ts), declared once with their defaults through core/validate, in a
 * file of their own (with what the filter is built from) so that the filter's file stays under the size the
 * architecture ratchet holds. The
 * defaults are Finagle's `FailureAccrualFactory` and `FailureAccrualPolicy` ones (see accrual.ts).
 */
import { ConfigError } from '../core/errors.js';
import { defineParam, type Param } from '../core/params.js';
import { number, object, toggle } from '../core/validate.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { Rng } from '../core/rng.js';
import type { Classifier } from './classifier.js';

/**
 * Options of failure accrual, as a service's config gives them. Every field is optional; a missing one takes
 * its default from {@link FAILURE_ACCRUAL_DEFAULTS}.
 *
 * @example
 * ```ts
 * const accrual: FailureAccrualOptions = { consecutiveFailures: 3, backoffBaseMs: 1_000 };
 * ```
 */
export interface FailureAccrualOptions {
  /** Mark busy after this many failures in a row. Default 5 (Finagle). An integer >= 0; 0 turns this trigger off. */
  consecutiveFailures?: number;
  /**
   * Mark busy when the success rate over the window falls below this fraction. Default 0.8 (Finagle's
   * `successRateWithinDuration`). In [0, 1]; 0 turns this trigger off.
   */
  successRate?: number;
  /** The success-rate window (ms). Default 30000. A number > 0. */
  successRateWindowMs?: number;
  /** The success-rate trigger needs at least this many counted outcomes in the window. Default 5. An integer >= 1. */
  minRequests?: number;
  /** The first busy period's upper bound (ms); it doubles each time the endpoint is marked busy again. Default 5000. */
  backoffBaseMs?: number;
  /** The cap on the busy period's upper bound (ms). Default 300000. >= `backoffBaseMs`. */
  backoffMaxMs?: number;
  /** Successful probes needed to return to `ready` (sent one at a time). Default 1 (Finagle). An integer >= 1. */
  probeSuccesses?: number;
}

/**
 * Failure accrual options after validation: every field present.
 *
 * @example
 * ```ts
 * const o: ResolvedFailureAccrualOptions = resolveFailureAccrualOptions({ consecutiveFailures: 3 }) as ResolvedFailureAccrualOptions;
 * ```
 */
export type ResolvedFailureAccrualOptions = Readonly<Required<FailureAccrualOptions>>;

/** The options and their defaults, declared once. */
const failureAccrualOptions = toggle<ResolvedFailureAccrualOptions>(
  object(
    {
      consecutiveFailures: number({ min: 0, integer: true, default: 5 }),
      successRate: number({ min: 0, max: 1, default: 0.8 }),
      successRateWindowMs: number({ min: 0, exclusiveMin: true, default: 30_000 }),
      minRequests: number({ min: 1, integer: true, default: 5 }),
      backoffBaseMs: number({ min: 0, exclusiveMin: true, default: 5_000 }),
      backoffMaxMs: number({ min: 0, exclusiveMin: true, default: 300_000 }),
      probeSuccesses: number({ min: 1, integer: true, default: 1 }),
    },
    {
      check(o, path) {
        if (o.backoffMaxMs < o.backoffBaseMs)
          throw new ConfigError(
            `${path}.backoffMaxMs`,
            o.backoffMaxMs,
            `a number >= backoffBaseMs (${o.backoffBaseMs})`,
          );
      },
    },
  ),
  { whenAbsent: 'on', expected: 'an options object, true or false', path: 'failureAccrual' },
);

/**
 * The reference defaults (Finagle's `FailureAccrualFactory` and `FailureAccrualPolicy`, Linkerd 1's).
 *
 * @example
 * ```ts
 * FAILURE_ACCRUAL_DEFAULTS.consecutiveFailures; // 5
 * ```
 */
export const FAILURE_ACCRUAL_DEFAULTS: ResolvedFailureAccrualOptions = failureAccrualOptions.defaults;

/**
 * Validates failure accrual options and fills in the defaults. `undefined` and `true` give the defaults;
 * `false` turns failure accrual off (the result is `false`). A bad value throws a {@link ConfigError} whose
 * path is `path.field` (e.g. `services.users.failureAccrual.successRate`); unknown keys are errors too.
 *
 * @example
 * ```ts
 * resolveFailureAccrualOptions({ consecutiveFailures: 3 }, 'services.users.failureAccrual');
 * // { consecutiveFailures: 3, successRate: 0.8, successRateWindowMs: 30000, ... }
 * resolveFailureAccrualOptions(false, 'services.users.failureAccrual'); // false
 * resolveFailureAccrualOptions({ successRate: 2 }, 'services.users.failureAccrual');
 * // throws ConfigError: Invalid option services.users.failureAccrual.successRate: expected a finite number >= 0 and <= 1, got 2
 * ```
 */
export function resolveFailureAccrualOptions(
  input: FailureAccrualOptions | boolean | undefined,
  path = 'failureAccrual',
): ResolvedFailureAccrualOptions | false {
  return failureAccrualOptions.resolve(input, path);
}

/**
 * The failure accrual options of a service: resolved options, or `false` to leave the module out of that
 * service's endpoint stacks. Defaults to {@link FAILURE_ACCRUAL_DEFAULTS}.
 *
 * @example
 * ```ts
 * const params = Params.empty.with(
 *   FailureAccrualParam,
 *   resolveFailureAccrualOptions({ consecutiveFailures: 3 }, 'services.users.failureAccrual'),
 * );
 * ```
 */
export const FailureAccrualParam: Param<ResolvedFailureAccrualOptions | false> = defineParam<
  ResolvedFailureAccrualOptions | false
>('failureAccrual', FAILURE_ACCRUAL_DEFAULTS);

/**
 * What `FailureAccrualFilter` (accrual.ts) needs besides the service it wraps (the stack module fills it from its
 * `ModuleEnv`).
 *
 * @example
 * ```ts
 * const env: FailureAccrualEnv = {
 *   options: FAILURE_ACCRUAL_DEFAULTS, classifier: defaultClassifier,
 *   clock: new FakeClock(), rng: seededRng(1), logger: silentLogger, service: 'users', endpoint: '10.0.0.1:80',
 * };
 * ```
 */
export interface FailureAccrualEnv {
  readonly options: ResolvedFailureAccrualOptions;
  readonly classifier: Classifier;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly logger: Logger;
  readonly service: string;
  readonly endpoint?: string | undefined;
}
