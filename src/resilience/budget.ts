/**
 * The retry budget (Finagle's `RetryBudget`, tower's `TpsBudget`): retries may be at most a percentage of
 * recent requests, plus a small floor per second so a quiet service can still retry. Without it, retries
 * multiply load exactly when a backend is failing (a retry storm). Every request deposits; every retry
 * withdraws, counted when the retry is scheduled, not when it is sent (envoy#30205), so concurrent failures
 * cannot all pass the check before any of them is counted.
 *
 * Deposits and withdrawals are kept in a ring of time buckets covering `ttlMs`, so the window slides in O(1)
 * per operation with no per-request allocation.
 *
 * A logical service's budget is a typed stack param ({@link RetryBudgetParam}), as Finagle shares its
 * `Retries.Budget` param between the retry and requeue filters: the modules that use it read the same one.
 */
import type { Clock } from '../core/clock.js';
import { defineParam } from '../core/params.js';
import { Filter, type Service } from '../core/service.js';

/** Budget settings (Finagle's defaults). */
export interface RetryBudgetOptions {
  /** How long a deposit counts (ms). Default 10000. */
  ttlMs: number;
  /** Retries always allowed per second, whatever the request volume. Default 10. */
  minRetriesPerSec: number;
  /** Retries allowed as a fraction of requests in the window. Default 0.2. */
  percentCanRetry: number;
}

/** Finagle's and tower's defaults. */
export const RETRY_BUDGET_DEFAULTS: Readonly<RetryBudgetOptions> = Object.freeze({
  ttlMs: 10_000,
  minRetriesPerSec: 10,
  percentCanRetry: 0.2,
});

const BUCKETS = 10;

/**
 * A sliding-window retry budget.
 *
 * @example
 * ```ts
 * const budget = new RetryBudget(RETRY_BUDGET_DEFAULTS, clock);
 * budget.deposit();
 * if (budget.tryWithdraw()) scheduleRetry();
 * ```
 */
export class RetryBudget {
  private readonly deposits = new Float64Array(BUCKETS);
  private readonly withdrawals = new Float64Array(BUCKETS);
  private readonly bucketMs: number;
  private readonly reserve: number;
  private current = 0;
  private currentStart: number;
  private depositSum = 0;
  private withdrawalSum = 0;

  constructor(
    private readonly options: Readonly<RetryBudgetOptions>,
    private readonly clock: Clock,
  ) {
    this.bucketMs = options.ttlMs / BUCKETS;
    this.reserve = (options.minRetriesPerSec * options.ttlMs) / 1000;
    this.currentStart = clock.now();
  }

  private advance(now: number = this.clock.now()): void {
    let steps = Math.floor((now - this.currentStart) / this.bucketMs);
    if (steps <= 0) return;
    if (steps > BUCKETS) steps = BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.current = (this.current + 1) % BUCKETS;
      this.depositSum -= this.deposits[this.current]!;
      this.withdrawalSum -= this.withdrawals[this.current]!;
      this.deposits[this.current] = 0;
      this.withdrawals[this.current] = 0;
    }
    this.currentStart = now - ((now - this.currentStart) % this.bucketMs);
  }

  /**
   * Records one request, at `now` (the mesh clock; a caller that already read it, such as the retry filter
   * with the call's start time, passes it).
   */
  deposit(now?: number): void {
    this.advance(now);
    this.deposits[this.current]!++;
    this.depositSum++;
  }

  /** Takes one retry if the budget allows it; returns whether it did. */
  tryWithdraw(): boolean {
    this.advance();
    if (this.withdrawalSum + 1 > this.reserve + this.options.percentCanRetry * this.depositSum) return false;
    this.withdrawals[this.current]!++;
    this.withdrawalSum++;
    return true;
  }

  /** Retries the budget would allow right now (for snapshots). */
  get balance(): number {
    this.advance();
    return Math.max(
      0,
      Math.floor(this.reserve + this.options.percentCanRetry * this.depositSum - this.withdrawalSum),
    );
  }
}

/**
 * The retry budget of a logical service (Finagle's `Retries.Budget` param). The mesh sets one per logical
 * service when it builds the service's stack (with the service's `retries.budget` options, or the defaults
 * when retries are off): the `retries` module deposits into it and spends it, `backup-requests` spends it,
 * and a module of one's own can read it to spend the same budget. Unset (a stack built by hand), each of
 * those modules makes a budget of its own.
 *
 * @example
 * ```ts
 * make: (next, env) => new MySpender(next, env.params.get(RetryBudgetParam) ?? new RetryBudget(RETRY_BUDGET_DEFAULTS, env.clock)),
 * ```
 */
export const RetryBudgetParam = defineParam<RetryBudget | undefined>('retryBudget', undefined);

/**
 * A filter that spends a logical service's retry budget without owning it (backup requests). There is one
 * budget per logical service: the retry filter owns it, deposits once per call, and hands it to every spender
 * below it in the same logical stack ({@link shareRetryBudget}); a spender that is never handed one keeps its
 * own and deposits itself.
 *
 * @example
 * ```ts
 * class MySpender extends Filter implements RetryBudgetSpender {
 *   private budget = new RetryBudget(RETRY_BUDGET_DEFAULTS, clock);
 *   useRetryBudget(budget: RetryBudget): void { this.budget = budget; }
 *   call(req: MeshRequest, ctx: CallContext) { return this.next.call(req, ctx); }
 * }
 * ```
 */
export interface RetryBudgetSpender {
  /** From now on, withdraw from `budget` (whose owner deposits), instead of a budget of one's own. */
  useRetryBudget(budget: RetryBudget): void;
}

function isSpender(s: unknown): s is RetryBudgetSpender {
  return typeof (s as Partial<RetryBudgetSpender>).useRetryBudget === 'function';
}

/**
 * Hands `budget` to every {@link RetryBudgetSpender} in the chain of filters starting at `service`. The walk
 * stops at the first service that is not a filter (the router, the leaf of the logical stack), so it never
 * reaches another level's stack.
 *
 * @example
 * ```ts
 * // In the retry filter's constructor, `next` is the rest of the logical stack below it.
 * shareRetryBudget(next, this.budget);
 * ```
 */
export function shareRetryBudget(service: Service, budget: RetryBudget): void {
  let s: unknown = service;
  for (let depth = 0; s instanceof Filter && depth < 64; depth++) {
    if (isSpender(s)) s.useRetryBudget(budget);
    s = (s as unknown as { next: unknown }).next;
  }
}
