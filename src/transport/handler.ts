/**
 * The pool leaf's undici handler: `pool.dispatch(opts, handler)` with a handler made for the mesh, instead of
 * `pool.request(opts)`. undici's `request` wraps every call in a RequestHandler that is an `AsyncResource`
 * (async-hooks init and destroy per call), validates its options again, adds a Promise around a callback,
 * and, when given a signal, allocates closures and a `'close'` listener on the body to follow it. Here one
 * object per attempt is the handler, the promise's settler and the signal's abort listener (a `handleEvent`
 * object), and the response body is {@link MeshBody}, which has the body mixin of undici's `request()`.
 *
 * It speaks undici's dispatch-handler API (`onRequestStart`, `onResponseStart`, `onResponseData`,
 * `onResponseEnd`, `onResponseError`; undici docs/api/Dispatcher.md), and orders events as undici's own
 * `request()` does: an abort before the request starts is kept and applied in `onRequestStart`; after the
 * headers it destroys the body; an error before the headers rejects, after them it destroys the body (in a
 * microtask, so queued data is delivered first) with the error mapped as the pool maps it (phase `body`); a
 * request body stream is destroyed with the error.
 */
import type { Dispatcher } from 'undici';
import { whenBodyDone } from '../core/body-done.js';
import { ParsedResponse, type MeshResponse, type ResponseHeaderRecord } from '../core/message.js';
import type { CancelSignal } from '../core/signal.js';
import { MeshBody, type BodySource } from './body.js';

export { MeshBody };

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
 * One attempt on the wire. Resolves with the response at its headers; the body streams after.
 *
 * @example
 * ```ts
 * const res = await new Promise<MeshResponse>((resolve, reject) =>
 *   pool.dispatch({ method: 'GET', path: '/' }, new MeshRequestHandler(resolve, reject, signal, 'GET', null, (e) => e)),
 * );
 * ```
 */
export class MeshRequestHandler implements Dispatcher.DispatchHandler, BodySource {
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private reason: unknown = undefined;
  private res: MeshBody | undefined = undefined;
  private settled = false;

  constructor(
    private readonly resolve: Resolve,
    private readonly reject: Reject,
    private readonly signal: CancelSignal | undefined,
    private readonly method: string,
    private body: unknown,
    /**
     * Maps an undici error to what the caller gets (the pool's TransportError): before the headers the call
     * rejects with it, after them (`gotHeaders`) the body errors with it (phase `body`).
     */
    private readonly mapError: (err: unknown, gotHeaders?: boolean) => unknown,
  ) {
    if (signal === undefined) return;
    if (signal.aborted) this.reason = signal.reason ?? new Error('The request was aborted');
    else signal.addEventListener('abort', this);
  }

  /** The signal aborted: before the request started, kept for `onRequestStart`; before headers, abort; after, destroy. */
  handleEvent(): void {
    const reason = this.signal!.reason ?? new Error('The request was aborted');
    this.reason = reason;
    const res = this.res;
    if (res !== undefined) {
      this.res = undefined;
      destroy(res.on('error', noop), reason);
    } else if (this.controller !== undefined) this.controller.abort(reason as Error);
  }

  private unlisten(): void {
    this.signal?.removeEventListener('abort', this);
  }

  /** @internal The body is done: stop following the signal. */
  onBodyDone(): void {
    this.unlisten();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.reason !== undefined) {
      controller.abort(this.reason as Error);
      return;
    }
    this.controller = controller;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusText?: string,
  ): void {
    if (statusCode < 200) return; // 1xx: informational, the final answer follows
    this.controller = controller;
    const contentLength = headers['content-length'];
    const res = new MeshBody(
      this,
      headers['content-type'] as string | undefined,
      this.method !== 'HEAD' && contentLength !== undefined ? Number(contentLength) : undefined,
    );
    this.res = res;
    // The signal is followed until the body is done (an abort mid-body destroys it).
    if (this.signal !== undefined) whenBodyDone(res, this);
    this.settled = true;
    this.resolve(new ParsedResponse(statusCode, statusText ?? '', headers as ResponseHeaderRecord, res));
  }

  /** The body wants more: resume reading the response (its {@link BodySource} side). */
  resume(): void {
    this.controller?.resume();
  }

  /** The body was destroyed before its end: abort the request. */
  abort(reason: Error): void {
    this.controller?.abort(reason);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.res;
    if (res !== undefined && !res.push(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.res?.push(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (!this.settled) {
      this.settled = true;
      this.unlisten();
      this.reject(this.mapError(err));
    }
    const res = this.res;
    if (res !== undefined) {
      this.res = undefined;
      // A connection cut mid-body is a typed TransportError (phase 'body'), never undici's raw error; an abort
      // reason passes through as it is. Data already queued is delivered before the error.
      const bodyErr = this.mapError(err, true);
      queueMicrotask(() => destroy(res.on('error', noop), bodyErr));
    }
    const body = this.body;
    if (body !== undefined && isStream(body)) {
      this.body = undefined;
      (body as NodeJS.EventEmitter).on('error', noop);
      destroy(body, err);
    }
  }
}
