/**
 * `mesh.dispatcher`: an undici `Dispatcher`, so the built-in global `fetch(url, { dispatcher })` of every
 * supported Node line, `undici.request(url, { dispatcher })` and undici's own fetch all go through the mesh.
 *
 * It accepts both handler styles: the callbacks Node 22's built-in fetch (undici 6) still uses (`onConnect`,
 * `onHeaders`, `onData`, `onComplete`, `onError`), adapted on entry by {@link LegacyHandler}, and the
 * controller API of undici 7 and 8 (`onRequestStart`, `onResponseStart`, ...; the only one undici 8 calls,
 * and the one Node 24 and 26 use). The response body streams to the handler with back-pressure (a handler
 * that pauses the controller pauses the socket read). The controller carries the response's raw header
 * lines (`controller.rawHeaders`), which undici 8's fetch reads instead of the parsed record.
 *
 * On this path a request body arrives as an async iterable even when the caller passed a string (that is how
 * fetch hands bodies to a dispatcher): anything that replays a body must buffer it.
 *
 * A caller's deadline is one budget for a whole fetch, redirects included ({@link HopDeadlines}): the built-in
 * fetch follows redirects itself, dispatching each hop with the caller's original `mesh-deadline-ms`, and
 * undici's Dispatcher API gives a dispatcher nothing that ties a hop to the fetch it belongs to, so the
 * dispatcher ties them by what it sees: the redirect it answered and the request that follows it.
 */
import { Dispatcher, type Agent } from 'undici';
import type { Readable } from 'node:stream';
import { InvalidRequestError, MeshClosedError } from '../core/errors.js';
import { whenBodyDone } from '../core/body-done.js';
import { DEADLINE_HEADER } from '../core/call-options.js';
import { wireHeaders } from '../core/header-case.js';
import { incomingContext } from '../core/incoming.js';
import type { Clock } from '../core/clock.js';
import { CallSignal, type CancelSignal } from '../core/signal.js';
import {
  responseHeaders,
  type MeshRequest,
  type MeshResponse,
  type ResponseHeaderRecord,
} from '../core/message.js';
import { HopDeadlines, RedirectWatch, remember, type Chain } from './dispatcher-hops.js';
import { normalizeHeaders, stripMeshHeaders, type HeadersInput } from './headers.js';
import { DeadlineHandler, passthroughDeadline } from './passthrough.js';
import { validateBody, validateMethod } from './validate.js';

type Handler = Dispatcher.DispatchHandler;

/**
 * What the dispatcher needs of the mesh (the `Mesh` is one): the logical service a hostname names, the Agent
 * for hosts that are not services, and one call through a service's stack. Declared here so that the entry
 * point depends on this interface, not on the mesh's class.
 */
export interface DispatchHost {
  readonly clock: Clock;
  readonly closed: boolean;
  lookup(hostname: string): object | undefined;
  passthrough(hostname: string): Agent;
  invoke(svc: object, req: MeshRequest, signal: CancelSignal | undefined): Promise<MeshResponse>;
}

/** The callbacks of a handler written for undici 6 (Node 22's built-in fetch). */
interface LegacyCallbacks {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: Buffer[] | null): void;
  onError?(err: Error): void;
  onUpgrade?(statusCode: number, rawHeaders: Buffer[], socket: unknown): void;
  onResponseStarted?(): void;
  onBodySent?(chunk: Buffer): void;
  onRequestSent?(): void;
}

function isLegacy(handler: object): handler is LegacyCallbacks {
  const h = handler as Handler & LegacyCallbacks;
  return (
    typeof h.onRequestStart !== 'function' &&
    (typeof h.onHeaders === 'function' ||
      typeof h.onConnect === 'function' ||
      typeof h.onError === 'function')
  );
}

/**
 * A legacy handler seen through the controller API: the mesh, the pass-through Agent and undici 8 all speak
 * only the controller API. undici 8 has the same adapter inside `Dispatcher1Wrapper`, but exports no way to
 * wrap a handler alone (the wrapper wraps a whole dispatcher), hence this small one.
 */
class LegacyHandler implements Handler {
  constructor(private readonly h: LegacyCallbacks) {}
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.h.onConnect?.((reason?: Error) => controller.abort(reason ?? new AbortedByCaller()), context);
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    socket: unknown,
  ): void {
    this.h.onUpgrade?.(statusCode, rawOf(controller, headers), socket);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusText?: string,
  ): void {
    const resume = (): void => controller.resume();
    if (this.h.onHeaders?.(statusCode, rawOf(controller, headers), resume, statusText ?? '') === false) {
      controller.pause();
    }
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.h.onData?.(chunk) === false) controller.pause();
  }
  onResponseEnd(controller: Dispatcher.DispatchController): void {
    const t = controller.rawTrailers;
    this.h.onComplete?.(Array.isArray(t) ? (t as Buffer[]) : NO_RAW_TRAILERS);
  }
  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.h.onError?.(err);
  }
  onResponseStarted(): void {
    this.h.onResponseStarted?.();
  }
  onBodySent(chunk: Buffer): void {
    this.h.onBodySent?.(chunk);
  }
  onRequestSent(): void {
    this.h.onRequestSent?.();
  }
}

function rawOf(controller: Dispatcher.DispatchController, headers: Record<string, unknown>): Buffer[] {
  const raw = controller.rawHeaders;
  // The mesh's own controller holds Buffers already (deliver): handed over as they are, not copied.
  if (controller instanceof Controller && raw !== undefined) return raw as Buffer[];
  if (Array.isArray(raw)) return raw.map((x) => (typeof x === 'string' ? latin1(x) : x));
  return toBuffers((raw ?? headers) as ResponseHeaderRecord);
}

/** The trailers of a mesh response (the mesh does not carry trailers), and their raw lines. */
const NO_TRAILERS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const NO_RAW_TRAILERS: Buffer[] = Object.freeze([]) as unknown as Buffer[];

/** The context handed to `onRequestStart` (undici's is per-dispatch data a dispatcher may fill; the mesh has none). */
const NO_CONTEXT: object = Object.freeze({});

class AbortedByCaller extends Error {
  override name = 'AbortError';
  constructor() {
    super('The request was aborted');
  }
}

/**
 * The controller handed to a handler for a mesh service's response, and the call's signal (the handler aborts
 * the call through the controller): one object per call.
 */
class Controller extends CallSignal implements Dispatcher.DispatchController {
  body: Readable | undefined = undefined;
  /** The response's header lines (undici 8's fetch reads these rather than the parsed record). */
  rawHeaders: Buffer[] | undefined = undefined;
  rawTrailers: Buffer[] | undefined = undefined;
  /** A controller's reason is null until it aborts (a signal's is undefined). */
  override reason: any = null;
  private _paused = false;
  get paused(): boolean {
    return this._paused;
  }
  pause(): void {
    this._paused = true;
    this.body?.pause();
  }
  resume(): void {
    this._paused = false;
    this.body?.resume();
  }
  /**
   * The response is over: the handler keeps this controller (fetch keeps its abort for as long as the
   * fetch lives), so it lets go of the body and the header lines, and the call's objects with them.
   */
  release(): void {
    this.body = undefined;
    this.rawHeaders = undefined;
  }
}

/**
 * Header strings as latin1 Buffers, shared: response header names and most values repeat from one response
 * to the next (`content-type`, `content-length: 32`, `connection`...), and a `Buffer.from` for each of them
 * stood out in the dispatcher path's profile (docs/benchmarks.md). Bounded (it starts over when full) and
 * limited to short strings. The Buffers handed to a handler are read-only by contract, as
 * undici's own are.
 */
const latin1Cache = new Map<string, Buffer>();

function latin1(s: string): Buffer {
  if (s.length > 64) return Buffer.from(s, 'latin1');
  let b = latin1Cache.get(s);
  if (b === undefined) {
    b = Buffer.from(s, 'latin1');
    if (latin1Cache.size >= 512) latin1Cache.clear();
    latin1Cache.set(s, b);
  }
  return b;
}

/**
 * A header name's Buffer and the Buffer of the last value seen with it. Response header values are new
 * strings on every response, so finding their Buffer in {@link latin1Cache} hashes each one; comparing a
 * value with the last one under its name does not, and most names keep their value from one response to the
 * next (`content-length`, `content-type`, `connection`).
 */
interface NameLine {
  readonly name: Buffer;
  value: string;
  valueBuffer: Buffer;
}

const nameLines = new Map<string, NameLine>();

function nameLine(k: string, v: string): NameLine {
  let line = nameLines.get(k);
  if (line === undefined) {
    line = { name: latin1(k), value: v, valueBuffer: latin1(v) };
    if (nameLines.size >= 256) nameLines.clear();
    nameLines.set(k, line);
  } else if (line.value !== v) {
    line.valueBuffer = latin1(v);
    line.value = v;
  }
  return line;
}

/** Raw header lines as Buffers, from the parsed record. */
function toBuffers(headers: ResponseHeaderRecord): Buffer[] {
  const out: Buffer[] = [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    if (typeof v === 'string') {
      const line = nameLine(k, v);
      out.push(line.name, line.valueBuffer);
    } else {
      const name = latin1(k);
      for (const x of v) out.push(name, latin1(x));
    }
  }
  return out;
}

/**
 * The mesh as an undici Dispatcher. Obtain it as `mesh.dispatcher`.
 *
 * @example
 * ```ts
 * const res = await fetch('http://users/v1/users/42', { dispatcher: mesh.dispatcher });
 * ```
 */
export class MeshDispatcher extends Dispatcher {
  private isDestroyed = false;
  private readonly origins = new Map<string, Origin>();
  /**
   * The origin of the last dispatch, checked before the map: fetch makes a new origin string for every
   * request (`url.origin`), so a map lookup hashes it each time, where comparing it with the last one does not.
   */
  private lastOrigin: Origin | undefined = undefined;
  private readonly hops = new HopDeadlines();
  constructor(private readonly mesh: DispatchHost) {
    super();
  }

  override dispatch(opts: Dispatcher.DispatchOptions, given: Handler): boolean {
    const handler: Handler = isLegacy(given) ? new LegacyHandler(given) : given;
    const origin = this.origin(opts.origin);
    if (origin === undefined) {
      fail(handler, undefined, new InvalidRequestError('origin', opts.origin, 'an absolute http(s) origin'));
      return true;
    }
    const hostname = origin.hostname;
    const svc = this.mesh.lookup(hostname);
    if (svc === undefined) {
      let agent;
      try {
        agent = this.mesh.passthrough(hostname);
      } catch (err) {
        fail(handler, undefined, err as Error);
        return true;
      }
      let headers;
      let deadline;
      let chain: Chain | undefined;
      try {
        headers = normalizeHeaders(opts.headers as HeadersInput);
        chain = this.chain(origin, opts.path, headers);
        deadline = passthroughDeadline(headers, this.mesh.clock); // the caller's deadline applies here too
      } catch (err) {
        fail(handler, undefined, err as Error);
        return true;
      }
      // Header names as the caller wrote them (src/core/header-case.ts), as undici's Agent sends them.
      const wire = wireHeaders(stripMeshHeaders(headers));
      const { maxRedirections: _ignored, ...rest } = opts as Dispatcher.DispatchOptions & {
        maxRedirections?: number;
      };
      const watched = chain === undefined ? handler : new RedirectWatch(handler, chain);
      return agent.dispatch(
        { ...rest, headers: wire },
        deadline === undefined ? watched : new DeadlineHandler(watched, deadline, hostname, this.mesh.clock),
      );
    }
    const protocol = origin.protocol;
    if ((protocol !== 'http:' && protocol !== 'https:') || opts.upgrade || opts.method === 'CONNECT') {
      fail(
        handler,
        undefined,
        new InvalidRequestError(
          'method',
          opts.method,
          'a plain HTTP request (upgrades and CONNECT are not routed by the mesh)',
        ),
      );
      return true;
    }
    // The controller is the call's signal: fetch aborts through the controller, never through a signal of its
    // own.
    const controller = new Controller();
    let method: string;
    let req: MeshRequest;
    let chain: Chain | undefined;
    try {
      method = validateMethod(opts.method);
      const headers = normalizeHeaders(opts.headers as HeadersInput);
      if (headers[DEADLINE_HEADER] !== undefined) chain = this.chain(origin, opts.path, headers);
      req = {
        method,
        protocol,
        authority: origin.host,
        service: hostname,
        path: opts.path,
        headers,
        body: (opts.body ?? null) as MeshRequest['body'],
      };
      validateBody(req.body);
    } catch (err) {
      fail(handler, controller, err as Error);
      return true;
    }
    handler.onRequestStart?.(controller, NO_CONTEXT);
    if (controller.aborted) {
      fail(handler, controller, controller.reason as Error);
      return true;
    }
    // fetch gives a dispatcher no signal of its own, only the controller above; inside a handler served
    // with meshHandler, link the incoming request's signal too (by hand, removed when the call ends).
    const incoming = incomingContext.getStore()?.signal;
    let unlink: (() => void) | undefined;
    if (incoming !== undefined) {
      if (incoming.aborted) controller.abort(incoming.reason);
      const onAbort = (): void => controller.abort(incoming.reason);
      incoming.addEventListener('abort', onAbort, { once: true });
      unlink = () => incoming.removeEventListener('abort', onAbort);
    }
    this.mesh.invoke(svc, req, controller).then(
      (res) => {
        if (unlink) whenBodyDone(res.body, unlink);
        if (chain !== undefined) remember(chain, res.statusCode, responseHeaders(res).location);
        deliver(res, handler, controller);
      },
      (err: Error) => {
        unlink?.();
        fail(handler, controller, err);
      },
    );
    return true;
  }

  /**
   * The redirect chain a request with `mesh-deadline-ms` belongs to (a new one, or the one whose redirect it
   * follows: its header then carries what remains of the chain's budget); undefined without the header.
   */
  private chain(origin: Origin, path: string, headers: Record<string, unknown>): Chain | undefined {
    const header = headers[DEADLINE_HEADER];
    if (typeof header !== 'string') return undefined;
    const clock = this.mesh.clock;
    const url = origin.origin + path;
    const at = this.hops.carry(url, headers, header, clock.now());
    return at === undefined ? undefined : { hops: this.hops, url, header, at, clock };
  }

  /** Parses an origin once: fetch hands the same origin string to every dispatch. */
  private origin(o: unknown): Origin | undefined {
    if (typeof o === 'string') {
      const last = this.lastOrigin;
      if (last !== undefined && last.given === o) return last;
      let hit = this.origins.get(o);
      if (hit === undefined) {
        hit = parseOrigin(o);
        if (hit === undefined) return undefined;
        if (this.origins.size >= 256) this.origins.clear();
        this.origins.set(o, hit);
      }
      this.lastOrigin = hit;
      return hit;
    }
    return o instanceof URL ? parseOrigin(o) : undefined;
  }

  override async close(): Promise<void> {
    this.isDestroyed = true;
  }

  override async destroy(): Promise<void> {
    this.isDestroyed = true;
  }

  /** @internal Called when the mesh has closed. */
  async destroyed(): Promise<void> {
    this.isDestroyed = true;
  }

  /** True once the mesh has closed. */
  get closed(): boolean {
    return this.isDestroyed || this.mesh.closed;
  }
}

/** What the dispatcher needs of an origin. */
interface Origin {
  /** The origin as the caller gave it (a string: fetch's, or the URL's `href`). */
  readonly given: string;
  /** Scheme, host and port, as `URL.origin` spells them. */
  readonly origin: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly host: string;
}

function parseOrigin(o: string | URL): Origin | undefined {
  try {
    const u = typeof o === 'string' ? new URL(o) : o;
    return {
      given: typeof o === 'string' ? o : u.href,
      origin: u.origin,
      protocol: u.protocol,
      hostname: u.hostname,
      host: u.host,
    };
  } catch {
    return undefined;
  }
}

function fail(handler: Handler, controller: Controller | undefined, err: Error): void {
  handler.onResponseError?.(controller ?? new Controller(), err);
}

function deliver(res: MeshResponse, handler: Handler, controller: Controller): void {
  const body = res.body;
  let done = false;
  const onError = (err: Error): void => {
    if (done) return;
    done = true;
    controller.release();
    fail(handler, controller, err);
  };
  body.on('error', onError);
  controller.body = body;
  const headers = responseHeaders(res);
  controller.rawHeaders = toBuffers(headers);
  try {
    // undici calls it at the first byte of the response; fetch takes its resource-timing response start there.
    handler.onResponseStarted?.();
    handler.onResponseStart?.(controller, res.statusCode, headers as never, res.statusText);
  } catch (err) {
    body.destroy(err as Error);
    return;
  }
  // What has already arrived goes to the handler now, and the end with it when the whole body is here (a
  // small answer arrives with its headers): as undici delivers it, in the same turn. fetch relies on it: after
  // a 421 it drops the connection of the answer it has, and an answer still streaming would then fail the
  // whole fetch (undici's own fetch test/fetch/issue-2898.js).
  while (!controller.paused && body.readableLength > 0) {
    const chunk = body.read() as Buffer | null;
    if (chunk === null) break;
    handler.onResponseData?.(controller, chunk);
  }
  if (!controller.paused && body.readableLength === 0 && (body as { complete?: boolean }).complete === true) {
    done = true;
    handler.onResponseEnd?.(controller, NO_TRAILERS);
    body.read(); // lets the body end and close (its done hooks run)
    controller.release();
    return;
  }
  body.on('data', (chunk: Buffer) => handler.onResponseData?.(controller, chunk));
  body.on('end', () => {
    if (done) return;
    done = true;
    handler.onResponseEnd?.(controller, NO_TRAILERS);
    controller.release();
  });
  if (controller.paused) body.pause();
}

export { MeshClosedError };
