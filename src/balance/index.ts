/**
 * The balancer module's public surface: load metrics (what is measured: {@link PeakEwmaLoad},
 * {@link PendingLoad}) apart from distributors (what acts on it: {@link P2CDistributor},
 * {@link RoundRobinDistributor}), and the factories that pair them (`p2cPeakEwma`, the default;
 * `p2cLeastLoaded`; `roundRobin`). See docs/balancers.md for the algorithms, their sources and defaults.
 */
export type {
  BalancerEnv,
  BalancerFactory,
  BalancerNode,
  Distributor,
  LoadMetric,
  LoadPhase,
} from './types.js';
export { applyChanges } from './types.js';
export { PendingLoad } from './pending.js';
export { PeakEwmaLoad, PEAK_EWMA_DEFAULTS, resolvePeakEwmaOptions } from './peak-ewma.js';
export type { PeakEwmaOptions, ResolvedPeakEwmaOptions } from './peak-ewma.js';
export { P2CDistributor, P2C_DEFAULTS, p2cLeastLoaded, p2cPeakEwma, resolveP2COptions } from './p2c.js';
export type { P2CLeastLoadedOptions, P2COptions, P2CPeakEwmaOptions, ResolvedP2COptions } from './p2c.js';
export {
  ROUND_ROBIN_DEFAULTS,
  RoundRobinDistributor,
  resolveRoundRobinOptions,
  roundRobin,
} from './round-robin.js';
export type { ResolvedRoundRobinOptions, RoundRobinOptions } from './round-robin.js';
export { AliasTable } from './alias.js';
