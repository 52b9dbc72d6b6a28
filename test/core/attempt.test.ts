// The per-attempt record: each attempt of a call has its own, the levels below write what they learn into it,
// and it comes back up with the outcome; the call's own fields are written by the logical level only.
import { describe, expect, it } from 'vitest';
import { FakeClock, mockResponse, mockService, seededRng } from 'meshfetch/testing';
import { Attempt } from '../../src/core/attempt.js';
import { CallContext } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/logger.js';
import { defaultClassifier } from '../../src/resilience/classifier.js';
import { RETRY_DEFAULTS, RetryFilter } from '../../src/resilience/retry.js';
import { meshRequest } from '../support/requests.js';

describe('Attempt', () => {
  it('a retried call gets a new record per attempt, and each keeps what its own attempt learned', async () => {
    const clock = new FakeClock();
    const { service, handle } = mockService();
    const seen: Attempt[] = [];
    handle.onCall = (call) => {
      const a = call.ctx.attempt;
      seen.push(a);
      // What a balancer leaf and a breaker below would report.
      a.endpoint = seen.length === 1 ? 'a:1' : 'b:2';
      a.breakerState = 'closed';
      call.respond(mockResponse(seen.length === 1 ? 503 : 200));
    };
    const retry = new RetryFilter(
      service,
      { ...RETRY_DEFAULTS, backoff: { ...RETRY_DEFAULTS.backoff, baseMs: 0, maxMs: 0 } },
      defaultClassifier,
      clock,
      seededRng(1),
      silentLogger,
    );
    const ctx = new CallContext('svc', undefined, Infinity, undefined, clock.now(), silentLogger);
    const first = ctx.attempt;
    const res = await retry.call(meshRequest(), ctx);
    expect(res.statusCode).toBe(200);

    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(first); // the entry point's record carries the first attempt
    expect(seen[1]).not.toBe(seen[0]);
    expect(seen.map((a) => [a.number, a.endpoint])).toEqual([
      [1, 'a:1'],
      [2, 'b:2'],
    ]);
    // The call's context points at the attempt whose outcome it returned.
    expect(ctx.attempt).toBe(seen[1]);
    // The call's record, kept by the retry filter.
    expect([...ctx.tried!]).toEqual(['a:1']);
    expect(ctx.retryReasons).toEqual(['503']);
  });

  it('learnFrom takes what another attempt learned, but not its number or backup flag', () => {
    const mine = new Attempt(3);
    const winner = new Attempt(3, true);
    winner.destination = 'canary';
    winner.endpoint = 'b:2';
    winner.balancer = 'p2c';
    winner.breakerState = 'half-open';
    winner.retryAfterHeld = true;
    mine.rerouteable = true;
    mine.learnFrom(winner);
    expect(mine).toMatchObject({
      number: 3,
      backup: false,
      destination: 'canary',
      endpoint: 'b:2',
      balancer: 'p2c',
      breakerState: 'half-open',
      retryAfterHeld: true,
      rerouteable: true, // one of the two routes splitting is enough
    });
  });

  it('the time of an outcome is read once per attempt, so the modules judging it see one instant', () => {
    const clock = new FakeClock();
    let reads = 0;
    const counting = Object.assign(Object.create(clock) as FakeClock, {
      now: () => (reads++, clock.now()),
    });
    const first = new Attempt(1);
    const t = first.outcomeTime(counting);
    clock.advance(5);
    expect(first.outcomeTime(counting)).toBe(t);
    expect(reads).toBe(1);
    // Another attempt reads its own.
    expect(new Attempt(2).outcomeTime(counting)).toBe(t + 5);
    expect(reads).toBe(2);
  });
});
