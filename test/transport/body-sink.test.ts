import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { whenBodyDone } from '../../src/core/body-done.js';
import { DIVERT, PAUSE_SINK, RESUME_SINK, tapOf, type BodySink } from '../../src/core/body-sink.js';
import { BODY_READ_AHEAD, MeshBody } from '../../src/transport/body.js';

/** A body as the pool leaf's handler makes it (its chunks held aside until something reads it). */
function heldBody() {
  const source = { resumed: 0, aborted: [] as Error[] };
  const body = new MeshBody({
    resume: () => void source.resumed++,
    abort: (reason) => void source.aborted.push(reason),
  });
  return { body, source };
}

/** A sink that records what it is handed; `pauseAfter`: it asks to pause after that many chunks. */
function recorder(pauseAfter = Infinity) {
  const log: string[] = [];
  const sink: BodySink & { log: string[] } = {
    log,
    data(chunk) {
      log.push(chunk.toString());
      return log.length < pauseAfter;
    },
    end: () => void log.push('end'),
    error: (err) => void log.push(`error:${err.message}`),
  };
  return sink;
}

const chunk = (s: string): Buffer => Buffer.from(s);

describe('a diverted body (src/core/body-sink.ts): the bytes go to the sink, not into the Readable', () => {
  it('hands the chunks that came with the headers to the sink at once, then its end; the body closes and its hooks run once', async () => {
    const { body } = heldBody();
    let hooks = 0;
    whenBodyDone(body, () => void hooks++);
    body.push(chunk('a'));
    body.push(chunk('b'));
    body.push(null);
    const sink = recorder();
    const closed = once(body, 'close');
    expect(tapOf(body)![DIVERT](sink)).toBe(true);
    expect(sink.log).toEqual(['a', 'b', 'end']);
    expect(hooks).toBe(1);
    expect(body.readableLength).toBe(0);
    await closed;
    expect(body.destroyed).toBe(true);
    expect(body.errored).toBeNull();
    expect(hooks).toBe(1);
  });

  it('hands on what arrives after the diversion as it arrives', () => {
    const { body } = heldBody();
    const sink = recorder();
    expect(tapOf(body)![DIVERT](sink)).toBe(true);
    expect(body.push(chunk('x'))).toBe(true);
    expect(sink.log).toEqual(['x']);
    body.push(null);
    expect(sink.log).toEqual(['x', 'end']);
  });

  it('cannot be diverted once something has read it: the held chunks are then read as the Readable', async () => {
    const { body } = heldBody();
    body.push(chunk('one '));
    body.push(chunk('two'));
    body.push(null);
    expect(body.readableLength).toBe(7); // the held bytes count
    expect(body.read(0)).toBeNull(); // a read of any size ends the hold
    const sink = recorder();
    expect(tapOf(body)![DIVERT](sink)).toBe(false);
    expect(sink.log).toEqual([]);
    expect(await body.text()).toBe('one two');
  });

  const consumers: Record<string, (b: MeshBody) => Promise<string>> = {
    'text()': (b) => b.text(),
    "'data' and 'end'": (b) =>
      new Promise((resolve) => {
        let out = '';
        b.on('data', (c: Buffer) => (out += c.toString())).on('end', () => resolve(out));
      }),
    "'readable' and read()": (b) =>
      new Promise((resolve) => {
        let out = '';
        b.on('readable', () => {
          let c: Buffer | null;
          while ((c = b.read() as Buffer | null) !== null) out += c.toString();
        }).on('end', () => resolve(out));
      }),
    'async iteration': async (b) => {
      let out = '';
      for await (const c of b) out += String(c);
      return out;
    },
    pipe: (b) =>
      new Promise((resolve) => {
        let out = '';
        const p = new PassThrough();
        p.on('data', (c: Buffer) => (out += c.toString())).on('end', () => resolve(out));
        b.pipe(p);
      }),
    // How a discarded answer is drained (src/resilience/retry.ts): flowing, with nobody listening for data.
    'resume() to the end': (b) =>
      new Promise((resolve) => {
        b.resume();
        b.on('end', () => resolve(b.complete && b.readableLength === 0 ? 'held;after;last' : 'not drained'));
      }),
  };

  for (const [name, consume] of Object.entries(consumers)) {
    it(`a body nobody diverts reads whole as a Readable (${name}), chunks held before the reader and chunks after`, async () => {
      const { body } = heldBody();
      body.push(chunk('held;'));
      const read = consume(body);
      await new Promise<void>((r) => setImmediate(r));
      body.push(chunk('after;'));
      await new Promise<void>((r) => setImmediate(r));
      body.push(chunk('last'));
      body.push(null);
      expect(await read).toBe('held;after;last');
    });
  }

  it('keeps the order of every chunk and delivers each once, whatever the pauses (property)', async () => {
    await fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 12 }),
        fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
        (chunks, beforeDivert, pauses) => {
          const { body } = heldBody();
          const got: string[] = [];
          let ended = 0;
          let i = 0;
          const tap = tapOf(body)!;
          const sink: BodySink = {
            data(c) {
              got.push(c.toString());
              // Sometimes pause and resume inside `data` (the loop must not hand a chunk twice).
              if (pauses[i++ % pauses.length]) {
                tap[PAUSE_SINK]();
                tap[RESUME_SINK]();
              }
              return !pauses[(i + 7) % pauses.length];
            },
            end: () => void ended++,
            error: (err) => {
              throw err;
            },
          };
          const cut = Math.min(beforeDivert, chunks.length);
          for (const c of chunks.slice(0, cut)) body.push(chunk(c));
          tap[DIVERT](sink);
          for (const c of chunks.slice(cut)) {
            body.push(chunk(c));
            if (pauses[i % pauses.length]) tap[RESUME_SINK]();
          }
          body.push(null);
          for (let k = 0; k < chunks.length + 2 && ended === 0; k++) tap[RESUME_SINK]();
          expect(got).toEqual(chunks);
          expect(ended).toBe(1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads ahead of a paused sink up to the read-ahead, then pauses the request and resumes it once drained', () => {
    const { body, source } = heldBody();
    const sink = recorder(1); // pauses after its first chunk
    const tap = tapOf(body)!;
    tap[DIVERT](sink);
    const half = Buffer.alloc(BODY_READ_AHEAD / 2);
    expect(body.push(half)).toBe(true); // handed over; the sink asks to pause
    expect(body.push(half)).toBe(true); // held: below the read-ahead
    expect(body.push(half)).toBe(false); // the read-ahead is full: the request pauses
    expect(sink.log).toHaveLength(1);
    expect(source.resumed).toBe(0);
    sink.data = (c) => {
      sink.log.push(c.toString());
      return true;
    };
    tap[RESUME_SINK]();
    expect(sink.log).toHaveLength(3);
    expect(source.resumed).toBe(1);
  });

  it('destroyed before its end: the request is aborted, the sink gets the error, and no error event is thrown', async () => {
    const { body, source } = heldBody();
    let hooks = 0;
    whenBodyDone(body, () => void hooks++);
    const sink = recorder();
    tapOf(body)![DIVERT](sink);
    body.push(chunk('part'));
    const closed = once(body, 'close');
    body.destroy(new Error('cut')); // no 'error' listener: it must not become an uncaught error
    await closed;
    expect(sink.log).toEqual(['part', 'error:cut']);
    expect(source.aborted.map((e) => e.message)).toEqual(['cut']);
    expect(hooks).toBe(1);
    // A destroy without a reason still tells the sink, with the body's own abort error.
    const other = heldBody();
    const s2 = recorder();
    tapOf(other.body)![DIVERT](s2);
    other.body.destroy();
    expect(s2.log).toEqual(['error:The response body was closed before it ended']);
  });

  it('destroyed before anything read it: nothing is held any more and a later diversion is refused', () => {
    const { body, source } = heldBody();
    body.on('error', () => {});
    body.push(chunk('x'));
    body.destroy(new Error('gone'));
    expect(source.aborted).toHaveLength(1);
    expect(tapOf(body)![DIVERT](recorder())).toBe(false);
  });
});
