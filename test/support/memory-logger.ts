/**
 * A logger that keeps every line in memory, so tests can assert what was logged (and, above all, that a
 * secret such as an ACL token never was).
 */
import type { Logger } from '../../src/core/logger.js';

/**
 * One captured log line.
 *
 * @example
 * ```ts
 * const warns = log.lines.filter((l: LogLine) => l.level === 'warn');
 * ```
 */
export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

/**
 * Creates a capturing logger.
 *
 * @example
 * ```ts
 * const log = memoryLogger();
 * const resolver = consulDiscovery().resolve({ service: 'users', clock: systemClock, rng: systemRng, logger: log.logger });
 * expect(log.text()).not.toContain(token);
 * ```
 */
export function memoryLogger(): { logger: Logger; lines: LogLine[]; text(): string } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (obj: Record<string, unknown>, msg?: string): void => {
      lines.push({ level, obj, msg });
    };
  return {
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    lines,
    text: () => lines.map((l) => `${l.level} ${l.msg ?? ''} ${JSON.stringify(l.obj)}`).join('\n'),
  };
}
