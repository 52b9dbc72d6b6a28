import { once } from 'node:events';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { whenBodyDone, type BodyDoneHook } from '../../src/core/body-done.js';

function body(): Readable {
  return new Readable({ read() {} });
}

function hooks(n: number, log: number[]): BodyDoneHook[] {
  // Alternate the two kinds of hook: a function and an object with onBodyDone.
  return Array.from({ length: n }, (_, i) =>
    i % 2 === 0 ? () => void log.push(i) : { onBodyDone: () => void log.push(i) },
  );
}

describe('whenBodyDone (one close listener per body, however many hooks)', () => {
  it('runs every hook once, in the order added, when the body closes (any count)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.boolean(), async (n, destroyIt) => {
        const b = body();
        const log: number[] = [];
        for (const h of hooks(n, log)) whenBodyDone(b, h);
        expect(b.listenerCount('close')).toBe(1);
        expect(log).toEqual([]);
        const closed = once(b, 'close');
        if (destroyIt) b.destroy();
        else {
          b.push(null);
          b.resume();
        }
        await closed;
        expect(log).toEqual(Array.from({ length: n }, (_, i) => i));
        // A later close event (there is none in practice) runs nothing twice.
        b.emit('close');
        expect(log).toHaveLength(n);
      }),
      { numRuns: 40 },
    );
  });

  it('runs a hook at once when the body has already ended or been destroyed', async () => {
    const ended = body();
    ended.push(null);
    ended.resume();
    await once(ended, 'end');
    const destroyed = body();
    destroyed.destroy();
    const log: number[] = [];
    whenBodyDone(ended, () => void log.push(1));
    whenBodyDone(destroyed, { onBodyDone: () => void log.push(2) });
    expect(log).toEqual([1, 2]);
  });

  it('a hook added after the others ran (same body, already closed) runs at once', async () => {
    const b = body();
    const log: string[] = [];
    whenBodyDone(b, () => void log.push('first'));
    b.destroy();
    await once(b, 'close');
    whenBodyDone(b, () => void log.push('late'));
    expect(log).toEqual(['first', 'late']);
  });
});
