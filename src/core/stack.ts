/**
 * Finagle's `Stack`: an ordered list of named modules that a user can insert into, replace or remove by
 * role, and that is built into a chain of filters over a leaf service. meshfetch has three stacks, one per
 * level of a call (linkerd2-proxy's logical / concrete / endpoint split):
 *
 * - logical: one per logical service (the URL host); its leaf is the router.
 * - concrete: one per resolved destination; its leaf is the balancer.
 * - endpoint: one per address; its leaf is the undici pool.
 *
 * Each level's stack is built for a typed target (./targets.ts): a module reads `env.target`, typed by the
 * level of the stack it is in (`StackModule<'endpoint'>` reads an `EndpointTarget`).
 *
 * Order: the first module listed sees the request first (tower's order), everywhere in meshfetch.
 */
import type { Clock } from './clock.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import type { Param, Params } from './params.js';
import type { Rng } from './rng.js';
import { composeInlineTop } from './inline.js';
import type { Service } from './service.js';
import type { Targets } from './targets.js';

/** The three levels of a call. */
export type StackLevel = 'logical' | 'concrete' | 'endpoint';

/**
 * A typed name for something a module exposes to `mesh.snapshot()` (a part of the snapshot, such as the
 * retry budget's balance or the breaker's state). Finagle's modules register their gauges and registry
 * entries when the stack is built; here a module registers a reader under a section when it is made.
 *
 * @example
 * ```ts
 * const BreakerState = defineSection<'closed' | 'open' | 'half-open'>('breaker');
 * ```
 */
export interface Section<T> {
  readonly key: symbol;
  readonly name: string;
  /** Never set: carries the type of the section's value. */
  readonly valueType?: T;
}

/**
 * Defines a section.
 *
 * @example
 * ```ts
 * export const RetryBudgetSection = defineSection<number>('retryBudget');
 * ```
 */
export function defineSection<T>(name: string): Section<T> {
  return { key: Symbol(name), name };
}

/** Where the modules of one built stack register what they expose (see {@link ModuleEnv.sections}). */
export interface SectionSink {
  /**
   * Registers `read` as this stack's `section`: each snapshot calls it. When two modules register the same
   * section, the one further out (made later) is the one read.
   */
  expose<T>(section: Section<T>, read: () => T): void;
}

/** What a module of a stack of level `L` gets when the stack is built. */
export interface LevelModuleEnv<L extends StackLevel> {
  /** The level of the stack being built. */
  readonly level: L;
  /** What the stack is built for: its service, and at the lower levels its destination and address. */
  readonly target: Targets[L];
  readonly params: Params;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly logger: Logger;
  /**
   * Where the module registers what it exposes to `mesh.snapshot()`, one sink per built stack (per logical
   * service, per concrete destination, per endpoint). Absent when a stack is built outside a mesh.
   */
  readonly sections?: SectionSink | undefined;
}

/**
 * What a module gets when the stack is built. `ModuleEnv<'endpoint'>` is the endpoint level's; `ModuleEnv`
 * alone is any level's, narrowed by `env.level`.
 *
 * @example
 * ```ts
 * const make = (next: Service, env: ModuleEnv) =>
 *   env.level === 'endpoint' ? new Tagged(next, env.target.address) : next;
 * ```
 */
export type ModuleEnv<L extends StackLevel = StackLevel> = L extends StackLevel ? LevelModuleEnv<L> : never;

/**
 * One named layer of a stack. `StackModule` fits a stack of any level; `StackModule<'endpoint'>` only the
 * endpoint stack, and its `make` reads the endpoint's target.
 *
 * @example
 * ```ts
 * const addHeader: StackModule = {
 *   role: 'add-header',
 *   description: 'Adds x-hello to every request',
 *   make: (next) => new AddHeader(next),
 * };
 * const tagAddress: StackModule<'endpoint'> = {
 *   role: 'tag-address',
 *   description: 'Adds x-endpoint with the address to every request',
 *   make: (next, env) => new AddHeader(next, env.target.address),
 * };
 * ```
 */
export interface StackModule<L extends StackLevel = StackLevel> {
  /** A unique name within its stack, used to insert, replace or remove it. */
  readonly role: string;
  /** One line: what it does. */
  readonly description: string;
  /** The params it reads, for documentation and introspection. */
  readonly params?: readonly Param<any>[];
  /** Wraps `next`. Return `next` itself to opt out for this service. */
  make(next: Service, env: ModuleEnv<L>): Service;
}

/**
 * An immutable ordered list of modules for one level. `Stack` alone is a stack of some level, for helpers that
 * work on all three (`(s: Stack): Stack => ...`): it is assignable to and from each level's.
 *
 * @example
 * ```ts
 * const s = Stack.of('endpoint', []).insertBefore('pool', addHeader);
 * s.roles(); // ['add-header']
 * ```
 */
export class Stack<L extends StackLevel = any> {
  private constructor(
    readonly level: L,
    readonly modules: readonly StackModule<L>[],
  ) {}

  static of<L extends StackLevel>(level: L, modules: readonly StackModule<NoInfer<L>>[]): Stack<L> {
    const seen = new Set<string>();
    for (const m of modules) {
      if (seen.has(m.role)) throw new ConfigError(`stack.${level}`, m.role, 'unique module roles');
      seen.add(m.role);
    }
    return new Stack(level, modules);
  }

  /** Roles in order, first sees the request first. */
  roles(): string[] {
    return this.modules.map((m) => m.role);
  }

  has(role: string): boolean {
    return this.modules.some((m) => m.role === role);
  }

  /** Inserts `module` just above (before) `role`. */
  insertBefore(role: string, module: StackModule<L>): Stack<L> {
    const i = this.indexOf(role);
    return Stack.of(this.level, [...this.modules.slice(0, i), module, ...this.modules.slice(i)]);
  }

  /** Inserts `module` just below (after) `role`. */
  insertAfter(role: string, module: StackModule<L>): Stack<L> {
    const i = this.indexOf(role);
    return Stack.of(this.level, [...this.modules.slice(0, i + 1), module, ...this.modules.slice(i + 1)]);
  }

  /** Adds `module` first: it will see the request before every other module of this stack. */
  prepend(module: StackModule<L>): Stack<L> {
    return Stack.of(this.level, [module, ...this.modules]);
  }

  /** Adds `module` last: just above the leaf. */
  append(module: StackModule<L>): Stack<L> {
    return Stack.of(this.level, [...this.modules, module]);
  }

  replace(role: string, module: StackModule<L>): Stack<L> {
    const i = this.indexOf(role);
    return Stack.of(this.level, [...this.modules.slice(0, i), module, ...this.modules.slice(i + 1)]);
  }

  remove(role: string): Stack<L> {
    const i = this.indexOf(role);
    return Stack.of(this.level, [...this.modules.slice(0, i), ...this.modules.slice(i + 1)]);
  }

  /**
   * Builds the chain over `leaf`: the first module ends up outermost. Adjacent inline filters at the top are
   * composed into one service that runs their hooks without a promise hop each (src/core/inline.ts); nothing
   * a module or a caller does can tell the difference.
   */
  build(leaf: Service, env: ModuleEnv<L>): Service {
    let s = leaf;
    for (let i = this.modules.length - 1; i >= 0; i--) s = this.modules[i]!.make(s, env);
    return composeInlineTop(s);
  }

  private indexOf(role: string): number {
    const i = this.modules.findIndex((m) => m.role === role);
    if (i < 0)
      throw new ConfigError(`stack.${this.level}`, role, `one of the roles [${this.roles().join(', ')}]`);
    return i;
  }
}

/**
 * The three stacks of a mesh.
 *
 * @example
 * ```ts
 * createMesh({ services: {}, stack: (s) => ({ ...s, endpoint: s.endpoint.prepend(addHeader) }) });
 * ```
 */
export interface Stacks {
  readonly logical: Stack<'logical'>;
  readonly concrete: Stack<'concrete'>;
  readonly endpoint: Stack<'endpoint'>;
}
