// Deterministic tests of the retry pieces: budget, backoff, Retry-After parsing, replayable bodies.
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, seededRng } from 'meshfetch/testing';
import { RetryBudget, RETRY_BUDGET_DEFAULTS } from '../../src/resilience/budget.js';
import { backoffDelay, BACKOFF_DEFAULTS, parseRetryAfter } from '../../src/resilience/backoff.js';
import { ReplayableBody } from '../../src/resilience/body.js';

describe('RetryBudget', () => {
  it('allows the reserve (10/s x 10 s) with no traffic, then 20% of deposits', () => {
    const clock = new FakeClock();
    const b = new RetryBudget(RETRY_BUDGET_DEFAULTS, clock);
    let allowed = 0;
    while (b.tryWithdraw()) allowed++;
    expect(allowed).toBe(100);
    for (let i = 0; i < 1_000; i++) b.deposit();
    let more = 0;
    while (b.tryWithdraw()) more++;
    expect(more).toBe(200);
  });

  it('forgets deposits and withdrawals after the ttl', () => {
    const clock = new FakeClock();
    const b = new RetryBudget({ ttlMs: 10_000, minRetriesPerSec: 0, percentCanRetry: 0.5 }, clock);
    for (let i = 0; i < 10; i++) b.deposit();
    expect(b.balance).toBe(5);
    clock.advance(5_000);
    expect(b.balance).toBe(5);
    clock.advance(5_001);
    expect(b.balance).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('never allows more than reserve + percent x deposits within a window (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 500 })), { maxLength: 300 }),
        (ops) => {
          const clock = new FakeClock();
          const b = new RetryBudget({ ttlMs: 10_000, minRetriesPerSec: 1, percentCanRetry: 0.2 }, clock);
          let deposits = 0;
          let withdrawals = 0;
          for (const [deposit, dt] of ops) {
            if (deposit) {
              b.deposit();
              deposits++;
            } else if (b.tryWithdraw()) withdrawals++;
            clock.advance(dt);
          }
          // Over the whole run (which may span several windows) the bound per window implies this global one.
          const windows = Math.ceil((ops.reduce((a, [, dt]) => a + dt, 0) + 1) / 10_000) + 1;
          return withdrawals <= windows * 10 + 0.2 * deposits + windows;
        },
      ),
    );
  });
});

describe('backoff', () => {
  it('is full-jitter exponential, capped', () => {
    const rng = seededRng(3);
    for (let retry = 1; retry <= 10; retry++) {
      const cap = Math.min(250, 25 * 2 ** (retry - 1));
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(BACKOFF_DEFAULTS, retry, rng);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(cap);
      }
    }
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(new Date(now + 5_000).toUTCString(), now)).toBe(5_000);
    expect(parseRetryAfter(new Date(now - 5_000).toUTCString(), now)).toBe(0);
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
  it('never throws and returns undefined or a finite non-negative number (property)', () => {
    fc.assert(
      fc.property(fc.string(), (v) => {
        const r = parseRetryAfter(v, now);
        return r === undefined || (Number.isFinite(r) && r >= 0);
      }),
    );
  });
});

describe('ReplayableBody', () => {
  async function collect(body: unknown): Promise<Buffer> {
    if (typeof body === 'string') return Buffer.from(body);
    if (body instanceof Uint8Array) return Buffer.from(body);
    const out: Buffer[] = [];
    for await (const c of body as AsyncIterable<Buffer>) out.push(c);
    return Buffer.concat(out);
  }

  it('replays strings and bytes as they are', () => {
    const b = new ReplayableBody('abc', 0);
    expect(b.forAttempt()).toBe('abc');
    expect(b.replayable).toBe(true);
    expect(b.forAttempt()).toBe('abc');
  });

  it('records a stream within the limit and replays the same bytes', async () => {
    const b = new ReplayableBody(Readable.from([Buffer.from('ab'), 'cd', new Uint8Array([101])]), 100);
    expect((await collect(b.forAttempt())).toString()).toBe('abcde');
    expect(b.replayable).toBe(true);
    expect((await collect(b.forAttempt())).toString()).toBe('abcde');
  });

  it('a stream past the limit is not replayable; one never started still is', async () => {
    const big = new ReplayableBody(Readable.from([Buffer.alloc(60), Buffer.alloc(60)]), 100);
    await collect(big.forAttempt());
    expect(big.replayable).toBe(false);
    expect(big.overLimit).toBe(true);

    const untouched = new ReplayableBody(Readable.from([Buffer.from('xyz')]), 1);
    untouched.forAttempt(); // handed to an attempt that failed before reading it
    expect(untouched.replayable).toBe(true);
    expect((await collect(untouched.forAttempt())).toString()).toBe('xyz');
  });

  it('a stream read part-way is not replayable', async () => {
    const b = new ReplayableBody(Readable.from([Buffer.from('a'), Buffer.from('b')]), 100);
    const it = (b.forAttempt() as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await it.next();
    expect(b.replayable).toBe(false);
  });
});
