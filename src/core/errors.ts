/**
 * Typed errors. Every error the mesh raises is a {@link MeshError} that carries what a caller needs to act on
 * it: a stable `code`, the `phase` of the call it happened in, whether it is `retryable`, the logical
 * `service`, the `endpoint` (host:port) and the number of attempts made. Config errors name the option path
 * and the offending value. Secrets (ACL tokens, authorization headers) never appear in a message.
 */

/** Where in a call an error happened. */
export type Phase = 'config' | 'route' | 'discovery' | 'connect' | 'send' | 'headers' | 'body' | 'close';

/** Fields common to every {@link MeshError}. */
export interface MeshErrorDetails {
  phase?: Phase;
  retryable?: boolean;
  service?: string | undefined;
  endpoint?: string | undefined;
  attempts?: number | undefined;
  cause?: unknown;
}

/**
 * Base class of every error meshfetch raises.
 *
 * @example
 * ```ts
 * try { await mesh.fetch('http://users/v1/me'); }
 * catch (e) { if (e instanceof MeshError) console.log(e.code, e.phase, e.service, e.endpoint); }
 * ```
 */
export class MeshError extends Error {
  /** A stable machine-readable code, e.g. `MESH_NO_HEALTHY_ENDPOINTS`. */
  readonly code: string;
  /** The phase of the call the error happened in. */
  readonly phase: Phase;
  /** True when the request provably was not processed, so sending it again is safe. */
  readonly retryable: boolean;
  /** The logical service name (the URL host), when known. */
  readonly service: string | undefined;
  /** The endpoint address (host:port), when one was chosen. */
  readonly endpoint: string | undefined;
  /** How many attempts were made, when known. */
  attempts: number | undefined;

  constructor(code: string, message: string, details: MeshErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.phase = details.phase ?? 'route';
    this.retryable = details.retryable ?? false;
    this.service = details.service;
    this.endpoint = details.endpoint;
    this.attempts = details.attempts;
  }
}

/**
 * An invalid configuration value. `path` names the option (e.g. `services.users.endpoints[2]`) and
 * `value` holds what was given (secrets are replaced by `'<redacted>'`).
 *
 * @example
 * ```ts
 * try { createMesh({ services: { users: { endpoints: ['nope'] } } }); }
 * catch (e) { if (e instanceof ConfigError) console.log(e.path); } // services.users.endpoints[0]
 * ```
 */
export class ConfigError extends MeshError {
  readonly path: string;
  readonly value: unknown;
  constructor(path: string, value: unknown, expected: string) {
    super(
      'MESH_CONFIG',
      `Invalid ${path === '' ? 'config' : `option ${path}`}: expected ${expected}, got ${describeValue(value)}`,
      {
        phase: 'config',
      },
    );
    this.path = path;
    this.value = value;
  }
}

/**
 * No endpoint can take the call: discovery has none, or all of them are closed. Raised at once, never a
 * hang. `discovery` says what discovery reported (e.g. `bound to 0 endpoints`, `negative: ...`).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof NoHealthyEndpointsError) console.log(e.service, e.discovery); }
 * ```
 */
export class NoHealthyEndpointsError extends MeshError {
  readonly discovery: string;
  constructor(service: string, discovery: string, details: MeshErrorDetails = {}) {
    super(
      'MESH_NO_HEALTHY_ENDPOINTS',
      `No healthy endpoints for service "${service}": discovery ${discovery}`,
      {
        phase: 'route',
        retryable: true,
        ...details,
        service,
      },
    );
    this.discovery = discovery;
  }
}

/**
 * Discovery says the service does not exist (a negative answer, e.g. Consul's catalog does not know it).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof ServiceNotFoundError) console.log(e.service); }
 * ```
 */
export class ServiceNotFoundError extends MeshError {
  constructor(service: string, reason: string) {
    super('MESH_SERVICE_NOT_FOUND', `Service "${service}" does not exist: ${reason}`, {
      phase: 'discovery',
      retryable: false,
      service,
    });
  }
}

/**
 * Discovery failed before it ever produced an endpoint set (e.g. Consul unreachable at startup).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof DiscoveryError) console.log(e.cause); }
 * ```
 */
export class DiscoveryError extends MeshError {
  constructor(service: string, message: string, cause?: unknown) {
    super('MESH_DISCOVERY_FAILED', `Discovery failed for service "${service}": ${message}`, {
      phase: 'discovery',
      retryable: false,
      service,
      cause,
    });
  }
}

/**
 * The URL host is not a configured service and the mesh was created with `unknownHosts: 'reject'`.
 *
 * @example
 * ```ts
 * const mesh = createMesh({ services: {}, unknownHosts: 'reject' });
 * await mesh.fetch('http://example.test/'); // rejects with UnknownServiceError
 * ```
 */
export class UnknownServiceError extends MeshError {
  constructor(host: string) {
    super('MESH_UNKNOWN_SERVICE', `Host "${host}" is not a configured service and unknownHosts is 'reject'`, {
      phase: 'route',
      retryable: false,
      service: host,
    });
  }
}

/**
 * The URL (or request options) could not be understood.
 *
 * @example
 * ```ts
 * await mesh.request('not a url'); // rejects with InvalidRequestError
 * ```
 */
export class InvalidRequestError extends MeshError {
  readonly field: string;
  constructor(field: string, value: unknown, expected: string) {
    super(
      'MESH_INVALID_REQUEST',
      `Invalid request ${field}: expected ${expected}, got ${describeValue(value)}`,
      {
        phase: 'route',
      },
    );
    this.field = field;
  }
}

/**
 * The mesh is closed (or closing) and takes no new calls.
 *
 * @example
 * ```ts
 * await mesh.close();
 * await mesh.fetch('http://users/'); // rejects with MeshClosedError
 * ```
 */
export class MeshClosedError extends MeshError {
  constructor(
    message = 'The mesh is closed and takes no new calls',
    where: { service?: string; endpoint?: string } = {},
  ) {
    super('MESH_CLOSED', message, {
      phase: 'route',
      retryable: false,
      service: where.service,
      endpoint: where.endpoint,
    });
  }
}

/**
 * An error from the transport (connection refused, reset, socket closed, HTTP parse error). `cause` holds the
 * undici or system error; `code` is `MESH_TRANSPORT` and `causeCode` the underlying code
 * (`ECONNREFUSED`, `UND_ERR_SOCKET`, ...).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof TransportError) console.log(e.causeCode, e.phase, e.endpoint); }
 * ```
 */
export class TransportError extends MeshError {
  readonly causeCode: string | undefined;
  /**
   * True when a kept-alive socket that had served earlier responses was closed by the server before any byte of
   * this response arrived: the idle-close race (nodejs/undici#3492). The server did not process the request, so
   * it is retried once on another connection, whatever its method, and not held against the endpoint.
   */
  readonly idleClose: boolean;
  /**
   * True when the server provably did not process the request although it was sent: an HTTP/2 stream it
   * refused (REFUSED_STREAM) or one above the last stream id of its GOAWAY. Retried whatever the method.
   */
  readonly unprocessed: boolean;
  constructor(
    message: string,
    details: MeshErrorDetails & {
      causeCode?: string | undefined;
      idleClose?: boolean;
      unprocessed?: boolean;
      /** A more specific code for a subclass (`MESH_TLS`). Default `MESH_TRANSPORT`. */
      code?: string;
    },
  ) {
    super(details.code ?? 'MESH_TRANSPORT', message, details);
    this.causeCode = details.causeCode;
    this.idleClose = details.idleClose ?? false;
    this.unprocessed = details.unprocessed ?? false;
  }
}

/** A short, safe rendering of a config value for an error message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * The call's deadline passed (before it was sent, while waiting for headers, or while the body was being
 * read). Not retried: the time is gone.
 *
 * @example
 * ```ts
 * await mesh.fetch('http://users/slow', { headers: callOptions({ deadlineMs: 50 }) });
 * // rejects with DeadlineExceededError after 50 ms
 * ```
 */
export class DeadlineExceededError extends MeshError {
  /** The total budget the call had, in ms. */
  readonly budgetMs: number;
  constructor(service: string, budgetMs: number, phase: Phase, details: MeshErrorDetails = {}) {
    super(
      'MESH_DEADLINE_EXCEEDED',
      `Deadline of ${Math.round(budgetMs)} ms exceeded for service "${service}" (${phase})`,
      {
        retryable: false,
        ...details,
        phase,
        service,
      },
    );
    this.budgetMs = budgetMs;
  }
}
