// The deadline module owns a call's deadline from its inputs: the per-call header (read once, removed, a bad
// value is the caller's mistake), the merge with the service's timeout and an incoming request's deadline
// (min of them), and whether the next hop is told (only when someone chose the deadline).
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/core/errors.js';
import type { HeaderRecord } from '../../src/core/message.js';
import { callDeadline, propagatesDeadline, takeDeadlineHeader } from '../../src/resilience/deadline.js';

describe('the deadline header', () => {
  it('is read once and removed', () => {
    const headers: HeaderRecord = { 'mesh-deadline-ms': '250', accept: '*/*' };
    expect(takeDeadlineHeader(headers)).toBe(250);
    expect(headers).toEqual({ accept: '*/*' });
    expect(takeDeadlineHeader(headers)).toBeUndefined();
  });

  it.each(['soon', '-1', '1.5', ''])('%j is an InvalidRequestError naming the header, and stays', (v) => {
    const headers: HeaderRecord = { 'mesh-deadline-ms': v };
    let err: unknown;
    try {
      takeDeadlineHeader(headers);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as Error).message).toContain('headers.mesh-deadline-ms');
    expect(headers['mesh-deadline-ms']).toBe(v);
  });
});

describe("a call's deadline", () => {
  it('is the smallest of the timeout, the call’s own budget and the incoming deadline', () => {
    expect(callDeadline(1000, 30_000, undefined, Infinity)).toBe(31_000);
    expect(callDeadline(1000, 30_000, 250, Infinity)).toBe(1250);
    expect(callDeadline(1000, 100, 250, Infinity)).toBe(1100);
    expect(callDeadline(1000, 30_000, 250, 1100)).toBe(1100);
    expect(callDeadline(1000, Infinity, undefined, Infinity)).toBe(Infinity);
    expect(callDeadline(1000, Infinity, undefined, 5000)).toBe(5000);
  });

  it('goes to the next hop only when someone chose it', () => {
    expect(propagatesDeadline(false, undefined, Infinity)).toBe(false);
    expect(propagatesDeadline(true, undefined, Infinity)).toBe(true);
    expect(propagatesDeadline(false, 250, Infinity)).toBe(true);
    expect(propagatesDeadline(false, undefined, 5000)).toBe(true);
  });
});
