/**
 * A logical service: its resolved config, its router (the logical stack's leaf, over the concrete
 * destinations it builds) and its logical stack, built once per service with the mesh's end of a call first
 * (./call.ts). The mesh keeps these in its registry (./mesh.ts).
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { Rng } from '../core/rng.js';
import type { Service } from '../core/service.js';
import type { ModuleEnv, StackModule, Stacks } from '../core/stack.js';
import type { Destination } from '../concrete/destination.js';
import { RulesRouter } from '../routing/router.js';
import { SharedResolvers } from '../concrete/subset.js';
import { withRetryBudget } from '../resilience/retry.js';
import { SnapshotSections } from '../telemetry/snapshot.js';
import { servicePath, type ResolvedServiceConfig } from './config.js';

/** A logical service with its built stack. */
export class LogicalService {
  constructor(
    readonly config: ResolvedServiceConfig,
    /** The logical stack, the mesh's end of a call first (./call.ts). */
    readonly stack: Service,
    /** The leaf of the logical stack: rules, splits, overrides and failover over the concrete destinations. */
    readonly router: RulesRouter,
    /** What the modules of its logical stack expose to snapshots (retry budget, backup requests). */
    readonly sections: SnapshotSections,
  ) {}
  get name(): string {
    return this.config.name;
  }
  /** The default concrete destination (`primary`, else the first rule's): its balancer and endpoints. */
  get destination(): Destination {
    return this.router.defaultDestination.destination;
  }
  /** The default destination's concrete stack (admission, breaker, balancer). */
  get concrete(): Service {
    return this.router.defaultDestination.stack;
  }
  async close(force: boolean): Promise<void> {
    await this.router.closeAll(force);
    await this.stack.close();
  }
}

/** What building a logical service takes from its mesh. */
export interface LogicalServiceEnv {
  readonly stacks: Stacks;
  /** The mesh's end of a call, put first of the logical stack. */
  readonly entry: StackModule;
  /** Whether per-request routing overrides are honoured (`overrides.enabled`). */
  readonly overrides: boolean;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly logger: Logger;
}

/**
 * Builds a logical service: its router, its destinations (through the router) and its logical stack.
 *
 * @example
 * ```ts
 * const svc = buildLogicalService(resolveServiceConfig('users', config, {}), env);
 * ```
 */
export function buildLogicalService(config: ResolvedServiceConfig, m: LogicalServiceEnv): LogicalService {
  if (config.transport.tls?.rejectUnauthorized === false) {
    // Once per service: the setting is a config fact, not a per-connection event.
    m.logger.warn(
      { service: config.name, option: `${servicePath(config.name)}.transport.tls.rejectUnauthorized` },
      'TLS certificate verification is OFF for this service (rejectUnauthorized: false): any server certificate is accepted',
    );
  }
  const sections = new SnapshotSections();
  const base: ModuleEnv<'logical'> = {
    level: 'logical',
    target: { service: config.name },
    // One retry budget per logical service, read by every module that spends it.
    params: withRetryBudget(config.params, m.clock),
    clock: m.clock,
    rng: m.rng,
    logger: m.logger,
    sections,
  };
  // One discovery watch per source, shared by the destinations that take subsets of it.
  const resolvers = new SharedResolvers({
    service: config.name,
    clock: m.clock,
    rng: m.rng,
    logger: m.logger,
  });
  const router = new RulesRouter({
    service: config.name,
    routing: config.routing,
    factory: {
      stacks: m.stacks,
      env: base,
      balancer: config.balancer,
      transport: config.transport,
      hostHeader: config.hostHeader,
      resolvers,
    },
    overrides: m.overrides,
    rng: m.rng,
    logger: m.logger,
  });
  const stack = m.stacks.logical.prepend(m.entry).build(router, base);
  return new LogicalService(config, stack, router, sections);
}
