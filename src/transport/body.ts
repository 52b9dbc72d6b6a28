/**
 * The response body of a mesh call: a Node `Readable` with the body mixin undici's `request()` gives
 * (`text()`, `json()`, `bytes()`, `arrayBuffer()`, `blob()`, `dump()`, `bodyUsed`, `body`), so code written for
 * `Pool.request` works unchanged on `mesh.request`. undici does not export its own body class (it lives in a
 * private file, `lib/api/readable.js`), and importing it by path breaks with any undici release; this class is
 * written against Node's public stream API and undici's documented behaviour instead (undici
 * docs/api/Dispatcher.md, "Body Mixins"; the Fetch standard's "consume body").
 *
 * Flow control: `_read` asks the connection for more (the dispatch controller's `resume`), and the handler
 * pauses the connection when `push` returns false, once {@link BODY_READ_AHEAD} bytes wait unread. Destroying
 * the body before its end aborts the request on the wire. The mesh's body-done hooks (src/core/body-done.ts)
 * run from `_destroy`, once `errored` is set.
 *
 * Diversion (src/core/body-sink.ts): the chunks that arrive before anything reads the body are held aside,
 * not pushed into the Readable, so a consumer that diverts the body (`mesh.dispatcher`'s handler) gets them
 * without their ever entering the Readable's buffer. The first read of any kind (every way of consuming a
 * Readable reads it: `'data'`, `'readable'`, pipes, async iteration, `text()`) puts what was held into the
 * Readable first, so a reader sees an ordinary Readable; `readableLength` counts the held bytes.
 */
import { Readable } from 'node:stream';
import { BODY_DONE_HOOKS, runBodyDoneHooks } from '../core/body-done.js';
import { DIVERT, PAUSE_SINK, RESUME_SINK, type BodySink, type BodyTap } from '../core/body-sink.js';

/** What a body needs of the request it belongs to (the pool leaf's handler is one: no closures per body). */
export interface BodySource {
  /** More data wanted: resume reading the socket. */
  resume(): void;
  /** The body was destroyed before its end: abort the request with this reason. */
  abort(reason: Error): void;
}

type ConsumeType = 'text' | 'json' | 'bytes' | 'arrayBuffer' | 'blob';

/** The error a consumer gets when the body closes before its end without an error of its own. */
class BodyAbortedError extends Error {
  override name = 'AbortError';
  readonly code = 'UND_ERR_ABORTED';
  constructor() {
    super('The response body was closed before it ended');
  }
}

function noop(): void {}

/** How a body's bytes flow. */
const enum Flow {
  /** Into the Readable: once the body has been read. */
  Readable,
  /** Held aside until the first read: a consumer may still divert them. */
  Held,
  /** Diverted: to the sink, as they arrive. */
  Sink,
  /** Diverted, and over: the sink had the end or an error. */
  SinkDone,
}

/**
 * How much of a response body is read from the socket ahead of its reader: 1 MiB (Envoy's default
 * per-connection buffer limit). A response up to that size returns its connection to the pool as soon as it
 * has arrived, read or not, so bodies that are never read (or read late) do not hold the pool's connections
 * until they are garbage collected; a larger body pauses the socket once this much waits unread.
 */
export const BODY_READ_AHEAD = 1024 * 1024;

/** The Readable options of every body (one object, not one per body). */
const READABLE_OPTIONS = { autoDestroy: true, highWaterMark: BODY_READ_AHEAD };

/**
 * A response body. Obtain it from `mesh.request()`; it is never constructed by application code.
 *
 * @example
 * ```ts
 * const { body } = await mesh.request('http://users/v1/users/42');
 * const user = await body.json();
 * ```
 */
export class MeshBody extends Readable implements BodyTap {
  /** The mesh's body-done hooks (src/core/body-done.ts); `null` until one is added. */
  [BODY_DONE_HOOKS]: unknown = null;
  private flow = Flow.Held;
  /**
   * Chunks held (before the first read, or while a sink is paused), oldest first: the first in a field (a body
   * usually has one chunk), the rest in `held` from `heldAt` on; `heldEnd`: the end too.
   */
  private heldFirst: Buffer | undefined = undefined;
  private held: Buffer[] | undefined = undefined;
  private heldAt = 0;
  private heldBytes = 0;
  /** @internal The bytes held (for `readableLength`). */
  get heldLength(): number {
    return this.heldBytes;
  }
  private heldEnd = false;
  private sink: BodySink | undefined = undefined;
  private sinkPaused = false;
  private draining = false;
  /** `push` returned false to the request (it paused its connection) while chunks were held. */
  private requestPaused = false;
  private readonly contentType: string;
  private readonly contentLength: number | null;
  private bytesRead = 0;
  /** @internal The whole body has arrived (it may still be buffered): set at the end of the response. */
  complete = false;
  /** Listened to (data/readable) or consumed: an error can reach a listener without a deferral. */
  private used = false;
  private consuming = false;
  private web: ReadableStream | undefined = undefined;

  constructor(
    private readonly source: BodySource,
    contentType?: string,
    contentLength?: number,
  ) {
    super(READABLE_OPTIONS);
    this.contentType = contentType ?? '';
    this.contentLength = contentLength !== undefined && Number.isFinite(contentLength) ? contentLength : null;
  }

  override _read(): void {
    this.source.resume();
  }

  override push(chunk: Buffer | null): boolean {
    if (chunk !== null) this.bytesRead += chunk.length;
    else this.complete = true;
    const flow = this.flow;
    if (flow === Flow.Readable) return super.push(chunk);
    if (flow === Flow.Sink) {
      if (this.heldFirst === undefined && this.held === undefined && !this.sinkPaused) {
        if (chunk === null) {
          this.endSink();
          return false;
        }
        if (!this.sink!.data(chunk)) this.sinkPaused = true;
        return true;
      }
    } else if (flow !== Flow.Held) return false; // over: the sink has had its end or error
    // Held: before the first read, or behind a paused sink.
    if (chunk === null) {
      this.heldEnd = true;
      return false;
    }
    if (this.heldFirst === undefined && this.held === undefined) this.heldFirst = chunk;
    else (this.held ??= []).push(chunk);
    this.heldBytes += chunk.length;
    // Read ahead of a paused sink as of a paused Readable: an answer up to that size frees its connection.
    if (this.heldBytes < this.readableHighWaterMark) return true;
    this.requestPaused = true;
    return false;
  }

  /**
   * The first read (any consumer of a Readable reads: `'data'`, `'readable'`, pipes, iterators, `text()`)
   * ends the hold: what was held goes into the Readable first.
   */
  override read(size?: number): any {
    if (this.flow === Flow.Held) this.release();
    return super.read(size);
  }

  /** The hold is over and nobody diverted the body: what was held goes into the Readable. */
  private release(): void {
    if (this.flow !== Flow.Held) return;
    this.flow = Flow.Readable;
    if (this.destroyed) return;
    let chunk: Buffer | undefined;
    while ((chunk = this.takeHeld()) !== undefined) super.push(chunk);
    if (this.heldEnd) super.push(null);
    // A request paused for held bytes is resumed by the Readable's own `_read`, once they are read.
  }

  /** The body's bytes to `sink` (src/core/body-sink.ts), while nothing has read it; false after. */
  [DIVERT](sink: BodySink): boolean {
    if (this.flow !== Flow.Held || this.destroyed) {
      this.release();
      return false;
    }
    this.flow = Flow.Sink;
    this.sink = sink;
    this.drain();
    return true;
  }

  [PAUSE_SINK](): void {
    if (this.flow === Flow.Sink || this.flow === Flow.Held) this.sinkPaused = true;
  }

  [RESUME_SINK](): void {
    if (this.flow !== Flow.Sink || !this.sinkPaused) return;
    this.sinkPaused = false;
    this.drain();
  }

  /** The oldest held chunk, taken out; undefined when none is held. */
  private takeHeld(): Buffer | undefined {
    let chunk = this.heldFirst;
    if (chunk !== undefined) this.heldFirst = undefined;
    else {
      const held = this.held;
      if (held === undefined) return undefined;
      chunk = held[this.heldAt]!;
      held[this.heldAt++] = undefined as never;
      if (this.heldAt === held.length) {
        this.held = undefined;
        this.heldAt = 0;
      }
    }
    this.heldBytes -= chunk.length;
    return chunk;
  }

  /**
   * Hands the held chunks to the sink while it takes them; then its end, or more from the request. Not
   * re-entered: a sink that pauses and resumes inside `data` only clears the pause the loop looks at.
   */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      const sink = this.sink!;
      for (;;) {
        if (this.sinkPaused) return;
        const chunk = this.takeHeld();
        if (chunk === undefined) break;
        if (!sink.data(chunk)) this.sinkPaused = true;
        if (this.flow !== Flow.Sink) return; // the sink destroyed the body
      }
      if (this.heldEnd) this.endSink();
      else if (this.requestPaused) {
        this.requestPaused = false;
        this.source.resume();
      }
    } finally {
      this.draining = false;
    }
  }

  /** The sink has had every byte: its end, then the Readable closes (hooks, `'close'`). */
  private endSink(): void {
    this.flow = Flow.SinkDone;
    const sink = this.sink!;
    this.sink = undefined;
    sink.end();
    this.destroy();
  }

  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    if (event === 'data' || event === 'readable') this.used = true;
    return super.on(event, listener);
  }

  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return this.on(event, listener);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const flow = this.flow;
    if (flow === Flow.Sink || flow === Flow.SinkDone) {
      this.destroySink(err, callback);
      return;
    }
    if (flow === Flow.Held) {
      this.flow = Flow.Readable;
      this.heldFirst = undefined;
      this.held = undefined;
    }
    const synthesized = err === null && !this.readableEnded;
    if (synthesized) err = new BodyAbortedError();
    if (err !== null) this.source.abort(err);
    // An errorless destroy() must not throw for want of an 'error' listener.
    if (synthesized && this.listenerCount('error') === 0) this.once('error', noop);
    const done = (e?: Error | null): void => {
      callback(e);
      runBodyDoneHooks(this);
    };
    // A body destroyed in the tick it was created in: give a caller that is still awaiting the response a
    // chance to add its 'error' listener before the event fires (as undici's own body does).
    if (!this.used && err !== null) {
      // eslint-disable-next-line no-restricted-globals -- a deferral past the current I/O phase, not a timer
      setImmediate(done, err);
    } else done(err);
  }

  /** A diverted body closes: after its end, quietly; before it, the request is aborted and the sink told. */
  private destroySink(err: Error | null, callback: (error?: Error | null) => void): void {
    const sink = this.sink;
    if (sink !== undefined) {
      this.sink = undefined;
      this.flow = Flow.SinkDone;
      this.heldFirst = undefined;
      this.held = undefined;
      const reason = err ?? new BodyAbortedError();
      this.source.abort(reason);
      sink.error(reason);
    }
    // The sink is the one consumer and has heard of the error: no 'error' event, only 'close'.
    callback(null);
    runBodyDoneHooks(this);
  }

  /** The body as a string (UTF-8, a leading BOM skipped). */
  text(): Promise<string> {
    return this.consume('text');
  }

  /** The body parsed as JSON. */
  json(): Promise<unknown> {
    return this.consume('json');
  }

  /** The body's bytes. */
  bytes(): Promise<Uint8Array> {
    return this.consume('bytes');
  }

  /** The body's bytes as an ArrayBuffer. */
  arrayBuffer(): Promise<ArrayBuffer> {
    return this.consume('arrayBuffer');
  }

  /** The body as a Blob with the response's content type. */
  blob(): Promise<Blob> {
    return this.consume('blob');
  }

  /** Not supported, as in undici's `request()`. */
  formData(): Promise<never> {
    return Promise.reject(new TypeError('formData() is not supported on a mesh.request body'));
  }

  /** True once the body has been read from. */
  get bodyUsed(): boolean {
    return Readable.isDisturbed(this);
  }

  /** The body as a web `ReadableStream` (created once). */
  get body(): never | undefined {
    this.web ??= Readable.toWeb(this) as ReadableStream;
    return this.web as never;
  }

  /**
   * Reads and discards the body so its connection can be reused; destroys it (closing the connection) when
   * it is longer than `limit` bytes (default 128 KiB), or when `signal` aborts.
   */
  dump(opts?: { limit?: number; signal?: AbortSignal }): Promise<void> {
    const signal = opts?.signal;
    const limit = opts?.limit !== undefined && Number.isFinite(opts.limit) ? opts.limit : 128 * 1024;
    if (signal?.aborted) return Promise.reject(signal.reason ?? new BodyAbortedError());
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if ((this.contentLength !== null && this.contentLength > limit) || this.bytesRead > limit) {
        this.destroy();
      }
      const onAbort = (): void => {
        this.destroy(signal!.reason ?? new BodyAbortedError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.on('close', () => {
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) reject(signal.reason ?? new BodyAbortedError());
        else resolve();
      });
      this.on('error', noop)
        .on('data', () => {
          if (this.bytesRead > limit) this.destroy();
        })
        .resume();
    });
  }

  private consume<T>(type: ConsumeType): Promise<T> {
    if (this.consuming || Readable.isDisturbed(this) || this.web?.locked === true) {
      if (this.destroyed && !this.closed) {
        return new Promise((_, reject) => {
          this.on('error', reject).on('close', () => reject(new TypeError('unusable')));
        });
      }
      return Promise.reject(this.errored ?? new TypeError('unusable'));
    }
    this.consuming = true;
    this.used = true;
    return new Promise<T>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let length = 0;
      let settled = false;
      const encoding = this.readableEncoding;
      this.on('data', (chunk: Buffer | string) => {
        const b = typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : chunk;
        chunks.push(b);
        length += b.length;
      });
      this.on('end', () => {
        settled = true;
        try {
          resolve(this.finish(type, chunks, length) as T);
        } catch (err) {
          reject(err);
        }
      });
      this.on('error', (err: Error) => {
        if (settled) return;
        settled = true;
        reject(err);
      });
      this.on('close', () => {
        if (settled) return;
        settled = true;
        reject(this.errored ?? new BodyAbortedError());
      });
    });
  }

  private finish(type: ConsumeType, chunks: Buffer[], length: number): unknown {
    if (type === 'blob') return new Blob(chunks, { type: this.contentType });
    const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
    if (type === 'text' || type === 'json') {
      const start = buf.length > 2 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
      const s = buf.toString('utf8', start);
      return type === 'text' ? s : JSON.parse(s);
    }
    const bytes = new Uint8Array(length);
    bytes.set(buf);
    return type === 'bytes' ? bytes : bytes.buffer;
  }
}

/** A held body's length counts what it holds (the Readable's own getter sees only its buffer). */
const readableLengthOfReadable = Object.getOwnPropertyDescriptor(Readable.prototype, 'readableLength')!.get!;
Object.defineProperty(MeshBody.prototype, 'readableLength', {
  get(this: MeshBody): number {
    return (readableLengthOfReadable.call(this) as number) + this.heldLength;
  },
  configurable: true,
  enumerable: false,
});
