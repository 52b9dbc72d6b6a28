// The per-attempt timeout gives the attempt a signal of its own, in the attempt's record: the transport below
// observes it, and the call's signal is never replaced, not even for the length of a synchronous call.
import { describe, expect, it } from 'vitest';
import { FakeClock, mockResponse, mockService } from 'meshfetch/testing';
import { CallContext } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/logger.js';
import { CallSignal } from '../../src/core/signal.js';
import { AttemptTimeoutError, AttemptTimeoutFilter } from '../../src/resilience/attempt-timeout.js';
import { meshRequest } from '../support/requests.js';

describe('AttemptTimeoutFilter', () => {
  it("ends the attempt through the attempt's own signal, leaving the call's signal in place", async () => {
    const clock = new FakeClock();
    const { service, handle } = mockService();
    const callSignal = new CallSignal();
    const ctx = new CallContext('svc', callSignal, Infinity, undefined, clock.now(), silentLogger);
    let signalBelow: unknown;
    handle.onCall = (call) => {
      signalBelow = call.ctx.signal; // what a module below sees as the call's signal
    };
    const filter = new AttemptTimeoutFilter(service, 100, clock);
    const pending = filter.call(meshRequest(), ctx);
    const call = await handle.nextCall();
    expect(signalBelow).toBe(callSignal);
    expect(ctx.signal).toBe(callSignal);
    const own = ctx.attempt.signal;
    expect(own).toBeDefined();
    expect(own).not.toBe(callSignal);
    expect(ctx.attemptSignal).toBe(own);

    clock.advance(100);
    await expect(pending).rejects.toBeInstanceOf(AttemptTimeoutError);
    expect(call.aborted).toBe(true); // the transport (here the mock) observed the attempt's signal
    expect(callSignal.aborted).toBe(false); // the call goes on: a retry may follow
    expect(callSignal.listenerCount).toBe(0);
    expect((own as CallSignal).listenerCount).toBe(0);
  });

  it('an attempt that answers in time clears its timer, and its body still follows the call', async () => {
    const clock = new FakeClock();
    const { service, handle } = mockService();
    const callSignal = new CallSignal();
    const ctx = new CallContext('svc', callSignal, Infinity, undefined, clock.now(), silentLogger);
    handle.onCall = (call) => call.respond(mockResponse(200, {}, 'ok'));
    const res = await new AttemptTimeoutFilter(service, 100, clock).call(meshRequest(), ctx);
    expect(res.statusCode).toBe(200);
    expect(clock.pendingTimers).toBe(0);
    expect(callSignal.listenerCount).toBe(1); // until the body closes
    await res.body.toArray();
    await new Promise((r) => setImmediate(r));
    expect(callSignal.listenerCount).toBe(0);
  });
});
