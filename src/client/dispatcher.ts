/**
 * `mesh.dispatcher`: an undici `Dispatcher`, so the built-in global `fetch(url, { dispatcher })` (undici 6
 * inside Node 20), `undici.request(url, { dispatcher })` and undici 7's own fetch all go through the mesh.
 *
 * It accepts both handler styles: the legacy callbacks Node 20's built-in fetch uses (`onConnect`,
 * `onHeaders`, `onData`, `onComplete`, `onError`) and undici 7's controller API (`onRequestStart`,
 * `onResponseStart`, ...). The response body streams to the handler with back-pressure (a handler that
 * returns false from `onData`, or pauses the controller, pauses the socket read).
 *
 * On this path a request body arrives as an async iterable even when the caller passed a string (that is how
 * fetch hands bodies to a dispatcher): anything that replays a body must buffer it.
 */
import { Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { InvalidRequestError, MeshClosedError } from '../core/errors.js';
import { whenBodyDone } from '../core/body-done.js';
import { incomingContext } from '../core/incoming.js';
import { CallSignal } from '../core/signal.js';
import {
  responseHeaders,
  type MeshRequest,
  type MeshResponse,
  type ResponseHeaderRecord,
} from '../core/message.js';
import { normalizeHeaders, stripMeshHeaders, type HeadersInput } from './headers.js';
import type { Mesh } from './mesh.js';
import { validateMethod } from './mesh.js';

type Handler = Dispatcher.DispatchHandler;

class AbortedByCaller extends Error {
  override name = 'AbortError';
  constructor() {
    super('The request was aborted');
  }
}

/** Controller handed to undici-7 style handlers. */
class Controller implements Dispatcher.DispatchController {
  body: Readable | undefined;
  private _paused = false;
  constructor(private readonly ac: CallSignal) {}
  get aborted(): boolean {
    return this.ac.aborted;
  }
  get paused(): boolean {
    return this._paused;
  }
  get reason(): Error | null {
    return this.ac.aborted ? (this.ac.reason as Error) : null;
  }
  abort(reason: Error): void {
    this.ac.abort(reason);
  }
  pause(): void {
    this._paused = true;
    this.body?.pause();
  }
  resume(): void {
    this._paused = false;
    this.body?.resume();
  }
}

/**
 * Header strings as latin1 Buffers, shared: response header names and most values repeat from one response
 * to the next (`content-type`, `content-length: 32`, `connection`...), and `Buffer.from` for each of them
 * was 1-2.6 µs per call on the dispatcher path (bench/overhead's profile). Bounded (it starts over when
 * full) and limited to short strings. The Buffers handed to a handler are read-only by contract, as
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

/** The raw header Buffers legacy handlers (Node 20's built-in fetch) expect, from the parsed record. */
function toBuffers(headers: ResponseHeaderRecord): Buffer[] {
  const out: Buffer[] = [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    const name = latin1(k);
    if (typeof v === 'string') out.push(name, latin1(v));
    else for (const x of v) out.push(name, latin1(x));
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
  constructor(private readonly mesh: Mesh) {
    super();
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
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
      const headers = stripMeshHeaders(normalizeHeaders(opts.headers as HeadersInput));
      const { maxRedirections: _ignored, ...rest } = opts as Dispatcher.DispatchOptions & {
        maxRedirections?: number;
      };
      return agent.dispatch({ ...rest, headers }, handler);
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
    // A cheap signal: fetch aborts through the callback below, never through a signal of its own.
    const ac = new CallSignal();
    const legacy = typeof handler.onResponseStart !== 'function' && typeof handler.onHeaders === 'function';
    const controller = legacy ? undefined : new Controller(ac);
    let method: string;
    let req: MeshRequest;
    try {
      method = validateMethod(opts.method);
      req = {
        method,
        protocol,
        authority: origin.host,
        service: hostname,
        path: opts.path,
        headers: normalizeHeaders(opts.headers as HeadersInput),
        body: (opts.body ?? null) as MeshRequest['body'],
      };
    } catch (err) {
      fail(handler, controller, err as Error);
      return true;
    }
    if (legacy) handler.onConnect?.((err?: Error) => ac.abort(err ?? new AbortedByCaller()));
    else handler.onRequestStart?.(controller!, {});
    if (ac.aborted) {
      fail(handler, controller, ac.reason as Error);
      return true;
    }
    // fetch gives a dispatcher no signal of its own, only the abort callback above; inside a handler served
    // with meshHandler, link the incoming request's signal too (by hand, removed when the call ends).
    const incoming = incomingContext.getStore()?.signal;
    let unlink: (() => void) | undefined;
    if (incoming !== undefined) {
      if (incoming.aborted) ac.abort(incoming.reason);
      const onAbort = (): void => ac.abort(incoming.reason);
      incoming.addEventListener('abort', onAbort, { once: true });
      unlink = () => incoming.removeEventListener('abort', onAbort);
    }
    this.mesh.invoke(svc, req, ac).then(
      (res) => {
        if (unlink) whenBodyDone(res.body, unlink);
        deliver(res, handler, controller);
      },
      (err: Error) => {
        unlink?.();
        fail(handler, controller, err);
      },
    );
    return true;
  }

  /** Parses an origin once: fetch hands the same origin string to every dispatch. */
  private origin(o: unknown): Origin | undefined {
    if (typeof o === 'string') {
      let hit = this.origins.get(o);
      if (hit === undefined) {
        hit = parseOrigin(o);
        if (hit === undefined) return undefined;
        if (this.origins.size >= 256) this.origins.clear();
        this.origins.set(o, hit);
      }
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
  readonly protocol: string;
  readonly hostname: string;
  readonly host: string;
}

function parseOrigin(o: string | URL): Origin | undefined {
  try {
    const u = typeof o === 'string' ? new URL(o) : o;
    return { protocol: u.protocol, hostname: u.hostname, host: u.host };
  } catch {
    return undefined;
  }
}

function fail(handler: Handler, controller: Controller | undefined, err: Error): void {
  if (controller && typeof handler.onResponseError === 'function') handler.onResponseError(controller, err);
  else handler.onError?.(err);
}

function deliver(res: MeshResponse, handler: Handler, controller: Controller | undefined): void {
  const body = res.body;
  let done = false;
  const onError = (err: Error): void => {
    if (done) return;
    done = true;
    fail(handler, controller, err);
  };
  body.on('error', onError);
  if (controller) {
    controller.body = body;
    try {
      handler.onResponseStart?.(controller, res.statusCode, responseHeaders(res) as never, res.statusText);
    } catch (err) {
      body.destroy(err as Error);
      return;
    }
    body.on('data', (chunk: Buffer) => handler.onResponseData?.(controller, chunk));
    body.on('end', () => {
      if (done) return;
      done = true;
      handler.onResponseEnd?.(controller, {});
    });
    if (controller.paused) body.pause();
    return;
  }
  let ok: boolean | undefined;
  try {
    ok = handler.onHeaders?.(
      res.statusCode,
      toBuffers(responseHeaders(res)),
      () => body.resume(),
      res.statusText,
    );
  } catch (err) {
    body.destroy(err as Error);
    return;
  }
  body.on('data', (chunk: Buffer) => {
    if (handler.onData?.(chunk) === false) body.pause();
  });
  body.on('end', () => {
    if (done) return;
    done = true;
    handler.onComplete?.([]);
  });
  if (ok === false) body.pause();
}

export { MeshClosedError };
