// The server helper's pure parts and its scope, on a fake clock: header parsing (a property test: whatever
// arrives off the network, the parser never throws and answers undefined or a clamped whole number), gRPC
// timeouts, option validation, and runWithDeadline's timer/listener lifecycle.
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, DeadlineExceededError } from 'meshfetch';
import { FakeClock } from 'meshfetch/testing';
import {
  DEFAULT_MAX_DEADLINE_MS,
  parseGrpcTimeout,
  parseIncomingDeadline,
} from '../../src/server/incoming-deadline.js';
import { getIncomingDeadline, incomingSignal, remainingMs, runWithDeadline } from '../../src/server/scope.js';
import { meshHandler } from '../../src/server/server.js';

const headerValue = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 30 }),
  fc.tuple(fc.nat({ max: 99_999_999 }), fc.constantFrom(...'HMSmunxh ')).map(([n, u]) => `${n}${u}`),
  fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }).map(String),
  fc.double().map(String),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.constantFrom(undefined, '', ' 5', '5 ', '0x10', '1e3', 'Infinity', 'NaN', '0', '00', '-0'),
  fc.anything(),
);

describe('parseIncomingDeadline', () => {
  it('never throws and returns undefined or a whole number of ms within [0, max]', () => {
    fc.assert(
      fc.property(
        headerValue,
        headerValue,
        fc.oneof(fc.integer({ min: 1, max: 10_000_000 }), fc.constant(undefined)),
        fc.boolean(),
        (mesh, grpc, max, useGrpc) => {
          const r = parseIncomingDeadline(
            { 'mesh-deadline-ms': mesh, 'grpc-timeout': grpc },
            { maxDeadlineMs: max, grpcTimeout: useGrpc },
          );
          if (r === undefined) return;
          expect(Number.isInteger(r)).toBe(true);
          expect(r).toBeGreaterThanOrEqual(0);
          expect(r).toBeLessThanOrEqual(max ?? DEFAULT_MAX_DEADLINE_MS);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('reads a plain value, clamps a huge one and ignores malformed ones', () => {
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '250' })).toBe(250);
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '0' })).toBe(0);
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '999999999999' })).toBe(DEFAULT_MAX_DEADLINE_MS);
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '5000' }, { maxDeadlineMs: 1_000 })).toBe(1_000);
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '5000' }, { maxDeadlineMs: Infinity })).toBe(5_000);
    for (const bad of ['', '-1', '1.5', '1e3', 'abc', '12, 13', '9999999999999', ' ', '0x10']) {
      expect(parseIncomingDeadline({ 'mesh-deadline-ms': bad }), bad).toBeUndefined();
    }
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': ['10', '20'] })).toBeUndefined();
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': ['10'] })).toBe(10);
    expect(parseIncomingDeadline({})).toBeUndefined();
  });

  it('takes the smaller of mesh-deadline-ms and grpc-timeout, unless gRPC is turned off', () => {
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '900', 'grpc-timeout': '2S' })).toBe(900);
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': '900', 'grpc-timeout': '300m' })).toBe(300);
    expect(parseIncomingDeadline({ 'grpc-timeout': '300m' })).toBe(300);
    expect(parseIncomingDeadline({ 'grpc-timeout': '300m' }, { grpcTimeout: false })).toBeUndefined();
    expect(parseIncomingDeadline({ 'mesh-deadline-ms': 'x', 'grpc-timeout': '1S' })).toBe(1_000);
    expect(parseIncomingDeadline({ 'grpc-timeout': '99999999H' })).toBe(DEFAULT_MAX_DEADLINE_MS);
  });

  it('validates its options', () => {
    expect(() => parseIncomingDeadline({}, { maxDeadlineMs: 0 })).toThrow(ConfigError);
    expect(() => parseIncomingDeadline({}, { grpcTimeout: 'yes' as never })).toThrow(
      /parseIncomingDeadline\.grpcTimeout/,
    );
  });
});

describe('parseGrpcTimeout', () => {
  it.each([
    ['1H', 3_600_000],
    ['2M', 120_000],
    ['3S', 3_000],
    ['250m', 250],
    ['1500u', 1],
    ['999u', 0],
    ['2500000n', 2],
    ['1n', 0],
    ['0m', 0],
    ['99999999m', 99_999_999],
    [['7S'], 7_000],
  ] as const)('%s -> %d ms', (value, ms) => {
    expect(parseGrpcTimeout(value)).toBe(ms);
  });

  it.each(['', 'S', '1', '1s', '1h', '-1S', '1.5S', '123456789m', ' 1S', '1S ', '1 S', 'abc', ['1S', '2S']])(
    'ignores %j',
    (value) => {
      expect(parseGrpcTimeout(value)).toBeUndefined();
    },
  );

  it('ignores values that are not strings', () => {
    for (const v of [undefined, null, 5, {}, [], [5]]) expect(parseGrpcTimeout(v)).toBeUndefined();
  });
});

describe('meshHandler options', () => {
  const h = (): void => undefined;
  it.each([
    [{ maxDeadlineMs: 0 }, 'meshHandler.maxDeadlineMs'],
    [{ maxDeadlineMs: -5 }, 'meshHandler.maxDeadlineMs'],
    [{ maxDeadlineMs: Number.NaN }, 'meshHandler.maxDeadlineMs'],
    [{ maxDeadlineMs: '100' }, 'meshHandler.maxDeadlineMs'],
    [{ defaultDeadlineMs: 0 }, 'meshHandler.defaultDeadlineMs'],
    [{ defaultDeadlineMs: Infinity }, 'meshHandler.defaultDeadlineMs'],
    [{ defaultDeadlineMs: 2_000, maxDeadlineMs: 1_000 }, 'meshHandler.defaultDeadlineMs'],
    [{ trust: true }, 'meshHandler.trust'],
    [{ grpcTimeout: 1 }, 'meshHandler.grpcTimeout'],
    [{ expiredStatus: 200 }, 'meshHandler.expiredStatus'],
    [{ expiredStatus: 504.5 }, 'meshHandler.expiredStatus'],
    [{ service: '' }, 'meshHandler.service'],
    [{ clock: { now: () => 0 } }, 'meshHandler.clock'],
    [{ maxDeadlinMs: 100 }, 'meshHandler.maxDeadlinMs'],
  ])('%j is a ConfigError naming %s', (options, path) => {
    try {
      meshHandler(h, options as never);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).path).toBe(path);
    }
  });

  it('rejects a handler that is not a function and options that are not an object', () => {
    expect(() => meshHandler(undefined as never)).toThrow(/meshHandler\.handler/);
    expect(() => meshHandler(h, null as never)).toThrow(ConfigError);
  });

  it('accepts good options', () => {
    expect(
      typeof meshHandler(h, {
        maxDeadlineMs: Infinity,
        defaultDeadlineMs: 1_000,
        trust: () => true,
        grpcTimeout: false,
        expiredStatus: 503,
        service: 'users',
        clock: new FakeClock(),
      }),
    ).toBe('function');
  });
});

describe('runWithDeadline', () => {
  it('aborts its signal with DeadlineExceededError when the deadline passes, then has no timer left', () => {
    const clock = new FakeClock(1_000);
    const seen = runWithDeadline(
      { deadlineMs: 200 },
      (scope) => {
        expect(getIncomingDeadline()).toBe(1_200);
        expect(remainingMs()).toBe(200);
        expect(incomingSignal()).toBe(scope.signal);
        expect(scope.deadline).toBe(1_200);
        return scope;
      },
      { clock, service: 'users' },
    );
    expect(getIncomingDeadline()).toBeUndefined();
    expect(incomingSignal()).toBeUndefined();
    expect(remainingMs()).toBe(Infinity);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(199);
    expect(seen.signal.aborted).toBe(false);
    clock.advance(1);
    expect(seen.signal.aborted).toBe(true);
    const reason = seen.signal.reason as DeadlineExceededError;
    expect(reason).toBeInstanceOf(DeadlineExceededError);
    expect(reason.service).toBe('users');
    expect(reason.budgetMs).toBe(200);
    expect(clock.pendingTimers).toBe(0);
  });

  it('remainingMs counts down on the scope clock and never goes negative', () => {
    const clock = new FakeClock();
    runWithDeadline(
      { deadlineMs: 100 },
      (scope) => {
        clock.advance(40);
        expect(remainingMs()).toBe(60);
        clock.advance(100);
        expect(remainingMs()).toBe(0);
        scope.release();
      },
      { clock },
    );
  });

  it('releases the timer and the linked signal listener when the returned promise settles', async () => {
    const clock = new FakeClock();
    const outer = new AbortController();
    let inner: AbortSignal | undefined;
    await runWithDeadline(
      { deadlineMs: 500, signal: outer.signal },
      async (scope) => {
        inner = scope.signal;
        expect(getEventListeners(outer.signal, 'abort')).toHaveLength(1);
        await Promise.resolve();
      },
      { clock },
    );
    expect(clock.pendingTimers).toBe(0);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
    outer.abort();
    clock.advance(1_000);
    expect(inner!.aborted).toBe(false);

    await expect(
      runWithDeadline(
        { deadlineMs: 500, signal: new AbortController().signal },
        () => Promise.reject(new Error('x')),
        {
          clock,
        },
      ),
    ).rejects.toThrow('x');
    expect(clock.pendingTimers).toBe(0);
  });

  it('releases when fn throws, and keeps a synchronous scope until release() is called', () => {
    const clock = new FakeClock();
    expect(() =>
      runWithDeadline(
        { deadlineMs: 500 },
        () => {
          throw new Error('boom');
        },
        { clock },
      ),
    ).toThrow('boom');
    expect(clock.pendingTimers).toBe(0);

    const scope = runWithDeadline({ deadlineMs: 500 }, (s) => s, { clock });
    expect(clock.pendingTimers).toBe(1);
    scope.release();
    scope.release();
    expect(clock.pendingTimers).toBe(0);
  });

  it("passes on the linked signal's reason and unlinks", () => {
    const clock = new FakeClock();
    const outer = new AbortController();
    const scope = runWithDeadline({ deadlineMs: 500, signal: outer.signal }, (s) => s, { clock });
    const why = new Error('client gone');
    outer.abort(why);
    expect(scope.signal.reason).toBe(why);
    expect(clock.pendingTimers).toBe(0);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);

    const already = runWithDeadline({ signal: AbortSignal.abort(why) }, (s) => s, { clock });
    expect(already.signal.reason).toBe(why);
  });

  it('runs with an aborted signal when the budget is 0 and with no timer when there is no deadline', () => {
    const clock = new FakeClock();
    const spent = runWithDeadline({ deadlineMs: 0 }, (s) => s, { clock });
    expect(spent.signal.reason).toBeInstanceOf(DeadlineExceededError);
    expect(clock.pendingTimers).toBe(0);
    for (const deadlineMs of [undefined, Infinity]) {
      const none = runWithDeadline(
        { deadlineMs },
        (s) => {
          expect(remainingMs()).toBe(Infinity);
          return s;
        },
        { clock },
      );
      expect(none.deadline).toBe(Infinity);
      expect(clock.pendingTimers).toBe(0);
    }
  });

  it('validates its input', () => {
    expect(() => runWithDeadline({ deadlineMs: -1 }, () => 0)).toThrow(/runWithDeadline\.deadlineMs/);
    expect(() => runWithDeadline({ deadlineMs: Number.NaN }, () => 0)).toThrow(ConfigError);
    expect(() => runWithDeadline({ signal: {} as AbortSignal }, () => 0)).toThrow(/runWithDeadline\.signal/);
    expect(() => runWithDeadline({}, 5 as never)).toThrow(/runWithDeadline\.fn/);
    expect(() => runWithDeadline({}, () => 0, { service: 5 as never })).toThrow(/runWithDeadline\.service/);
    expect(() => runWithDeadline({}, () => 0, { clock: {} as never })).toThrow(/runWithDeadline\.clock/);
  });
});
