/**
 * Balancers selectable by name in config.
 */
import { roundRobin } from '../balance/round-robin.js';
import type { BalancerFactory } from '../balance/types.js';

/** The balancer names config accepts. */
export type BalancerName = 'p2c-peak-ewma' | 'p2c-least-loaded' | 'round-robin';

const registry: Record<string, () => BalancerFactory> = {
  'round-robin': () => roundRobin(),
};

/** The factory for a balancer name, or undefined. */
export function balancerByName(name: string): BalancerFactory | undefined {
  return Object.hasOwn(registry, name) ? registry[name]!() : undefined;
}

/** The names config accepts. */
export function balancerNames(): string[] {
  return Object.keys(registry);
}

/** The default balancer. */
export function defaultBalancer(): BalancerFactory {
  return roundRobin();
}
