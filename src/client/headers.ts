/**
 * Header normalisation at the entry points: whatever shape the caller used (a plain object, a `Headers`,
 * an array of pairs, undici's flat array), the stack sees one lower-case record. Done once per call.
 */
import { InvalidRequestError } from '../core/errors.js';
import { noteSpelling } from '../core/header-case.js';
import type { HeaderRecord } from '../core/message.js';
import { MESH_HEADERS } from '../core/call-options.js';
import { validateHeader } from './validate.js';

/** Header shapes accepted by `mesh.request` and the dispatcher. */
export type HeadersInput =
  | Record<string, string | string[] | number | undefined>
  | Iterable<readonly [string, string]>
  | ReadonlyArray<string | Buffer>
  | Headers
  | null
  | undefined;

function add(out: HeaderRecord, name: string, value: string): void {
  const k = name.toLowerCase();
  validateHeader(k, value); // at the entry point: a bad header counts against no endpoint (./validate.ts)
  // The caller's spelling is kept for the wire (src/core/header-case.ts), as fetch and undici keep it.
  if (k !== name) noteSpelling(out, k, name);
  const prev = out[k];
  if (prev === undefined) out[k] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[k] = [prev, value];
}

/**
 * Copies headers into a fresh lower-case record (the caller's object is never mutated). Each name and value is
 * validated: an {@link InvalidRequestError} names the header that cannot go on the wire. A name written
 * otherwise than in lower case is noted and sent as written (src/core/header-case.ts).
 *
 * @example
 * ```ts
 * normalizeHeaders({ Accept: 'text/plain' }); // { accept: 'text/plain' }
 * ```
 */
export function normalizeHeaders(input: HeadersInput): HeaderRecord {
  const out: HeaderRecord = {};
  if (input == null) return out;
  if (Array.isArray(input)) {
    if (input.length > 0 && Array.isArray(input[0])) {
      for (const pair of input as unknown as Array<[string, string]>)
        add(out, String(pair[0]), String(pair[1]));
      return out;
    }
    if (input.length % 2 !== 0)
      throw new InvalidRequestError('headers', input, 'an even-length [name, value, ...] array');
    for (let i = 0; i < input.length; i += 2) add(out, String(input[i]), String(input[i + 1]));
    return out;
  }
  if (typeof (input as Headers).forEach === 'function' && typeof (input as Headers).get === 'function') {
    (input as Headers).forEach((v, k) => add(out, k, v));
    return out;
  }
  if (typeof (input as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of input as Iterable<readonly [string, string]>) add(out, k, v);
    return out;
  }
  if (typeof input !== 'object')
    throw new InvalidRequestError('headers', input, 'an object of header values');
  for (const k of Object.keys(input)) {
    const v = (input as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) add(out, k, String(x));
    else add(out, k, String(v));
  }
  return out;
}

/** Removes the mesh's own headers (for requests to hosts that are not mesh services). */
export function stripMeshHeaders(headers: HeaderRecord): HeaderRecord {
  // The deadline, the idempotent flag and the routing override (docs/routing.md): mesh services only.
  for (const h of MESH_HEADERS) delete headers[h];
  return headers;
}

/** Converts a header record back to undici's flat array. */
export function toFlatHeaders(headers: HeaderRecord): string[] {
  const out: string[] = [];
  for (const k of Object.keys(headers)) {
    const v = headers[k]!;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, v);
  }
  return out;
}
