/**
 * Targets and module environments for tests that build a module or a stack by hand, outside a mesh: each
 * level's target filled with the names a test service uses (src/core/targets.ts).
 */
import type { LevelModuleEnv, ModuleEnv, StackLevel } from '../../src/core/stack.js';
import type { Targets } from '../../src/core/targets.js';

/**
 * The target of `level` for `service`, destination `primary` and endpoint `10.0.0.1:80`.
 *
 * @example
 * ```ts
 * const env: ModuleEnv<'endpoint'> = { level: 'endpoint', target: targetOf('endpoint'), ...rest };
 * ```
 */
export function targetOf<L extends StackLevel>(level: L, service = 'users'): Targets[L] {
  const targets: Targets = {
    logical: { service },
    concrete: { service, destination: 'primary', discovery: 'static', balancer: 'p2c-peak-ewma' },
    endpoint: { service, destination: 'primary', address: '10.0.0.1:80', tags: [], meta: {} },
  };
  return targets[level];
}

/**
 * A module environment of `level` with {@link targetOf}'s target.
 *
 * @example
 * ```ts
 * circuitBreakerModule.make(leaf, moduleEnv('logical', { params, clock, rng, logger }));
 * ```
 */
export function moduleEnv<L extends StackLevel>(
  level: L,
  rest: Omit<LevelModuleEnv<L>, 'level' | 'target'>,
  service = 'users',
): ModuleEnv<L> {
  return { ...rest, level, target: targetOf(level, service) } as LevelModuleEnv<L> as ModuleEnv<L>;
}
