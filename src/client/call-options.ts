/**
 * Per-call options travel as request headers, so that one mechanism works on all three entry points
 * (`mesh.fetch`, `mesh.request`, and the global `fetch` with `mesh.dispatcher`, where any extra key on
 * `init` would be lost). The mesh reads and removes them before the request leaves the process, except the
 * deadline, which it rewrites to the time remaining and forwards to the next mesh hop (like gRPC's
 * `grpc-timeout`: relative, so clock skew between hosts does not matter). None of them ever reaches a host
 * that is not a mesh service.
 */
import { ConfigError } from '../core/errors.js';

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
 * Turns {@link CallOptions} into headers to merge into a request. Works with every entry point.
 *
 * @example
 * ```ts
 * await fetch('http://users/v1/me', { dispatcher: mesh.dispatcher, headers: { ...callOptions({ deadlineMs: 100 }) } });
 * ```
 */
export function callOptions(options: CallOptions): Record<string, string> {
  const out: Record<string, string> = {};
  if (options.deadlineMs !== undefined) {
    const d = options.deadlineMs;
    if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) {
      throw new ConfigError('callOptions.deadlineMs', d, 'a finite number of milliseconds >= 0');
    }
    out[DEADLINE_HEADER] = String(Math.floor(d));
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
 * Parses a deadline header value: a non-negative integer of milliseconds. Returns undefined for anything else
 * (an untrusted or malformed value is ignored rather than failing the call).
 */
export function parseDeadlineHeader(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.length === 0 || v.length > 12 || !/^[0-9]+$/.test(v)) return undefined;
  return Number(v);
}
