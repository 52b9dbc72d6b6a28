/**
 * The caller's spelling of header names. The stack works on one lower-case record (src/client/headers.ts),
 * but Node's fetch and undici's Agent send a header under the name the caller wrote (`Content-Type` stays
 * `Content-Type`), and some servers care. The entry points note a name whose spelling differs from its lower
 * case under one symbol key of the record (invisible to `Object.keys`, `for...in` and JSON, copied by object
 * spread), and the pool sends those names as written. A record without the key, the common case, is sent as
 * it is.
 */
import type { HeaderRecord } from './message.js';

/** The key of a record's spelling map: lower-case name → the name as the caller wrote it. */
export const HEADER_CASE: unique symbol = Symbol('meshfetch.headerCase');

type Spelled = HeaderRecord & { [HEADER_CASE]?: Record<string, string> };

/**
 * Notes that `lower` was written `name` (the first spelling of a name is kept, as fetch's header list does).
 *
 * @example
 * ```ts
 * noteSpelling(headers, 'content-type', 'Content-Type');
 * ```
 */
export function noteSpelling(headers: HeaderRecord, lower: string, name: string): void {
  const h = headers as Spelled;
  const map = (h[HEADER_CASE] ??= Object.create(null) as Record<string, string>);
  map[lower] ??= name;
}

/** Copies `from`'s spelling map (shared: it is never changed once the call is under way) onto `to`. */
export function copySpelling(from: HeaderRecord, to: HeaderRecord): void {
  const map = (from as Spelled)[HEADER_CASE];
  if (map !== undefined) (to as Spelled)[HEADER_CASE] = map;
}

/** The name as the caller wrote it. */
export function spelled(headers: HeaderRecord, lower: string): string {
  return (headers as Spelled)[HEADER_CASE]?.[lower] ?? lower;
}

/**
 * The headers to hand undici: the record itself when every name is lower case, else a flat
 * `[name, value, ...]` array with the caller's spelling.
 *
 * @example
 * ```ts
 * wireHeaders(normalizeHeaders({ 'Content-Type': 'text/plain' })); // ['Content-Type', 'text/plain']
 * ```
 */
export function wireHeaders(headers: HeaderRecord): HeaderRecord | string[] {
  const map = (headers as Spelled)[HEADER_CASE];
  if (map === undefined) return headers;
  const out: string[] = [];
  for (const k in headers) {
    const name = map[k] ?? k;
    const v = headers[k]!;
    if (typeof v === 'string') out.push(name, v);
    else for (const x of v) out.push(name, x);
  }
  return out;
}
