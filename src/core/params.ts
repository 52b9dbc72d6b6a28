/**
 * Typed stack parameters, after Finagle's `Stack.Param` and linkerd2-proxy's `Param<T>`: a module declares
 * the params it reads, each with a default, and a service's config sets values in an immutable
 * {@link Params} map. A user-written module can define its own params the same way.
 */

/**
 * A typed parameter with a default value.
 *
 * @example
 * ```ts
 * const MaxBodyBytes = defineParam('maxBodyBytes', 64 * 1024);
 * params.get(MaxBodyBytes); // 65536 unless set
 * ```
 */
export interface Param<T> {
  readonly key: symbol;
  readonly name: string;
  readonly defaultValue: T;
}

/**
 * Defines a param.
 *
 * @example
 * ```ts
 * export const Greeting = defineParam('greeting', 'hello');
 * ```
 */
export function defineParam<T>(name: string, defaultValue: T): Param<T> {
  return { key: Symbol(name), name, defaultValue };
}

/**
 * An immutable map from params to values; unset params read as their default.
 *
 * @example
 * ```ts
 * const p = Params.empty.with(Greeting, 'hi');
 * p.get(Greeting); // 'hi'
 * ```
 */
export class Params {
  static readonly empty = new Params(new Map());
  private constructor(private readonly values: ReadonlyMap<symbol, unknown>) {}

  get<T>(param: Param<T>): T {
    return this.values.has(param.key) ? (this.values.get(param.key) as T) : param.defaultValue;
  }

  has(param: Param<unknown>): boolean {
    return this.values.has(param.key);
  }

  with<T>(param: Param<T>, value: T): Params {
    const next = new Map(this.values);
    next.set(param.key, value);
    return new Params(next);
  }
}
