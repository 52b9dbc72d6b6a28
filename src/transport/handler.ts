/**
 * The pool leaf's undici handler: `pool.dispatch(opts, handler)` with a handler made for the mesh, instead of
 * `pool.request(opts)`. undici's `request` wraps every call in a RequestHandler that is an `AsyncResource`
 * (async-hooks init and destroy per call), validates its options again, adds a Promise around a callback,
 * and, when given a signal, allocates two closures and a `'close'` listener on the body to follow it
 * (bench/overhead's profile: undici's share of a call grew from 4.9 to 10.4 µs at concurrency 1 between bare
 * `Pool.request` and the full mesh stack). Here one object per attempt is the handler, the promise's
 * settler and the signal's abort listener (a `handleEvent` object), and the response body is undici's own
 * `BodyReadable`, so `body.text()`, `.json()`, `.dump()` and back-pressure behave exactly as with
 * `pool.request`.
 *
 * The order of events and the error handling follow undici 7's `lib/api/api-request.js`: an abort before the
 * connection is kept and applied in `onConnect`; after the headers it destroys the body; an error before the
 * headers rejects, after them it destroys the body (in a microtask, so queued data is delivered first); a
 * request body stream is destroyed with the error.
 */
import { util, type Dispatcher } from 'undici';
import { Readable as BodyReadable } from 'undici/lib/api/readable.js';
import { BODY_DONE_HOOKS, runBodyDoneHooks, whenBodyDone } from '../core/body-done.js';
import { ParsedResponse, type MeshResponse, type ResponseHeaderRecord } from '../core/message.js';
import type { CancelSignal } from '../core/signal.js';

type Resolve = (res: MeshResponse) => void;
type Reject = (err: unknown) => void;

function noop(): void {}

function isStream(
  x: unknown,
): x is NodeJS.ReadableStream & { destroy(err?: Error): void; destroyed?: boolean } {
  return typeof x === 'object' && x !== null && typeof (x as { pipe?: unknown }).pipe === 'function';
}

function destroy(stream: { destroy(err?: Error): void; destroyed?: boolean }, err: unknown): void {
  if (stream.destroyed === true) return;
  stream.destroy(err as Error);
}

/**
 * undici's response body, which runs the mesh's body-done hooks itself (src/core/body-done.ts): the hook
 * field is part of the object from its construction, and the hooks run when the body is destroyed (which
 * `autoDestroy` does after `'end'`), in its `_destroy` callback, so `errored` holds why; no `'close'`
 * listener, and one tick sooner than `'close'`.
 *
 * @example
 * ```ts
 * const body = new MeshBody({ resume, abort });
 * whenBodyDone(body, () => console.log('done'));
 * ```
 */
export class MeshBody extends BodyReadable {
  [BODY_DONE_HOOKS]: unknown = null;

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this[BODY_DONE_HOOKS] === null) {
      super._destroy(err, callback);
      return;
    }
    super._destroy(err, (e?: Error | null) => {
      callback(e);
      runBodyDoneHooks(this);
    });
  }
}

/**
 * One attempt on the wire. Resolves with the response at its headers; the body streams after.
 *
 * @example
 * ```ts
 * const res = await new Promise<MeshResponse>((resolve, reject) =>
 *   pool.dispatch({ method: 'GET', path: '/' }, new MeshRequestHandler(resolve, reject, signal, 'GET', null, (e) => e)),
 * );
 * ```
 */
export class MeshRequestHandler implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | undefined = undefined;
  private reason: unknown = undefined;
  private res: MeshBody | undefined = undefined;
  private settled = false;

  constructor(
    private readonly resolve: Resolve,
    private readonly reject: Reject,
    private readonly signal: CancelSignal | undefined,
    private readonly method: string,
    private body: unknown,
    /** Maps an error before the headers to what the caller gets (the pool's TransportError). */
    private readonly mapError: (err: unknown) => unknown,
  ) {
    if (signal === undefined) return;
    if (signal.aborted) this.reason = signal.reason ?? new Error('The request was aborted');
    else signal.addEventListener('abort', this);
  }

  /** The signal aborted: before the connection, kept for `onConnect`; before headers, abort; after, destroy. */
  handleEvent(): void {
    const reason = this.signal!.reason ?? new Error('The request was aborted');
    this.reason = reason;
    const res = this.res;
    if (res !== undefined) destroy(res.on('error', noop), reason);
    else if (this.abort !== undefined) this.abort(reason as Error);
  }

  private unlisten(): void {
    this.signal?.removeEventListener('abort', this);
  }

  /** @internal The body is done: stop following the signal. */
  onBodyDone(): void {
    this.unlisten();
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.reason !== undefined) {
      abort(this.reason as Error);
      return;
    }
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx: informational, the final answer follows
    const headers = util.parseHeaders(rawHeaders) as ResponseHeaderRecord;
    const contentLength = headers['content-length'];
    const res = new MeshBody({
      resume,
      abort: this.abort!,
      contentType: headers['content-type'] as string | undefined,
      contentLength:
        this.method !== 'HEAD' && contentLength !== undefined ? Number(contentLength) : undefined,
    });
    this.res = res;
    // The signal is followed until the body is done (an abort mid-body destroys it).
    if (this.signal !== undefined) whenBodyDone(res, this);
    this.settled = true;
    this.resolve(new ParsedResponse(statusCode, statusText, headers, res));
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.res!.push(chunk);
  }

  onComplete(): void {
    this.res!.push(null);
  }

  onError(err: Error): void {
    if (!this.settled) {
      this.settled = true;
      this.unlisten();
      this.reject(this.mapError(err));
    }
    const res = this.res;
    if (res !== undefined) {
      this.res = undefined;
      // Data already queued is delivered before the error.
      queueMicrotask(() => destroy(res.on('error', noop), err));
    }
    const body = this.body;
    if (body !== undefined && isStream(body)) {
      this.body = undefined;
      (body as NodeJS.EventEmitter).on('error', noop);
      destroy(body, err);
    }
  }
}
