/**
 * Backup requests (Finagle's `BackupRequestFilter`; Dean and Barroso, "The Tail at Scale", CACM 2013): when
 * an idempotent attempt has not answered by a latency percentile measured for its logical service, send ONE
 * more copy of it, which routes and picks again and so prefers another endpoint; the first answer wins, the
 * other attempt is cancelled and its body drained. A slow endpoint then costs a call the percentile plus
 * one fast answer instead of its whole latency, for a bounded amount of extra load.
 *
 * Placement: logical stack, directly below `retries` and above the router. Below retries, so each retry
 * attempt may get its backup and a failed race comes back to the retry filter as one outcome (no double
 * retry); above the router and the balancer, so the backup routes and picks again (with `ctx.tried` holding
 * the original's endpoint, the balancer prefers another one); inside the deadline, so both attempts and the
 * winner's body stay within the call's budget.
 *
 * Load is bounded twice: the percentile (a backup only for the slowest `1 - percentile` of attempts in
 * steady state) and the retry budget of the service, shared with the retry filter (one budget per logical
 * service, see budget.ts), so retries and backups together never exceed it.
 *
 * Two attempts in flight at once must share no mutable state: the lower layers write into the attempt's
 * record (`ctx.attempt`), and into `req.headers` (Host, `mesh-deadline-ms`, `traceparent`) and `req.body`.
 * So each attempt of a race gets its own shallow copy of the request with its own headers object and its
 * own body (byte-identical: a buffered body is shared, a stream is recorded as the original sends it and
 * replayed for the backup), and its own child context (`ctx.fork`) with its own attempt record and a
 * {@link ChildSignal} that follows the call's signal and can be aborted alone. After the race, the winner's
 * record goes up in the attempt this filter was handed, and the endpoints tried in the call's record.
 */
import { Attempt } from '../core/attempt.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { ChildSignal, type CallContext } from '../core/context.js';
import type { Logger } from '../core/logger.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { Filter, type Service } from '../core/service.js';
import type { StackModule } from '../core/stack.js';
import { BackupRequestParam, type BackupRequestOptions } from './backup-options.js';
import { ReplayableBody } from './body.js';
import { RETRY_BUDGET_DEFAULTS, RetryBudget, RetryBudgetParam, type RetryBudgetSpender } from './budget.js';
import { ClassifierParam, type Classifier } from './classifier.js';
import { drain, isIdempotent, RETRY_DEFAULTS, RetryParam } from './retry.js';
import { BackupRequestsSection, exposing } from '../telemetry/snapshot.js';

export {
  BACKUP_REQUEST_DEFAULTS,
  BackupRequestParam,
  resolveBackupRequestOptions,
  type BackupRequestOptions,
  type BackupRequestOptionsInput,
} from './backup-options.js';

// ---------------------------------------------------------------------------------------------------------
// The latency estimator

/** Smallest latency told apart (ms); anything at or below it counts as this. */
const MIN_MS = 0.01;
/** Bucket growth: each bucket's upper bound is 5 % above the previous one, so an estimate is within 5 %. */
const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);
/** Ten minutes: longer latencies share the last bucket. */
const MAX_MS = 600_000;
const BUCKETS = Math.ceil(Math.log(MAX_MS / MIN_MS) / LOG_GROWTH) + 1;
const UPPER = Float64Array.from({ length: BUCKETS }, (_, i) => MIN_MS * GROWTH ** i);

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const i = Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH - 1e-9);
  return i >= BUCKETS ? BUCKETS - 1 : i;
}

/**
 * Latency samples over a sliding window, as a log-bucketed histogram (buckets 5 % apart from 0.01 ms to
 * 10 min: about 370 counters) in a ring of slices, after Finagle's `WindowedPercentileHistogram`. Memory is
 * bounded whatever the rate: recording is O(1), a slice expires in O(buckets), and a percentile is one scan of
 * the running sum of the slices. Percentiles are nearest-rank and report the upper bound of their bucket, so
 * they are never below the true value and at most 5 % above it.
 *
 * @example
 * ```ts
 * const w = new LatencyWindow(30_000, clock);
 * w.record(12.5);
 * w.percentile(0.99); // 13.x (the bucket's upper bound); undefined while empty
 * ```
 */
export class LatencyWindow {
  private readonly slices: Uint32Array[];
  private readonly sum = new Uint32Array(BUCKETS);
  private readonly sliceMs: number;
  private current = 0;
  private currentStart: number;
  private total = 0;

  constructor(
    windowMs: number,
    private readonly clock: Clock,
    slices = 3,
  ) {
    this.slices = Array.from({ length: slices }, () => new Uint32Array(BUCKETS));
    this.sliceMs = windowMs / slices;
    this.currentStart = clock.now();
  }

  private advance(): void {
    const now = this.clock.now();
    let steps = Math.floor((now - this.currentStart) / this.sliceMs);
    if (steps <= 0) return;
    const n = this.slices.length;
    if (steps > n) steps = n;
    for (let s = 0; s < steps; s++) {
      this.current = (this.current + 1) % n;
      const old = this.slices[this.current]!;
      if (this.total > 0) {
        for (let i = 0; i < BUCKETS; i++) {
          const c = old[i]!;
          if (c !== 0) {
            this.sum[i]! -= c;
            this.total -= c;
          }
        }
      }
      old.fill(0);
    }
    this.currentStart = now - ((now - this.currentStart) % this.sliceMs);
  }

  /** Records one latency (ms). */
  record(ms: number): void {
    this.advance();
    const i = bucketOf(ms);
    this.slices[this.current]![i]!++;
    this.sum[i]!++;
    this.total++;
  }

  /** Samples in the window now. */
  get count(): number {
    this.advance();
    return this.total;
  }

  /** The `p` quantile (0 < p < 1) of the samples in the window, in ms; undefined when there are none. */
  percentile(p: number): number | undefined {
    this.advance();
    if (this.total === 0) return undefined;
    const rank = Math.max(1, Math.ceil(p * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.sum[i]!;
      if (seen >= rank) return UPPER[i]!;
    }
    return UPPER[BUCKETS - 1]!;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The filter

/** How often the delay is recomputed from the window (ms); Finagle refreshes every 3 s. */
const REFRESH_MS = 1_000;

/** Counters a backup request filter keeps (for snapshots and telemetry). */
export interface BackupStats {
  /** Backups sent. */
  sent: number;
  /** Backups whose answer was the one returned (they answered first, or the original failed). */
  won: number;
  /** Backups not sent because the retry budget was empty. */
  budgetExhausted: number;
}

/** What `mesh.snapshot()` shows of a service's backup requests. */
export interface BackupSnapshot extends BackupStats {
  /** The current delay after which a backup is sent (ms); null while the window has too few samples. */
  delayMs: number | null;
}

/** The reason a superseded attempt is aborted with: an `AbortError`, which classifiers ignore. */
function superseded(): DOMException {
  return new DOMException(
    'Superseded: the other attempt of this call (backup request) answered first',
    'AbortError',
  );
}

/** One attempt of a race. */
interface Leg {
  readonly req: MeshRequest;
  readonly ctx: CallContext;
  readonly signal: ChildSignal;
  readonly backup: boolean;
  settled: boolean;
  res: MeshResponse | undefined;
  error: unknown;
}

/** Copies a request for one attempt: its own headers object and its own body. */
function copyRequest(req: MeshRequest, body: MeshRequest['body']): MeshRequest {
  return { ...req, headers: { ...req.headers }, body };
}

/**
 * Sends one backup attempt when an idempotent attempt has not answered by the service's latency percentile.
 * One per logical service.
 *
 * @example
 * ```ts
 * const filter = new BackupRequestFilter(next, { ...BACKUP_REQUEST_DEFAULTS, percentile: 0.95 },
 *   defaultClassifier, clock, logger);
 * filter.snapshot(); // { sent, won, budgetExhausted, delayMs }
 * ```
 */
export class BackupRequestFilter extends Filter implements RetryBudgetSpender {
  readonly stats: BackupStats = { sent: 0, won: 0, budgetExhausted: 0 };
  private readonly window: LatencyWindow;
  private budget: RetryBudget;
  /** Whether this filter deposits (false once a retry filter above shares its budget and deposits itself). */
  private deposits = true;
  private delay: number | undefined = undefined;
  private computedAt = -Infinity;

  constructor(
    next: Service,
    private readonly options: Readonly<BackupRequestOptions>,
    private readonly classify: Classifier,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly maxReplayBytes: number = RETRY_DEFAULTS.maxReplayBytes,
    /** The logical service's budget ({@link RetryBudgetParam}); by default one of its own. */
    budget: RetryBudget = new RetryBudget(RETRY_BUDGET_DEFAULTS, clock),
  ) {
    super(next);
    this.window = new LatencyWindow(options.windowMs, clock);
    this.budget = budget;
  }

  /** Spend the retry filter's budget (one per logical service) instead of one of our own. */
  useRetryBudget(budget: RetryBudget): void {
    this.budget = budget;
    this.deposits = false;
  }

  /** The budget backups withdraw from: the retry filter's when there is one. */
  get retryBudget(): RetryBudget {
    return this.budget;
  }

  /** The current delay (ms) before a backup; null while the window has too few samples. */
  get delayMs(): number | null {
    return this.currentDelay(this.clock.now()) ?? null;
  }

  /** Counters and the current delay. */
  snapshot(): BackupSnapshot {
    return { ...this.stats, delayMs: this.delayMs };
  }

  private currentDelay(now: number): number | undefined {
    if (this.delay !== undefined && now - this.computedAt < REFRESH_MS) return this.delay;
    const o = this.options;
    this.computedAt = now;
    const p = this.window.count >= o.minSamples ? this.window.percentile(o.percentile) : undefined;
    this.delay = p === undefined ? undefined : Math.min(o.maxDelayMs, Math.max(o.minDelayMs, p));
    return this.delay;
  }

  /** Records an attempt's latency when it says something about the service's speed (as Finagle does). */
  private recordOutcome(
    req: MeshRequest,
    ctx: CallContext,
    res: MeshResponse | undefined,
    error: unknown,
    ms: number,
  ): void {
    if (res !== undefined) {
      // Fast failures would drag the percentile down, and with it the delay.
      if (this.classify({ req, ctx, res }).kind === 'success') this.window.record(ms);
    } else if ((error as { code?: string } | undefined)?.code === 'MESH_ATTEMPT_TIMEOUT') {
      this.window.record(ms); // slow, not broken
    }
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    if (this.deposits) this.budget.deposit();
    const now = this.clock.now();
    const delay = this.currentDelay(now);
    if (
      delay === undefined ||
      ctx.deadline - now <= delay ||
      ctx.signal?.aborted === true ||
      !isIdempotent(req, ctx)
    )
      return this.measured(req, ctx, now);
    return this.race(req, ctx, delay, now);
  }

  /** No backup possible: one attempt on the call's own context, timed for the window. */
  private async measured(req: MeshRequest, ctx: CallContext, t0: number): Promise<MeshResponse> {
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      this.recordOutcome(req, ctx, undefined, err, this.clock.now() - t0);
      throw err;
    }
    this.recordOutcome(req, ctx, res, undefined, this.clock.now() - t0);
    return res;
  }

  private race(req: MeshRequest, parent: CallContext, delay: number, t0: number): Promise<MeshResponse> {
    const body = new ReplayableBody(req.body, this.maxReplayBytes);
    return new Promise<MeshResponse>((resolve, reject) => {
      let done = false;
      let timer: TimerHandle | undefined;
      let backup: Leg | undefined;

      const start = (leg: Leg): void => {
        let p: Promise<MeshResponse>;
        try {
          p = this.next.call(leg.req, leg.ctx);
        } catch (err) {
          p = Promise.reject(err);
        }
        p.then(
          (res) => settle(leg, res, undefined),
          (err: unknown) => settle(leg, undefined, err),
        );
      };

      const makeLeg = (isBackup: boolean, tried: Set<string> | undefined): Leg => {
        const signal = new ChildSignal(parent.signal);
        const ctx = parent.fork(signal, new Attempt(parent.attempt.number, isBackup));
        if (tried !== undefined) ctx.tried = tried;
        const leg: Leg = {
          req: copyRequest(req, body.forAttempt()),
          ctx,
          signal,
          backup: isBackup,
          settled: false,
          res: undefined,
          error: undefined,
        };
        return leg;
      };

      const original = makeLeg(false, undefined);

      const finish = (winner: Leg, loser: Leg | undefined): void => {
        done = true;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        const now = this.clock.now();
        if (loser !== undefined) {
          if (!loser.settled) {
            // The original lost the race while still running: its elapsed time is a lower bound of its
            // latency, recorded so that the slow tail stays in the window (Finagle records superseded ones).
            if (!loser.backup) this.window.record(now - t0);
            loser.signal.abort(superseded()); // its response, if one still comes, is drained in settle()
          } else {
            if (loser.res !== undefined) drain(loser.res);
            loser.signal.unlink();
          }
        }
        // What the layers above read: the answering attempt's record goes up in the attempt this filter was
        // handed, and every endpoint tried goes into the call's record.
        parent.attempt.learnFrom(winner.ctx.attempt);
        for (const leg of [original, backup]) {
          const ep = leg?.ctx.attempt.endpoint;
          if (ep !== undefined) (parent.tried ??= new Set()).add(ep);
        }
        if (winner.backup) {
          this.stats.won++;
          parent.backupWon = true;
        }
        const res = winner.res;
        if (res === undefined) {
          winner.signal.unlink();
          reject(winner.error);
          return;
        }
        // The winner's body still follows the call's signal (its deadline) until it closes.
        if (res.body.destroyed || res.body.readableEnded) winner.signal.unlink();
        else res.body.once('close', () => winner.signal.unlink());
        resolve(res);
      };

      const settle = (leg: Leg, res: MeshResponse | undefined, error: unknown): void => {
        leg.settled = true;
        leg.res = res;
        leg.error = error;
        // The router's word on whether another attempt could reach another destination (the retries ask).
        if (leg.ctx.attempt.rerouteable) parent.attempt.rerouteable = true;
        if (done) {
          // Lost, and answered anyway (or at the same time as the winner): free its connection.
          if (res !== undefined) drain(res);
          leg.signal.unlink();
          return;
        }
        if (!leg.backup) this.recordOutcome(leg.req, leg.ctx, res, error, this.clock.now() - t0);
        const failed =
          error !== undefined || this.classify({ req: leg.req, ctx: leg.ctx, res, error }).retryable;
        const other = leg === original ? backup : original;
        // An answer wins. A failure before the backup was sent goes up to the retry filter as it is; a failure
        // while the other attempt runs waits for it; when both fail, the later outcome is returned (Finagle).
        if (!failed || other === undefined || other.settled) finish(leg, other);
      };

      const fire = (): void => {
        timer = undefined;
        if (done || parent.signal?.aborted === true) return;
        if (!body.complete) return; // a streamed body still being sent (or over the replay limit)
        if (!this.budget.tryWithdraw()) {
          this.stats.budgetExhausted++;
          this.logger.debug({ service: parent.service }, 'backup request: retry budget exhausted');
          return;
        }
        this.stats.sent++;
        parent.backupsSent++;
        // Prefer another endpoint than the original's: the balancer skips tried endpoints when it can.
        const tried = new Set(parent.tried);
        const first = original.ctx.attempt.endpoint;
        if (first !== undefined) tried.add(first);
        backup = makeLeg(true, tried);
        start(backup);
      };

      start(original);
      if (!done) timer = this.clock.setTimeout(fire, delay);
    });
  }
}

/**
 * The `backup-requests` stack module (logical level, directly below `retries`, above the router). Off unless
 * a service sets `backupRequests`.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: [...], backupRequests: { percentile: 0.95 } } } });
 * ```
 */
export const backupRequestsModule: StackModule = {
  role: 'backup-requests',
  description:
    'One backup attempt (another endpoint) when an idempotent attempt is slower than a latency percentile; first answer wins; spends the retry budget',
  params: [BackupRequestParam, RetryParam, RetryBudgetParam, ClassifierParam],
  make: (next, env) => {
    const opts = env.params.get(BackupRequestParam);
    if (opts === false) return next;
    const retries = env.params.get(RetryParam);
    const maxReplay = retries === false ? RETRY_DEFAULTS.maxReplayBytes : retries.maxReplayBytes;
    const filter = new BackupRequestFilter(
      next,
      opts,
      env.params.get(ClassifierParam),
      env.clock,
      env.logger,
      maxReplay,
      env.params.get(RetryBudgetParam),
    );
    return exposing(env, BackupRequestsSection, filter, (f) => f.snapshot());
  },
};
