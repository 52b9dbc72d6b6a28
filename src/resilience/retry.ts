/**
 * Retries: above the router and the balancer, so each attempt routes and picks again (and prefers endpoints
 * this call has not tried yet), bounded by a retry budget per logical service, spaced by jittered backoff or
 * the server's Retry-After, and only when sending the request again is safe.
 *
 * What may be retried (DESIGN.md; Finagle's RequeueFilter and Go's net/http rules):
 * - a request of which it is certain that nothing was written or processed, whatever its method: connection
 *   refused / connect failure, no endpoint available, an HTTP/2 stream the server refused (REFUSED_STREAM) or
 *   did not take before its GOAWAY;
 * - otherwise only idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE, an `Idempotency-Key` header,
 *   or a call marked idempotent with `callOptions({ idempotent: true })`) whose attempt the classifier calls
 *   retryable (502/503/504, resets, back-pressure). The idle-close race on a reused socket is one of these:
 *   for an idempotent request it is resent once, at once, free of budget and not held against the endpoint;
 *   any other request gets the error (`retryable: false`), since the server may have read it;
 * - an open circuit only when the router has another destination that a new attempt could reach;
 * - and in every case only with a body that can be sent again byte for byte (see body.ts).
 * Per-attempt timeouts are retried only with `retryTimeouts: true` (Finagle: timeouts are not retried by
 * default — the slow request may still be running). `maxAttempts` is a ceiling; the budget rules.
 *
 * A discarded response's body is drained so its connection goes back to the pool.
 *
 * A Retry-After from one endpoint, which the balancer leaf took out of the draw until then while another
 * endpoint is ready (`ctx.attempt.retryAfterHeld`), delays only that endpoint: the retry goes to another one after
 * the usual backoff, instead of waiting, giving up past `retryAfterMaxMs` or failing past the deadline.
 */
import type { Clock } from '../core/clock.js';
import { Attempt } from '../core/attempt.js';
import type { CallContext } from '../core/context.js';
import { MeshError, type MeshErrorDetails } from '../core/errors.js';
import { boolean, number, object, toggle } from '../core/validate.js';
import type { Logger } from '../core/logger.js';
import { rawHeader, type MeshRequest, type MeshResponse } from '../core/message.js';
import { defineParam, type Params } from '../core/params.js';
import type { Rng } from '../core/rng.js';
import { InlineFilter, type Service } from '../core/service.js';
import type { StackModule } from '../core/stack.js';
import { BACKOFF_DEFAULTS, backoffDelay, parseRetryAfter, type BackoffOptions } from './backoff.js';
import { isStaticBody, ReplayableBody } from './body.js';
import {
  RETRY_BUDGET_DEFAULTS,
  RetryBudget,
  RetryBudgetParam,
  shareRetryBudget,
  type RetryBudgetOptions,
} from './budget.js';
import { ClassifierParam, classifyAttempt, type Classification, type Classifier } from './classifier.js';
import { errorType } from '../telemetry/attributes.js';
import { exposing, RetryBudgetSection } from '../telemetry/snapshot.js';

/** Retry settings of a service. */
export interface RetryOptions {
  /** Ceiling on attempts per call, the first included. Default 3. */
  maxAttempts: number;
  /** The retry budget. */
  budget: RetryBudgetOptions;
  /** Backoff between retries. */
  backoff: BackoffOptions;
  /** Longest Retry-After honoured (ms); a longer one ends the retries and returns the response. Default 10000. */
  retryAfterMaxMs: number;
  /** Retry attempts that hit the per-attempt timeout. Default false. */
  retryTimeouts: boolean;
  /** Largest streamed request body recorded for replay (bytes). Default 65536. */
  maxReplayBytes: number;
}

/** Input form: every field optional; `false` disables retries. */
export type RetryOptionsInput =
  | false
  | (Partial<Omit<RetryOptions, 'budget' | 'backoff'>> & {
      budget?: Partial<RetryBudgetOptions>;
      backoff?: Partial<BackoffOptions>;
    });

/** The retry options and their defaults, declared once (`true` or absent: the defaults; `false`: off). */
const retryOptions = toggle<Readonly<RetryOptions>>(
  object({
    maxAttempts: number({ min: 1, max: 100, integer: true, default: 3 }),
    budget: object({
      ttlMs: number({ min: 1, default: RETRY_BUDGET_DEFAULTS.ttlMs }),
      minRetriesPerSec: number({ min: 0, default: RETRY_BUDGET_DEFAULTS.minRetriesPerSec }),
      percentCanRetry: number({ min: 0, max: 1000, default: RETRY_BUDGET_DEFAULTS.percentCanRetry }),
    }),
    backoff: object({
      baseMs: number({ min: 0, default: BACKOFF_DEFAULTS.baseMs }),
      maxMs: number({ min: 0, default: BACKOFF_DEFAULTS.maxMs }),
    }),
    retryAfterMaxMs: number({ min: 0, default: 10_000 }),
    retryTimeouts: boolean({ default: false }),
    maxReplayBytes: number({ min: 0, integer: true, default: 64 * 1024 }),
  }),
  { whenAbsent: 'on', expected: 'an object of retry options, or false' },
);

/** The defaults. */
export const RETRY_DEFAULTS: Readonly<RetryOptions> = retryOptions.defaults;

/** The resolved retry settings of a service (`false`: retries off). */
export const RetryParam = defineParam<Readonly<RetryOptions> | false>('retries', RETRY_DEFAULTS);

/**
 * Validates retry options; throws a {@link ConfigError} naming the field.
 *
 * @example
 * ```ts
 * resolveRetryOptions({ maxAttempts: 2 }, 'services.users.retries');
 * ```
 */
export function resolveRetryOptions(input: unknown, path: string): Readonly<RetryOptions> | false {
  return retryOptions.resolve(input, path);
}

/**
 * The server's Retry-After is longer than the time left before the call's deadline: waiting cannot help, so
 * the call fails now.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof RetryAfterExceedsDeadlineError) console.log(e.retryAfterMs, e.remainingMs); }
 * ```
 */
export class RetryAfterExceedsDeadlineError extends MeshError {
  readonly retryAfterMs: number;
  readonly remainingMs: number;
  readonly statusCode: number;
  constructor(statusCode: number, retryAfterMs: number, remainingMs: number, details: MeshErrorDetails) {
    super(
      'MESH_RETRY_AFTER_EXCEEDS_DEADLINE',
      `Service "${details.service}" answered ${statusCode} with Retry-After ${Math.round(retryAfterMs)} ms, longer than the ${Math.max(0, Math.round(remainingMs))} ms left before the deadline`,
      { ...details, phase: 'headers', retryable: false },
    );
    this.retryAfterMs = retryAfterMs;
    this.remainingMs = remainingMs;
    this.statusCode = statusCode;
  }
}

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * A request is idempotent by method, or when it carries an `Idempotency-Key` header (IETF httpapi
 * draft-ietf-httpapi-idempotency-key-header: the server deduplicates by key), unless the caller said otherwise
 * (`callOptions({ idempotent })`, which wins both ways). Retries and backup requests both ask it.
 *
 * @example
 * ```ts
 * if (isIdempotent(req, ctx)) sendAgain(req);
 * ```
 */
export function isIdempotent(req: MeshRequest, ctx: CallContext): boolean {
  return (
    ctx.idempotent ?? (IDEMPOTENT_METHODS.has(req.method) || req.headers['idempotency-key'] !== undefined)
  );
}

/**
 * Errors after which it is certain that none of the request was written or processed (Go's net/http rule):
 * the connection was never made, no endpoint or destination took the call, or an HTTP/2 server said it did
 * not process the stream (REFUSED_STREAM, or above its GOAWAY's last stream id). The idle-close race is not
 * one of them: the server may have read the request before it closed the connection.
 */
function notProcessed(err: unknown): boolean {
  if (!(err instanceof MeshError)) return false;
  if (err.code === 'MESH_TRANSPORT')
    return err.phase === 'connect' || (err as { unprocessed?: boolean }).unprocessed === true;
  return err.code === 'MESH_NO_HEALTHY_ENDPOINTS' || err.code === 'MESH_CIRCUIT_OPEN';
}

/**
 * An open circuit refused the call and the router has no other destination a new attempt could reach (the
 * route does not split; its fallbacks were already tried in the same attempt): a retry would meet the same
 * open breaker after a backoff, spending budget and the caller's time. Fail fast instead (DESIGN.md: open
 * breakers are not retried against the same destination).
 */
function refusedForGood(err: unknown, ctx: CallContext): boolean {
  return !ctx.attempt.rerouteable && err instanceof MeshError && err.code === 'MESH_CIRCUIT_OPEN';
}

/**
 * Consumes and discards a response body so its connection returns to the pool (a retried response, a backup
 * race's loser).
 *
 * @example
 * ```ts
 * if (res.statusCode === 503) drain(res);
 * ```
 */
export function drain(res: MeshResponse): void {
  const body = res.body as MeshResponse['body'] & { dump?: (o?: { limit?: number }) => Promise<void> };
  if (body.destroyed || body.readableEnded) return;
  if (typeof body.dump === 'function') body.dump({ limit: 128 * 1024 }).catch(() => {});
  else {
    body.on('error', () => {});
    body.resume();
  }
}

/** Counters a retry filter keeps (for snapshots and telemetry). */
export interface RetryStats {
  calls: number;
  retries: number;
  budgetExhausted: number;
}

/**
 * The retry filter (one per logical service; it owns that service's budget, deposits into it once per call,
 * and shares it with the backup-request filter below it, so retries and backups together stay within it).
 *
 * @example
 * ```ts
 * new RetryFilter(next, RETRY_DEFAULTS, defaultClassifier, clock, rng, logger);
 * ```
 */
export class RetryFilter extends InlineFilter {
  readonly budget: RetryBudget;
  readonly stats: RetryStats = { calls: 0, retries: 0, budgetExhausted: 0 };

  constructor(
    next: Service,
    private readonly options: Readonly<RetryOptions>,
    private readonly classify: Classifier,
    private readonly clock: Clock,
    private readonly rng: Rng,
    private readonly logger: Logger,
    /** The logical service's budget ({@link RetryBudgetParam}); by default one of its own, with `options.budget`. */
    budget: RetryBudget = new RetryBudget(options.budget, clock),
  ) {
    super(next);
    this.budget = budget;
    // One budget per logical service, and this filter deposits into it once per call: spenders below (backup
    // requests) spend it and deposit nothing themselves.
    shareRetryBudget(next, this.budget);
  }

  enter(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    this.budget.deposit(ctx.startedAt);
    this.stats.calls++;
    if (!isStaticBody(req.body))
      return this.attempts(req, ctx, new ReplayableBody(req.body, this.options.maxReplayBytes));
    // The first attempt of a call whose body needs no recording goes on without an async frame (most calls
    // end with it), in the record the entry point made for it; `exit` or `fail` decides about it.
    return undefined;
  }

  exit(res: MeshResponse, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse> {
    const cls = classifyAttempt(this.classify, req, ctx, res, undefined);
    if (!cls.retryable || ctx.signal?.aborted) return res;
    return this.attempts(req, ctx, new ReplayableBody(req.body, this.options.maxReplayBytes), { res, cls });
  }

  fail(error: unknown, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse> {
    const cls = classifyAttempt(this.classify, req, ctx, undefined, error);
    if (!cls.retryable || ctx.signal?.aborted || refusedForGood(error, ctx))
      return this.finish(undefined, error, 1);
    return this.attempts(req, ctx, new ReplayableBody(req.body, this.options.maxReplayBytes), {
      error,
      cls,
    });
  }

  /**
   * The attempts of one call, from the first (or, when `first` is given, from the decision about the first
   * attempt, already made and classified).
   */
  private async attempts(
    req: MeshRequest,
    ctx: CallContext,
    body: ReplayableBody,
    first?: { res?: MeshResponse; error?: unknown; cls: Classification },
  ): Promise<MeshResponse> {
    const opts = this.options;
    let idleRetried = false;
    let retries = 0;
    for (let attempt = 1; ; attempt++) {
      let res: MeshResponse | undefined;
      let error: unknown;
      let cls: Classification;
      if (attempt === 1 && first !== undefined) {
        // Sent by `call` with the original body (a static one: the same bytes on every attempt).
        res = first.res;
        error = first.error;
        cls = first.cls;
        body.forAttempt();
      } else {
        // A fresh record for each attempt: what the levels below learn comes back in it.
        if (attempt > 1) ctx.attempt = new Attempt(attempt);
        req.body = body.forAttempt();
        try {
          res = await this.next.call(req, ctx);
        } catch (e) {
          error = e;
        }
        cls = classifyAttempt(this.classify, req, ctx, res, error);
      }
      const result = ctx.attempt;
      const endpoint = result.endpoint;
      if (!cls.retryable || ctx.signal?.aborted || refusedForGood(error, ctx))
        return this.finish(res, error, attempt);

      // May this request be sent again?
      const idempotent = isIdempotent(req, ctx);
      // The idle-close race: resent at once and free of budget, for idempotent requests only.
      const free =
        idempotent &&
        error !== undefined &&
        (error as { idleClose?: boolean }).idleClose === true &&
        !idleRetried;
      const safe = notProcessed(error) || idempotent;
      const timeout = (error as { code?: string } | undefined)?.code === 'MESH_ATTEMPT_TIMEOUT';
      if (!safe || !body.replayable || (timeout && !opts.retryTimeouts))
        return this.finish(res, error, attempt);
      if (!free && attempt >= opts.maxAttempts) return this.finish(res, error, attempt);

      let delay = 0;
      // The balancer took the endpoint that sent Retry-After out of the draw and another one is ready: the
      // retry goes there after the usual backoff instead of waiting (or failing for want of time).
      if (res !== undefined && cls.backpressure && !result.retryAfterHeld) {
        const ra = parseRetryAfter(rawHeader(res.rawHeaders, 'retry-after'), this.clock.wallNow());
        if (ra !== undefined) {
          const remaining = ctx.deadline - this.clock.now();
          if (ra > remaining) {
            drain(res);
            throw new RetryAfterExceedsDeadlineError(res.statusCode, ra, remaining, {
              service: ctx.service,
              endpoint,
              attempts: attempt,
            });
          }
          if (ra > opts.retryAfterMaxMs) return this.finish(res, error, attempt);
          delay = ra;
        }
      }
      if (free) {
        idleRetried = true; // once, at once, free of budget: the server never saw it
      } else {
        // Counted when scheduled, not when sent (envoy#30205).
        if (!this.budget.tryWithdraw()) {
          this.stats.budgetExhausted++;
          ctx.budgetExhausted = true; // for telemetry (the logical span and metrics)
          ctx.budgetLeft = 0;
          this.logger.debug({ service: ctx.service, attempt }, 'retry budget exhausted');
          return this.finish(res, error, attempt);
        }
        retries++;
        ctx.budgetLeft = this.budget.balance;
        if (delay === 0) delay = backoffDelay(opts.backoff, retries, this.rng);
      }
      // Only a call that goes round again needs the set (the next pick prefers endpoints not in it).
      if (endpoint !== undefined) (ctx.tried ??= new Set()).add(endpoint);
      this.stats.retries++;
      // Why, for telemetry: the status retried, or the error type (allocated only when a call is retried).
      (ctx.retryReasons ??= []).push(
        free ? 'idle_close' : res !== undefined ? String(res.statusCode) : errorType(error),
      );
      if (res !== undefined) drain(res);
      if (delay > 0) await this.sleep(delay, ctx);
    }
  }

  private finish(res: MeshResponse | undefined, error: unknown, attempts: number): MeshResponse {
    if (res !== undefined) return res;
    if (error instanceof MeshError && error.attempts === undefined) error.attempts = attempts;
    throw error;
  }

  private sleep(ms: number, ctx: CallContext): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const signal = ctx.signal;
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        this.clock.clearTimeout(timer);
        reject(signal!.reason);
      };
      const timer = this.clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * The `retries` stack module (logical level, below `deadline`, above the router).
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: [...], retries: { maxAttempts: 2 } } } });
 * ```
 */
export const retryModule: StackModule = {
  role: 'retries',
  description:
    'Budgeted retries with backoff and Retry-After; each attempt routes and picks again; body-safe',
  params: [RetryParam, RetryBudgetParam, ClassifierParam],
  make: (next, env) => {
    const opts = env.params.get(RetryParam);
    if (opts === false) return next;
    const filter = new RetryFilter(
      next,
      opts,
      env.params.get(ClassifierParam),
      env.clock,
      env.rng,
      env.logger,
      env.params.get(RetryBudgetParam),
    );
    return exposing(env, RetryBudgetSection, filter, (f) => f.budget.balance);
  },
};

/**
 * `params` with a {@link RetryBudgetParam} (unless it has one): a new budget with the service's
 * `retries.budget` options, or the defaults when retries are off. The mesh calls it once per logical service,
 * so every module of that service's stacks reads the same budget.
 *
 * @example
 * ```ts
 * const env = { ...base, params: withRetryBudget(config.params, clock) };
 * ```
 */
export function withRetryBudget(params: Params, clock: Clock): Params {
  if (params.get(RetryBudgetParam) !== undefined) return params;
  const retries = params.get(RetryParam);
  const options = retries === false ? RETRY_BUDGET_DEFAULTS : retries.budget;
  return params.with(RetryBudgetParam, new RetryBudget(options, clock));
}
