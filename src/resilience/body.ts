/**
 * Request bodies that can be sent again. A retry must send the same bytes: a string or bytes can simply be
 * sent twice; a stream can be read only once, so it is recorded as it is sent, up to a limit. The first
 * attempt still streams (nothing is read ahead, so nothing is delayed); a retry replays the recording. A
 * stream larger than the limit stops being recorded, and such a request is sent once and never replayed. A
 * stream that was never started (the connection was refused before any byte was read) is still intact and
 * can be sent as it is.
 *
 * On the dispatcher path (`fetch(url, { dispatcher })`) every body arrives as an async iterable, even a string:
 * that is how fetch hands bodies over, so this recording is what makes those requests replayable too.
 */
import type { RequestBody } from '../core/message.js';

/**
 * Whether a body is the same bytes however often it is sent (none, a string, bytes, a Blob, FormData), so a retry needs
 * no recording of it.
 *
 * @example
 * ```ts
 * isStaticBody('{"a":1}'); // true
 * ```
 */
export function isStaticBody(body: RequestBody): boolean {
  if (body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array)
    return true;
  if (body instanceof Blob) return true; // undici reads it afresh for every request
  // FormData: undici serialises it afresh for every request.
  const b = body as { append?: unknown; getAll?: unknown };
  return typeof b.append === 'function' && typeof b.getAll === 'function';
}

/**
 * Wraps a request body so attempts after the first can resend it.
 *
 * @example
 * ```ts
 * const body = new ReplayableBody(req.body, 64 * 1024);
 * req.body = body.forAttempt();
 * // ... attempt failed before the server processed it:
 * if (body.replayable) req.body = body.forAttempt();
 * ```
 */
export class ReplayableBody {
  private readonly staticBody: boolean;
  private started = false;
  private ended = false;
  private recording = true;
  private size = 0;
  private chunks: Buffer[] = [];
  private replay: Buffer | undefined;
  private attempts = 0;

  constructor(
    private readonly source: RequestBody,
    private readonly limit: number,
  ) {
    this.staticBody = isStaticBody(source);
  }

  /** Whether another attempt can send exactly the same bytes. */
  get replayable(): boolean {
    if (this.staticBody || !this.started) return true;
    return this.ended && this.recording;
  }

  /**
   * Whether {@link forAttempt} can hand out the bytes without reading the source: a buffered body, or a
   * stream recorded to its end within the limit. A second attempt sent while the first is still in flight (a
   * backup request) needs this: a stream not yet read would otherwise be read by both.
   */
  get complete(): boolean {
    return this.staticBody || (this.ended && this.recording);
  }

  /** True when the body was a stream larger than the replay limit. */
  get overLimit(): boolean {
    return !this.recording;
  }

  /** The body to send on the next attempt. Call only when {@link replayable} (or for the first attempt). */
  forAttempt(): RequestBody {
    this.attempts++;
    if (this.staticBody) return this.source;
    if (!this.started) return this.record();
    if (this.replay === undefined) {
      this.replay = Buffer.concat(this.chunks);
      this.chunks = [];
    }
    return this.replay;
  }

  private async *record(): AsyncGenerator<Buffer> {
    this.started = true;
    for await (const chunk of this.source as AsyncIterable<Uint8Array | string>) {
      const buf =
        typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      if (this.recording) {
        this.size += buf.length;
        if (this.size > this.limit) {
          this.recording = false;
          this.chunks = [];
        } else {
          this.chunks.push(buf);
        }
      }
      yield buf;
    }
    this.ended = true;
  }
}
