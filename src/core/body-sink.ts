/**
 * A response body handed straight to one consumer. The pool leaf's body is a Node `Readable`, which every
 * entry point and module may read; but when the consumer is an undici dispatch handler (`mesh.dispatcher`,
 * under the built-in fetch), the Readable's buffering is pure cost: each chunk is pushed into its buffer, read
 * back out, and its end goes through three `process.nextTick`s before the handler hears of it. A body class
 * that supports it lets such a consumer take the bytes as they arrive instead ({@link divertBody}), with
 * back-pressure and the body's errors, and still closes the Readable at the end so that its body-done hooks
 * (src/core/body-done.ts) and `'close'` listeners run as for any other body.
 *
 * A body that cannot be diverted (a module replaced it, or it has already been read) is read as a Readable.
 */
import type { Readable } from 'node:stream';

/** Where a diverted body's bytes go. */
export interface BodySink {
  /** A chunk of the body. Returning false holds the flow until the sink calls {@link BodyTap}'s resume. */
  data(chunk: Buffer): boolean;
  /** The body ended: every byte has gone to `data`. */
  end(): void;
  /** The body failed, or was destroyed before its end; nothing more comes. */
  error(err: Error): void;
}

/** The keys of a divertible body's methods (see {@link BodyTap}). */
export const DIVERT: unique symbol = Symbol('meshfetch.divert');
export const PAUSE_SINK: unique symbol = Symbol('meshfetch.pauseSink');
export const RESUME_SINK: unique symbol = Symbol('meshfetch.resumeSink');

/** What a divertible body class declares. */
export interface BodyTap {
  /**
   * Diverts the body into `sink`: what has arrived goes to the sink now (its end too, when the whole body is
   * here), the rest as it arrives. False when the body cannot be diverted any more (it is then to be read as
   * the Readable it is).
   */
  [DIVERT](sink: BodySink): boolean;
  /** Hold the chunks that come from now on (for a pause the sink decides outside `data`). */
  [PAUSE_SINK](): void;
  /** Hand on what was held and let the flow go on. */
  [RESUME_SINK](): void;
}

/**
 * The body's flow control, when its class supports diversion. Take it before diverting: the sink may pause
 * and resume while the first chunks are handed to it.
 *
 * @example
 * ```ts
 * const tap = tapOf(res.body);
 * if (tap === undefined || !tap[DIVERT](sink)) res.body.on('data', write).on('end', done).on('error', fail);
 * ```
 */
export function tapOf(body: Readable): BodyTap | undefined {
  return typeof (body as Partial<BodyTap>)[DIVERT] === 'function' ? (body as unknown as BodyTap) : undefined;
}
