/**
 * Per-call options travel as request headers, so that one mechanism works on all three entry points
 * (`mesh.fetch`, `mesh.request`, and the global `fetch` with `mesh.dispatcher`, where any extra key on
 * `init` would be lost). The mesh reads and removes them before the request leaves the process, except the
 * deadline, which it rewrites to the time remaining and forwards to the next mesh hop (like gRPC's
 * `grpc-timeout`: relative, so clock skew between hosts does not matter). None of them ever reaches a host
 * that is not a mesh service.
 */
import { ConfigError } from './errors.js';

/** Remaining time budget in milliseconds (an integer). Set by callers; rewritten and forwarded by the mesh. */
export const DEADLINE_HEADER = 'mesh-deadline-ms';
/** `true` marks a call idempotent (safe to retry whatever its method); `false` marks it not. Hop-local. */
export const IDEMPOTENT_HEADER = 'mesh-idempotent';

/**
 * Every header the mesh itself reads; stripped from pass-through requests. `mesh-dtab` is the routing
 * override (src/routing/override.ts, docs/routing.md), forwarded to mesh services only.
 */
export const MESH_HEADERS: readonly string[] = [DEADLINE_HEADER, IDEMPOTENT_HEADER, 'mesh-dtab'];

/**
 * Options for one call.
 *
 * @example
 * ```ts
 * await mesh.fetch('http://users/v1/me', { headers: callOptions({ deadlineMs: 250, idempotent: true }) });
 * ```
 */
export interface CallOptions {
  /** Total time budget for the call, including reading the body (ms). Tightens, never extends, the service's timeout. */
  deadlineMs?: number;
  /** Marks the call safe to retry regardless of its method (or not safe, with `false`). */
  idempotent?: boolean;
}

/**
 * The largest deadline a call can carry (ms): 2 000 000 000, about 23 days, safely below the longest timer
 * Node can set (2^31 - 1 ms; a longer one fires after 1 ms, so a deadline beyond it would fire at once).
 * `callOptions` clamps a larger `deadlineMs` to it, and a larger `mesh-deadline-ms` header value reads as it.
 */
export const MAX_DEADLINE_MS = 2_000_000_000;

const CALL_OPTION_KEYS = ['deadlineMs', 'idempotent'];

/**
 * Turns {@link CallOptions} into headers to merge into a request. Works with every entry point.
 *
 * `deadlineMs` is a number of milliseconds >= 0: a fraction rounds up (a positive budget never becomes 0), a
 * value above {@link MAX_DEADLINE_MS} is clamped to it, and `Infinity` sets no deadline of its own (the
 * service's `timeoutMs` applies). Anything else, and an unknown option, is a {@link ConfigError} here, so no
 * header is ever built that a call would then reject.
 *
 * @example
 * ```ts
 * await fetch('http://users/v1/me', { dispatcher: mesh.dispatcher, headers: { ...callOptions({ deadlineMs: 100 }) } });
 * ```
 */
export function callOptions(options: CallOptions): Record<string, string> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigError('callOptions', options, 'an options object { deadlineMs?, idempotent? }');
  }
  for (const k of Object.keys(options)) {
    if (!CALL_OPTION_KEYS.includes(k)) {
      throw new ConfigError(
        `callOptions.${k}`,
        (options as unknown as Record<string, unknown>)[k],
        `no such option (known: ${CALL_OPTION_KEYS.join(', ')})`,
      );
    }
  }
  const out: Record<string, string> = {};
  if (options.deadlineMs !== undefined) {
    const d = options.deadlineMs;
    if (typeof d !== 'number' || Number.isNaN(d) || d < 0) {
      throw new ConfigError(
        'callOptions.deadlineMs',
        d,
        'a number of milliseconds >= 0, or Infinity for none',
      );
    }
    if (d !== Infinity) out[DEADLINE_HEADER] = String(Math.min(MAX_DEADLINE_MS, Math.ceil(d)));
  }
  if (options.idempotent !== undefined) {
    if (typeof options.idempotent !== 'boolean') {
      throw new ConfigError('callOptions.idempotent', options.idempotent, 'a boolean');
    }
    out[IDEMPOTENT_HEADER] = String(options.idempotent);
  }
  return out;
}

/**
 * Parses a deadline header value: a non-negative integer of milliseconds, at most 12 digits; a value above
 * {@link MAX_DEADLINE_MS} reads as that. Returns undefined for anything else, a repeated header included (two
 * values are ambiguous: it is not for the mesh to pick one). The caller decides what undefined means: an
 * outgoing call rejects it, an incoming request ignores it.
 */
export function parseDeadlineHeader(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
  if (typeof v !== 'string' || v.length === 0 || v.length > 12 || !/^[0-9]+$/.test(v)) return undefined;
  const n = Number(v);
  return n > MAX_DEADLINE_MS ? MAX_DEADLINE_MS : n;
}
