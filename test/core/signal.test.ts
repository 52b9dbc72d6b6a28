import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CallSignal, type AbortListener } from '../../src/core/signal.js';

type Op = { add: number } | { remove: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ add: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ remove: fc.integer({ min: 0, max: 3 }) }),
);

describe('CallSignal (one listener in a field, more in an array)', () => {
  it('keeps the listeners of an array model: same count, same order on abort, duplicates included', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 24 }), (ops) => {
        const calls: number[] = [];
        const signal = new CallSignal();
        // Two function listeners and two handleEvent objects; a function sees the signal as `this`.
        const listeners: AbortListener[] = [0, 1, 2, 3].map((i) =>
          i % 2 === 0
            ? function (this: unknown) {
                expect(this).toBe(signal);
                calls.push(i);
              }
            : { handleEvent: () => void calls.push(i) },
        );
        const model: number[] = [];
        for (const o of ops) {
          if ('add' in o) {
            signal.addEventListener('abort', listeners[o.add]!);
            model.push(o.add);
          } else {
            signal.removeEventListener('abort', listeners[o.remove]!);
            const i = model.lastIndexOf(o.remove);
            if (i >= 0) model.splice(i, 1);
          }
          expect(signal.listenerCount).toBe(model.length);
        }
        signal.abort(new Error('stop'));
        expect(calls).toEqual(model);
        expect(signal.listenerCount).toBe(0);
        // Once aborted: nothing more is kept or run.
        signal.addEventListener('abort', listeners[0]!);
        signal.abort(new Error('again'));
        expect(signal.listenerCount).toBe(0);
        expect(calls).toEqual(model);
        expect((signal.reason as Error).message).toBe('stop');
      }),
      { numRuns: 300 },
    );
  });
});
