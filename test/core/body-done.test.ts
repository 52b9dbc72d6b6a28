import { once } from 'node:events';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { whenBodyDone, type BodyDoneHook } from '../../src/core/body-done.js';
import { MeshBody } from '../../src/transport/handler.js';

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

describe("whenBodyDone on the pool leaf's body (MeshBody runs its own hooks)", () => {
  // events.once would reject on the 'error' that precedes 'close' here.
  const closeOf = (b: MeshBody): Promise<void> => new Promise((resolve) => b.once('close', resolve));

  function meshBody(): { body: MeshBody; aborted: () => number } {
    let aborts = 0;
    const b = new MeshBody({ resume() {}, abort: () => void aborts++ });
    return { body: b, aborted: () => aborts };
  }

  it('adds no close listener and no property, and runs every hook once, in order, when read to the end', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 12 }), async (n) => {
        const { body: b } = meshBody();
        const keys = Reflect.ownKeys(b).length;
        const log: number[] = [];
        for (const h of hooks(n, log)) whenBodyDone(b, h);
        expect(b.listenerCount('close')).toBe(0);
        expect(Reflect.ownKeys(b)).toHaveLength(keys);
        b.push(Buffer.from('hello'));
        b.push(null);
        const closed = once(b, 'close');
        expect(await b.text()).toBe('hello');
        await closed;
        expect(log).toEqual(Array.from({ length: n }, (_, i) => i));
        whenBodyDone(b, () => void log.push(-1));
        expect(log).toHaveLength(n + 1);
      }),
      { numRuns: 20 },
    );
  });

  it('runs the hooks with errored set when the body is destroyed early or fails', async () => {
    const early = meshBody();
    const seen: unknown[] = [];
    whenBodyDone(early.body, () => void seen.push(early.body.errored));
    early.body.on('error', () => {}); // undici's body errors when destroyed before its end
    early.body.destroy();
    await closeOf(early.body);
    expect(early.aborted()).toBe(1);
    expect(seen).toHaveLength(1);
    expect((seen[0] as { code?: string }).code).toBe('UND_ERR_ABORTED');

    const failed = meshBody();
    const boom = new Error('boom');
    whenBodyDone(failed.body, () => void seen.push(failed.body.errored));
    failed.body.on('error', () => {});
    failed.body.destroy(boom);
    await closeOf(failed.body);
    expect(seen[1]).toBe(boom);
  });

  it('a body with no hooks is destroyed as undici destroys it', async () => {
    const { body: b, aborted } = meshBody();
    b.on('error', () => {});
    b.destroy();
    await closeOf(b);
    expect(aborted()).toBe(1);
    const log: string[] = [];
    whenBodyDone(b, () => void log.push('late'));
    expect(log).toEqual(['late']);
  });
});
