// Waiting for a condition the test cannot subscribe to (a counter inside the mesh, a socket closing on the
// other side): checked on every turn of the event loop, failing after a bound rather than hanging.

/**
 * Resolves once `cond()` holds; rejects after `ms`. `tick: 'timer'` checks after a 1 ms timer instead of
 * `setImmediate` (for conditions that only a timer callback can make true, without spinning the loop).
 */
export async function until(
  cond: () => boolean,
  ms = 5_000,
  tick: 'immediate' | 'timer' = 'immediate',
): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => (tick === 'timer' ? setTimeout(r, 1) : setImmediate(r)));
  }
}
