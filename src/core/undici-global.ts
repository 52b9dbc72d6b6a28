/**
 * Loading meshfetch leaves the built-in `fetch` on Node's own dispatcher.
 *
 * The undici package installs an Agent of its own as undici's global dispatcher when it is first loaded and
 * finds none (undici lib/global.js), in `globalThis[Symbol.for('undici.globalDispatcher.2')]` and, wrapped
 * for the legacy handler API, `…globalDispatcher.1`. Node's built-in `fetch` reads the same slots: the
 * undici 6 and 7 inside Node 22 and 24 read `.1`, the undici 8 inside Node 26 reads `.2`. So a plain
 * `import 'meshfetch'` would make every built-in fetch of the process run on the package's undici instead of
 * Node's own.
 *
 * This module is the first one every entry point imports. It has Node load its own fetch implementation
 * first (reading a lazy global such as `Headers` does that), which installs Node's own dispatcher exactly as
 * the first built-in fetch call would; it remembers the slots' contents; and
 * {@link releaseUndiciGlobals}, called at the end of each entry point once undici has loaded, puts back
 * every slot that held something. A slot that was empty keeps what undici put there: no built-in fetch reads
 * it (it is `.2` on Node 22 and 24), and undici's own top-level `request()` and `fetch()` keep a dispatcher.
 * The explicit, opt-in `installGlobalDispatcher` is the only way meshfetch changes what the built-in fetch
 * uses.
 */

/** undici's global dispatcher slots: `.1` for the legacy handler API, `.2` for the controller API. */
export const UNDICI_GLOBAL_SLOTS: readonly symbol[] = [
  Symbol.for('undici.globalDispatcher.1'),
  Symbol.for('undici.globalDispatcher.2'),
];

// Node's fetch implementation loads on first use of any of its globals; this is that first use.
void (globalThis as { Headers?: unknown }).Headers;

const g = globalThis as unknown as Record<symbol, unknown>;
let saved: Array<readonly [symbol, unknown]> | undefined = UNDICI_GLOBAL_SLOTS.filter(
  (slot) => g[slot] !== undefined,
).map((slot) => [slot, g[slot]] as const);

/** Puts back the slots that held a dispatcher before undici loaded (once; later calls do nothing). */
export function releaseUndiciGlobals(): void {
  if (saved === undefined) return;
  for (const [slot, value] of saved) {
    if (g[slot] === value) continue;
    try {
      g[slot] = value;
    } catch {
      // A slot made read-only by someone else: nothing meshfetch may change.
    }
  }
  saved = undefined;
}
