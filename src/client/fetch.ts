/**
 * `mesh.fetch` for mesh services, without the fetch algorithm underneath. Wrapping the built-in `fetch` with
 * the mesh's dispatcher cost a call about what fetch itself costs: the built-in fetch runs the whole WHATWG
 * fetch algorithm (a Request object, header guards, the fetch controller, a second Headers list for the
 * response, a byte stream) on every call (bench/overhead). Here a call to a mesh service goes straight into
 * the mesh (`invoke`, as `mesh.request` does) and the answer is made into a global `Response` with its
 * headers and a byte stream over the body (./fetch-response.ts): what a caller can observe of a fetch
 * response is the same, at a fraction of the cost.
 *
 * The rule: the fast path is never wrong, only sometimes not taken. Anything it does not implement goes to
 * the built-in fetch (with the mesh's dispatcher), which gives its own answer, its TypeError included: a
 * `Request` as input, a URL with credentials, hosts that are not mesh services, a FormData body (the undici
 * package cannot serialise Node's built-in FormData), a `Headers` object (it lists its names in lower case,
 * and fetch sends them as written), the init members the fast path does not implement (`integrity`,
 * `referrer`, `referrerPolicy`, `dispatcher`, `window`, `mode`, `credentials`, `cache`, `keepalive`,
 * `priority`), the headers undici treats specially, and any init it does not check (a forbidden method, a
 * body on GET, an invalid header). undici's own fetch tests hold both paths to the built-in fetch
 * (scripts/undici-fetch-suite, docs/client.md).
 *
 * Kept from fetch, and tested (test/client/fetch.test.ts, test/client/fetch-fidelity.test.ts):
 * - the request: fetch's default headers (`accept`, `accept-language`, `sec-fetch-mode`, `user-agent`,
 *   `accept-encoding`, https's as the running Node's fetch sends it) unless the caller set them (the order of
 *   header lines may differ); header names as the caller wrote them; the URL's host, not a caller's `Host`;
 *   every body type with the content type and length fetch gives it (string, bytes, URLSearchParams, Blob, a
 *   ReadableStream or async iterable with `duplex: 'half'`); method names normalised as fetch does; an empty
 *   query's `?`;
 * - the response (./fetch-response.ts): an instance of the global `Response`; `url` and `redirected`; no
 *   body for HEAD, 1xx, 204, 205 and 304; a byte stream (BYOB readers work) with back-pressure; content
 *   codings decoded (and refused) as the running Node's fetch does; a resource-timing entry; body errors as
 *   fetch's `TypeError('terminated')` with the typed cause;
 * - redirects: `follow` (at most 20; 303, and 301/302 after a POST, become GET without a body; the caller's
 *   credentials are dropped across origins; a stream body cannot be sent twice; a non-ASCII `Location` read
 *   as UTF-8), `manual` and `error` (any redirect status); each hop is routed by its own host;
 * - aborts: an aborted signal rejects with its reason, before the call (cancelling a stream body) and while
 *   the body streams;
 * - a response body never read is released when the Response is garbage collected (as undici's fetch does).
 */
import { MeshError } from '../core/errors.js';
import { copySpelling } from '../core/header-case.js';
import type { HeaderRecord, MeshRequest, MeshResponse, RequestBody } from '../core/message.js';
import { responseHeaders } from '../core/message.js';
import { drain } from '../resilience/retry.js';
import { DEADLINE_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import { HTTP_TOKEN } from '../core/validate.js';
import { cancelBody, flatPairs, hasCredentials, isDisturbed, utf8Location } from './fetch-parts.js';
import {
  FetchedResponse,
  KEEP_EMPTY_QUERY,
  newTiming,
  toResponse,
  undiciAtLeast,
  type Timing,
} from './fetch-response.js';
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
  /**
   * The mesh clock's monotonic time (ms; `performance.now()`'s origin for the system clock): the caller's
   * deadline is one budget for every redirect hop, and resource timing reads it.
   */
  now(): number;
  /** Keeps a call in flight for `mesh.close()` while its caller has not read a body that has arrived. */
  retain(): () => void;
}

/** A parsed URL that names a mesh service. */
export interface FetchTarget extends Target {
  /** @internal The mesh's logical service. */
  readonly service: unknown;
}

/** The headers Node's built-in fetch adds when the caller did not (checked against Node 22, 24 and 26). */
const DEFAULT_ACCEPT_ENCODING = 'gzip, deflate';
const DEFAULT_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['accept', '*/*'],
  ['accept-language', '*'],
  ['user-agent', 'node'],
  ['accept-encoding', DEFAULT_ACCEPT_ENCODING],
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

/** `Accept-Encoding` fetch sends to https URLs when the caller did not set one (undici 8.6 added zstd). */
const HTTPS_ACCEPT_ENCODING = undiciAtLeast(8, 6) ? 'br, gzip, deflate, zstd' : 'br, gzip, deflate';

/**
 * Headers undici refuses or treats specially on a request (`connection`, `keep-alive`, `transfer-encoding`,
 * `upgrade`, `expect`), and `content-length`, which fetch computes: with any of them the built-in fetch
 * gives its own answer.
 */
const SPECIAL_HEADERS = [
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'expect',
  'content-length',
];

/** Methods fetch normalises to upper case (not `patch`). */
const NORMALISED_METHODS: Readonly<Record<string, string>> = {
  delete: 'DELETE',
  get: 'GET',
  head: 'HEAD',
  options: 'OPTIONS',
  post: 'POST',
  put: 'PUT',
};

const TOKEN = HTTP_TOKEN;
/** A header value fetch accepts: no NUL, CR or LF (fetch trims the surrounding whitespace itself). */
const BAD_VALUE = /[\0\r\n]/;
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;

type RedirectMode = 'follow' | 'manual' | 'error';

/** One hop's request as the caller described it, before the mesh touches it. */
interface Hop {
  method: string;
  /** Normalised, with fetch's defaults; each hop sends a copy (the mesh adds and removes headers in place). */
  headers: HeaderRecord;
  body: RequestBody;
  /** Whether the body can be sent again (a redirect with 307/308). */
  replayable: boolean;
  /** The caller set `Accept-Encoding` (fetch's default for https differs from http's). */
  ownEncoding: boolean;
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
  // A URL with credentials: fetch rejects it with its TypeError.
  if (hasCredentials(input)) return host.slow(input, init);
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
  if (signal?.aborted) {
    // As fetch does: a stream body is cancelled with the reason.
    cancelBody(hop.body, signal.reason);
    return Promise.reject(signal.reason);
  }
  const redirect = (init?.redirect ?? 'follow') as RedirectMode;
  if (target.protocol === 'https:' && !hop.ownEncoding)
    hop.headers['accept-encoding'] = HTTPS_ACCEPT_ENCODING;
  const now = host.now();
  const budget = hop.headers[DEADLINE_HEADER];
  if (budget !== undefined) {
    // A malformed value is left for the mesh to reject on the first hop.
    const ms = parseDeadlineHeader(budget);
    if (ms !== undefined) hop.deadlineAt = now + ms;
  }
  return send(host, target, hop, signal, redirect, 0, newTiming(now, target.href));
}

function defaultHop(): Hop {
  const headers: HeaderRecord = {};
  for (const [k, v] of DEFAULT_HEADERS) headers[k] = v;
  return { method: 'GET', headers, body: null, replayable: true, ownEncoding: false };
}

/** The hop an init describes, or undefined when the built-in fetch should judge it. */
function hopFromInit(init: RequestInit): Hop | undefined {
  // An init that is not a plain object (a Request, a class instance) may carry anything: fetch reads it.
  const proto = Object.getPrototypeOf(init) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  // What the fast path does not implement goes to the built-in fetch: subresource integrity, a referrer or
  // its policy, the caller's own dispatcher, `window`, and the members whose values fetch validates or
  // acts on (`mode`, `credentials`, `cache`, `keepalive`, `priority`).
  const i = init as RequestInit & {
    window?: unknown;
    dispatcher?: unknown;
    priority?: unknown;
    cache?: unknown;
  };
  if (
    i.integrity !== undefined ||
    i.referrer !== undefined ||
    i.referrerPolicy !== undefined ||
    i.dispatcher !== undefined ||
    i.window !== undefined ||
    i.mode !== undefined ||
    i.credentials !== undefined ||
    i.cache !== undefined ||
    i.keepalive !== undefined ||
    i.priority !== undefined
  )
    return undefined;
  // A Headers object lists its names in lower case, but fetch sends them as they were written: only the
  // built-in fetch can read that spelling.
  if (init.headers instanceof Headers) return undefined;
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
  for (const h of SPECIAL_HEADERS) if (headers[h] !== undefined) return undefined;
  // fetch sends the URL's host, whatever the caller set (the mesh then applies `hostHeader`).
  if (headers.host !== undefined) delete headers.host;
  const ownEncoding = headers['accept-encoding'] !== undefined;
  for (const [k, v] of DEFAULT_HEADERS) if (headers[k] === undefined) headers[k] = v;
  const raw = init.body;
  if (raw === undefined || raw === null)
    return { method, headers, body: null, replayable: true, ownEncoding };
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
  return { method, headers, body, replayable, ownEncoding };
}

function copyHeaders(h: HeaderRecord): HeaderRecord {
  const out: HeaderRecord = {};
  for (const k in h) {
    const v = h[k]!;
    out[k] = typeof v === 'string' ? v : v.slice();
  }
  copySpelling(h, out);
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
  timing: Timing,
): Promise<Response> {
  const href = target.href;
  const req: MeshRequest = {
    method: hop.method,
    protocol: target.protocol,
    authority: target.host,
    service: target.hostname,
    // fetch keeps an empty query's '?' (`/echo?`), which the URL's `search` drops (undici 7.24.4 and later).
    path:
      KEEP_EMPTY_QUERY && href.charCodeAt(href.length - 1) === 63 && target.path.indexOf('?') === -1
        ? `${target.path}?`
        : target.path,
    // A copy: the mesh adds and removes headers in place, and a redirect sends the caller's headers again.
    headers: copyHeaders(hop.headers),
    body: hop.body,
  };
  if (wantsFetchMetadata(target)) req.headers['sec-fetch-mode'] = 'cors';
  if (redirects > 0) {
    setRemaining(host, hop, req.headers);
    timing.requestStart = host.now();
  }
  let pending: Promise<MeshResponse>;
  try {
    pending = host.send(target, req, signal);
  } catch (err) {
    pending = Promise.reject(err);
  }
  return pending.then(
    (res) => {
      timing.responseStart = host.now();
      const status = res.statusCode;
      if (REDIRECT_STATUS.has(status) && redirect !== 'manual') {
        // 'error' rejects any redirect status, with or without a Location (fetch's "network error").
        if (redirect === 'error') {
          drain(res);
          throw new TypeError('fetch failed', { cause: new Error('unexpected redirect') });
        }
        const location = responseHeaders(res).location;
        if (location !== undefined)
          return follow(host, target, hop, res, signal, redirect, redirects, utf8Location(location), timing);
      }
      return toResponse(host, res, hop.method, href, redirects > 0, timing, signal);
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
  timing: Timing,
): Promise<Response> {
  drain(res); // the redirect's own body: read and dropped, so its connection is reused
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
  const nextHop: Hop = {
    method,
    headers,
    body,
    replayable,
    ownEncoding: hop.ownEncoding,
    deadlineAt: hop.deadlineAt,
  };
  timing.redirectEnd = host.now();
  if (timing.redirectStart === 0) timing.redirectStart = timing.start;
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
  if (target.protocol === 'https:' && !hop.ownEncoding) headers['accept-encoding'] = HTTPS_ACCEPT_ENCODING;
  else if (!hop.ownEncoding) headers['accept-encoding'] = DEFAULT_ACCEPT_ENCODING;
  return send(host, target, nextHop, signal, redirect, redirects + 1, timing);
}

/** A redirect hop carries what is left of the caller's deadline, not the caller's original budget. */
function setRemaining(host: FetchHost, hop: Hop, headers: HeaderRecord): void {
  const at = hop.deadlineAt;
  if (at !== undefined) headers[DEADLINE_HEADER] = String(Math.max(0, Math.floor(at - host.now())));
}
