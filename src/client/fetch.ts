/**
 * `mesh.fetch` for mesh services, without the fetch algorithm underneath. Wrapping the built-in `fetch` with
 * the mesh's dispatcher cost a call about what fetch itself costs: the built-in fetch runs the whole WHATWG
 * fetch algorithm (a Request object, header guards, the fetch controller, a second Headers list for the
 * response, a byte stream) on every call (bench/overhead). Here a call to a mesh service goes straight into the mesh (`invoke`, as
 * `mesh.request` does) and the answer is made into a global `Response` with its headers and a byte stream
 * over the body: what a caller can observe of a fetch response is the same, at a fraction of the cost.
 *
 * Kept from fetch, and tested (test/client/fetch.test.ts):
 * - the request: fetch's default headers (`accept`, `accept-language`, `sec-fetch-mode`, `user-agent`,
 *   `accept-encoding`) unless the caller set them (the order of header lines may differ); every body type
 *   with the content type and length fetch gives it
 *   (string, bytes, URLSearchParams, Blob, a ReadableStream or async iterable with
 *   `duplex: 'half'`); method names normalised as fetch does;
 * - the response: an instance of the global `Response`; `url` and `redirected`; no body for HEAD, 1xx, 204,
 *   205 and 304; a byte stream (BYOB readers work) with back-pressure (the socket pauses while the reader
 *   does); `gzip`, `deflate` and `br` bodies decoded, as fetch decodes them;
 * - redirects: `follow` (at most 20; 303, and 301/302 after a POST, become GET without a body; the caller's
 *   credentials are dropped across origins; a stream body cannot be sent twice), `manual` and `error`; each
 *   hop is routed by its own host;
 * - aborts: an aborted signal rejects with its reason, before the call and while the body streams;
 * - a response body never read is released when the Response is garbage collected (as undici's fetch does).
 *
 * Left to the built-in fetch (with the mesh's dispatcher), unchanged: a `Request` object as input, hosts that
 * are not mesh services, a FormData body (the undici package cannot serialise Node's built-in FormData, and the
 * built-in fetch streams it with its length), and any init that the fast path does not check (a forbidden method, a body on GET,
 * an invalid header): fetch then gives its own answer, its TypeError included.
 */
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { MeshError } from '../core/errors.js';
import type {
  HeaderRecord,
  MeshRequest,
  MeshResponse,
  RequestBody,
  ResponseHeaderRecord,
} from '../core/message.js';
import { responseHeaders } from '../core/message.js';
import { drain } from '../resilience/retry.js';
import { DEADLINE_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import { normalizeHeaders, type HeadersInput } from './headers.js';
import type { Target } from './url.js';

/** What the fast path needs of the mesh. */
export interface FetchHost {
  /** The URL's parts and the logical service, when the URL names a mesh service over http(s). */
  target(url: string | URL): FetchTarget | undefined;
  /** Runs one logical call through a service's stack (`Mesh.invoke`). */
  send(target: FetchTarget, req: MeshRequest, signal: AbortSignal | undefined): Promise<MeshResponse>;
  /** The built-in fetch through the mesh's dispatcher: everything the fast path leaves alone. */
  slow(input: string | URL | Request, init: RequestInit | undefined): Promise<Response>;
  /** The mesh clock's monotonic time (ms): the caller's deadline is one budget for every redirect hop. */
  now(): number;
}

/** A parsed URL that names a mesh service. */
export interface FetchTarget extends Target {
  /** @internal The mesh's logical service. */
  readonly service: unknown;
}

/** The headers Node's built-in fetch adds when the caller did not (checked against Node 22, 24 and 26). */
const DEFAULT_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['accept', '*/*'],
  ['accept-language', '*'],
  ['user-agent', 'node'],
  ['accept-encoding', 'gzip, deflate'],
];

/**
 * `sec-fetch-mode: cors` (Fetch Metadata): the fetch of undici 6 and 7 (Node 22, 24) sets it on every
 * request; undici 8's (Node 26) only for a potentially trustworthy URL (https, loopback, localhost), as the
 * spec says. The fast path does what the running Node's built-in fetch does.
 */
const METADATA_TRUSTWORTHY_ONLY = Number((process.versions.undici ?? '0').split('.')[0]) >= 8;

function wantsFetchMetadata(target: Target): boolean {
  if (!METADATA_TRUSTWORTHY_ONLY || target.protocol === 'https:') return true;
  const h = target.hostname;
  return (
    h === 'localhost' ||
    h === 'localhost.' ||
    h.endsWith('.localhost') ||
    h.endsWith('.localhost.') ||
    h === '[::1]' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
  );
}

/** Init keys the fast path reads; the others (`cache`, `mode`, `credentials`, `keepalive`...) change nothing in Node. */
const NORMALISED_METHODS: Readonly<Record<string, string>> = {
  delete: 'DELETE',
  get: 'GET',
  head: 'HEAD',
  options: 'OPTIONS',
  post: 'POST',
  put: 'PUT',
};

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A header value fetch accepts: no NUL, CR or LF (fetch trims the surrounding whitespace itself). */
const BAD_VALUE = /[\0\r\n]/;
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;
/** Bytes the response stream holds ahead of the reader before the socket is paused. */
const STREAM_HIGH_WATER = 64 * 1024;

type RedirectMode = 'follow' | 'manual' | 'error';

/** One hop's request as the caller described it, before the mesh touches it. */
interface Hop {
  method: string;
  /** Normalised, with fetch's defaults; each hop sends a copy (the mesh adds and removes headers in place). */
  headers: HeaderRecord;
  body: RequestBody;
  /** Whether the body can be sent again (a redirect with 307/308). */
  replayable: boolean;
  /**
   * When the caller's `mesh-deadline-ms` runs out, on the mesh clock: one budget for the whole fetch, redirects
   * included. Each later hop sends what remains of it (never the caller's original value again).
   */
  deadlineAt?: number | undefined;
}

/**
 * `mesh.fetch`. Resolves with a global `Response`; rejects as `fetch` does, except that an error the mesh
 * raised rejects as the typed {@link MeshError} itself.
 *
 * @example
 * ```ts
 * const res = await meshFetch(host, 'http://users/v1/users/42', { headers: { accept: 'application/json' } });
 * ```
 */
export function meshFetch(
  host: FetchHost,
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<Response> {
  if (typeof input !== 'string' && !(input instanceof URL)) return host.slow(input, init);
  let target: FetchTarget | undefined;
  try {
    target = host.target(input);
  } catch {
    target = undefined;
  }
  if (target === undefined) return host.slow(input, init);
  const hop = init === undefined ? defaultHop() : hopFromInit(init);
  if (hop === undefined) return host.slow(input, init);
  const signal = init?.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const redirect = (init?.redirect ?? 'follow') as RedirectMode;
  const budget = hop.headers[DEADLINE_HEADER];
  if (budget !== undefined) {
    // A malformed value is left for the mesh to reject on the first hop.
    const ms = parseDeadlineHeader(budget);
    if (ms !== undefined) hop.deadlineAt = host.now() + ms;
  }
  return send(host, target, hop, signal, redirect, 0);
}

function defaultHop(): Hop {
  const headers: HeaderRecord = {};
  for (const [k, v] of DEFAULT_HEADERS) headers[k] = v;
  return { method: 'GET', headers, body: null, replayable: true };
}

/** The hop an init describes, or undefined when the built-in fetch should judge it. */
function hopFromInit(init: RequestInit): Hop | undefined {
  const redirect = init.redirect;
  if (redirect !== undefined && redirect !== 'follow' && redirect !== 'manual' && redirect !== 'error')
    return undefined;
  let method = 'GET';
  if (init.method !== undefined) {
    const m = init.method;
    if (typeof m !== 'string' || !TOKEN.test(m)) return undefined;
    method = NORMALISED_METHODS[m.toLowerCase()] ?? m;
    const upper = method.toUpperCase();
    if (upper === 'CONNECT' || upper === 'TRACE' || upper === 'TRACK') return undefined;
  }
  let headers: HeaderRecord;
  try {
    headers = normalizeHeaders(init.headers as HeadersInput);
  } catch {
    return undefined;
  }
  for (const k in headers) {
    if (!TOKEN.test(k)) return undefined;
    const v = headers[k]!;
    if (typeof v === 'string' ? BAD_VALUE.test(v) : v.some((x) => BAD_VALUE.test(x))) return undefined;
  }
  for (const [k, v] of DEFAULT_HEADERS) if (headers[k] === undefined) headers[k] = v;
  const raw = init.body;
  if (raw === undefined || raw === null) return { method, headers, body: null, replayable: true };
  if (method === 'GET' || method === 'HEAD') return undefined;
  let body: RequestBody;
  let type: string | undefined;
  let replayable = true;
  if (typeof raw === 'string') {
    body = raw;
    type = 'text/plain;charset=UTF-8';
  } else if (raw instanceof Uint8Array) {
    body = raw;
  } else if (raw instanceof ArrayBuffer) {
    body = new Uint8Array(raw);
  } else if (ArrayBuffer.isView(raw)) {
    body = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  } else if (raw instanceof URLSearchParams) {
    body = raw.toString();
    type = 'application/x-www-form-urlencoded;charset=UTF-8';
  } else if (raw instanceof Blob) {
    // undici sends a Blob with its length, as many times as needed.
    body = raw as unknown as RequestBody;
    if (raw.type !== '') type = raw.type;
  } else if (
    (raw instanceof ReadableStream ||
      typeof (raw as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') &&
    (init as { duplex?: string }).duplex === 'half'
  ) {
    if (raw instanceof ReadableStream && (raw.locked || isDisturbed(raw))) return undefined;
    body = raw as unknown as AsyncIterable<Uint8Array>;
    replayable = false;
  } else {
    return undefined;
  }
  if (type !== undefined && headers['content-type'] === undefined) headers['content-type'] = type;
  return { method, headers, body, replayable };
}

function isDisturbed(stream: ReadableStream): boolean {
  // Node's stream/web marks a stream that was read from; `Response` refuses such a body, so does fetch.
  try {
    return new Response(stream).bodyUsed;
  } catch {
    return true;
  }
}

function copyHeaders(h: HeaderRecord): HeaderRecord {
  const out: HeaderRecord = {};
  for (const k in h) {
    const v = h[k]!;
    out[k] = typeof v === 'string' ? v : v.slice();
  }
  return out;
}

/** Sends one hop and follows redirects from it. */
function send(
  host: FetchHost,
  target: FetchTarget,
  hop: Hop,
  signal: AbortSignal | undefined,
  redirect: RedirectMode,
  redirects: number,
): Promise<Response> {
  const req: MeshRequest = {
    method: hop.method,
    protocol: target.protocol,
    authority: target.host,
    service: target.hostname,
    path: target.path,
    // A copy: the mesh adds and removes headers in place, and a redirect sends the caller's headers again.
    headers: copyHeaders(hop.headers),
    body: hop.body,
  };
  if (wantsFetchMetadata(target)) req.headers['sec-fetch-mode'] = 'cors';
  if (redirects > 0) setRemaining(host, hop, req.headers);
  let pending: Promise<MeshResponse>;
  try {
    pending = host.send(target, req, signal);
  } catch (err) {
    pending = Promise.reject(err);
  }
  return pending.then(
    (res) => {
      const status = res.statusCode;
      if (REDIRECT_STATUS.has(status) && redirect !== 'manual') {
        const location = responseHeaders(res).location;
        if (location !== undefined)
          return follow(host, target, hop, res, signal, redirect, redirects, String(location));
      }
      return toResponse(res, hop.method, target.href, redirects > 0);
    },
    (err: unknown) => {
      throw fetchError(err, signal);
    },
  );
}

/** What a failed call rejects with: the abort reason, a mesh error as is, anything else as fetch's TypeError. */
function fetchError(err: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof MeshError) return err;
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return err;
  return new TypeError('fetch failed', { cause: err });
}

function follow(
  host: FetchHost,
  from: FetchTarget,
  hop: Hop,
  res: MeshResponse,
  signal: AbortSignal | undefined,
  redirect: RedirectMode,
  redirects: number,
  location: string,
): Promise<Response> {
  drain(res); // the redirect's own body: read and dropped, so its connection is reused
  if (redirect === 'error')
    return Promise.reject(new TypeError('fetch failed', { cause: new Error('unexpected redirect') }));
  if (redirects >= MAX_REDIRECTS)
    return Promise.reject(new TypeError('fetch failed', { cause: new Error('redirect count exceeded') }));
  let next: URL;
  try {
    next = new URL(location, from.href);
  } catch (err) {
    return Promise.reject(new TypeError('fetch failed', { cause: err }));
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:')
    return Promise.reject(
      new TypeError('fetch failed', { cause: new Error('URL scheme must be a HTTP(S) scheme') }),
    );
  const status = res.statusCode;
  const headers = copyHeaders(hop.headers);
  let { method, body, replayable } = hop;
  if (
    status === 303
      ? method !== 'GET' && method !== 'HEAD'
      : (status === 301 || status === 302) && method === 'POST'
  ) {
    method = 'GET';
    body = null;
    replayable = true;
    for (const h of [
      'content-encoding',
      'content-language',
      'content-location',
      'content-type',
      'content-length',
    ])
      delete headers[h];
  } else if (body !== null && !replayable) {
    return Promise.reject(
      new TypeError('fetch failed', {
        cause: new Error('a stream request body cannot be sent again on a redirect'),
      }),
    );
  }
  if (next.origin !== from.origin) {
    delete headers.authorization;
    delete headers['proxy-authorization'];
    delete headers.cookie;
  }
  delete headers.host;
  const nextHop: Hop = { method, headers, body, replayable, deadlineAt: hop.deadlineAt };
  let target: FetchTarget | undefined;
  try {
    target = host.target(next);
  } catch {
    target = undefined;
  }
  if (target === undefined) {
    // Out of the mesh: the built-in fetch takes the rest of the chain (with the mesh's dispatcher).
    setRemaining(host, nextHop, headers);
    return host
      .slow(next, {
        method,
        headers: flatPairs(headers),
        body: body as RequestInit['body'],
        redirect,
        ...(signal ? { signal } : {}),
        ...(body !== null && !replayable ? { duplex: 'half' } : {}),
      } as RequestInit)
      .then((r) => (r.redirected ? r : new FetchedResponse(r.body, r, r.url, true)));
  }
  return send(host, target, nextHop, signal, redirect, redirects + 1);
}

/** A redirect hop carries what is left of the caller's deadline, not the caller's original budget. */
function setRemaining(host: FetchHost, hop: Hop, headers: HeaderRecord): void {
  const at = hop.deadlineAt;
  if (at !== undefined) headers[DEADLINE_HEADER] = String(Math.max(0, Math.floor(at - host.now())));
}

function flatPairs(h: HeaderRecord): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const k in h) {
    const v = h[k]!;
    if (typeof v === 'string') out.push([k, v]);
    else for (const x of v) out.push([k, x]);
  }
  return out;
}

/** Makes the global `Response` for a mesh response. */
function toResponse(res: MeshResponse, method: string, url: string, redirected: boolean): Response {
  const status = res.statusCode;
  const headers = responseHeaders(res);
  const init: ResponseInit = {
    status,
    statusText: validReason(res.statusText),
    headers: headerPairs(headers),
  };
  if (method === 'HEAD' || NULL_BODY_STATUS.has(status)) {
    res.body.resume(); // nothing to read: the connection goes back to the pool
    return new FetchedResponse(null, init, url, redirected);
  }
  const raw = res.body;
  const response = new FetchedResponse(
    bodyStream(decoded(raw, headers['content-encoding'])),
    init,
    url,
    redirected,
  );
  registry.register(response, new WeakRef(raw), raw);
  raw.once('close', () => registry.unregister(raw));
  return response;
}

/**
 * A global `Response` that reports what fetch's responses report and a constructed one cannot: the `url` it
 * came from, whether it was `redirected`, and the `basic` type. Getters on the class, not properties on each
 * instance, so every response keeps one shape. (`clone()` returns a plain Response, whose `url` is empty.)
 */
class FetchedResponse extends Response {
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
function decoded(body: Readable, encoding: string | string[] | undefined): Readable {
  if (encoding === undefined) return body;
  const codings = (typeof encoding === 'string' ? encoding : encoding.join(','))
    .toLowerCase()
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0 || codings.length > 5) return body;
  const decoders: Readable[] = [];
  const lenient = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  for (let i = codings.length - 1; i >= 0; i--) {
    const c = codings[i];
    if (c === 'gzip' || c === 'x-gzip') decoders.push(zlib.createGunzip(lenient));
    else if (c === 'deflate') decoders.push(zlib.createInflate(lenient));
    else if (c === 'br')
      decoders.push(
        zlib.createBrotliDecompress({
          flush: zlib.constants.BROTLI_OPERATION_FLUSH,
          finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
        }),
      );
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

/**
 * A byte stream over a Node Readable, with back-pressure: the Readable is paused while the stream holds
 * {@link STREAM_HIGH_WATER} bytes the reader has not taken, and resumed when the reader pulls. Chunks are
 * copied, since a byte stream takes ownership of (detaches) the buffer it is given. Cancelling the stream
 * destroys the Readable (the mesh then releases the connection and ends the call).
 */
function bodyStream(body: Readable): ReadableStream<Uint8Array> {
  // Set once the stream can take no more (the reader cancelled it, or it closed or errored): a chunk the
  // Readable still emits after that (one already in its buffer when it was destroyed) is dropped, since a
  // closed stream's controller throws on enqueue.
  let finished = false;
  return new ReadableStream(
    {
      type: 'bytes',
      start(controller) {
        body.on('data', (chunk: Buffer | string) => {
          if (finished) return;
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          if (bytes.byteLength === 0) return;
          controller.enqueue(new Uint8Array(bytes));
          if ((controller.desiredSize ?? 0) <= 0) body.pause();
        });
        body.once('end', () => {
          if (finished) return;
          finished = true;
          controller.close();
          // A BYOB read still waiting when the body ends is answered with zero bytes (the end).
          controller.byobRequest?.respond(0);
        });
        body.once('error', (err) => {
          if (finished) return;
          finished = true;
          controller.error(err);
        });
        body.once('close', () => {
          if (finished || body.readableEnded || body.errored) return;
          finished = true;
          controller.error(new DOMException('The body was closed', 'AbortError'));
        });
      },
      pull() {
        if (!finished && body.isPaused()) body.resume();
      },
      cancel(reason) {
        finished = true;
        body.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: STREAM_HIGH_WATER },
  );
}

/** Releases the body of a Response that was dropped unread (its socket would otherwise wait for the deadline). */
const registry = new FinalizationRegistry<WeakRef<Readable>>((ref) => {
  const body = ref.deref();
  if (body !== undefined && !body.destroyed) body.destroy();
});
