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

/**
 * The key of the hook field a body class may declare itself, initialised to `null`, to run its own hooks
 * (the pool leaf's response body does, src/transport/handler.ts): {@link whenBodyDone} then neither adds a
 * property to the body after its construction (its hidden class stays the one undici's code was optimised
 * for) nor registers a `'close'` listener, and the class calls {@link runBodyDoneHooks} itself when it is
 * destroyed (from its `_destroy` callback, where `errored` is already set).
 */
export const BODY_DONE_HOOKS: typeof HOOKS = HOOKS;

/**
 * The hooks of one body: the first eight in fields, more in an array. A call through the default stacks adds
 * six (the attempt's signal, the endpoint, the destination, admission, the deadline, the mesh's in-flight
 * count), seven or eight with telemetry's end hook and a per-attempt timeout: one small object per body
 * instead of an array grown by `push` (which reserves 17 slots) and the wrapper and bound function of `once`.
 */
class HookList {
  b: BodyDoneHook | undefined = undefined;
  c: BodyDoneHook | undefined = undefined;
  d: BodyDoneHook | undefined = undefined;
  e: BodyDoneHook | undefined = undefined;
  f: BodyDoneHook | undefined = undefined;
  g: BodyDoneHook | undefined = undefined;
  h: BodyDoneHook | undefined = undefined;
  more: BodyDoneHook[] | undefined = undefined;
  constructor(public a: BodyDoneHook) {}

  add(hook: BodyDoneHook): void {
    if (this.b === undefined) this.b = hook;
    else if (this.c === undefined) this.c = hook;
    else if (this.d === undefined) this.d = hook;
    else if (this.e === undefined) this.e = hook;
    else if (this.f === undefined) this.f = hook;
    else if (this.g === undefined) this.g = hook;
    else if (this.h === undefined) this.h = hook;
    else (this.more ??= []).push(hook);
  }

  run(): void {
    run(this.a);
    if (this.b === undefined) return;
    run(this.b);
    if (this.c === undefined) return;
    run(this.c);
    if (this.d === undefined) return;
    run(this.d);
    if (this.e === undefined) return;
    run(this.e);
    if (this.f === undefined) return;
    run(this.f);
    if (this.g === undefined) return;
    run(this.g);
    if (this.h === undefined) return;
    run(this.h);
    const more = this.more;
    if (more !== undefined) for (let i = 0; i < more.length; i++) run(more[i]!);
  }
}

/** `undefined`: no hooks, or they ran; `null`: a body that runs its own hooks and has none yet. */
type Hooked = Readable & { [HOOKS]?: HookList | null | undefined };

function run(hook: BodyDoneHook): void {
  if (typeof hook === 'function') hook();
  else hook.onBodyDone();
}

/** The one `'close'` listener: a shared function (`on`, not `once`: a stream closes once, and `once` allocates). */
function runHooks(this: Hooked): void {
  const hooks = this[HOOKS];
  if (hooks === undefined) return;
  this[HOOKS] = undefined;
  hooks?.run();
}

/**
 * Runs a body's hooks now, once: for a body class that declares {@link BODY_DONE_HOOKS}, when it is destroyed.
 *
 * @example
 * ```ts
 * class Body extends Readable {
 *   [BODY_DONE_HOOKS]: unknown = null;
 *   override _destroy(err: Error | null, cb: (err?: Error | null) => void) {
 *     cb(err);
 *     runBodyDoneHooks(this);
 *   }
 * }
 * ```
 */
export function runBodyDoneHooks(body: Readable): void {
  runHooks.call(body as Hooked);
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
  if (hooks === null) {
    // A body that runs its own hooks: no listener, and the field exists already.
    b[HOOKS] = new HookList(hook);
    return;
  }
  if (hooks !== undefined) {
    hooks.add(hook);
    return;
  }
  b[HOOKS] = new HookList(hook);
  b.on('close', runHooks);
}
