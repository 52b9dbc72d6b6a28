/**
 * The default stacks. Order: the first module listed sees the request first (tower's order). See
 * docs/architecture.md for the full picture and the reasons.
 *
 *   logical   deadline -> retries -> [router leaf]
 *   concrete  [balancer leaf]
 *   endpoint  attempt-timeout -> [undici pool leaf]
 *
 * Later modules (retries, breaker, failure accrual, per-attempt timeout, telemetry) slot in by role; each
 * entry below says what it must sit above or below.
 */
import { Stack, type Stacks } from '../core/stack.js';
import { attemptTimeoutModule } from '../resilience/attempt-timeout.js';
import { deadlineModule } from '../resilience/deadline.js';
import { retryModule } from '../resilience/retry.js';

/**
 * Builds the default stacks.
 *
 * @example
 * ```ts
 * defaultStacks().logical.roles(); // ['deadline', 'retries']
 * ```
 */
export function defaultStacks(): Stacks {
  return {
    logical: Stack.of('logical', [
      // deadline: first of all, so every attempt, every backoff and the response body run inside one budget,
      // and an expired call fails before touching routing or the network.
      deadlineModule,
      // retries: below the deadline (every attempt and backoff inside one budget) and above the router and the
      // balancer, so each attempt routes and picks again, preferring endpoints not yet tried.
      retryModule,
    ]),
    concrete: Stack.of('concrete', []),
    endpoint: Stack.of('endpoint', [
      // attempt-timeout: just above the pool, so it times exactly one attempt on one endpoint until headers;
      // below failure accrual, so a timed-out attempt counts against the endpoint that was slow.
      attemptTimeoutModule,
    ]),
  };
}
