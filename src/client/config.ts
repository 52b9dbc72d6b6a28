/**
 * Mesh configuration and its validation. Everything is checked once, at `createMesh` (or `addService`),
 * so a typo fails at startup with a {@link ConfigError} that names the option path and the value, instead
 * of surfacing as odd behaviour under load. Unknown keys are errors too: `endpiont` is a typo, not a no-op.
 */
import type { Clock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import {
  boolean,
  custom,
  duration,
  func,
  isPlainObject,
  number,
  object,
  oneOf,
  optional,
  string,
  type Spec,
} from '../core/validate.js';
import { MAX_DEADLINE_MS } from '../core/call-options.js';
import { optionPath } from '../core/option-path.js';
import type { Logger } from '../core/logger.js';
import type { Rng } from '../core/rng.js';
import type { Stacks } from '../core/stack.js';
import type { BalancerFactory } from '../balance/types.js';
import { StaticDiscovery } from '../discovery/static.js';
import type { EndpointInput } from '../discovery/endpoint.js';
import type { Discovery } from '../discovery/types.js';
import { defaultTransportOptions, type TransportOptions } from '../transport/pool.js';
import { attachTlsMaterial, TlsMaterial, tlsOptions } from '../transport/tls-material.js';
import { Params } from '../core/params.js';
import { AttemptTimeoutParam, resolveAttemptTimeout } from '../resilience/attempt-timeout.js';
import { ClassifierParam, type Classifier } from '../resilience/classifier.js';
import {
  FailureAccrualParam,
  resolveFailureAccrualOptions,
  type FailureAccrualOptions,
} from '../resilience/accrual-options.js';
import { AdmissionParam, resolveAdmissionOptions, type AdmissionOptions } from '../resilience/admission.js';
import {
  CircuitBreakerParam,
  resolveCircuitBreakerOptions,
  type CircuitBreakerOptions,
} from '../resilience/breaker.js';
import { resolveRetryOptions, RetryParam, type RetryOptionsInput } from '../resilience/retry.js';
import {
  BackupRequestParam,
  resolveBackupRequestOptions,
  type BackupRequestOptionsInput,
} from '../resilience/backup.js';
import { balancerByName, balancerNames, defaultBalancer, type BalancerName } from './balancers.js';
import {
  resolveRouting,
  type DestinationConfig,
  type ResolvedRouting,
  type RouteRule,
} from '../routing/config.js';

/**
 * One logical service.
 *
 * @example
 * ```ts
 * const users: ServiceConfig = { endpoints: ['127.0.0.1:8080', '127.0.0.1:8081'], timeoutMs: 2_000 };
 * ```
 */
export interface ServiceConfig {
  /** A static endpoint list (shorthand for `discovery: staticDiscovery([...])`). Give this or `discovery`. */
  endpoints?: readonly EndpointInput[];
  /** Where the endpoints come from (static, Consul, ...). Give this or `endpoints`. */
  discovery?: Discovery;
  /** The load balancer: a name or a factory. Default `'p2c-peak-ewma'`. */
  balancer?: BalancerName | BalancerFactory;
  /**
   * Total deadline of a call including its body (ms); `Infinity` for none. Default 30000. A value above
   * 2 000 000 000 ms (about 23 days) is clamped to it. A `timeoutMs` given
   * here or in `defaults` is also sent to the next hop (`mesh-deadline-ms`); the built-in 30 s is enforced
   * but not sent (docs/resilience.md, "Propagation").
   */
  timeoutMs?: number;
  /**
   * The Host header sent to endpoints: `'logical'` (the URL's authority, default), `'endpoint'` (the
   * endpoint's host:port) or a fixed string.
   */
  hostHeader?: 'logical' | 'endpoint' | (string & {});
  /** Connection settings (pool size, keep-alive, HTTP/2, TLS). */
  transport?: Partial<TransportOptions>;
  /** Retries (budget, backoff, Retry-After, replay limit); `false` turns them off. */
  retries?: RetryOptionsInput;
  /**
   * Backup requests for idempotent calls: one more attempt, to another endpoint, when the first has not
   * answered by a latency percentile (`true` for the defaults, or `{ percentile: 0.95, ... }`). Default `false`.
   */
  backupRequests?: BackupRequestOptionsInput;
  /** Per-attempt timeout until response headers (ms). Default: none (the total deadline applies). */
  attemptTimeoutMs?: number;
  /** How responses and errors are classified (success, retryable failure, failure, back-pressure). */
  classifier?: Classifier;
  /** Failure accrual per endpoint (marks failing endpoints busy; probes bring them back); `false` turns it off. */
  failureAccrual?: FailureAccrualOptions | boolean;
  /** The circuit breaker per destination; `false` turns it off. */
  circuitBreaker?: Partial<CircuitBreakerOptions> | boolean;
  /** A bound on calls in flight per destination; `false` turns it off. */
  admission?: AdmissionOptions | boolean;
  /**
   * Routing rules, in order: the first whose match holds sends the request to a destination or a weighted
   * split. Default: everything to `primary` (the service's own `endpoints` / `discovery`). See docs/routing.md.
   */
  routes?: readonly RouteRule[];
  /** Named concrete destinations (a discovery source, a subset, a datacenter, fallbacks) the rules send to. */
  destinations?: Readonly<Record<string, DestinationConfig>>;
}

/** Settings applied to every service unless the service overrides them. */
export type ServiceDefaults = Omit<ServiceConfig, 'endpoints' | 'discovery' | 'routes' | 'destinations'>;

/**
 * The whole mesh.
 *
 * @example
 * ```ts
 * const mesh = createMesh({
 *   services: { users: { endpoints: ['127.0.0.1:8080'] } },
 *   unknownHosts: 'passthrough',
 * });
 * ```
 */
export interface MeshConfig {
  /** Logical services by name; the name is the URL host that addresses them (`http://users/...`). */
  services?: Record<string, ServiceConfig>;
  /** Defaults for every service. */
  defaults?: ServiceDefaults;
  /** What to do with a URL whose host is not a service: send it on unchanged (default) or reject it. */
  unknownHosts?: 'passthrough' | 'reject';
  /** A pino-style logger. Silent by default. */
  logger?: Logger;
  /** Time source (tests pass a fake). */
  clock?: Clock;
  /** Randomness source (tests pass a seeded one). */
  rng?: Rng;
  /** Changes the default stacks: insert, replace or remove modules by role. */
  stack?: (defaults: Stacks) => Stacks;
  /**
   * Per-request routing overrides (the `mesh-dtab` header, and the one the server helper takes from a trusted
   * caller): applied and forwarded only when `enabled`. Default off: the header is removed and ignored.
   */
  overrides?: { enabled?: boolean };
}

/** A service config after validation and defaulting. */
export interface ResolvedServiceConfig {
  readonly name: string;
  readonly discovery: Discovery;
  readonly balancer: BalancerFactory;
  readonly timeoutMs: number;
  /**
   * Whether `timeoutMs` was configured (here or in `defaults`) rather than the built-in default: a configured
   * deadline is sent to the next hop, the built-in one only enforced.
   */
  readonly timeoutConfigured: boolean;
  readonly hostHeader: string;
  readonly transport: Readonly<TransportOptions>;
  /** Module params built from the resilience options. */
  readonly params: Params;
  /** The routing rules and named destinations (`primary` alone when none are configured). */
  readonly routing: ResolvedRouting;
}

const RESILIENCE_KEYS = [
  'retries',
  'backupRequests',
  'attemptTimeoutMs',
  'classifier',
  'failureAccrual',
  'circuitBreaker',
  'admission',
];
const SERVICE_KEYS = new Set([
  'endpoints',
  'discovery',
  'balancer',
  'timeoutMs',
  'hostHeader',
  'transport',
  ...RESILIENCE_KEYS,
  'routes',
  'destinations',
]);
const DEFAULT_KEYS = new Set(['balancer', 'timeoutMs', 'hostHeader', 'transport', ...RESILIENCE_KEYS]);
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** The default total deadline (ms): generous, but below undici's 300 s so the mesh's is the one users meet. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Any value: checked by the module that reads it (resilience options, routing), with the path it is at. */
const passed = optional(custom((v) => v));

/** Keys whose value another module checks. */
function passedKeys(keys: Iterable<string>): Record<string, Spec<unknown>> {
  return Object.fromEntries([...keys].map((k) => [k, passed]));
}

/** An object with the named functions, as a Clock or an Rng is. */
function withFunctions(names: readonly string[], expected: string): Spec<unknown> {
  return optional(
    custom((v, path) => {
      if (!isPlainObject(v) || names.some((m) => typeof v[m] !== 'function'))
        throw new ConfigError(path, v, expected);
      return v;
    }),
  );
}

/** The top level of a mesh config, declared once; services are checked by {@link resolveServiceConfig}. */
const meshConfig = object({
  services: optional(
    custom((v, path) => {
      if (!isPlainObject(v)) throw new ConfigError(path, v, 'an object of services by name');
      return v;
    }),
  ),
  defaults: optional(object(passedKeys(DEFAULT_KEYS))),
  unknownHosts: optional(oneOf(['passthrough', 'reject'])),
  logger: optional(
    custom((v, path) => {
      for (const m of ['debug', 'info', 'warn', 'error'] as const) {
        const f = isPlainObject(v) ? v[m] : v;
        if (typeof f !== 'function')
          throw new ConfigError(optionPath(path, m), f, 'a function (a pino-style logger)');
      }
      return v;
    }),
  ),
  clock: withFunctions(['now', 'setTimeout'], 'a Clock { now, wallNow, setTimeout, clearTimeout }'),
  rng: withFunctions(['next'], 'an Rng { next }'),
  stack: optional(func({ expected: 'a function (defaults) => stacks' })),
  overrides: optional(object({ enabled: optional(boolean()) }, { expected: 'an object { enabled }' })),
});

/** The transport options a service (or `defaults`) gives; what is absent comes from the defaults below it. */
const transportOptions = object({
  connections: optional(number({ min: 1, integer: true })),
  keepAliveTimeoutMs: optional(duration({ min: 1 })),
  keepAliveMaxTimeoutMs: optional(duration({ min: 1 })),
  keepAliveTimeoutThresholdMs: optional(duration({ min: 0 })),
  connectTimeoutMs: optional(duration({ min: 1 })),
  http2: optional(
    custom((v, path) => {
      if (typeof v !== 'boolean' && v !== 'h2c') throw new ConfigError(path, v, "a boolean or 'h2c'");
      return v;
    }),
  ),
  tls: optional(tlsOptions),
});

const classifierOption = func<Classifier>({ expected: 'a function (input) => Classification' });
const timeoutMs = duration({ min: 0, exclusiveMin: true, infinity: true });
const hostHeader = string({ pattern: /^\S+$/, expected: "'logical', 'endpoint' or a host name" });

/** A service's config, declared once: where its endpoints come from is checked here, the rest by its module. */
const serviceConfig = object(
  {
    ...passedKeys(SERVICE_KEYS),
    discovery: optional(
      custom((v, path) => {
        if (!isPlainObject(v) || typeof v.resolve !== 'function')
          throw new ConfigError(
            path,
            v,
            'a Discovery (e.g. staticDiscovery([...]) or consulDiscovery({...}))',
          );
        return v as unknown as Discovery;
      }),
    ),
  },
  {
    required: true,
    expected: 'an object',
    check(c, path) {
      if ((c as Record<string, unknown>).endpoints !== undefined && c.discovery !== undefined)
        throw new ConfigError(
          optionPath(path, 'discovery'),
          'both endpoints and discovery',
          'only one of endpoints or discovery',
        );
    },
  },
);

/** Validates the top level of a mesh config; services are validated by {@link resolveServiceConfig}. */
export function validateMeshConfig(config: unknown): MeshConfig {
  if (config === undefined) return {};
  // Paths are relative to the config itself (docs/client.md): the root is '', a top-level key its name.
  meshConfig.resolve(config, '');
  return config as MeshConfig;
}

/** Validates a service name (a lower-case DNS name, as URL parsing produces). */
export function validateServiceName(name: unknown, path = 'services'): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new ConfigError(
      typeof name === 'string' ? optionPath(path, name) : `${path}[${JSON.stringify(name)}]`,
      name,
      'a lower-case host name such as "users" or "users.internal"',
    );
  }
  return name;
}

/**
 * The config path of a service: `services.users`, or `services["users.internal"]` for a name with dots.
 *
 * @example
 * ```ts
 * servicePath('users'); // 'services.users'
 * ```
 */
export function servicePath(name: string): string {
  return optionPath('services', name);
}

function resolveTimeout(v: unknown, path: string): number {
  const ms = timeoutMs.resolve(v, path);
  // Beyond Node's longest timer a deadline would fire at once: clamp, as callOptions does.
  return ms === Infinity ? ms : Math.min(ms, MAX_DEADLINE_MS);
}

function resolveTransport(v: unknown, base: Readonly<TransportOptions>, path: string): TransportOptions {
  if (v === undefined) return { ...base };
  const given = transportOptions.resolve(v, path);
  const out: TransportOptions = { ...base, ...(given as Partial<TransportOptions>) };
  if (given.tls !== undefined) {
    out.tls = { ...given.tls };
    // Reads the files and checks the material now (a missing key, an unreadable file, a key that does not
    // match its certificate are ConfigErrors naming the option); the pools take it from here.
    attachTlsMaterial(out.tls, new TlsMaterial(out.tls, optionPath(path, 'tls')));
  }
  if (out.keepAliveTimeoutMs > out.keepAliveMaxTimeoutMs) {
    throw new ConfigError(
      optionPath(path, 'keepAliveTimeoutMs'),
      out.keepAliveTimeoutMs,
      `at most keepAliveMaxTimeoutMs (${out.keepAliveMaxTimeoutMs})`,
    );
  }
  return out;
}

function resolveBalancer(v: unknown, path: string): BalancerFactory {
  if (typeof v === 'string') {
    const f = balancerByName(v);
    if (!f)
      throw new ConfigError(
        path,
        v,
        `one of ${balancerNames()
          .map((n) => `'${n}'`)
          .join(', ')} or a BalancerFactory`,
      );
    return f;
  }
  if (
    isPlainObject(v) &&
    typeof v.newLoad === 'function' &&
    typeof v.newDistributor === 'function' &&
    typeof v.kind === 'string'
  ) {
    return v as unknown as BalancerFactory;
  }
  throw new ConfigError(
    path,
    v,
    `one of ${balancerNames()
      .map((n) => `'${n}'`)
      .join(', ')} or a BalancerFactory`,
  );
}

function resolveHostHeader(v: unknown, path: string): string {
  return hostHeader.resolve(v, path);
}

/**
 * Validates and defaults one service's config.
 *
 * @example
 * ```ts
 * resolveServiceConfig('users', { endpoints: ['127.0.0.1:8080'] }, {});
 * ```
 */
export function resolveServiceConfig(
  name: string,
  config: unknown,
  defaults: ServiceDefaults = {},
): ResolvedServiceConfig {
  const path = servicePath(name);
  validateServiceName(name);
  const checked = serviceConfig.resolve(config, path);
  const c = config as ServiceConfig;
  let discovery: Discovery | undefined;
  if (c.endpoints !== undefined) {
    discovery = new StaticDiscovery(c.endpoints, optionPath(path, 'endpoints'));
  } else if (checked.discovery !== undefined) {
    discovery = checked.discovery;
  } else if (c.destinations === undefined) {
    throw new ConfigError(
      optionPath(path, 'endpoints'),
      undefined,
      'an endpoint list, or a discovery source in .discovery',
    );
  }
  const balancer =
    c.balancer !== undefined
      ? resolveBalancer(c.balancer, `${path}.balancer`)
      : defaults.balancer !== undefined
        ? resolveBalancer(defaults.balancer, 'defaults.balancer')
        : defaultBalancer();
  const timeoutMs =
    c.timeoutMs !== undefined
      ? resolveTimeout(c.timeoutMs, `${path}.timeoutMs`)
      : defaults.timeoutMs !== undefined
        ? resolveTimeout(defaults.timeoutMs, 'defaults.timeoutMs')
        : DEFAULT_TIMEOUT_MS;
  const hostHeader =
    c.hostHeader !== undefined
      ? resolveHostHeader(c.hostHeader, `${path}.hostHeader`)
      : defaults.hostHeader !== undefined
        ? resolveHostHeader(defaults.hostHeader, 'defaults.hostHeader')
        : 'logical';
  const base = resolveTransport(defaults.transport, defaultTransportOptions, 'defaults.transport');
  const transport = resolveTransport(c.transport, base, `${path}.transport`);
  const pick = <K extends keyof ServiceDefaults>(k: K): [ServiceDefaults[K], string] =>
    c[k] !== undefined ? [c[k], optionPath(path, k)] : [defaults[k], optionPath('defaults', k)];
  let params = Params.empty;
  const [retries, retriesPath] = pick('retries');
  params = params.with(RetryParam, resolveRetryOptions(retries, retriesPath));
  const [backups, backupsPath] = pick('backupRequests');
  params = params.with(BackupRequestParam, resolveBackupRequestOptions(backups, backupsPath));
  const [attempt, attemptPath] = pick('attemptTimeoutMs');
  params = params.with(AttemptTimeoutParam, resolveAttemptTimeout(attempt, attemptPath));
  const [accrual, accrualPath] = pick('failureAccrual');
  params = params.with(FailureAccrualParam, resolveFailureAccrualOptions(accrual, accrualPath));
  const [breaker, breakerPath] = pick('circuitBreaker');
  // Set only when given, so options passed to createCircuitBreakerModule(...) in a custom stack still apply.
  if (breaker !== undefined)
    params = params.with(CircuitBreakerParam, resolveCircuitBreakerOptions(breaker, breakerPath));
  const [admission, admissionPath] = pick('admission');
  params = params.with(AdmissionParam, resolveAdmissionOptions(admission, admissionPath));
  const [classifier, classifierPath] = pick('classifier');
  if (classifier !== undefined)
    params = params.with(ClassifierParam, classifierOption.resolve(classifier, classifierPath));
  const routing = resolveRouting(c, discovery, path);
  // With named destinations only, the service's discovery (shown in snapshots) is its default destination's.
  discovery ??= (
    routing.destinations.get(routing.rules[0]!.split[0]!.name) ?? [...routing.destinations.values()][0]!
  ).discovery;
  const timeoutConfigured = c.timeoutMs !== undefined || defaults.timeoutMs !== undefined;
  return { name, discovery, balancer, timeoutMs, timeoutConfigured, hostHeader, transport, params, routing };
}
