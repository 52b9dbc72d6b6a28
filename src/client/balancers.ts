/**
 * Balancers selectable by name in config. The default is P2C over Peak EWMA: it is the one that keeps tail
 * latency low when one endpoint turns slow (Buoyant's "Beyond Round Robin"; Finagle's and Linkerd's default).
 */
import { p2cLeastLoaded, p2cPeakEwma } from '../balance/p2c.js';
import { roundRobin } from '../balance/round-robin.js';
import type { BalancerFactory } from '../balance/types.js';

/** The balancer names config accepts. */
export type BalancerName = 'p2c-peak-ewma' | 'p2c-least-loaded' | 'round-robin';

const registry: Record<BalancerName, () => BalancerFactory> = {
  'p2c-peak-ewma': () => p2cPeakEwma(),
  'p2c-least-loaded': () => p2cLeastLoaded(),
  'round-robin': () => roundRobin(),
};

/** The factory for a balancer name, or undefined. */
export function balancerByName(name: string): BalancerFactory | undefined {
  return Object.hasOwn(registry, name) ? registry[name as BalancerName]() : undefined;
}

/** The names config accepts. */
export function balancerNames(): string[] {
  return Object.keys(registry);
}

/** The default balancer: P2C Peak EWMA. */
export function defaultBalancer(): BalancerFactory {
  return p2cPeakEwma();
}
