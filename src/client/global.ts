/**
 * The explicit, opt-in global install. Importing meshfetch changes nothing global (src/core/undici-global.ts);
 * calling this makes the built-in `fetch` of every supported Node line (and undici's own top-level API) use
 * the mesh for every call. Hosts that are not mesh services still work: they pass through to a plain undici
 * Agent.
 */
import { setGlobalDispatcher } from 'undici';
import { UNDICI_GLOBAL_SLOTS } from '../core/undici-global.js';
import type { Mesh } from './mesh.js';

/**
 * Routes the global `fetch` through `mesh`. Returns a function that restores the previous dispatcher (or
 * none, when there was none).
 *
 * @example
 * ```ts
 * const restore = installGlobalDispatcher(mesh);
 * await fetch('http://users/v1/users/42'); // through the mesh
 * restore();
 * ```
 */
export function installGlobalDispatcher(mesh: Mesh): () => void {
  const g = globalThis as unknown as Record<symbol, unknown>;
  const previous = UNDICI_GLOBAL_SLOTS.map((slot) => g[slot]);
  // undici writes both slots: the dispatcher itself, and a wrapper for the legacy handler API (Node 22).
  setGlobalDispatcher(mesh.dispatcher);
  return () => {
    UNDICI_GLOBAL_SLOTS.forEach((slot, i) => {
      g[slot] = previous[i];
    });
  };
}
