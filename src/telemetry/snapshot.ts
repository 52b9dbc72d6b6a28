/**
 * What modules expose to `mesh.snapshot()`, registered when their stack is built (DESIGN.md, "The shape,
 * second edition", point 3). Finagle's modules register their gauges and `StackRegistry` entries as the stack
 * is made, and nothing looks a module up by class afterwards; here each built stack (one per logical service,
 * per concrete destination, per endpoint) has a {@link SnapshotSections} sink in its `ModuleEnv`, a module
 * registers a reader under a typed section when it is made, and a snapshot reads the sections back.
 *
 * This file defines the sections the snapshot shows and the shapes of their values, and turns a stack's
 * sections into the snapshot's fields (the parts of `ServiceSnapshot` and `EndpointSnapshot` that modules
 * expose; src/client/snapshot.ts adds discovery, routing and each endpoint's balancer view). It sits in
 * telemetry and imports only core, so every level can register into it.
 */
import { defineSection, type ModuleEnv, type Section, type SectionSink } from '../core/stack.js';

/** Backup requests, as the snapshot shows them (`BackupRequestFilter.snapshot()`). */
export interface BackupRequestsView {
  delayMs: number | null;
  sent: number;
  won: number;
  budgetExhausted: number;
}

/** A circuit breaker's state. */
export type BreakerStateView = 'closed' | 'open' | 'half-open';

/** Admission, as the snapshot shows it (`AdmissionFilter.snapshot()`). */
export interface AdmissionView {
  inFlight: number;
  limit: number;
  rejected: number;
}

/** Failure accrual of one endpoint, as the snapshot shows it (three fields of its own snapshot). */
export interface AccrualView {
  state: 'ready' | 'busy' | 'probing';
  successRate: number | null;
  consecutiveFailures: number;
}

/** Logical level: retries the service's budget allows right now (the `retries` module). */
export const RetryBudgetSection: Section<number> = defineSection<number>('retryBudget');
/** Logical level: backup requests' delay and counters (the `backup-requests` module). */
export const BackupRequestsSection: Section<BackupRequestsView> =
  defineSection<BackupRequestsView>('backupRequests');
/** Concrete level: the destination's breaker state (the `circuit-breaker` module). */
export const BreakerSection: Section<BreakerStateView> = defineSection<BreakerStateView>('breaker');
/** Concrete level: calls in flight against the admission bound (the `admission` module). */
export const AdmissionSection: Section<AdmissionView> = defineSection<AdmissionView>('admission');
/** Endpoint level: failure accrual's view of the endpoint (the `failure-accrual` module). */
export const AccrualSection: Section<AccrualView> = defineSection<AccrualView>('accrual');

/**
 * The sections of one built stack: the sink its modules register into, read when a snapshot is taken.
 * Nothing here runs per call.
 *
 * @example
 * ```ts
 * const sections = new SnapshotSections();
 * const stack = stacks.logical.build(router, { ...env, sections });
 * sections.read(RetryBudgetSection); // the balance, or undefined with retries off
 * ```
 */
export class SnapshotSections implements SectionSink {
  private readonly readers = new Map<symbol, () => unknown>();

  expose<T>(section: Section<T>, read: () => T): void {
    // Modules are made innermost first: a later registration comes from a module further out, which wins.
    this.readers.set(section.key, read);
  }

  /** The section's value now, or undefined when no module of the stack registered it. */
  read<T>(section: Section<T>): T | undefined {
    const read = this.readers.get(section.key);
    return read === undefined ? undefined : (read() as T);
  }
}

/**
 * Registers `read(filter)` as `section` of the stack being built (when it has a sink) and returns `filter`:
 * a module's `make` ends with it.
 *
 * @example
 * ```ts
 * make: (next, env) => exposing(env, BreakerSection, new CircuitBreakerFilter(next, ...), (b) => b.state),
 * ```
 */
export function exposing<F, T>(env: ModuleEnv, section: Section<T>, filter: F, read: (filter: F) => T): F {
  env.sections?.expose(section, () => read(filter));
  return filter;
}

/** The fields of a service's snapshot that its modules expose, in the snapshot's order. */
export interface ServiceSectionsView {
  retryBudget: number | null;
  backupRequests: BackupRequestsView | null;
  breaker: BreakerStateView | null;
  admission: AdmissionView | null;
}

/**
 * A service's module sections: from its logical stack and the concrete stack of its default destination;
 * null for a section no module registered (the module is off or not in the stack).
 *
 * @example
 * ```ts
 * const { retryBudget, breaker } = serviceSections(service.sections, service.router.defaultDestination.sections);
 * ```
 */
export function serviceSections(logical: SnapshotSections, concrete: SnapshotSections): ServiceSectionsView {
  return {
    retryBudget: logical.read(RetryBudgetSection) ?? null,
    backupRequests: logical.read(BackupRequestsSection) ?? null,
    breaker: concrete.read(BreakerSection) ?? null,
    admission: concrete.read(AdmissionSection) ?? null,
  };
}

/**
 * An endpoint's module sections, as fields to spread into its snapshot: `{ accrual }` when failure accrual
 * registered, else nothing.
 *
 * @example
 * ```ts
 * const view = { address: node.id, ...endpointSections(node.sections) };
 * ```
 */
export function endpointSections(endpoint: SnapshotSections): { accrual?: AccrualView } {
  const accrual = endpoint.read(AccrualSection);
  return accrual === undefined
    ? {}
    : {
        accrual: {
          state: accrual.state,
          successRate: accrual.successRate,
          consecutiveFailures: accrual.consecutiveFailures,
        },
      };
}
