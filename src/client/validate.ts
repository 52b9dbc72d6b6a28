/**
 * Request validation at the entry points. A request the caller got wrong (a header value with CR or LF, a
 * header name that is not a token, a body of a type no transport can send, a bad method or URL) must fail
 * before it enters a service's stack, with an {@link InvalidRequestError} naming the field: undici would
 * otherwise reject it inside the pool, where its argument error looked like a transport failure of the
 * endpoint, counted by failure accrual and the circuit breaker against a backend that never saw a byte
 * (DESIGN.md: "a request the caller got wrong ... counts against nothing").
 */
import { InvalidRequestError } from '../core/errors.js';
import { HTTP_TOKEN } from '../core/validate.js';

/** An RFC 9110 token: header names and methods (core/validate's, the project's one copy). */
export const TOKEN_RE = HTTP_TOKEN;
/**
 * Header names already found to be tokens: the same few names come on every call, and a set lookup costs
 * less than the regular expression. Bounded: it starts over when full.
 */
const tokenNames = new Set<string>();

/** Whether a header value holds NUL, CR or LF (undici and fetch refuse them: header injection). */
function hasBadValueChar(value: string): boolean {
  // A loop, not a regular expression: header values are short, and the call into the RegExp costs more.
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 10 || c === 13 || c === 0) return true;
  }
  return false;
}

/**
 * Throws an {@link InvalidRequestError} unless `name` and `value` can go on the wire as one header line.
 *
 * @example
 * ```ts
 * validateHeader('x-user', 'alice'); // ok
 * validateHeader('x-user', 'a\r\nb'); // InvalidRequestError: headers.x-user
 * ```
 */
export function validateHeader(name: string, value: string): void {
  if (!tokenNames.has(name)) {
    if (!TOKEN_RE.test(name))
      throw new InvalidRequestError('headers', name, 'a header name that is an HTTP token');
    if (tokenNames.size >= 256) tokenNames.clear();
    tokenNames.add(name);
  }
  if (hasBadValueChar(value))
    throw new InvalidRequestError(`headers.${name}`, value, 'a header value without NUL, CR or LF');
}

/**
 * Throws an {@link InvalidRequestError} naming `body` unless it is something the transport sends: nothing, a
 * string, bytes (`Uint8Array`/`Buffer`, any `ArrayBufferView`), a Node Readable, an (async) iterable of
 * chunks, a `Blob` or a `FormData`.
 *
 * @example
 * ```ts
 * validateBody(JSON.stringify({ a: 1 })); // ok
 * validateBody(42); // InvalidRequestError: body
 * ```
 */
export function validateBody(body: unknown): void {
  if (body === null || body === undefined || typeof body === 'string') return;
  if (typeof body === 'object') {
    if (ArrayBuffer.isView(body) || body instanceof Blob) return;
    const b = body as Record<string | symbol, unknown>;
    if (
      typeof b.pipe === 'function' ||
      typeof b[Symbol.asyncIterator] === 'function' ||
      typeof b[Symbol.iterator] === 'function' ||
      (typeof b.append === 'function' && typeof b.getAll === 'function')
    )
      return;
  }
  throw new InvalidRequestError(
    'body',
    body,
    'a string, bytes (Uint8Array/Buffer), a Readable, an async iterable, a Blob or FormData',
  );
}

/** Validates an HTTP method token; returns it upper-cased for the standard ones. */
export function validateMethod(method: unknown): string {
  // The methods fetch and undici hand over already upper-cased: no regular expression for them.
  if (method === 'GET' || method === 'POST' || method === 'HEAD' || method === 'PUT' || method === 'DELETE')
    return method;
  if (typeof method !== 'string' || !TOKEN_RE.test(method))
    throw new InvalidRequestError('method', method, 'an HTTP method token');
  const up = method.toUpperCase();
  return up === 'GET' ||
    up === 'POST' ||
    up === 'PUT' ||
    up === 'DELETE' ||
    up === 'HEAD' ||
    up === 'OPTIONS' ||
    up === 'PATCH'
    ? up
    : method;
}
