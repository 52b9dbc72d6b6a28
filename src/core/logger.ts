/**
 * A pino-style logger interface, so a service can pass its own pino (or any object with these methods)
 * and see what the mesh does. Silent by default: a library must not write to stdout on its own.
 */

/** A log method: an object of fields first, then a message (pino's calling convention). */
export type LogFn = (obj: Record<string, unknown>, msg?: string) => void;

/**
 * The logger the mesh writes to. pino's `Logger` satisfies it.
 *
 * @example
 * ```ts
 * import pino from 'pino';
 * createMesh({ logger: pino(), services: {} });
 * ```
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};

/**
 * A logger that drops everything (the default).
 *
 * @example
 * ```ts
 * createMesh({ logger: silentLogger, services: {} });
 * ```
 */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };
