/**
 * The default stacks. Order: the first module listed sees the request first (tower's order). See
 * docs/architecture.md for the full picture and the reasons.
 *
 *   logical   deadline -> [router leaf]
 *   concrete  [balancer leaf]
 *   endpoint  [undici pool leaf]
 *
 * Later modules (retries, breaker, failure accrual, per-attempt timeout, telemetry) slot in by role; each
 * entry below says what it must sit above or below.
 */
import { Stack, type Stacks } from '../core/stack.js';
import { deadlineModule } from '../resilience/deadline.js';

/**
 * Builds the default stacks.
 *
 * @example
 * ```ts
 * defaultStacks().logical.roles(); // ['deadline']
 * ```
 */
export function defaultStacks(): Stacks {
  return {
    logical: Stack.of('logical', [
      // deadline: first of all, so every attempt, every backoff and the response body run inside one budget,
      // and an expired call fails before touching routing or the network.
      deadlineModule,
    ]),
    concrete: Stack.of('concrete', []),
    endpoint: Stack.of('endpoint', []),
  };
}
