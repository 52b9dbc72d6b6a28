/**
 * One body-completion hook per response instead of one `'close'` listener per layer. Several layers need to
 * know when a response body is finished (the balancer's in-flight count, admission, the deadline's timer,
 * the mesh's in-flight count, spans): each `once('close')` costs an EventEmitter wrapper and a removal, and
 * they add up on the hot path (bench/overhead's profile). Here the first hook on a body adds one listener
 * (a shared function, no closure) and every later hook is an array push; they run in the order they were
 * added, once, when the body closes (ends, errors or is destroyed).
 */
import type { Readable } from 'node:stream';

/** Something to run once when a body is done: a function, or an object with `onBodyDone` (no closure needed). */
export type BodyDoneHook = (() => void) | { onBodyDone(): void };

const HOOKS = Symbol('meshfetch.bodyDone');

type Hooked = Readable & { [HOOKS]?: BodyDoneHook[] | undefined };

function run(hook: BodyDoneHook): void {
  if (typeof hook === 'function') hook();
  else hook.onBodyDone();
}

function runHooks(this: Hooked): void {
  const hooks = this[HOOKS];
  this[HOOKS] = undefined;
  if (hooks === undefined) return;
  for (let i = 0; i < hooks.length; i++) run(hooks[i]!);
}

/**
 * Runs `hook` once when `body` closes; at once if it already has (or has ended).
 *
 * @example
 * ```ts
 * whenBodyDone(res.body, () => load.end(clock.now()));
 * ```
 */
export function whenBodyDone(body: Readable, hook: BodyDoneHook): void {
  if (body.destroyed || body.readableEnded) {
    run(hook);
    return;
  }
  const b = body as Hooked;
  const hooks = b[HOOKS];
  if (hooks !== undefined) {
    hooks.push(hook);
    return;
  }
  b[HOOKS] = [hook];
  b.once('close', runHooks);
}
