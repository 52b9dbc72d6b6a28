/**
 * A cheap cancellation signal for the hot path. An `AbortSignal` is an `EventTarget`: making one per call and
 * listening to it costs several times what this class does (bench/overhead's ablation). undici accepts any object with `aborted`, `reason` and
 * `addEventListener`/`removeEventListener` as a request signal, so the mesh's own per-call and per-attempt
 * signals use this class; a caller's real AbortSignal is linked to it by hand.
 */

/**
 * An abort listener: a function, or (as EventTarget allows) an object whose `handleEvent` runs, so a per-call
 * object can listen without a closure.
 */
export type AbortListener = (() => void) | { handleEvent(): void };

/** What the mesh's filters need of a signal; a real `AbortSignal` satisfies it too. */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: any;
  addEventListener(type: 'abort', listener: AbortListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/**
 * A signal and its controller in one small object.
 *
 * @example
 * ```ts
 * const s = new CallSignal();
 * s.addEventListener('abort', () => console.log('aborted:', s.reason));
 * s.abort(new Error('deadline'));
 * ```
 */
export class CallSignal implements CancelSignal {
  aborted = false;
  reason: any = undefined;
  /**
   * The first listener in a field, later ones in an array: a call usually has one (the attempt on the wire),
   * and an array per call, grown and spliced, is the larger part of listening.
   */
  private first: AbortListener | undefined = undefined;
  private more: AbortListener[] | undefined = undefined;

  addEventListener(type: 'abort', listener: AbortListener): void {
    if (type !== 'abort' || this.aborted) return;
    // Into the field only while nothing waits in the array, so listeners keep their registration order.
    if (this.first === undefined && this.more === undefined) this.first = listener;
    else (this.more ??= []).push(listener);
  }

  removeEventListener(type: 'abort', listener: AbortListener): void {
    if (type !== 'abort') return;
    const l = this.more;
    if (l !== undefined) {
      const i = l.lastIndexOf(listener);
      if (i >= 0) {
        l.splice(i, 1);
        if (l.length === 0) this.more = undefined;
        return;
      }
    }
    if (this.first === listener) {
      this.first = undefined;
      // The oldest of the array moves up, so the field stays the first registered.
      if (l !== undefined) {
        this.first = l.shift();
        if (l.length === 0) this.more = undefined;
      }
    }
  }

  /** Listeners currently registered (for leak tests). */
  get listenerCount(): number {
    return (this.first === undefined ? 0 : 1) + (this.more?.length ?? 0);
  }

  /** Aborts once; later calls do nothing. Listeners run once, in registration order. */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    const first = this.first;
    const more = this.more;
    this.first = undefined;
    this.more = undefined;
    if (first !== undefined) callListener(this, first);
    if (more !== undefined) for (const f of more) callListener(this, f);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }
}

function callListener(target: CallSignal, f: AbortListener): void {
  if (typeof f === 'function') f.call(target);
  else f.handleEvent();
}
