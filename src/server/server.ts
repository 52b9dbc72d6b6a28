/**
 * The server side of deadline propagation, for node:http-style handlers. Without a helper on the receiving side
 * a caller's budget stops at the first hop: the handler keeps working (and calling further services) long after
 * the caller has given up. {@link meshHandler} wraps a handler: per incoming request it reads the deadline once
 * from a trusted caller (incoming-deadline.ts: parse, clamp, strip the control headers), arms its deadline
 * scope (scope.ts: one AbortController that fires when the deadline passes, here also when the client goes
 * away, and the incoming-request context entered once), and refuses at once a request whose budget is already
 * spent (`0`): doing the work would only produce an answer nobody waits for. It also reads a trusted caller's
 * routing override (`mesh-dtab`, docs/routing.md).
 *
 * One timer and one `close` listener per request, both released when the response is done, so nothing
 * accumulates on long-lived keep-alive sockets. This file is also where the server helper's public names are
 * exported from.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEADLINE_HEADER, IDEMPOTENT_HEADER } from '../core/call-options.js';
import type { Clock } from '../core/clock.js';
import { ConfigError, MeshError } from '../core/errors.js';
import { incomingContext } from '../core/incoming.js';
import { optionPath } from '../core/option-path.js';
import { boolean, custom, func, number, numberAllowed, object, optional } from '../core/validate.js';
import { InvalidOverrideError } from '../routing/errors.js';
import { OVERRIDE_HEADER, readOverrideHeader, type RouteOverrides } from '../routing/override.js';
import {
  checkMax,
  GRPC_TIMEOUT_HEADER,
  isTrusted,
  readBudget,
  stripControlHeaders,
} from './incoming-deadline.js';
import { arm, checkClock, checkService } from './scope.js';

export {
  DEFAULT_MAX_DEADLINE_MS,
  GRPC_TIMEOUT_HEADER,
  parseGrpcTimeout,
  parseIncomingDeadline,
  type ParseDeadlineOptions,
} from './incoming-deadline.js';
export {
  getIncomingDeadline,
  incomingSignal,
  remainingMs,
  runWithDeadline,
  type DeadlineScope,
  type RunWithDeadlineOptions,
} from './scope.js';

/** The default status for a request that arrives with its deadline already spent. */
export const DEFAULT_EXPIRED_STATUS = 504;

/**
 * The client went away (the connection closed before the response finished, or the adapter's request signal
 * aborted). The reason on the incoming signal, so outgoing calls the handler still has in flight reject with it.
 *
 * @example
 * ```ts
 * incomingSignal()?.addEventListener('abort', () => {
 *   if (incomingSignal()?.reason instanceof IncomingAbortedError) log('client gone');
 * });
 * ```
 */
export class IncomingAbortedError extends MeshError {
  constructor(service: string, cause?: unknown) {
    super('MESH_INCOMING_ABORTED', `The caller of "${service}" went away before the response was finished`, {
      phase: 'close',
      retryable: false,
      service,
      cause,
    });
  }
}

/**
 * Options for {@link meshHandler}. Every option is validated; a bad value throws a `ConfigError` whose path
 * is `meshHandler.<option>`.
 *
 * @example
 * ```ts
 * const options: MeshHandlerOptions = { maxDeadlineMs: 10_000, defaultDeadlineMs: 5_000, service: 'users' };
 * ```
 */
export interface MeshHandlerOptions {
  /** Cap on an incoming deadline (ms, > 0; `Infinity` disables the cap). A larger value is clamped. Default 60 000. */
  maxDeadlineMs?: number;
  /** Budget (ms, > 0, at most `maxDeadlineMs`) for a request that carries no usable deadline. Default: none. */
  defaultDeadlineMs?: number;
  /**
   * Whether to believe this caller's deadline headers. For an untrusted caller (e.g. the public internet at an
   * edge service) the headers are ignored as if absent, so `defaultDeadlineMs` applies and a `0` is not
   * refused. A predicate that throws counts as `false`. Default: every caller is trusted (inside the mesh).
   */
  trust?: (req: IncomingMessage) => boolean;
  /** Also read gRPC's `grpc-timeout` (the smaller of the two wins). Default `true`. */
  grpcTimeout?: boolean;
  /** Status (400-599) for a request that arrives with its deadline spent. Default 504. */
  expiredStatus?: number;
  /** Service name in the `DeadlineExceededError` / `IncomingAbortedError` the signal aborts with. Default `'incoming'`. */
  service?: string;
  /** The mesh's clock: deadlines are absolute times on it. Pass `mesh.clock` if you gave the mesh a clock. */
  clock?: Clock;
  /**
   * Per-request routing overrides (`mesh-dtab`, docs/routing.md). Without this option, or from a caller `trust`
   * does not accept (the default: nobody), the header is removed from the request before the handler sees it.
   * From a trusted caller it is parsed (malformed: 400 and the handler is not called) and applied to, and
   * forwarded with, every mesh call the handler makes (by meshes created with `overrides: { enabled: true }`).
   * A `trust` that throws counts as `false`.
   */
  overrides?: { trust?: (req: IncomingMessage) => boolean };
}

const trustPredicate = optional(
  func<(req: IncomingMessage) => boolean>({ expected: 'a function (req) => boolean' }),
);

/** The options of {@link meshHandler} and their defaults, declared once. */
const handlerOptions = object(
  {
    maxDeadlineMs: custom((v, path) => checkMax(path, v)),
    defaultDeadlineMs: optional(custom((v) => v)),
    trust: trustPredicate,
    grpcTimeout: boolean({ default: true }),
    expiredStatus: number({
      min: 400,
      max: 599,
      integer: true,
      default: DEFAULT_EXPIRED_STATUS,
      expected: 'an integer HTTP status 400-599',
    }),
    service: custom((v, path) => checkService(path, v)),
    clock: custom((v, path) => checkClock(path, v)),
    overrides: optional(object({ trust: trustPredicate }, { expected: 'an object { trust }' })),
  },
  {
    expected: 'an options object',
    check(o, path) {
      const d = o.defaultDeadlineMs;
      if (d !== undefined && !numberAllowed(d, { min: 0, exclusiveMin: true, max: o.maxDeadlineMs }))
        throw new ConfigError(
          optionPath(path, 'defaultDeadlineMs'),
          d,
          `a finite number of milliseconds > 0 and <= maxDeadlineMs (${o.maxDeadlineMs})`,
        );
    },
  },
);

/**
 * Wraps a node:http-style handler so that it serves each request within the caller's deadline.
 *
 * Per request it reads `mesh-deadline-ms` (and `grpc-timeout`) from a trusted caller, clamps it to
 * `maxDeadlineMs` (or uses `defaultDeadlineMs` when there is none), and runs the handler inside the incoming
 * context with an absolute deadline and one AbortSignal. The signal aborts with `DeadlineExceededError` when the
 * deadline passes, or with {@link IncomingAbortedError} when the connection closes before the response has
 * finished. The timer and listener go away when the response is done. Every mesh call the handler makes
 * (through any entry point) inherits the deadline (min(incoming, its own)) and, when given no signal of its
 * own, the signal. A request that arrives with a budget of `0` gets `expiredStatus` (504) and a short text body
 * at once; the handler is not called.
 *
 * The handler's return value is passed through (so a rejected promise is reported as it would be without
 * the wrapper). Read the budget inside with {@link remainingMs}, {@link getIncomingDeadline} and
 * {@link incomingSignal}.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createMesh, meshHandler, remainingMs } from 'meshfetch';
 *
 * const mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:8081'] } } });
 * createServer(
 *   meshHandler(async (req, res) => {
 *     // Inherits what is left of the caller's deadline and aborts if the caller goes away.
 *     const user = await mesh.fetch('http://users/v1/me');
 *     res.end(`${await user.text()} (${Math.round(remainingMs())} ms to spare)`);
 *   }, { maxDeadlineMs: 10_000 }),
 * ).listen(8080);
 * ```
 */
export function meshHandler<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
  R = unknown,
>(
  handler: (req: Req, res: Res) => R,
  options: MeshHandlerOptions = {},
): (req: Req, res: Res) => R | undefined {
  func().resolve(handler, 'meshHandler.handler');
  const o = handlerOptions.resolve(options, 'meshHandler');
  const max = o.maxDeadlineMs;
  const fallback = o.defaultDeadlineMs as number | undefined;
  const trust = o.trust;
  const grpc = o.grpcTimeout;
  const status = o.expiredStatus;
  const service = o.service;
  const clock = o.clock;
  // Without the option nobody is trusted with an override; with it, whoever `trust` accepts (default nobody).
  const overrideTrust = o.overrides === undefined ? undefined : (o.overrides.trust ?? (() => false));

  return (req: Req, res: Res): R | undefined => {
    let overrides: RouteOverrides | undefined;
    if (req.headers[OVERRIDE_HEADER] !== undefined) {
      if (overrideTrust !== undefined && isTrusted(overrideTrust, req)) {
        try {
          overrides = readOverrideHeader(req.headers[OVERRIDE_HEADER]);
        } catch (err) {
          if (!(err instanceof InvalidOverrideError)) throw err;
          refuseOverride(res, err);
          return undefined;
        }
      } else {
        delete req.headers[OVERRIDE_HEADER];
      }
    }
    let budget: number | undefined;
    const headers = req.headers;
    if (
      headers[DEADLINE_HEADER] !== undefined ||
      headers[IDEMPOTENT_HEADER] !== undefined ||
      (grpc && headers[GRPC_TIMEOUT_HEADER] !== undefined)
    ) {
      // Read once, from a trusted caller only, then removed whoever sent them: a handler that forwards its
      // incoming headers on an outgoing call can then neither pass a caller's deadline on unparsed (the
      // outgoing call inherits the parsed one from the context) nor let a caller mark the call idempotent.
      if (isTrusted(trust, req)) budget = readBudget(headers, max, grpc);
      stripControlHeaders(req, grpc);
    }
    if (budget === undefined) budget = fallback;
    if (budget !== undefined && budget <= 0) {
      refuse(res, status);
      return undefined;
    }
    const { store, controller, release } = arm(
      budget,
      clock,
      service,
      () => (res.headersSent ? 'body' : 'headers'),
      undefined,
    );
    const onClose = (): void => {
      release();
      if (!res.writableFinished) controller.abort(new IncomingAbortedError(service));
    };
    res.once('close', onClose);
    return incomingContext.run(overrides ? { ...store, overrides } : store, handler, req, res);
  };
}

function refuseOverride(res: ServerResponse, err: InvalidOverrideError): void {
  const body = `${err.message}\n`;
  res.writeHead(err.statusCode, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function refuse(res: ServerResponse, status: number): void {
  const body = 'deadline exceeded before the request was handled\n';
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
