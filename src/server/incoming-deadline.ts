/**
 * Incoming deadline and trust: what the server side reads off an incoming request, once. A mesh client sends
 * the time its caller has left in `mesh-deadline-ms` (relative milliseconds, like gRPC's `grpc-timeout`, so
 * clock skew between hosts does not matter; gRPC over HTTP/2, doc/PROTOCOL-HTTP2.md, "Timeout"). The value
 * comes off the network, so it is parsed without throwing, a malformed or repeated value is ignored, and the
 * result is clamped to a cap. Only a trusted caller's headers are believed, and the per-call control headers
 * are stripped from the request whoever sent them, so a handler that forwards its incoming headers can neither
 * pass a deadline on unparsed nor let a caller mark its outgoing calls idempotent.
 *
 * Apart from the handler wrapper (server.ts) and the deadline scope (scope.ts): adapters for other frameworks
 * use {@link parseIncomingDeadline} on its own.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { DEADLINE_HEADER, IDEMPOTENT_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import { boolean, number } from '../core/validate.js';

/** gRPC's deadline header: `<1-8 digits><unit>`, unit one of `H M S m u n`. */
export const GRPC_TIMEOUT_HEADER = 'grpc-timeout';
/** The default cap on an incoming deadline (60 s): a larger value is clamped to it. */
export const DEFAULT_MAX_DEADLINE_MS = 60_000;

/**
 * Options for {@link parseIncomingDeadline}.
 *
 * @example
 * ```ts
 * parseIncomingDeadline(req.headers, { maxDeadlineMs: 10_000, grpcTimeout: false });
 * ```
 */
export interface ParseDeadlineOptions {
  /** Cap (ms); a larger value is clamped to it. Default 60 000. */
  maxDeadlineMs?: number;
  /** Also read `grpc-timeout`. Default `true`. */
  grpcTimeout?: boolean;
}

const GRPC_RE = /^([0-9]{1,8})([HMSmun])$/;

function single(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  // A repeated header is ambiguous: treat it as malformed (Node itself joins repeats into "a, b").
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') return value[0];
  return undefined;
}

/**
 * Parses a `grpc-timeout` value (`<1-8 digits><H|M|S|m|u|n>`) into whole milliseconds, rounded down (so
 * `500u` is `0`, an expired budget, as the mesh itself floors what it sends). Anything else gives `undefined`.
 *
 * @example
 * ```ts
 * parseGrpcTimeout('250m'); // 250
 * parseGrpcTimeout('2S');   // 2000
 * parseGrpcTimeout('1x');   // undefined
 * ```
 */
export function parseGrpcTimeout(value: unknown): number | undefined {
  const v = single(value);
  if (v === undefined) return undefined;
  const m = GRPC_RE.exec(v);
  if (m === null) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H':
      return n * 3_600_000;
    case 'M':
      return n * 60_000;
    case 'S':
      return n * 1_000;
    case 'm':
      return n;
    case 'u':
      return Math.floor(n / 1_000);
    default:
      return Math.floor(n / 1_000_000);
  }
}

/**
 * Reads the incoming deadline from request headers: `mesh-deadline-ms` (an integer of ms) and, unless
 * disabled, `grpc-timeout`; the smaller wins. Returns whole milliseconds in `[0, maxDeadlineMs]` (clamped), or
 * `undefined` when there is no usable value. Malformed or repeated values are ignored; it never throws on
 * header input. `0` means the caller's budget is already spent. Adapters for other frameworks use it with
 * {@link runWithDeadline}.
 *
 * @example
 * ```ts
 * parseIncomingDeadline({ 'mesh-deadline-ms': '250' });           // 250
 * parseIncomingDeadline({ 'mesh-deadline-ms': '99999999999' });   // 60000 (clamped)
 * parseIncomingDeadline({ 'mesh-deadline-ms': '-1' });            // undefined (ignored)
 * ```
 */
export function parseIncomingDeadline(
  headers: IncomingHttpHeaders | Readonly<Record<string, unknown>>,
  options: ParseDeadlineOptions = {},
): number | undefined {
  const max = checkMax('parseIncomingDeadline.maxDeadlineMs', options.maxDeadlineMs);
  const grpc = checkBool('parseIncomingDeadline.grpcTimeout', options.grpcTimeout, true);
  return readBudget(headers, max, grpc);
}

export function readBudget(
  headers: IncomingHttpHeaders | Readonly<Record<string, unknown>>,
  max: number,
  grpc: boolean,
): number | undefined {
  const raw = single((headers as Record<string, unknown>)[DEADLINE_HEADER]);
  let budget = raw === undefined ? undefined : parseDeadlineHeader(raw);
  if (grpc) {
    const g = parseGrpcTimeout((headers as Record<string, unknown>)[GRPC_TIMEOUT_HEADER]);
    if (g !== undefined && (budget === undefined || g < budget)) budget = g;
  }
  if (budget === undefined || !Number.isFinite(budget) || budget < 0) return undefined;
  return budget > max ? max : budget;
}

/**
 * Removes the per-call control headers from an incoming request (`req.headers` and `req.rawHeaders`):
 * `mesh-deadline-ms`, `grpc-timeout` when it is read, and `mesh-idempotent`, which is never taken from an
 * incoming request (it would let any caller turn one POST into several at the backend).
 */
export function stripControlHeaders(req: IncomingMessage, grpc: boolean): void {
  const headers = req.headers;
  delete headers[DEADLINE_HEADER];
  delete headers[IDEMPOTENT_HEADER];
  if (grpc) delete headers[GRPC_TIMEOUT_HEADER];
  const raw = req.rawHeaders;
  if (!Array.isArray(raw)) return;
  const kept: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === DEADLINE_HEADER || name === IDEMPOTENT_HEADER || (grpc && name === GRPC_TIMEOUT_HEADER))
      continue;
    kept.push(raw[i]!, raw[i + 1]!);
  }
  if (kept.length !== raw.length) {
    try {
      req.rawHeaders = kept;
    } catch {
      // a frozen or getter-only rawHeaders (a framework's request object): req.headers is what is forwarded
    }
  }
}

export function isTrusted(
  trust: ((req: IncomingMessage) => boolean) | undefined,
  req: IncomingMessage,
): boolean {
  if (trust === undefined) return true;
  try {
    return trust(req) === true;
  } catch {
    return false;
  }
}

/** The cap on an incoming deadline (`maxDeadlineMs`) and its default, declared once. */
const maxDeadline = number({
  min: 0,
  exclusiveMin: true,
  infinity: true,
  default: DEFAULT_MAX_DEADLINE_MS,
  expected: 'a number of milliseconds > 0 (or Infinity for no cap)',
});

export function checkMax(path: string, v: unknown): number {
  return maxDeadline.resolve(v, path);
}

export function checkBool(path: string, v: unknown, dflt: boolean): boolean {
  return boolean({ default: dflt }).resolve(v, path);
}
