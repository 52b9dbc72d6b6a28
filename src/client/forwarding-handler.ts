/**
 * An undici dispatch handler that hands every event to the handler it wraps: the base of the mesh's handler
 * wrappers (a pass-through call's deadline, a redirect watch), which override only the events they act on.
 * undici's own interceptors wrap handlers the same way (undici's `DecoratorHandler`, lib/handler/); that class
 * is not part of undici's public API, so the mesh keeps this small one.
 */
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';

/**
 * Forwards every event to `inner`; subclasses override the ones they act on and call `super`.
 *
 * @example
 * ```ts
 * class Log extends ForwardingHandler {
 *   override onResponseStart(c, status, headers, message) {
 *     console.log(status);
 *     super.onResponseStart(c, status, headers, message);
 *   }
 * }
 * ```
 */
export class ForwardingHandler implements Dispatcher.DispatchHandler {
  constructor(protected readonly inner: Dispatcher.DispatchHandler) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.inner.onRequestStart?.(controller, context);
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    socket: Duplex,
  ): void {
    this.inner.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    this.inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.inner.onResponseData?.(controller, chunk);
  }
  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[]>,
  ): void {
    this.inner.onResponseEnd?.(controller, trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController | null, err: Error): void {
    this.inner.onResponseError?.(controller as Dispatcher.DispatchController, err);
  }
  // The callbacks undici still forwards to a handler that has them (the built-in fetch's timing uses them).
  onBodySent(chunk: Buffer): void {
    (this.inner as { onBodySent?(c: Buffer): void }).onBodySent?.(chunk);
  }
  onRequestSent(): void {
    (this.inner as { onRequestSent?(): void }).onRequestSent?.();
  }
  onResponseStarted(): void {
    (this.inner as { onResponseStarted?(): void }).onResponseStarted?.();
  }
}
