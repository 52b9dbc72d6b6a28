import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { TimerQueue, type QueuedTimer } from '../../src/core/timer-queue.js';

function entry(log: number[], id: number): QueuedTimer {
  return { dueAt: 0, qPrev: undefined, qNext: undefined, qList: undefined, fire: () => log.push(id) };
}

describe('TimerQueue (one real timer for many deadlines)', () => {
  it('fires each entry at its due time, in due order, across durations', () => {
    const clock = new FakeClock();
    const q = new TimerQueue(clock);
    const log: number[] = [];
    q.add(entry(log, 1), 300);
    q.add(entry(log, 2), 100);
    clock.advance(50);
    q.add(entry(log, 3), 100); // due at 150
    q.add(entry(log, 4), 300); // due at 350
    clock.advance(49);
    expect(log).toEqual([]);
    clock.advance(1); // 100
    expect(log).toEqual([2]);
    clock.advance(50); // 150
    expect(log).toEqual([2, 3]);
    clock.advance(150); // 300
    expect(log).toEqual([2, 3, 1]);
    clock.advance(50); // 350
    expect(log).toEqual([2, 3, 1, 4]);
    expect(q.size).toBe(0);
    expect(q.armed).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a removed entry never fires; one real timer however many entries', () => {
    const clock = new FakeClock();
    const q = new TimerQueue(clock);
    const log: number[] = [];
    const es = Array.from({ length: 1000 }, (_, i) => entry(log, i));
    for (const e of es) q.add(e, 1_000);
    expect(clock.pendingTimers).toBe(1);
    for (const e of es) if (e !== es[500]) q.remove(e);
    q.remove(es[0]!); // twice: nothing happens
    expect(q.size).toBe(1);
    clock.advance(1_000);
    expect(log).toEqual([500]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps a bounded number of emptied duration lists', () => {
    const clock = new FakeClock();
    const q = new TimerQueue(clock);
    const log: number[] = [];
    for (let ms = 1; ms <= 1_000; ms++) {
      const e = entry(log, ms);
      q.add(e, 10_000 + ms); // a propagated deadline: a new duration each time
      q.remove(e);
    }
    expect(q.listCount).toBeLessThanOrEqual(33);
    clock.advance(20_000); // the timer fires once, finds nothing due, and drops the empty lists
    expect(q.listCount).toBe(0);
    expect(log).toEqual([]);
  });

  it('re-arms for the earliest entry left when the armed one was removed', () => {
    const clock = new FakeClock();
    const q = new TimerQueue(clock);
    const log: number[] = [];
    const a = entry(log, 1);
    q.add(a, 100);
    q.add(entry(log, 2), 250);
    q.remove(a);
    clock.advance(100); // the timer fires for nothing and moves to 250
    expect(log).toEqual([]);
    expect(q.armed).toBe(true);
    clock.advance(150);
    expect(log).toEqual([2]);
  });

  it('an entry added from a firing entry is scheduled normally; a throwing entry does not stop the others', () => {
    const clock = new FakeClock();
    const q = new TimerQueue(clock);
    const log: number[] = [];
    const chained: QueuedTimer = { ...entry(log, 1), fire: () => (log.push(1), q.add(entry(log, 9), 10)) };
    const bad: QueuedTimer = {
      ...entry(log, 2),
      fire: () => {
        throw new Error('boom');
      },
    };
    q.add(chained, 10);
    q.add(bad, 10);
    q.add(entry(log, 3), 10);
    expect(() => clock.advance(10)).toThrow('boom');
    expect(log).toEqual([1, 3]);
    clock.advance(10);
    expect(log).toEqual([1, 3, 9]);
  });

  it('property: whatever the adds, removes and time steps, exactly the entries not removed fire, none early and none late', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), ms: fc.integer({ min: 0, max: 500 }) }),
            fc.record({ op: fc.constant('remove' as const), i: fc.nat() }),
            fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 200 }) }),
          ),
          { maxLength: 80 },
        ),
        (ops) => {
          const clock = new FakeClock();
          const q = new TimerQueue(clock);
          const live: Array<{ e: QueuedTimer; due: number; fired: number | undefined; removed: boolean }> =
            [];
          for (const op of ops) {
            if (op.op === 'add') {
              const rec = {
                e: undefined as unknown as QueuedTimer,
                due: clock.now() + op.ms,
                fired: undefined as number | undefined,
                removed: false,
              };
              rec.e = {
                dueAt: 0,
                qPrev: undefined,
                qNext: undefined,
                qList: undefined,
                fire: () => (rec.fired = clock.now()),
              };
              live.push(rec);
              q.add(rec.e, op.ms);
            } else if (op.op === 'remove' && live.length > 0) {
              const rec = live[op.i % live.length]!;
              if (rec.fired === undefined) rec.removed = true;
              q.remove(rec.e);
            } else if (op.op === 'tick') clock.advance(op.ms);
          }
          clock.advance(1_000);
          for (const r of live) {
            if (r.removed) expect(r.fired).toBeUndefined();
            else expect(r.fired).toBe(r.due);
          }
          expect(q.size).toBe(0);
          expect(clock.pendingTimers).toBe(0);
        },
      ),
    );
  });
});
