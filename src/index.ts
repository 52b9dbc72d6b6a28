/**
 * meshfetch: an in-process service mesh for Node. What an application imports: the mesh and its per-call
 * options, the discovery and balancer factories, the server-side helpers, the error classes, the names of
 * the metrics and diagnostics channels, and the config, snapshot and event types. What a filter author needs
 * (Filter, Stack, modules, params, load metrics) is in `meshfetch/extend`; test helpers in
 * `meshfetch/testing`.
 */
// First: keeps undici from replacing the built-in fetch's dispatcher while it loads (src/core/undici-global.ts).
import { releaseUndiciGlobals } from './core/undici-global.js';
import type { Dispatcher } from 'undici';
export { createMesh, Mesh } from './client/mesh.js';
export type { MeshRequestOptions, MeshResponseData, CloseOptions } from './client/mesh.js';
export { installGlobalDispatcher } from './client/global.js';
export { meshInterceptor } from './client/interceptor.js';
export { callOptions, DEADLINE_HEADER, IDEMPOTENT_HEADER, MESH_HEADERS } from './core/call-options.js';
export type { CallOptions } from './core/call-options.js';
export type { MeshConfig, ServiceConfig, ServiceDefaults, ResolvedServiceConfig } from './client/config.js';
export type { BalancerName } from './client/balancers.js';
export type { HeadersInput } from './client/headers.js';
export { systemClock } from './core/clock.js';
export type { Clock, TimerHandle } from './core/clock.js';
export type { Rng } from './core/rng.js';
export type { Logger, LogFn } from './core/logger.js';
export type { CallEndHook } from './core/context.js';
export type { Service, ServiceStatus } from './core/service.js';
export type { StackModule, Stacks, StackLevel, ModuleEnv } from './core/stack.js';
export type { Param } from './core/params.js';
export type { MeshRequest, MeshResponse, RequestBody, HeaderRecord } from './core/message.js';
export {
  MeshError,
  ConfigError,
  NoHealthyEndpointsError,
  ServiceNotFoundError,
  DiscoveryError,
  UnknownServiceError,
  InvalidRequestError,
  MeshClosedError,
  TransportError,
  DeadlineExceededError,
} from './core/errors.js';
export type { Phase } from './core/errors.js';
export { staticDiscovery } from './discovery/static.js';
export type { EndpointInput } from './discovery/endpoint.js';
export type {
  Addr,
  Discovery,
  DiscoveryContext,
  Endpoint,
  EndpointChanges,
  Resolver,
  Subscription,
} from './discovery/types.js';
export { consulDiscovery, ConsulRequestError, ConsulResponseTooLargeError } from './discovery/consul.js';
export type {
  ConsulResolver,
  ConsulDiscoveryOptions,
  ConsulConsistency,
  ConsulResolverSnapshot,
  ConsulResolverStats,
  SkippedInstance,
  ConsulErrorKind,
} from './discovery/consul.js';
export { dnsDiscovery, DnsQueryError } from './discovery/dns.js';
export type {
  DnsDiscovery,
  DnsResolver,
  DnsDiscoveryOptions,
  DnsRecordType,
  DnsAddressType,
  DnsResolverSnapshot,
  DnsResolverStats,
  DnsErrorKind,
  SkippedTarget,
} from './discovery/dns.js';
export { registerService, shutdownGracefully } from './discovery/register.js';
export type {
  RegisterServiceOptions,
  RegistrationCheck,
  RegistrationState,
  RegistrationEvent,
  ShutdownOptions,
  Closeable,
} from './discovery/register.js';
export type { TransportOptions, TlsOptions } from './transport/pool.js';
export { TlsError } from './transport/tls.js';
export type { TlsFailure, ConnectionState } from './transport/tls.js';
export type { TlsReloadEvent, CertificateInfo } from './transport/tls-material.js';
export type {
  MeshSnapshot,
  ServiceSnapshot,
  EndpointSnapshot,
  ConnectionSnapshot,
  EndpointTransportSnapshot,
} from './client/snapshot.js';
export { METRICS } from './telemetry/metrics.js';
export { CHANNELS } from './telemetry/events.js';
export type {
  RequestEvent,
  EndpointEvent,
  EndpointStateEvent,
  BreakerEvent,
  DiscoveryUpdateEvent,
  DiscoveryErrorEvent,
} from './telemetry/events.js';
export type { EndpointStatsSnapshot } from './telemetry/endpoint-stats.js';
export { defaultClassifier } from './resilience/classifier.js';
export type { Classification, Classifier, ClassifyInput } from './resilience/classifier.js';
export { RetryAfterExceedsDeadlineError } from './resilience/retry.js';
export type { RetryOptions, RetryOptionsInput, RetryStats } from './resilience/retry.js';
export type { RetryBudgetOptions, RetryBudgetSpender } from './resilience/budget.js';
export type {
  BackupRequestOptions,
  BackupRequestOptionsInput,
  BackupSnapshot,
  BackupStats,
} from './resilience/backup.js';
export type { BackoffOptions } from './resilience/backoff.js';
export { AttemptTimeoutError } from './resilience/attempt-timeout.js';
export type { IncomingContext } from './core/incoming.js';
export {
  meshHandler,
  runWithDeadline,
  parseIncomingDeadline,
  getIncomingDeadline,
  remainingMs,
  incomingSignal,
  IncomingAbortedError,
} from './server/server.js';
export type {
  MeshHandlerOptions,
  ParseDeadlineOptions,
  RunWithDeadlineOptions,
  DeadlineScope,
} from './server/server.js';
export type {
  FailureAccrualOptions,
  ResolvedFailureAccrualOptions,
  FailureAccrualSnapshot,
  AccrualState,
  AccrualTransition,
} from './resilience/accrual.js';
export { OverloadedError } from './resilience/admission.js';
export type {
  AdmissionOptions,
  ResolvedAdmissionOptions,
  AdmissionSnapshot,
} from './resilience/admission.js';
export { CircuitOpenError } from './resilience/breaker.js';
export type {
  CircuitBreakerOptions,
  CircuitBreakerSnapshot,
  CircuitState,
  CircuitStateChange,
  CircuitSubscription,
} from './resilience/breaker.js';
export { InvalidOverrideError, NoRouteError } from './routing/errors.js';
export { OVERRIDE_HEADER } from './routing/override.js';
export type { OverrideEntry, OverrideTarget } from './routing/override.js';
export type {
  RouteRule,
  RouteMatch,
  StickyKey,
  WeightedDestination,
  DestinationConfig,
  SubsetSelector,
} from './routing/config.js';
export type { RoutingSnapshot, RuleSnapshot, RoutedDestinationSnapshot } from './routing/router.js';
export type {
  BalancerEnv,
  BalancerFactory,
  BalancerNode,
  Distributor,
  LoadMetric,
  LoadPhase,
} from './balance/types.js';
export type { PeakEwmaOptions, ResolvedPeakEwmaOptions } from './balance/peak-ewma.js';
export { p2cLeastLoaded, p2cPeakEwma } from './balance/p2c.js';
export type {
  P2CLeastLoadedOptions,
  P2COptions,
  P2CPeakEwmaOptions,
  ResolvedP2COptions,
} from './balance/p2c.js';
export { roundRobin } from './balance/round-robin.js';
export type { ResolvedRoundRobinOptions, RoundRobinOptions } from './balance/round-robin.js';

releaseUndiciGlobals();

/**
 * `fetch(url, { dispatcher: mesh.dispatcher })` type-checks under `lib: ["dom"]` too. Without the DOM lib,
 * @types/node gives the global `RequestInit` its `dispatcher`; with it, the DOM's `RequestInit` has none,
 * although Node's fetch takes one. The same conditional @types/node uses adds it only in that case.
 */
type DispatcherInit = typeof globalThis extends { onmessage: any }
  ? { dispatcher?: Dispatcher | undefined }
  : object;
declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface RequestInit extends DispatcherInit {}
}
