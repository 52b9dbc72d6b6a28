/**
 * Shared helpers of the Consul tests: resolve a service through {@link consulDiscovery} against a test agent
 * with the real clock, and wait for a resolver state by subscription (with a deadline), not by sleeping.
 */
import { systemClock } from '../../src/core/clock.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { systemRng } from '../../src/core/rng.js';
import {
  consulDiscovery,
  type ConsulDiscoveryOptions,
  type ConsulResolver,
} from '../../src/discovery/consul.js';
import type { Addr, Endpoint } from '../../src/discovery/types.js';
import type { ConsulAgent } from '../support/consul.js';

/**
 * Resolves `service` against `agent` (fast backoff so outage tests are short).
 *
 * @example
 * ```ts
 * const r = resolveOn(consul, 'users');
 * ```
 */
export function resolveOn(
  agent: ConsulAgent,
  service: string,
  options: ConsulDiscoveryOptions = {},
  logger: Logger = silentLogger,
): ConsulResolver {
  return consulDiscovery({
    address: agent.httpAddr,
    backoff: { baseMs: 20, maxMs: 200 },
    ...options,
  }).resolve({
    service,
    clock: systemClock,
    rng: systemRng,
    logger,
  });
}

/**
 * Waits until `resolver.addr` satisfies `predicate` (checked now and on every change), or throws after
 * `timeoutMs` with the last state.
 *
 * @example
 * ```ts
 * await waitForAddr(r, (a) => a.state === 'bound' && a.endpoints.length === 3, 'three endpoints');
 * ```
 */
export function waitForAddr(
  resolver: ConsulResolver,
  predicate: (addr: Addr) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<Addr> {
  return new Promise((resolve, reject) => {
    if (predicate(resolver.addr)) return resolve(resolver.addr);
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; last state ${JSON.stringify(resolver)}`,
        ),
      );
    }, timeoutMs);
    const sub = resolver.subscribe((addr) => {
      if (!predicate(addr)) return;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(addr);
    });
  });
}

/**
 * The ports of a bound state, sorted (or [] when not bound).
 *
 * @example
 * ```ts
 * expect(ports(r.addr)).toEqual([9001, 9002]);
 * ```
 */
export function ports(addr: Addr): number[] {
  return addr.state === 'bound' ? addr.endpoints.map((e: Endpoint) => e.port).sort((a, b) => a - b) : [];
}

/**
 * A predicate: `addr` is bound (fresh) to exactly these ports.
 *
 * @example
 * ```ts
 * await waitForAddr(r, boundTo(9001, 9002), 'two endpoints');
 * ```
 */
export const boundTo =
  (...expected: number[]) =>
  (addr: Addr): boolean =>
    addr.state === 'bound' &&
    !addr.stale &&
    JSON.stringify(ports(addr)) === JSON.stringify([...expected].sort((a, b) => a - b));
