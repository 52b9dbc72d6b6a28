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
  body: Readable;
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
