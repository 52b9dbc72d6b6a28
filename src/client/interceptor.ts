/**
 * `meshInterceptor(mesh)`: the mesh as an undici interceptor, for a dispatcher you already have.
 * `new Agent().compose(meshInterceptor(mesh))` (or `getGlobalDispatcher().compose(...)`) sends requests to
 * mesh services through the mesh and every other request on, unchanged, to the dispatcher it wraps: its
 * proxy settings, TLS options and interceptors stay in force for the rest of the traffic. This is undici's
 * own composition mechanism (undici docs/api/Dispatcher.md, `compose`), the way its retry, redirect and DNS
 * interceptors plug in; `installGlobalDispatcher` is the other way, which hands everything to the mesh and
 * lets the mesh pass non-mesh hosts to a plain Agent.
 */
import type { Dispatcher } from 'undici';
import type { Mesh } from './mesh.js';

/** The hostname of a dispatch origin, or undefined when it has none that parses. */
function hostnameOf(origin: Dispatcher.DispatchOptions['origin']): string | undefined {
  if (origin === undefined || origin === null) return undefined;
  if (origin instanceof URL) return origin.hostname;
  try {
    return new URL(String(origin)).hostname;
  } catch {
    return undefined;
  }
}

/**
 * An undici interceptor that routes mesh services through `mesh`.
 *
 * @example
 * ```ts
 * import { Agent, fetch } from 'undici'; // the built-in fetch of Node 22 and 24 cannot drive an undici 8 Agent
 * import { createMesh, meshInterceptor } from 'meshfetch';
 *
 * const mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:8081'] } } });
 * const dispatcher = new Agent().compose(meshInterceptor(mesh));
 * await fetch('http://users/v1/users/42', { dispatcher }); // through the mesh
 * await fetch('http://127.0.0.1:9000/health', { dispatcher }); // through the Agent, unchanged
 * ```
 */
export function meshInterceptor(mesh: Mesh): Dispatcher.DispatcherComposeInterceptor {
  // An origin's hostname never changes; whether it is a service can (services are added and removed at run
  // time), so only the parse is remembered.
  const hostnames = new Map<string, string | undefined>();
  return (dispatch) => (opts, handler) => {
    const origin = opts.origin;
    let hostname: string | undefined;
    if (typeof origin === 'string') {
      if (hostnames.has(origin)) hostname = hostnames.get(origin);
      else {
        hostname = hostnameOf(origin);
        if (hostnames.size >= 256) hostnames.clear();
        hostnames.set(origin, hostname);
      }
    } else hostname = hostnameOf(origin);
    const routed = hostname !== undefined && mesh.lookup(hostname) !== undefined;
    return routed ? mesh.dispatcher.dispatch(opts, handler) : dispatch(opts, handler);
  };
}
