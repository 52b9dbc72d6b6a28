/**
 * The response side of `mesh.fetch`'s fast path (./fetch.ts): the global `Response` made from a mesh response,
 * its body as a byte stream decoded as the running Node's fetch decodes it, the resource-timing entry fetch
 * records when the body has been read, and the release of a body dropped unread.
 */
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { responseHeaders, type MeshResponse, type ResponseHeaderRecord } from '../core/message.js';

/** The clock resource timing reads (the mesh's; `performance.now()`'s origin for the system clock). */
export interface Now {
  now(): number;
}

/** What the response side needs of the mesh: its clock, and a way to keep a call in flight for `close()`. */
export interface ResponseHost extends Now {
  /**
   * Counts one more call in flight until the returned function is called (once): a body that has arrived in
   * full but that the caller has not read yet is still a call in flight for `mesh.close({ gracePeriodMs })`.
   */
  retain(): () => void;
}

/** The running Node's undici (its built-in fetch), as [major, minor, patch]. */
const UNDICI = (process.versions.undici ?? '0.0.0').split('.').map(Number) as [number, number, number];
export const undiciAtLeast = (major: number, minor: number): boolean =>
  UNDICI[0] === major ? UNDICI[1]! >= minor : UNDICI[0] > major;

/** fetch keeps an empty query's `?` on the wire (`/echo?`) from undici 7.24.4 and 8.0; before, it dropped it. */
export const KEEP_EMPTY_QUERY =
  undiciAtLeast(8, 0) || (UNDICI[0] === 7 && (UNDICI[1] > 24 || (UNDICI[1] === 24 && UNDICI[2] >= 4)));

/** fetch reports the response status in its resource-timing entry from undici 7 (Node 22's leaves it out). */
const REPORTS_STATUS = UNDICI[0] >= 7;

/** fetch rejects an answer with more than 5 content codings (undici 6.23, 7.18 and 8). */
const MAX_CODINGS =
  undiciAtLeast(8, 0) || (UNDICI[0] === 7 && UNDICI[1] >= 18) || (UNDICI[0] === 6 && UNDICI[1] >= 23)
    ? 5
    : Infinity;

/** fetch decodes zstd bodies from undici 7.11, where Node's zlib has zstd. */
const ZSTD =
  undiciAtLeast(7, 11) &&
  typeof (zlib as { createZstdDecompress?: unknown }).createZstdDecompress === 'function';

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
/** Bytes the response stream holds ahead of the reader before the socket is paused. */
const STREAM_HIGH_WATER = 64 * 1024;

/** A fetch's resource timing (W3C Resource Timing, as undici's fetch records it), on the mesh clock. */
export interface Timing {
  /** The URL the fetch was called with (the entry's name). */
  readonly url: string;
  readonly start: number;
  redirectStart: number;
  redirectEnd: number;
  requestStart: number;
  responseStart: number;
}

export function newTiming(now: number, url: string): Timing {
  return { url, start: now, redirectStart: 0, redirectEnd: 0, requestStart: now, responseStart: 0 };
}

type MarkResourceTiming = (
  timingInfo: object,
  requestedUrl: string,
  initiatorType: string,
  global: object,
  cacheMode: string,
  bodyInfo: object,
  responseStatus: number | undefined,
) => void;

/**
 * Records the fetch's `PerformanceResourceTiming` entry (`performance.getEntriesByType('resource')`), when
 * its body has been read to the end, as fetch does.
 */
function markTiming(clock: Now, t: Timing, status: number, encoded: number, decoded: number): void {
  const mark = (performance as unknown as { markResourceTiming?: MarkResourceTiming }).markResourceTiming;
  if (mark === undefined) return;
  const postRedirect = t.redirectEnd === 0 ? t.start : t.redirectEnd;
  const info = {
    startTime: t.start,
    redirectStartTime: t.redirectStart,
    redirectEndTime: t.redirectEnd,
    postRedirectStartTime: postRedirect,
    finalServiceWorkerStartTime: 0,
    finalNetworkRequestStartTime: t.requestStart,
    finalNetworkResponseStartTime: t.responseStart,
    endTime: clock.now(),
    encodedBodySize: encoded,
    decodedBodySize: decoded,
    // As undici's fetch, which has no connection timing: every connection time is the post-redirect start.
    finalConnectionTimingInfo: {
      domainLookupStartTime: postRedirect,
      domainLookupEndTime: postRedirect,
      connectionStartTime: postRedirect,
      connectionEndTime: postRedirect,
      secureConnectionStartTime: postRedirect,
      ALPNNegotiatedProtocol: undefined,
    },
  };
  mark.call(
    performance,
    info,
    t.url,
    'fetch',
    globalThis,
    '',
    { encodedBodySize: encoded, decodedBodySize: decoded },
    REPORTS_STATUS ? status : undefined,
  );
}

/** Makes the global `Response` for a mesh response. */
export function toResponse(
  clock: ResponseHost,
  res: MeshResponse,
  method: string,
  url: string,
  redirected: boolean,
  timing: Timing,
  signal: AbortSignal | undefined,
): Response {
  const status = res.statusCode;
  const headers = responseHeaders(res);
  const init: ResponseInit = {
    status,
    statusText: validReason(res.statusText),
    headers: headerPairs(headers),
  };
  if (method === 'HEAD' || NULL_BODY_STATUS.has(status)) {
    res.body.resume(); // nothing to read: the connection goes back to the pool
    markTiming(clock, timing, status, 0, 0);
    return new FetchedResponse(null, init, url, redirected);
  }
  const raw = res.body;
  const encoding = headers['content-encoding'];
  let codings: string[] | undefined;
  if (encoding !== undefined) {
    codings = (typeof encoding === 'string' ? encoding : encoding.join(',')).toLowerCase().split(',');
    if (codings.length > MAX_CODINGS) {
      raw.destroy();
      throw new TypeError('fetch failed', {
        cause: new Error(
          `too many content-encodings in response: ${codings.length}, maximum allowed is ${MAX_CODINGS}`,
        ),
      });
    }
  }
  const body = codings === undefined ? raw : decoded(raw, codings);
  let encoded = 0;
  if (body !== raw) raw.on('data', (c: Buffer) => (encoded += c.length));
  const entry: Held = { raw: new WeakRef(raw), release: undefined };
  const response = new FetchedResponse(
    bodyStream(
      body,
      signal,
      (decodedBytes) =>
        markTiming(clock, timing, status, body === raw ? decodedBytes : encoded, decodedBytes),
      clock,
      raw,
      entry,
    ),
    init,
    url,
    redirected,
  );
  registry.register(response, entry, raw);
  return response;
}

/**
 * A global `Response` that reports what fetch's responses report and a constructed one cannot: the `url` it
 * came from, whether it was `redirected`, and the `basic` type. Getters on the class, not properties on each
 * instance, so every response keeps one shape. (`clone()` returns a plain Response, whose `url` is empty.)
 */
export class FetchedResponse extends Response {
  /** @internal */
  readonly fetchedUrl: string;
  /** @internal */
  readonly fetchedRedirected: boolean;
  constructor(body: ReadableStream<Uint8Array> | null, init: ResponseInit, url: string, redirected: boolean) {
    super(body, init);
    this.fetchedUrl = url;
    this.fetchedRedirected = redirected;
  }
}
Object.defineProperties(FetchedResponse.prototype, {
  url: {
    get(this: FetchedResponse) {
      return this.fetchedUrl;
    },
  },
  redirected: {
    get(this: FetchedResponse) {
      return this.fetchedRedirected;
    },
  },
  type: { get: () => 'basic' },
});

/** A reason phrase the Response constructor accepts (HTAB, SP, VCHAR, obs-text), or ''. */
function validReason(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x7f || c > 0xff || (c < 0x20 && c !== 0x09)) return '';
  }
  return s;
}

function headerPairs(h: ResponseHeaderRecord): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (typeof v === 'string') out.push([k, v]);
    else for (const x of v) out.push([k, x]);
  }
  return out;
}

/**
 * The body decoded as fetch decodes it (`Content-Encoding` of gzip, x-gzip, deflate or br, in the order they
 * were applied; an unknown coding leaves the bytes as they are).
 */
function decoded(body: Readable, codings: string[]): Readable {
  const decoders: Readable[] = [];
  const lenient = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  for (let i = codings.length - 1; i >= 0; i--) {
    const c = codings[i]!.trim();
    if (c === 'gzip' || c === 'x-gzip') decoders.push(zlib.createGunzip(lenient));
    else if (c === 'deflate') decoders.push(zlib.createInflate(lenient));
    else if (c === 'br')
      decoders.push(
        zlib.createBrotliDecompress({
          flush: zlib.constants.BROTLI_OPERATION_FLUSH,
          finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
        }),
      );
    else if (c === 'zstd' && ZSTD) decoders.push(createZstd());
    // Any other coding (`identity` and an empty one included): fetch leaves the bytes as they are.
    else return body;
  }
  let out: Readable = body;
  for (const d of decoders) {
    const src = out;
    src.on('error', (err) => d.destroy(err));
    d.on('close', () => {
      if (!src.readableEnded) src.destroy();
    });
    out = src.pipe(d as unknown as NodeJS.WritableStream) as unknown as Readable;
  }
  return out;
}

function createZstd(): Readable {
  const z = zlib as unknown as {
    createZstdDecompress(o: object): Readable;
    constants: Record<string, number>;
  };
  return z.createZstdDecompress({ flush: z.constants.ZSTD_e_continue, finishFlush: z.constants.ZSTD_e_end });
}

/**
 * What reading a body rejects with when the body fails: fetch's `TypeError('terminated')` with the cause
 * (a typed `TransportError` with phase `body` for a connection cut mid-body), or an abort's own reason.
 */
function bodyError(err: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return err;
  return new TypeError('terminated', { cause: err });
}

/**
 * A byte stream over a Node Readable, with back-pressure: the Readable is paused while the stream holds
 * {@link STREAM_HIGH_WATER} bytes the reader has not taken, and resumed when the reader pulls. Chunks are
 * copied, since a byte stream takes ownership of (detaches) the buffer it is given. Cancelling the stream
 * destroys the Readable (the mesh then releases the connection and ends the call).
 *
 * When the Readable ends while the stream still holds bytes the reader has not taken, the connection goes
 * back to the pool at once, but the call stays in flight for `mesh.close()` ({@link ResponseHost.retain})
 * until the reader has taken the last byte, cancels the stream, or drops the Response: a close with a grace
 * period waits for a caller who has its answer but has not read it yet.
 */
function bodyStream(
  body: Readable,
  signal: AbortSignal | undefined,
  onEnd: (bytes: number) => void,
  host: ResponseHost,
  raw: Readable,
  entry: Held,
): ReadableStream<Uint8Array> {
  let bytesRead = 0;
  // Set once the stream can take no more (the reader cancelled it, or it closed or errored): a chunk the
  // Readable still emits after that (one already in its buffer when it was destroyed) is dropped, since a
  // closed stream's controller throws on enqueue.
  let finished = false;
  const close = (controller: ReadableByteStreamController): void => {
    controller.close();
    // A BYOB read still waiting when the body ends is answered with zero bytes (the end).
    controller.byobRequest?.respond(0);
    onEnd(bytesRead);
  };
  // The stream is done with the body: nothing left to release when the Response is collected.
  const done = (): void => {
    registry.unregister(raw);
    const r = entry.release;
    entry.release = undefined;
    r?.();
  };
  return new ReadableStream(
    {
      type: 'bytes',
      start(controller) {
        body.on('data', (chunk: Buffer | string) => {
          if (finished) return;
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          if (bytes.byteLength === 0) return;
          bytesRead += bytes.byteLength;
          controller.enqueue(new Uint8Array(bytes));
          if ((controller.desiredSize ?? 0) <= 0) body.pause();
        });
        body.once('end', () => {
          if (finished) return;
          finished = true;
          if (controller.desiredSize !== STREAM_HIGH_WATER) {
            // Bytes the reader has not taken: closed (and the hold released) in pull, once it has.
            entry.release = host.retain();
            return;
          }
          close(controller);
          done();
        });
        body.once('error', (err) => {
          if (finished) return;
          finished = true;
          controller.error(bodyError(err, signal));
          done();
        });
        body.once('close', () => {
          if (finished || body.readableEnded || body.errored) return;
          finished = true;
          controller.error(new DOMException('The body was closed', 'AbortError'));
          done();
        });
      },
      pull(controller) {
        if (entry.release !== undefined) {
          // Called after each read the queue answered: the last one leaves it empty.
          if (controller.desiredSize === STREAM_HIGH_WATER) {
            close(controller);
            done();
          }
          return;
        }
        if (!finished && body.isPaused()) body.resume();
      },
      cancel(reason) {
        finished = true;
        done();
        body.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: STREAM_HIGH_WATER },
  );
}

/** What a Response dropped unread leaves to release: its body, and the call's hold once the body has ended. */
interface Held {
  readonly raw: WeakRef<Readable>;
  release: (() => void) | undefined;
}

/**
 * Releases the body of a Response that was dropped unread (its socket would otherwise wait for the deadline),
 * and the call's hold when its body had arrived in full.
 */
const registry = new FinalizationRegistry<Held>((entry) => {
  const release = entry.release;
  entry.release = undefined;
  release?.();
  const body = entry.raw.deref();
  if (body !== undefined && !body.destroyed) body.destroy();
});
