/**
 * Small parts of `mesh.fetch`'s request side (./fetch.ts): what fetch checks of a URL and a body before the
 * call, how it reads a redirect's `Location`, and the headers handed on to the built-in fetch.
 */
import { spelled } from '../core/header-case.js';
import type { HeaderRecord, RequestBody } from '../core/message.js';

/** Whether a URL carries a user name or password (fetch rejects it). */
export function hasCredentials(input: string | URL): boolean {
  if (typeof input !== 'string') return input.username !== '' || input.password !== '';
  if (input.indexOf('@') === -1) return false;
  try {
    const u = new URL(input);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/** Cancels a request body that is a stream (a ReadableStream, or an async iterator's `return`). */
export function cancelBody(body: RequestBody, reason: unknown): void {
  if (body instanceof ReadableStream) {
    if (!body.locked) body.cancel(reason).catch(noop);
  } else if (body !== null && typeof body === 'object' && Symbol.asyncIterator in body) {
    const it = (body as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    if (typeof it.return === 'function') it.return().catch(noop);
  }
}

function noop(): void {}

/** Whether a ReadableStream was read from (fetch refuses such a body). */
export function isDisturbed(stream: ReadableStream): boolean {
  // Node's stream/web marks a stream that was read from; `Response` refuses such a body, so does fetch.
  try {
    return new Response(stream).bodyUsed;
  } catch {
    return true;
  }
}

/**
 * A `Location` value as fetch reads it: undici gives header values as latin1 strings, and fetch decodes one
 * that is not plain ASCII as UTF-8 (`/안녕` arrives as its UTF-8 bytes).
 */
export function utf8Location(location: string | string[]): string {
  const v = typeof location === 'string' ? location : location[0]!;
  for (let i = 0; i < v.length; i++) {
    if (v.charCodeAt(i) > 0x7f) return Buffer.from(v, 'latin1').toString('utf8');
  }
  return v;
}

/** The headers as pairs for the built-in fetch, names as the caller wrote them. */
export function flatPairs(h: HeaderRecord): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const k in h) {
    const name = spelled(h, k);
    const v = h[k]!;
    if (typeof v === 'string') out.push([name, v]);
    else for (const x of v) out.push([name, x]);
  }
  return out;
}
