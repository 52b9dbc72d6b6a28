// The deadline filter without a network: the budget it reports, and its timer queue entry. Below it, a mock
// service whose calls the test answers, and which gives up, as a transport does, when a call's signal aborts.
import { describe, expect, it } from 'vitest';
import { DeadlineExceededError, type MeshRequest } from 'meshfetch';
import { CallContext, DeadlineFilter, silentLogger } from 'meshfetch/extend';
import { FakeClock, mockResponse, mockService } from 'meshfetch/testing';
import { timerQueue } from '../../src/core/timer-queue.js';
import { meshRequest } from '../support/requests.js';

const req: MeshRequest = meshRequest();

describe('DeadlineFilter', () => {
  it('reports the budget the caller set, exactly, whatever the floating-point start time', async () => {
    // (start + 100) - start is 100.00000000000364 for this start.
    const start = 32717.009745566083;
    expect(start + 100 - start).not.toBe(100);
    const clock = new FakeClock(start);
    const { service } = mockService();
    const f = new DeadlineFilter(service, clock);
    const ctx = new CallContext('users', undefined, start + 100, undefined, start, silentLogger);
    const p = f.call(req, ctx).catch((e: unknown) => e);
    expect(timerQueue(clock).size).toBe(1);
    clock.advance(100);
    const err = await p;
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(err).toMatchObject({ budgetMs: 100, phase: 'headers' });
    expect(timerQueue(clock).size).toBe(0);
  });

  it('below a module that waited, reads the clock: a deadline that passed meanwhile fails before sending', async () => {
    const clock = new FakeClock(0);
    const { service, handle } = mockService();
    const f = new DeadlineFilter(service, clock);
    const ctx = new CallContext('users', undefined, 100, undefined, 0, silentLogger);
    clock.advance(150); // whatever sat above the filter held the call past its deadline
    const err = await f.call(req, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(err).toMatchObject({ budgetMs: 100, phase: 'route' });
    expect(handle.calls).toHaveLength(0);
    expect(timerQueue(clock).size).toBe(0);
  });

  it('leaves the queue when the body is done', async () => {
    const clock = new FakeClock();
    const { service, handle } = mockService();
    const f = new DeadlineFilter(service, clock);
    const ctx = new CallContext('users', undefined, 1_000, undefined, 0, silentLogger);
    const p = f.call(req, ctx);
    (await handle.nextCall()).respond(mockResponse(200, {}, 'x'));
    const res = await p;
    expect(timerQueue(clock).size).toBe(1); // the body is not read yet: the deadline still covers it
    for await (const _ of res.body) void _;
    await new Promise((r) => setImmediate(r));
    expect(timerQueue(clock).size).toBe(0);
    clock.advance(2_000);
    expect(ctx.signal?.aborted).toBe(false);
  });
});
