/**
 * The context of the incoming request a handler is serving, carried through the handler's async work with
 * AsyncLocalStorage. The server helper enters it once per incoming request; the mesh only reads it on
 * outgoing calls (a `getStore()`, cheap), so that every call the handler makes inherits the remaining deadline
 * (min(incoming, local)) and the incoming request's abort signal. Entering AsyncLocalStorage per outgoing call
 * would be expensive; reading it is not.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What outgoing calls inherit from the request being served.
 *
 * @example
 * ```ts
 * incomingContext.run({ deadline: clock.now() + 500, signal }, () => handle(req, res));
 * ```
 */
export interface IncomingContext {
  /** Absolute deadline on the mesh clock (ms); `Infinity` for none. */
  readonly deadline: number;
  /** Aborted when the incoming request is abandoned (client gone) or its deadline passes. */
  readonly signal?: AbortSignal | undefined;
  /**
   * The routing override (`mesh-dtab`) a trusted caller sent, applied to and forwarded with every mesh call made
   * while serving the request (only by meshes created with `overrides: { enabled: true }`). A `RouteOverrides`
   * (src/routing/override.ts), which the router reads back; typed `unknown` here so that core imports nothing
   * of the layers above it.
   */
  readonly overrides?: unknown;
}

/** The storage the server helper enters and the mesh reads. */
export const incomingContext = new AsyncLocalStorage<IncomingContext>();
