/**
 * `meshfetch/extend`: what a filter author needs on top of the application surface: Service, Filter and
 * Stack, each level's target, the call context, typed params, the default stacks and every stack module with
 * its param, the response classifier, the retry budget, load metrics and distributors for custom balancers,
 * discovery building blocks, and the OpenTelemetry and diagnostics helpers the built-in modules use.
 */
// First: keeps undici from replacing the built-in fetch's dispatcher while it loads (src/core/undici-global.ts).
import { releaseUndiciGlobals } from './core/undici-global.js';
export * from './index.js';
export { defaultStacks } from './client/default-stack.js';
export { systemRng, seededRng } from './core/rng.js';
export { silentLogger } from './core/logger.js';
export { CallContext, ChildSignal } from './core/context.js';
export { Attempt, type BreakerStateSeen } from './core/attempt.js';
export { Filter, InlineFilter, settledCall } from './core/service.js';
export { Stack } from './core/stack.js';
export type { LevelModuleEnv } from './core/stack.js';
export type { LogicalTarget, ConcreteTarget, EndpointTarget, Targets } from './core/targets.js';
export { defineParam, Params } from './core/params.js';
export { StaticDiscovery } from './discovery/static.js';
export { ConsulDiscovery } from './discovery/consul.js';
export { ServiceRegistration } from './discovery/register.js';
export { deadlineModule, DeadlineFilter } from './resilience/deadline.js';
export { defaultTransportOptions } from './transport/pool.js';
export {
  logicalSpanModule,
  LogicalSpanFilter,
  attemptSpanModule,
  AttemptSpanFilter,
} from './telemetry/spans.js';
export { DURATION_BUCKETS, meshInstruments, MeshInstruments } from './telemetry/metrics.js';
export { ATTR, errorType, statusClass } from './telemetry/attributes.js';
export {
  INSTRUMENTATION_NAME,
  INSTRUMENTATION_VERSION,
  activeTracer,
  activeMeter,
  isMeshRequest,
} from './telemetry/otel.js';
export { CHANNEL_PREFIX, publishDiscoveryError } from './telemetry/events.js';
export { EndpointStats, RECENT_WINDOW_MS } from './telemetry/endpoint-stats.js';
export { Classified, ClassifierParam } from './resilience/classifier.js';
export { RetryFilter, retryModule, RetryParam, isIdempotent } from './resilience/retry.js';
export { RetryBudget, RetryBudgetParam, shareRetryBudget } from './resilience/budget.js';
export { BackupRequestFilter, backupRequestsModule, BackupRequestParam } from './resilience/backup.js';
export {
  AttemptTimeoutFilter,
  attemptTimeoutModule,
  AttemptTimeoutParam,
} from './resilience/attempt-timeout.js';
export { incomingContext } from './core/incoming.js';
export {
  failureAccrualModule,
  FailureAccrualFilter,
  FailureAccrualParam,
  failureAccrualOf,
} from './resilience/accrual.js';
export { admissionModule, AdmissionFilter, AdmissionParam, admissionOf } from './resilience/admission.js';
export {
  circuitBreakerModule,
  createCircuitBreakerModule,
  CircuitBreakerFilter,
  CircuitBreakerParam,
} from './resilience/breaker.js';
export { parseOverrides, readOverrideHeader, RouteOverrides } from './routing/override.js';
export { applyChanges } from './balance/types.js';
export { PendingLoad } from './balance/pending.js';
export { PeakEwmaLoad } from './balance/peak-ewma.js';
export { P2CDistributor } from './balance/p2c.js';
export { RoundRobinDistributor } from './balance/round-robin.js';

releaseUndiciGlobals();
