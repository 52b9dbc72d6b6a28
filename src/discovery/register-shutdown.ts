/**
 * The shutdown order for a service registered with Consul: deregister, so that watchers (blocking queries,
 * DNS) stop sending new calls; give them a moment to see it while in-flight calls drain; then close the
 * server and the mesh, in that order.
 *
 * Apart from the registration itself (register.ts): it takes any registration-shaped object (`deregister`,
 * optional `close`) and any closeable, so an application can use it with or without `registerService`.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { positive } from './register-options.js';

/**
 * Something with an async `close()`: a mesh, a wrapped HTTP server, a database pool.
 *
 * @example
 * ```ts
 * const server: Closeable = { close: () => new Promise<void>((r) => httpServer.close(() => r())) };
 * ```
 */
export interface Closeable {
  close(): Promise<void>;
}

/**
 * Options of {@link shutdownGracefully}.
 *
 * @example
 * ```ts
 * const opts: ShutdownOptions = { registration: reg, propagationDelayMs: 2_000, close: [server, mesh] };
 * ```
 */
export interface ShutdownOptions {
  /** Deregistered first, so watchers stop sending new calls. */
  registration?: { deregister(): Promise<void>; close?(): Promise<void> } | undefined;
  /**
   * How long to keep serving after deregistering, while other clients' blocking queries see the change and
   * in-flight calls drain (ms). Default 2 000.
   */
  propagationDelayMs?: number;
  /** Closed one after the other after the delay (e.g. the HTTP server, then the mesh with its own grace period). */
  close?: readonly Closeable[];
  clock?: Clock;
  logger?: Logger;
}

/**
 * The shutdown order for a registered service: 1. deregister from Consul (failures are logged, not fatal: the
 * TTL check then expires and Consul reaps the service); 2. wait `propagationDelayMs` while watchers drop this
 * instance and in-flight calls finish; 3. close each of `close` in order (an HTTP server's close waits for
 * its in-flight requests; the mesh's `close({ gracePeriodMs })` drains outgoing calls). Never rejects for
 * step 1; rejects with the first error of step 3 after trying them all.
 *
 * @example
 * ```ts
 * process.once('SIGTERM', async () => {
 *   await shutdownGracefully({
 *     registration: reg,
 *     close: [{ close: () => new Promise<void>((r) => server.close(() => r())) }, { close: () => mesh.close({ gracePeriodMs: 5_000 }) }],
 *   });
 * });
 * ```
 */
export async function shutdownGracefully(options: ShutdownOptions): Promise<void> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? silentLogger;
  const delay = positive('shutdownGracefully.propagationDelayMs', options.propagationDelayMs, 2_000, 0);
  if (options.registration) {
    try {
      await options.registration.deregister();
    } catch (err) {
      log.warn(
        { error: (err as Error).message },
        'deregistration failed during shutdown; the TTL check will expire',
      );
    }
  }
  if (delay > 0) await new Promise<void>((r) => clock.setTimeout(r, delay));
  let first: unknown;
  for (const c of options.close ?? []) {
    try {
      await c.close();
    } catch (err) {
      first ??= err;
      log.error({ error: (err as Error)?.message }, 'close failed during shutdown');
    }
  }
  if (options.registration?.close) await options.registration.close().catch(() => {});
  if (first !== undefined) throw first;
}
