/**
 * The server side of deadline propagation. A mesh client sends the time its caller has left in
 * `mesh-deadline-ms` (relative milliseconds, like gRPC's `grpc-timeout`, so clock skew between hosts does not
 * matter). Without a helper on the receiving side that budget stops at the first hop: the handler keeps working
 * (and calling further services) long after the caller has given up. {@link meshHandler} reads the header once
 * per incoming request, clamps it (it comes off the network), turns it into an absolute deadline on the mesh
 * clock, makes one AbortController that fires when the deadline passes or the client goes away, and enters the
 * incoming-request context (AsyncLocalStorage) once, so that every mesh call the handler makes inherits the
 * deadline (min(incoming, local)) and the signal without the handler passing anything along. A request whose
 * budget is already spent (`0`) is refused at once: doing the work would only produce an answer nobody waits for.
 *
 * Entering AsyncLocalStorage per incoming request is cheap enough; the mesh only reads it per outgoing call.
 * One timer and one `close` listener per request, both released when the response is done, so nothing
 * accumulates on long-lived keep-alive sockets.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { DEADLINE_HEADER, IDEMPOTENT_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import { systemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { ConfigError, DeadlineExceededError, MeshError, type Phase } from '../core/errors.js';
import { incomingContext, type IncomingContext } from '../core/incoming.js';
import { InvalidOverrideError } from '../routing/errors.js';
import { OVERRIDE_HEADER, readOverrideHeader, type RouteOverrides } from '../routing/override.js';

/** gRPC's deadline header: `<1-8 digits><unit>`, unit one of `H M S m u n`. */
export const GRPC_TIMEOUT_HEADER = 'grpc-timeout';
/** The default cap on an incoming deadline (60 s): a larger value is clamped to it. */
export const DEFAULT_MAX_DEADLINE_MS = 60_000;
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

/**
 * Options for {@link runWithDeadline}.
 *
 * @example
 * ```ts
 * runWithDeadline({ deadlineMs: 500 }, handle, { service: 'users', clock: mesh.clock });
 * ```
 */
export interface RunWithDeadlineOptions {
  /** Service name in the errors the signal aborts with. Default `'incoming'`. */
  service?: string;
  /** The mesh's clock. Default `systemClock`. */
  clock?: Clock;
}

/**
 * What {@link runWithDeadline} hands to its function.
 *
 * @example
 * ```ts
 * runWithDeadline({ deadlineMs: 500 }, (scope) => {
 *   res.on('close', scope.release);
 *   handle(req, res, scope.signal);
 * });
 * ```
 */
export interface DeadlineScope {
  /** Aborts with `DeadlineExceededError` when the deadline passes, or with the given signal's reason. */
  readonly signal: AbortSignal;
  /** Absolute deadline on the clock (ms); `Infinity` for none. */
  readonly deadline: number;
  /** Stops the timer and unlinks the given signal. Idempotent. Called for you when `fn` returns a promise that settles. */
  release(): void;
}

/** The store this module enters: the public shape plus what the budget helpers need. */
interface ServerIncomingContext extends IncomingContext {
  readonly deadline: number;
  readonly signal: AbortSignal;
  readonly clock: Clock;
}

const HANDLER_KEYS = new Set([
  'maxDeadlineMs',
  'defaultDeadlineMs',
  'trust',
  'grpcTimeout',
  'expiredStatus',
  'service',
  'clock',
  'overrides',
]);

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

function readBudget(
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

/** Arms one controller for one incoming request: a timer for the deadline and, optionally, a linked signal. */
function arm(
  budgetMs: number | undefined,
  clock: Clock,
  service: string,
  phase: () => Phase,
  linked: AbortSignal | undefined,
): { store: ServerIncomingContext; controller: AbortController; release: () => void } {
  const controller = new AbortController();
  const now = clock.now();
  const deadline = budgetMs === undefined || budgetMs === Infinity ? Infinity : now + budgetMs;
  let timer: TimerHandle | undefined;
  let released = false;
  const onLinkedAbort = (): void => {
    release();
    controller.abort(linked!.reason);
  };
  const release = (): void => {
    if (released) return;
    released = true;
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    linked?.removeEventListener('abort', onLinkedAbort);
  };
  if (linked?.aborted) {
    released = true;
    controller.abort(linked.reason);
  } else if (deadline !== Infinity && budgetMs! <= 0) {
    released = true;
    controller.abort(new DeadlineExceededError(service, 0, phase()));
  } else {
    if (deadline !== Infinity) {
      timer = clock.setTimeout(() => {
        timer = undefined;
        release();
        controller.abort(new DeadlineExceededError(service, budgetMs!, phase()));
      }, budgetMs!);
    }
    linked?.addEventListener('abort', onLinkedAbort, { once: true });
  }
  return { store: { deadline, signal: controller.signal, clock }, controller, release };
}

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
  if (typeof handler !== 'function') throw new ConfigError('meshHandler.handler', handler, 'a function');
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError('meshHandler', options, 'an options object');
  }
  for (const key of Object.keys(options)) {
    if (!HANDLER_KEYS.has(key))
      throw new ConfigError(
        `meshHandler.${key}`,
        (options as Record<string, unknown>)[key],
        'a known option',
      );
  }
  const max = checkMax('meshHandler.maxDeadlineMs', options.maxDeadlineMs);
  const fallback = options.defaultDeadlineMs;
  if (
    fallback !== undefined &&
    (typeof fallback !== 'number' || !Number.isFinite(fallback) || fallback <= 0 || fallback > max)
  ) {
    throw new ConfigError(
      'meshHandler.defaultDeadlineMs',
      fallback,
      `a finite number of milliseconds > 0 and <= maxDeadlineMs (${max})`,
    );
  }
  const trust = options.trust;
  if (trust !== undefined && typeof trust !== 'function') {
    throw new ConfigError('meshHandler.trust', trust, 'a function (req) => boolean');
  }
  const grpc = checkBool('meshHandler.grpcTimeout', options.grpcTimeout, true);
  const status = options.expiredStatus ?? DEFAULT_EXPIRED_STATUS;
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new ConfigError(
      'meshHandler.expiredStatus',
      options.expiredStatus,
      'an integer HTTP status 400-599',
    );
  }
  const service = checkService('meshHandler.service', options.service);
  const clock = checkClock('meshHandler.clock', options.clock);
  const overrideTrust = checkOverrides('meshHandler.overrides', options.overrides);

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

/**
 * Removes the per-call control headers from an incoming request (`req.headers` and `req.rawHeaders`):
 * `mesh-deadline-ms`, `grpc-timeout` when it is read, and `mesh-idempotent`, which is never taken from an
 * incoming request (it would let any caller turn one POST into several at the backend).
 */
function stripControlHeaders(req: IncomingMessage, grpc: boolean): void {
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

function isTrusted(trust: ((req: IncomingMessage) => boolean) | undefined, req: IncomingMessage): boolean {
  if (trust === undefined) return true;
  try {
    return trust(req) === true;
  } catch {
    return false;
  }
}

function checkOverrides(path: string, v: unknown): ((req: IncomingMessage) => boolean) | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ConfigError(path, v, 'an object { trust }');
  for (const k of Object.keys(v)) {
    if (k !== 'trust')
      throw new ConfigError(`${path}.${k}`, (v as Record<string, unknown>)[k], 'a known option (trust)');
  }
  const trust = (v as { trust?: unknown }).trust;
  if (trust === undefined) return () => false;
  if (typeof trust !== 'function')
    throw new ConfigError(`${path}.trust`, trust, 'a function (req) => boolean');
  return trust as (req: IncomingMessage) => boolean;
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

/**
 * Runs `fn` inside the incoming-request context with a deadline `deadlineMs` from now, for frameworks whose
 * handlers are not plain node:http listeners (express, fastify, ...). Mesh calls made inside inherit the
 * deadline and the scope's signal. The scope's signal aborts with `DeadlineExceededError` when the deadline
 * passes, or with `signal`'s reason when the given signal aborts (pass one that aborts when the client goes
 * away). If `fn` returns a promise, the scope is released when it settles; otherwise call `scope.release()`
 * when the response is done (the timer is unref'ed and one-shot, but release it anyway).
 *
 * `deadlineMs` is relative (ms, >= 0; `undefined` or `Infinity` for none). A value of `0` runs `fn` with an
 * already-aborted signal: refuse such requests before calling it (see {@link parseIncomingDeadline}).
 *
 * @example
 * ```ts
 * import { parseIncomingDeadline, runWithDeadline } from 'meshfetch';
 *
 * app.use((req, res, next) => {
 *   const deadlineMs = parseIncomingDeadline(req.headers);
 *   if (deadlineMs === 0) return void res.status(504).end();
 *   runWithDeadline({ deadlineMs }, (scope) => {
 *     res.on('close', scope.release);
 *     next();
 *   });
 * });
 * ```
 */
export function runWithDeadline<T>(
  init: {
    deadlineMs?: number | undefined;
    signal?: AbortSignal | undefined;
    /** A routing override from a trusted caller (`readOverrideHeader(req.headers['mesh-dtab'])`). */
    overrides?: RouteOverrides | undefined;
  },
  fn: (scope: DeadlineScope) => T,
  options: RunWithDeadlineOptions = {},
): T {
  if (init === null || typeof init !== 'object') {
    throw new ConfigError('runWithDeadline.init', init, 'an object { deadlineMs?, signal? }');
  }
  if (typeof fn !== 'function') throw new ConfigError('runWithDeadline.fn', fn, 'a function');
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('runWithDeadline.options', options, 'an options object');
  }
  const d = init.deadlineMs;
  if (d !== undefined && (typeof d !== 'number' || Number.isNaN(d) || d < 0)) {
    throw new ConfigError('runWithDeadline.deadlineMs', d, 'a number of milliseconds >= 0 (or Infinity)');
  }
  const signal = init.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ConfigError('runWithDeadline.signal', signal, 'an AbortSignal');
  }
  const service = checkService('runWithDeadline.service', options.service);
  const clock = checkClock('runWithDeadline.clock', options.clock);
  const { store, release } = arm(d, clock, service, () => 'headers', signal);
  const scope: DeadlineScope = { signal: store.signal, deadline: store.deadline, release };
  let result: T;
  try {
    result = incomingContext.run(init.overrides ? { ...store, overrides: init.overrides } : store, fn, scope);
  } catch (err) {
    release();
    throw err;
  }
  if (isThenable(result)) result.then(release, release);
  return result;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/**
 * The absolute deadline (ms on the mesh clock) of the request being served, `Infinity` if it has none, or
 * `undefined` outside a handler run by {@link meshHandler} / {@link runWithDeadline}.
 *
 * @example
 * ```ts
 * const deadline = getIncomingDeadline();
 * if (deadline !== undefined && deadline !== Infinity) log(`answer by t=${deadline}`);
 * ```
 */
export function getIncomingDeadline(): number | undefined {
  return incomingContext.getStore()?.deadline;
}

/**
 * Milliseconds left (fractional, never negative) before the incoming request's deadline; `Infinity` when it has
 * none or outside a served request. Reads the clock the helper was given unless you pass one.
 *
 * @example
 * ```ts
 * if (remainingMs() < 50) return void res.writeHead(503).end(); // not enough time to do it properly
 * ```
 */
export function remainingMs(clock?: Clock): number {
  const store = incomingContext.getStore() as Partial<ServerIncomingContext> | undefined;
  const deadline = store?.deadline;
  if (deadline === undefined || deadline === Infinity) return Infinity;
  const c = clock ?? store?.clock ?? systemClock;
  return Math.max(0, deadline - c.now());
}

/**
 * The AbortSignal of the request being served (aborts when its deadline passes or the client goes away), or
 * `undefined` outside a served request. Pass it to work the mesh does not see (database queries, timers).
 *
 * @example
 * ```ts
 * await db.query(sql, { signal: incomingSignal() });
 * ```
 */
export function incomingSignal(): AbortSignal | undefined {
  return incomingContext.getStore()?.signal;
}

function checkMax(path: string, v: unknown): number {
  if (v === undefined) return DEFAULT_MAX_DEADLINE_MS;
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0) {
    throw new ConfigError(path, v, 'a number of milliseconds > 0 (or Infinity for no cap)');
  }
  return v;
}

function checkBool(path: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(path, v, 'a boolean');
  return v;
}

function checkService(path: string, v: unknown): string {
  if (v === undefined) return 'incoming';
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(path, v, 'a non-empty string');
  return v;
}

function checkClock(path: string, v: unknown): Clock {
  if (v === undefined) return systemClock;
  const c = v as Partial<Clock> | null;
  if (
    c === null ||
    typeof c !== 'object' ||
    typeof c.now !== 'function' ||
    typeof c.setTimeout !== 'function' ||
    typeof c.clearTimeout !== 'function'
  ) {
    throw new ConfigError(path, v, 'a Clock { now, wallNow, setTimeout, clearTimeout }');
  }
  return c as Clock;
}
