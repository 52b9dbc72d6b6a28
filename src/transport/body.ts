/**
 * The response body of a mesh call: a Node `Readable` with the body mixin undici's `request()` gives
 * (`text()`, `json()`, `bytes()`, `arrayBuffer()`, `blob()`, `dump()`, `bodyUsed`, `body`), so code written for
 * `Pool.request` works unchanged on `mesh.request`. undici does not export its own body class (it lives in a
 * private file, `lib/api/readable.js`), and importing it by path breaks with any undici release; this class is
 * written against Node's public stream API and undici's documented behaviour instead (undici
 * docs/api/Dispatcher.md, "Body Mixins"; the Fetch standard's "consume body").
 *
 * Flow control: `_read` asks the connection for more (the dispatch controller's `resume`), and the handler
 * pauses the connection when `push` returns false. Destroying the body before its end aborts the request on
 * the wire. The mesh's body-done hooks (src/core/body-done.ts) run from `_destroy`, once `errored` is set.
 */
import { Readable } from 'node:stream';
import { BODY_DONE_HOOKS, runBodyDoneHooks } from '../core/body-done.js';

/** What a body needs of the request it belongs to. */
export interface MeshBodyOptions {
  /** More data wanted: resume reading the socket. */
  resume: () => void;
  /** The body was destroyed before its end: abort the request with this reason. */
  abort: (reason: Error) => void;
  contentType?: string | undefined;
  contentLength?: number | undefined;
  highWaterMark?: number;
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

/**
 * A response body. Obtain it from `mesh.request()`; it is never constructed by application code.
 *
 * @example
 * ```ts
 * const { body } = await mesh.request('http://users/v1/users/42');
 * const user = await body.json();
 * ```
 */
export class MeshBody extends Readable {
  /** The mesh's body-done hooks (src/core/body-done.ts); `null` until one is added. */
  [BODY_DONE_HOOKS]: unknown = null;
  private readonly abortRequest: (reason: Error) => void;
  private readonly contentType: string;
  private readonly contentLength: number | null;
  private bytesRead = 0;
  /** Listened to (data/readable) or consumed: an error can reach a listener without a deferral. */
  private used = false;
  private consuming = false;
  private web: ReadableStream | undefined = undefined;

  constructor(opts: MeshBodyOptions) {
    super({ autoDestroy: true, read: opts.resume, highWaterMark: opts.highWaterMark ?? 64 * 1024 });
    this.abortRequest = opts.abort;
    this.contentType = opts.contentType ?? '';
    const len = opts.contentLength;
    this.contentLength = len !== undefined && Number.isFinite(len) ? len : null;
  }

  override push(chunk: Buffer | null): boolean {
    if (chunk !== null) this.bytesRead += chunk.length;
    return super.push(chunk);
  }

  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    if (event === 'data' || event === 'readable') this.used = true;
    return super.on(event, listener);
  }

  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return this.on(event, listener);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const synthesized = err === null && !this.readableEnded;
    if (synthesized) err = new BodyAbortedError();
    if (err !== null) this.abortRequest(err);
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
