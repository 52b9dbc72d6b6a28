/**
 * The errors routing raises. Both are client errors (4xx-style): the request, not the destination, is at fault,
 * so neither is retried, counted by a breaker, or held against an endpoint.
 */
import { MeshError } from '../core/errors.js';

/**
 * A per-request routing override (the `mesh-dtab` header) could not be parsed or names something this mesh
 * cannot route to. Only the call that carried it fails (the server helper answers it with 400); nothing else
 * changes. `part` is the offending text and `offset` its position in the header value.
 *
 * @example
 * ```ts
 * try { parseOverrides('users => owner=') }
 * catch (e) { if (e instanceof InvalidOverrideError) console.log(e.statusCode, e.part, e.offset); } // 400 'owner=' 9
 * ```
 */
export class InvalidOverrideError extends MeshError {
  /** The HTTP status a server answers with: 400. */
  readonly statusCode = 400;
  /** The offending part of the override. */
  readonly part: string;
  /** Where `part` starts in the header value (0-based), or -1 when the problem is not in the syntax. */
  readonly offset: number;
  /** What is wrong, in a few words. */
  readonly reason: string;
  constructor(reason: string, part: string, offset: number, service?: string) {
    const shown = part.length > 60 ? `${part.slice(0, 57)}...` : part;
    super(
      'MESH_INVALID_OVERRIDE',
      `Invalid routing override${offset >= 0 ? ` at ${offset}` : ''} (${JSON.stringify(shown)}): ${reason}`,
      { phase: 'route', retryable: false, service },
    );
    this.part = part;
    this.offset = offset;
    this.reason = reason;
  }
}

/**
 * No routing rule of the service matches the request (its rules have no catch-all).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof NoRouteError) console.log(e.service, e.method, e.path); }
 * ```
 */
export class NoRouteError extends MeshError {
  /** The HTTP status a server would answer with: 404. */
  readonly statusCode = 404;
  readonly method: string;
  readonly path: string;
  constructor(service: string, method: string, path: string) {
    super('MESH_NO_ROUTE', `No routing rule of service "${service}" matches ${method} ${path}`, {
      phase: 'route',
      retryable: false,
      service,
    });
    this.method = method;
    this.path = path;
  }
}
