/**
 * The default stacks. Order: the first module listed sees the request first (tower's order). See
 * docs/architecture.md for the full picture and the reasons.
 *
 *   logical   deadline -> logical-span -> retries -> backup-requests -> [router leaf]
 *   concrete  admission -> circuit-breaker -> [balancer leaf]
 *   endpoint  failure-accrual -> attempt-timeout -> attempt-span -> [undici pool leaf]
 *
 * Later modules (retries, breaker, failure accrual, per-attempt timeout, telemetry) slot in by role; each
 * entry below says what it must sit above or below.
 */
import { Stack, type Stacks } from '../core/stack.js';
import { failureAccrualModule } from '../resilience/accrual.js';
import { admissionModule } from '../resilience/admission.js';
import { backupRequestsModule } from '../resilience/backup.js';
import { attemptTimeoutModule } from '../resilience/attempt-timeout.js';
import { circuitBreakerModule } from '../resilience/breaker.js';
import { deadlineModule } from '../resilience/deadline.js';
import { retryModule } from '../resilience/retry.js';
import { attemptSpanModule, logicalSpanModule } from '../telemetry/spans.js';

/**
 * Builds the default stacks.
 *
 * @example
 * ```ts
 * defaultStacks().logical.roles(); // ['deadline', 'logical-span', 'retries', 'backup-requests']
 * ```
 */
export function defaultStacks(): Stacks {
  return {
    logical: Stack.of('logical', [
      // deadline: first of all, so every attempt, every backoff and the response body run inside one budget,
      // and an expired call fails before touching routing or the network.
      deadlineModule,
      // logical-span: below the deadline (the span covers the time the call was allowed; an already expired call
      // never went anywhere) and above retries and backup requests, so one span is the parent of every attempt,
      // sees the outcome after retries, and stays open until the body ends. Costs one global read with no SDK.
      logicalSpanModule,
      // retries: below the deadline (every attempt and backoff inside one budget) and above the router and the
      // balancer, so each attempt routes and picks again, preferring endpoints not yet tried.
      retryModule,
      // backup-requests: directly below retries, so each attempt may get one backup and a lost race comes back
      // to the retry filter as one outcome (never retried twice), and so it spends the retry filter's budget
      // (one per logical service); above the router and the balancer, so the backup routes and picks again
      // and lands on another endpoint; inside the deadline, which covers both attempts and the winner's body.
      backupRequestsModule,
    ]),
    concrete: Stack.of('concrete', [
      // admission: first, so a call past the bound is refused at once and never counted as the destination
      // failing by the breaker below.
      admissionModule,
      // circuit-breaker: one per destination, below the router and the retries (an open breaker fails fast and
      // makes a retry route again) and above the balancer (it judges the destination, not one endpoint).
      circuitBreakerModule,
    ]),
    endpoint: Stack.of('endpoint', [
      // failure-accrual: first of the endpoint stack, so it sees every attempt's outcome, per-attempt timeouts
      // included, and takes its probe slot in the same turn as the balancer's pick.
      failureAccrualModule,
      // attempt-timeout: just above the pool, so it times exactly one attempt on one endpoint until headers;
      // below failure accrual, so a timed-out attempt counts against the endpoint that was slow.
      attemptTimeoutModule,
      // attempt-span: last, just above the pool, so its CLIENT span times exactly one attempt on the wire (a
      // per-attempt timeout above ends it with error.type) and the trace context it injects goes into the
      // headers of the attempt actually sent.
      attemptSpanModule,
    ]),
  };
}
