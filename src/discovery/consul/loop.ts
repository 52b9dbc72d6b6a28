/**
 * The small pure pieces of the Consul watch loop, kept apart from the I/O so they can be tested with a fake
 * clock and a seeded rng: a token bucket that spaces queries (Linkerd 1 hammered Consul with back-to-back
 * queries, linkerd/linkerd#1230), jittered exponential backoff after errors (linkerd/linkerd#2003), and
 * Consul's documented rules for the blocking-query index ("Blocking Queries: implementation details":
 * reset when it goes backwards, never use an index below 1 as a blocking cursor).
 *
 * `consul.watch()` from the `consul` package has none of the rate limit or jitter and ends for good on a
 * 400, which is why the loop is written here.
 */
import type { Clock } from '../../core/clock.js';
import type { Rng } from '../../core/rng.js';

/**
 * A token bucket: `burst` tokens, one refilled every `intervalMs`. A query takes a token; with none left it
 * waits. After a quiet period the bucket is full, so a single change goes through at once; a storm of
 * changes is spread to one query per interval.
 *
 * @example
 * ```ts
 * const bucket = new TokenBucket(clock, 250, 3);
 * const waitMs = bucket.take(); // 0: go now; > 0: wait that long and call take() again
 * ```
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Takes a token and returns 0, or returns how many ms to wait before one is available (taking nothing). */
  take(): number {
    const now = this.clock.now();
    if (this.intervalMs <= 0) return 0;
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / this.intervalMs);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.tokens) * this.intervalMs);
  }
}

/**
 * Equal-jitter exponential backoff: half of `min(maxMs, baseMs * 2^attempt)` plus a random share of the
 * other half (AWS Architecture Blog, "Exponential Backoff And Jitter"), so many clients that lost the same
 * agent do not come back in lockstep, while the delay never drops below half the exponential step.
 *
 * @example
 * ```ts
 * backoffDelay(0, 250, 10_000, rng); // 125..250
 * backoffDelay(10, 250, 10_000, rng); // 5_000..10_000
 * ```
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, rng: Rng): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return step / 2 + rng.next() * (step / 2);
}

/**
 * The index to send with the next blocking query, and whether Consul's reset rules applied.
 *
 * @example
 * ```ts
 * const { index, reset } = nextIndex(previous, parseIndex(headers['x-consul-index']));
 * ```
 */
export interface NextIndex {
  readonly index: bigint;
  readonly reset: 'none' | 'backwards' | 'below-one';
}

/**
 * Applies Consul's index rules to the `X-Consul-Index` of an answer:
 * - it went backwards (e.g. a restarted dev agent, a snapshot restore, another server): reset to 0 so the
 *   next query is non-blocking and reads the current state;
 * - it is 0 or missing (a Consul bug on some versions): use 1, because index 0 would not block and the loop
 *   would spin.
 *
 * @example
 * ```ts
 * nextIndex(40n, 12n); // { index: 0n, reset: 'backwards' }
 * nextIndex(12n, 13n); // { index: 13n, reset: 'none' }
 * ```
 */
export function nextIndex(previous: bigint, received: bigint | undefined): NextIndex {
  if (received === undefined || received < 1n) return { index: 1n, reset: 'below-one' };
  if (received < previous) return { index: 0n, reset: 'backwards' };
  return { index: received, reset: 'none' };
}

/**
 * Parses an `X-Consul-Index` header value; undefined when absent or not a non-negative integer.
 *
 * @example
 * ```ts
 * parseIndex('42'); // 42n
 * ```
 */
export function parseIndex(value: unknown): bigint | undefined {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string' || !/^[0-9]{1,20}$/.test(value)) return undefined;
  return BigInt(value);
}
