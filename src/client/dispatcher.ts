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
import { InvalidRequestError, MeshClosedError } from '../core/errors.js';
import { whenBodyDone } from '../core/body-done.js';
import { DEADLINE_HEADER } from '../core/call-options.js';
import { wireHeaders } from '../core/header-case.js';
import { incomingContext } from '../core/incoming.js';
import type { Clock } from '../core/clock.js';
import type { Continuation } from '../core/service.js';
import type { CancelSignal } from '../core/signal.js';
import { responseHeaders, type MeshRequest, type MeshResponse } from '../core/message.js';
import { Controller, fail, isLegacy, LegacyHandler, NO_CONTEXT } from './dispatcher-handler.js';
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
  /** One call through a service's stack, its outcome handed to `k` (whose methods do not throw). */
  invokeThen(svc: object, req: MeshRequest, signal: CancelSignal | undefined, k: Continuation<void>): void;
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
      fail(handler, new InvalidRequestError('origin', opts.origin, 'an absolute http(s) origin'));
      return true;
    }
    const hostname = origin.hostname;
    const svc = this.mesh.lookup(hostname);
    if (svc === undefined) {
      let agent;
      try {
        agent = this.mesh.passthrough(hostname);
      } catch (err) {
        fail(handler, err as Error);
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
        fail(handler, err as Error);
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
    const controller = new DispatchCall(handler);
    let method: string;
    let req: MeshRequest;
    try {
      method = validateMethod(opts.method);
      const headers = normalizeHeaders(opts.headers as HeadersInput);
      if (headers[DEADLINE_HEADER] !== undefined) controller.chain = this.chain(origin, opts.path, headers);
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
      controller.fail(err as Error);
      return true;
    }
    handler.onRequestStart?.(controller, NO_CONTEXT);
    if (controller.aborted) {
      controller.fail(controller.reason as Error);
      return true;
    }
    // fetch gives a dispatcher no signal of its own, only the controller above; inside a handler served
    // with meshHandler, link the incoming request's signal too (by hand, removed when the call ends).
    const incoming = incomingContext.getStore()?.signal;
    if (incoming !== undefined) linkIncoming(controller, incoming);
    this.mesh.invokeThen(svc, req, controller, controller);
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

/**
 * One dispatch to a mesh service: the handler's controller (and the call's signal), and the way back of the
 * call through the stack (a {@link Continuation}: no closures per call).
 */
class DispatchCall extends Controller implements Continuation<void> {
  /** The redirect chain the request belongs to (with `mesh-deadline-ms` only). */
  chain: Chain | undefined = undefined;
  /** Unlinks the incoming request's signal (inside a handler served with meshHandler). */
  unlink: (() => void) | undefined = undefined;

  answered(res: MeshResponse): void {
    try {
      if (this.unlink !== undefined) whenBodyDone(res.body, this.unlink);
      const chain = this.chain;
      if (chain !== undefined) remember(chain, res.statusCode, responseHeaders(res).location);
    } catch (err) {
      res.body.destroy();
      this.fail(err as Error);
      return;
    }
    this.deliver(res);
  }

  failed(err: unknown): void {
    this.unlink?.();
    this.fail(err as Error);
  }
}

/**
 * Aborts the dispatch when the incoming request's signal aborts, until the call ends. A function of its own:
 * closures in `dispatch` would make every dispatch allocate their context.
 */
function linkIncoming(controller: DispatchCall, incoming: AbortSignal): void {
  if (incoming.aborted) controller.abort(incoming.reason);
  const onAbort = (): void => controller.abort(incoming.reason);
  incoming.addEventListener('abort', onAbort, { once: true });
  controller.unlink = () => incoming.removeEventListener('abort', onAbort);
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

export { MeshClosedError };
