/**
 * Per-call options travel as request headers, so that one mechanism works on all three entry points
 * (`mesh.fetch`, `mesh.request`, and the global `fetch` with `mesh.dispatcher`, where any extra key on
 * `init` would be lost). The mesh reads and removes them before the request leaves the process, except the
 * deadline, which it rewrites to the time remaining and forwards to the next mesh hop (like gRPC's
 * `grpc-timeout`: relative, so clock skew between hosts does not matter). None of them ever reaches a host
 * that is not a mesh service.
 */
import { boolean, number, object, optional } from './validate.js';

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

/** The per-call options, declared once (absent ones set no header). */
const callOptionsSpec = object(
  {
    deadlineMs: optional(
      number({
        min: 0,
        infinity: true,
        unit: 'milliseconds',
        expected: 'a number of milliseconds >= 0, or Infinity for none',
      }),
    ),
    idempotent: optional(boolean()),
  },
  { required: true, expected: 'an options object { deadlineMs?, idempotent? }' },
);

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
  const o = callOptionsSpec.resolve(options, 'callOptions');
  const out: Record<string, string> = {};
  if (o.deadlineMs !== undefined && o.deadlineMs !== Infinity)
    out[DEADLINE_HEADER] = String(Math.min(MAX_DEADLINE_MS, Math.ceil(o.deadlineMs)));
  if (o.idempotent !== undefined) out[IDEMPOTENT_HEADER] = String(o.idempotent);
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
