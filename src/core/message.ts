/**
 * The request and response that flow through every stack. They are undici-shaped (method, path, a header
 * record, a body that may be a stream) rather than WHATWG `Request`/`Response`, because the leaf is an
 * undici `Pool` and building WHATWG objects per attempt would cost more than the whole stack. The entry
 * points (fetch, request, dispatcher) convert at the edge, once per call.
 */
import type { Readable } from 'node:stream';

/** A request body: buffered (string, bytes) or streamed (a Readable or any async iterable of bytes). */
export type RequestBody =
  string | Uint8Array | Readable | AsyncIterable<Uint8Array | string> | null | undefined;

/** Request headers: lower-case names. */
export type HeaderRecord = Record<string, string | string[]>;

/**
 * One logical request.
 *
 * @example
 * ```ts
 * const req: MeshRequest = {
 *   method: 'GET', protocol: 'http:', authority: 'users', service: 'users',
 *   path: '/v1/users/42', headers: { accept: 'application/json' }, body: null,
 * };
 * ```
 */
export interface MeshRequest {
  method: string;
  /** The URL scheme of the logical call. */
  protocol: 'http:' | 'https:';
  /** The logical authority as written in the URL (host, with the port if one was given). */
  authority: string;
  /** The logical service name: the URL's hostname, lower case. */
  service: string;
  /** Path and query. */
  path: string;
  /** Lower-case header names. The mesh's own per-call headers are removed before the request is sent. */
  headers: HeaderRecord;
  body: RequestBody;
}

/**
 * A response as it comes off the wire. The body is a stream and is never buffered by the mesh; whoever
 * discards a response must consume or destroy its body (an undrained body stalls the connection).
 *
 * @example
 * ```ts
 * const res: MeshResponse = await service.call(req, ctx);
 * for await (const chunk of res.body) process.stdout.write(chunk);
 * ```
 */
export interface MeshResponse {
  statusCode: number;
  statusText: string;
  /** Alternating names and values, as received. */
  rawHeaders: string[];
  /**
   * The same headers parsed into a record (lower-case names, repeated names as arrays), when whoever made
   * the response already has them (the pool leaf does: undici parses them once). Read headers with
   * {@link responseHeaders} / {@link responseHeader}, which use it when present and fall back to
   * `rawHeaders`.
   */
  headers?: ResponseHeaderRecord;
  body: Readable;
}

/** Parsed response headers: lower-case names, repeated names as arrays (undici's `ResponseData.headers`). */
export type ResponseHeaderRecord = Record<string, string | string[] | undefined>;

/**
 * Parses alternating raw headers into undici's record shape (lower-case names; repeated names as arrays).
 *
 * @example
 * ```ts
 * parseRawHeaders(['Set-Cookie', 'a=1', 'set-cookie', 'b=2']); // { 'set-cookie': ['a=1', 'b=2'] }
 * ```
 */
export function parseRawHeaders(raw: readonly string[]): ResponseHeaderRecord {
  const out: ResponseHeaderRecord = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

/** Flattens a header record into alternating names and values. */
export function flattenHeaders(headers: ResponseHeaderRecord): string[] {
  const out: string[] = [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    if (typeof v === 'string') out.push(k, v);
    else for (const x of v) out.push(k, x);
  }
  return out;
}

/**
 * A response's headers as a record, parsed at most once per response.
 *
 * @example
 * ```ts
 * const type = responseHeaders(res)['content-type'];
 * ```
 */
export function responseHeaders(res: MeshResponse): ResponseHeaderRecord {
  return (res.headers ??= parseRawHeaders(res.rawHeaders));
}

/**
 * One response header (case-insensitive name); the first value when it was repeated.
 *
 * @example
 * ```ts
 * responseHeader(res, 'retry-after'); // '2' or undefined
 * ```
 */
export function responseHeader(res: MeshResponse, name: string): string | undefined {
  const h = res.headers;
  if (h === undefined) return rawHeader(res.rawHeaders, name.toLowerCase());
  const v = h[name.toLowerCase()];
  return typeof v === 'string' ? v : v?.[0];
}

/**
 * A response whose headers arrived parsed (from undici): `rawHeaders` is derived from them on first read.
 * The pool leaf makes these; filters may make plain {@link MeshResponse} objects instead.
 *
 * @example
 * ```ts
 * const res = new ParsedResponse(200, 'OK', { 'content-type': 'text/plain' }, body);
 * res.rawHeaders; // ['content-type', 'text/plain']
 * ```
 */
export class ParsedResponse implements MeshResponse {
  private raw: string[] | undefined = undefined;
  constructor(
    public statusCode: number,
    public statusText: string,
    public headers: ResponseHeaderRecord,
    public body: Readable,
  ) {}
  get rawHeaders(): string[] {
    return (this.raw ??= flattenHeaders(this.headers));
  }
  set rawHeaders(v: string[]) {
    this.raw = v;
    this.headers = parseRawHeaders(v);
  }
}

/**
 * Looks a header up in a raw header list (case-insensitive). Returns the first value.
 *
 * @example
 * ```ts
 * rawHeader(['Retry-After', '2'], 'retry-after'); // '2'
 * ```
 */
export function rawHeader(rawHeaders: readonly string[], name: string): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const k = rawHeaders[i]!;
    if (k.length === name.length && k.toLowerCase() === name) return rawHeaders[i + 1];
  }
  return undefined;
}
