/**
 * The explicit, opt-in global install. Importing meshfetch changes nothing global; calling this makes the
 * built-in `fetch` (and undici's) use the mesh for every call. Hosts that are not mesh services still work:
 * they pass through to a plain undici Agent.
 */
import { getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import type { Mesh } from './mesh.js';

/**
 * Routes the global `fetch` through `mesh`. Returns a function that restores the previous dispatcher.
 *
 * @example
 * ```ts
 * const restore = installGlobalDispatcher(mesh);
 * await fetch('http://users/v1/users/42'); // through the mesh
 * restore();
 * ```
 */
export function installGlobalDispatcher(mesh: Mesh): () => void {
  const previous = getGlobalDispatcher();
  setGlobalDispatcher(mesh.dispatcher);
  return () => setGlobalDispatcher(previous);
}
