/**
 * meshfetch: an in-process service mesh for Node. Public re-exports only.
 */
// First: keeps undici from installing a global dispatcher while it loads (src/core/undici-global.ts).
import { releaseUndiciGlobals } from './core/undici-global.js';
import type { Dispatcher } from 'undici';
export { createMesh, Mesh, LogicalService } from './client/mesh.js';
export type { MeshRequestOptions, MeshResponseData, CloseOptions } from './client/mesh.js';
export { MeshDispatcher } from './client/dispatcher.js';
export { installGlobalDispatcher } from './client/global.js';
export { meshInterceptor } from './client/interceptor.js';
export { callOptions, DEADLINE_HEADER, IDEMPOTENT_HEADER, MESH_HEADERS } from './client/call-options.js';
export type { CallOptions } from './client/call-options.js';
export type { MeshConfig, ServiceConfig, ServiceDefaults, ResolvedServiceConfig } from './client/config.js';
export { DEFAULT_TIMEOUT_MS } from './client/config.js';
export { defaultStacks } from './client/default-stack.js';
export type { BalancerName } from './client/balancers.js';
export type { HeadersInput } from './client/headers.js';

export { systemClock } from './core/clock.js';
export type { Clock, TimerHandle } from './core/clock.js';
export { systemRng, seededRng } from './core/rng.js';
export type { Rng } from './core/rng.js';
export { silentLogger } from './core/logger.js';
export type { Logger, LogFn } from './core/logger.js';
export { CallContext, ChildSignal } from './core/context.js';
export type { CallEndHook } from './core/context.js';
export { Filter, InlineFilter, settledCall } from './core/service.js';
export type { Service, ServiceStatus } from './core/service.js';
export { Stack } from './core/stack.js';
export type { StackModule, Stacks, StackLevel, ModuleEnv } from './core/stack.js';
export { defineParam, Params } from './core/params.js';
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

export { staticDiscovery, StaticDiscovery } from './discovery/static.js';
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

export * from './balance/index.js';

export { consulDiscovery, ConsulDiscovery, ConsulRequestError } from './discovery/consul.js';
export type { ConsulResponseTooLargeError } from './discovery/consul.js';
export type {
  ConsulResolver,
  ConsulDiscoveryOptions,
  ConsulConsistency,
  ConsulResolverSnapshot,
  ConsulResolverStats,
  SkippedInstance,
  ConsulErrorKind,
} from './discovery/consul.js';
// The factory at run time; the classes it hands out as types (the runtime export count only goes down,
// test/architecture/ratchet.test.ts): a DnsQueryError's `kind` and `code` say what failed.
export { dnsDiscovery } from './discovery/dns.js';
export type {
  DnsDiscovery,
  DnsResolver,
  DnsQueryError,
  DnsDiscoveryOptions,
  DnsRecordType,
  DnsAddressType,
  DnsResolverSnapshot,
  DnsResolverStats,
  DnsErrorKind,
  SkippedTarget,
} from './discovery/dns.js';
export { registerService, ServiceRegistration, shutdownGracefully } from './discovery/register.js';
export type {
  RegisterServiceOptions,
  RegistrationCheck,
  RegistrationState,
  RegistrationEvent,
  ShutdownOptions,
  Closeable,
} from './discovery/register.js';

export { deadlineModule, DeadlineFilter } from './resilience/deadline.js';
export type { TransportOptions, TlsOptions } from './transport/pool.js';
export { defaultTransportOptions } from './transport/pool.js';
export type { TlsError, TlsFailure, ConnectionState } from './transport/tls.js';
export type { TlsReloadEvent, CertificateInfo } from './transport/tls-material.js';
export type {
  MeshSnapshot,
  ServiceSnapshot,
  EndpointSnapshot,
  ConnectionSnapshot,
  EndpointTransportSnapshot,
} from './telemetry/snapshot.js';
export {
  logicalSpanModule,
  LogicalSpanFilter,
  attemptSpanModule,
  AttemptSpanFilter,
} from './telemetry/spans.js';
export { METRICS, DURATION_BUCKETS, meshInstruments, MeshInstruments } from './telemetry/metrics.js';
export { ATTR, errorType, statusClass } from './telemetry/attributes.js';
export {
  INSTRUMENTATION_NAME,
  INSTRUMENTATION_VERSION,
  activeTracer,
  activeMeter,
  headerSetter,
  isMeshRequest,
} from './telemetry/otel.js';
export { CHANNELS, CHANNEL_PREFIX, publishDiscoveryError, requestEventsWanted } from './telemetry/events.js';
export type {
  RequestEvent,
  EndpointEvent,
  EndpointStateEvent,
  BreakerEvent,
  DiscoveryUpdateEvent,
  DiscoveryErrorEvent,
} from './telemetry/events.js';
export { EndpointStats, RECENT_WINDOW_MS } from './telemetry/endpoint-stats.js';
export type { EndpointStatsSnapshot } from './telemetry/endpoint-stats.js';

export { Classified, defaultClassifier, ClassifierParam } from './resilience/classifier.js';
export type { Classification, Classifier, ClassifyInput } from './resilience/classifier.js';
export {
  RetryFilter,
  retryModule,
  RetryParam,
  RETRY_DEFAULTS,
  resolveRetryOptions,
  RetryAfterExceedsDeadlineError,
  isIdempotent,
} from './resilience/retry.js';
export type { RetryOptions, RetryOptionsInput, RetryStats } from './resilience/retry.js';
export { RetryBudget, RETRY_BUDGET_DEFAULTS, shareRetryBudget } from './resilience/budget.js';
export type { RetryBudgetOptions, RetryBudgetSpender } from './resilience/budget.js';
export {
  BackupRequestFilter,
  backupRequestsModule,
  BackupRequestParam,
  BACKUP_REQUEST_DEFAULTS,
  resolveBackupRequestOptions,
  LatencyWindow,
} from './resilience/backup.js';
export type {
  BackupRequestOptions,
  BackupRequestOptionsInput,
  BackupSnapshot,
  BackupStats,
} from './resilience/backup.js';
export { BACKOFF_DEFAULTS, backoffDelay, parseRetryAfter } from './resilience/backoff.js';
export type { BackoffOptions } from './resilience/backoff.js';
export {
  AttemptTimeoutError,
  AttemptTimeoutFilter,
  attemptTimeoutModule,
  AttemptTimeoutParam,
} from './resilience/attempt-timeout.js';
export { incomingContext } from './core/incoming.js';
export type { IncomingContext } from './core/incoming.js';
export {
  meshHandler,
  runWithDeadline,
  parseIncomingDeadline,
  parseGrpcTimeout,
  getIncomingDeadline,
  remainingMs,
  incomingSignal,
  IncomingAbortedError,
  GRPC_TIMEOUT_HEADER,
  DEFAULT_MAX_DEADLINE_MS,
  DEFAULT_EXPIRED_STATUS,
} from './resilience/server.js';
export type {
  MeshHandlerOptions,
  ParseDeadlineOptions,
  RunWithDeadlineOptions,
  DeadlineScope,
} from './resilience/server.js';
export {
  failureAccrualModule,
  FailureAccrualFilter,
  FailureAccrualParam,
  FAILURE_ACCRUAL_DEFAULTS,
  resolveFailureAccrualOptions,
  failureAccrualOf,
} from './resilience/accrual.js';
export type {
  FailureAccrualOptions,
  ResolvedFailureAccrualOptions,
  FailureAccrualSnapshot,
  AccrualState,
  AccrualTransition,
} from './resilience/accrual.js';
export {
  admissionModule,
  AdmissionFilter,
  AdmissionParam,
  ADMISSION_DEFAULTS,
  resolveAdmissionOptions,
  admissionOf,
  OverloadedError,
} from './resilience/admission.js';
export type {
  AdmissionOptions,
  ResolvedAdmissionOptions,
  AdmissionSnapshot,
} from './resilience/admission.js';
export {
  circuitBreakerModule,
  createCircuitBreakerModule,
  CircuitBreakerFilter,
  CircuitBreakerParam,
  CircuitOpenError,
  defaultCircuitBreakerOptions,
  resolveCircuitBreakerOptions,
} from './resilience/breaker.js';
export type {
  CircuitBreakerOptions,
  CircuitBreakerSnapshot,
  CircuitState,
  CircuitStateChange,
  CircuitSubscription,
} from './resilience/breaker.js';

export { InvalidOverrideError, NoRouteError } from './routing/errors.js';
export {
  OVERRIDE_HEADER,
  parseOverrides,
  readOverrideHeader,
  RouteOverrides,
  MAX_OVERRIDE_LENGTH,
} from './routing/override.js';
export type { OverrideEntry, OverrideTarget } from './routing/override.js';
export type {
  RouteRule,
  RouteMatch,
  StickyKey,
  WeightedDestination,
  DestinationConfig,
  SubsetSelector,
} from './routing/config.js';
export { RulesRouter, RoutingTable } from './routing/router.js';
export type { RoutingSnapshot, RuleSnapshot, RoutedDestinationSnapshot } from './routing/router.js';
export { stableHash, stickyIndex } from './routing/hash.js';

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
