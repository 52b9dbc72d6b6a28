/**
 * The one validation helper for options, after Finagle's `Stack.Param` (a parameter declared once, with its
 * default) and linkerd2-proxy's typed params: a module declares the shape of its options and their defaults
 * once, as a {@link Spec}, and `spec.resolve(input, path)` turns what the caller passed into a resolved,
 * frozen value, or throws a {@link ConfigError} whose path uses {@link optionPath}'s format
 * (`services.users.retries.budget.ttlMs`, `routes[0].to[1].weight`).
 *
 * What every spec shares, so that no module writes its own: unknown keys are rejected with the list of known
 * ones (a misspelt `tauMS` silently falling back to its default only shows up in production latency graphs),
 * numbers are finite unless Infinity is allowed, and a value that is absent takes the declared default.
 * Options are resolved once when a mesh or a module is built, never per call, so the helper favours clear
 * messages over speed.
 */
import { ConfigError } from './errors.js';
import { optionPath } from './option-path.js';

/**
 * An HTTP token (RFC 9110 §5.6.2): what a method or a header name must be. The one copy of it in the project.
 *
 * @example
 * ```ts
 * HTTP_TOKEN.test('x-request-id'); // true
 * HTTP_TOKEN.test('bad header'); // false
 * ```
 */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * How the options of one thing are declared: `resolve` turns an input found at `path` into the resolved
 * value, filling in defaults, or throws a {@link ConfigError} naming where the bad value sits.
 *
 * @example
 * ```ts
 * const port: Spec<number> = number({ min: 1, max: 65535, integer: true });
 * port.resolve(8080, 'port'); // 8080
 * ```
 */
export interface Spec<T> {
  resolve(input: unknown, path: string): T;
}

/**
 * The value a spec resolves to.
 *
 * @example
 * ```ts
 * type Port = Resolved<typeof port>; // number
 * ```
 */
export type Resolved<S> = S extends Spec<infer T> ? T : never;

/**
 * True for a plain options object (not null, not an array).
 *
 * @example
 * ```ts
 * isPlainObject({ a: 1 }); // true
 * isPlainObject([1]); // false
 * ```
 */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** What every leaf spec may take: a default for an absent value, and the text of `expected ...`. */
export interface LeafOptions<T> {
  /** The value an absent (`undefined`) input takes. Without one, an absent input is an error. */
  default?: T;
  /** Replaces the generated description in the error message (`expected <this>, got ...`). */
  expected?: string;
}

function leaf<T>(
  opts: LeafOptions<T> | undefined,
  expected: string,
  accept: (v: unknown) => boolean,
): Spec<T> {
  const hasDefault = opts !== undefined && 'default' in opts;
  const text = opts?.expected ?? expected;
  return {
    resolve(v, path) {
      if (v === undefined && hasDefault) return opts.default as T;
      if (!accept(v)) throw new ConfigError(path, v, text);
      return v as T;
    },
  };
}

/**
 * Bounds of a number.
 *
 * @example
 * ```ts
 * const rule: NumberRule = { min: 0, exclusiveMin: true, max: 1 }; // 0 < x <= 1
 * ```
 */
export interface NumberRule {
  /** Smallest allowed value (inclusive unless `exclusiveMin`). */
  min?: number;
  exclusiveMin?: boolean;
  /** Largest allowed value (inclusive unless `exclusiveMax`). */
  max?: number;
  exclusiveMax?: boolean;
  /** The value must be an integer. */
  integer?: boolean;
  /** `Infinity` is allowed too (for "no limit"). */
  infinity?: boolean;
  /** Named in the message: `a finite number of <unit> >= 0`. */
  unit?: string;
}

/**
 * The text a number rule gives in an error message (`an integer >= 1`, `a finite number > 0 and <= 1`,
 * `a number of milliseconds > 0, or Infinity`).
 *
 * @example
 * ```ts
 * describeNumber({ min: 1, integer: true }); // 'an integer >= 1'
 * ```
 */
export function describeNumber(rule: NumberRule): string {
  let s = rule.integer ? 'an integer' : rule.infinity ? 'a number' : 'a finite number';
  if (rule.unit !== undefined) s += ` of ${rule.unit}`;
  const bounds: string[] = [];
  if (rule.min !== undefined) bounds.push(`${rule.exclusiveMin ? '>' : '>='} ${rule.min}`);
  if (rule.max !== undefined) bounds.push(`${rule.exclusiveMax ? '<' : '<='} ${rule.max}`);
  if (bounds.length > 0) s += ` ${bounds.join(' and ')}`;
  return rule.infinity ? `${s}, or Infinity` : s;
}

/**
 * True when `v` is a number that `rule` allows.
 *
 * @example
 * ```ts
 * numberAllowed(0, { min: 0, exclusiveMin: true }); // false
 * ```
 */
export function numberAllowed(v: unknown, rule: NumberRule): v is number {
  if (typeof v !== 'number' || Number.isNaN(v)) return false;
  if (v === Infinity && rule.infinity) return rule.max === undefined;
  if (!Number.isFinite(v) || (rule.integer && !Number.isInteger(v))) return false;
  if (rule.min !== undefined && (rule.exclusiveMin ? v <= rule.min : v < rule.min)) return false;
  if (rule.max !== undefined && (rule.exclusiveMax ? v >= rule.max : v > rule.max)) return false;
  return true;
}

/**
 * A number within bounds.
 *
 * @example
 * ```ts
 * number({ min: 1, max: 100, integer: true, default: 3 }).resolve(undefined, 'maxAttempts'); // 3
 * ```
 */
export function number(rule: NumberRule & LeafOptions<number> = {}): Spec<number> {
  return leaf(rule, describeNumber(rule), (v) => numberAllowed(v, rule));
}

/**
 * A duration in milliseconds: a number whose message names the unit.
 *
 * @example
 * ```ts
 * duration({ min: 0, exclusiveMin: true, infinity: true }); // 'a number of milliseconds > 0, or Infinity'
 * ```
 */
export function duration(rule: Omit<NumberRule, 'unit'> & LeafOptions<number> = {}): Spec<number> {
  return number({ ...rule, unit: 'milliseconds' });
}

/**
 * `true` or `false`.
 *
 * @example
 * ```ts
 * boolean({ default: false }).resolve(undefined, 'retryTimeouts'); // false
 * ```
 */
export function boolean(opts?: LeafOptions<boolean>): Spec<boolean> {
  return leaf(opts, 'a boolean', (v) => typeof v === 'boolean');
}

/**
 * A function (a predicate, a key function, a factory); `expected` says what it is called with.
 *
 * @example
 * ```ts
 * func<(req: Request) => boolean>({ expected: 'a function (req) => boolean' });
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function func<F extends Function>(opts?: LeafOptions<F>): Spec<F> {
  return leaf(opts, 'a function', (v) => typeof v === 'function');
}

/**
 * One of a fixed list of values.
 *
 * @example
 * ```ts
 * oneOf(['http1', 'h2'] as const, { default: 'http1' });
 * ```
 */
export function oneOf<const V extends string | number | boolean>(
  values: readonly V[],
  opts?: LeafOptions<V>,
): Spec<V> {
  const text = `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;
  return leaf(opts, text, (v) => (values as readonly unknown[]).includes(v));
}

/**
 * A string: any, non-empty, an HTTP token, or matching a pattern.
 *
 * @example
 * ```ts
 * string({ token: true }).resolve('x-tenant', 'headers'); // 'x-tenant'
 * ```
 */
export function string(
  opts: LeafOptions<string> & { nonEmpty?: boolean; token?: boolean; pattern?: RegExp } = {},
): Spec<string> {
  const text = opts.token ? 'an HTTP token' : opts.nonEmpty ? 'a non-empty string' : 'a string';
  return leaf(
    opts,
    text,
    (v) =>
      typeof v === 'string' &&
      (!opts.nonEmpty || v.length > 0) &&
      (!opts.token || HTTP_TOKEN.test(v)) &&
      (opts.pattern === undefined || opts.pattern.test(v)),
  );
}

/**
 * A check written by hand, for what the declarative specs do not say (a function, a Discovery, PEM text).
 * `undefined` reaches `check` unless a default is given.
 *
 * @example
 * ```ts
 * custom((v, path) => { if (typeof v !== 'function') throw new ConfigError(path, v, 'a function'); return v; });
 * ```
 */
export function custom<T>(check: (input: unknown, path: string) => T, opts?: { default?: T }): Spec<T> {
  const hasDefault = opts !== undefined && 'default' in opts;
  return {
    resolve(v, path) {
      if (v === undefined && hasDefault) return opts.default as T;
      return check(v, path);
    },
  };
}

/**
 * Lets a spec be absent: `undefined` resolves to `undefined` (and its key is left out of an object).
 *
 * @example
 * ```ts
 * optional(string()).resolve(undefined, 'name'); // undefined
 * ```
 */
export function optional<T>(spec: Spec<T>): Spec<T | undefined> {
  return { resolve: (v, path) => (v === undefined ? undefined : spec.resolve(v, path)) };
}

/** Shape of an options object: a spec per key. */
export type Shape = Record<string, Spec<unknown>>;

/** What an object spec resolves to: a key whose spec may give `undefined` is optional. */
export type ResolvedShape<S extends Shape> = {
  readonly [K in keyof S as undefined extends Resolved<S[K]> ? never : K]: Resolved<S[K]>;
} & {
  readonly [K in keyof S as undefined extends Resolved<S[K]> ? K : never]?: Exclude<
    Resolved<S[K]>,
    undefined
  >;
};

/**
 * The message of an unknown key, the same for every options object: it names the keys that are known.
 *
 * @example
 * ```ts
 * unknownOption(['tauMs', 'penalty']); // 'no such option (a known option is one of: tauMs, penalty)'
 * ```
 */
export function unknownOption(known: readonly string[]): string {
  return `no such option (a known option is one of: ${known.join(', ')})`;
}

/**
 * Rejects the keys of `record` that are not in `known`, with {@link unknownOption}'s message.
 *
 * @example
 * ```ts
 * rejectUnknownKeys({ tauMS: 5 }, ['tauMs'], 'balancer'); // throws ConfigError at balancer.tauMS
 * ```
 */
export function rejectUnknownKeys(
  record: Record<string, unknown>,
  known: readonly string[],
  path: string,
): void {
  for (const k of Object.keys(record))
    if (!known.includes(k)) throw new ConfigError(optionPath(path, k), record[k], unknownOption(known));
}

/** Options of {@link object}. */
export interface ObjectOptions<T> {
  /** The message when the input is not an object. Default `an object`. */
  expected?: string;
  /** An absent input is an error (default: it resolves as `{}`, every key taking its default). */
  required?: boolean;
  /** Checks across keys, on the resolved value; throws a ConfigError. */
  check?: (resolved: T, path: string) => void;
}

/**
 * An options object: each key by its spec, unknown keys rejected, the result frozen. An absent key takes its
 * spec's default; a key whose spec is {@link optional} and absent is left out.
 *
 * @example
 * ```ts
 * const budget = object({ ttlMs: number({ min: 1, default: 10_000 }) });
 * budget.resolve({}, 'retries.budget'); // { ttlMs: 10000 }, frozen
 * ```
 */
export function object<S extends Shape>(
  shape: S,
  opts: ObjectOptions<ResolvedShape<S>> = {},
): Spec<ResolvedShape<S>> {
  const known = Object.keys(shape);
  return {
    resolve(input, path) {
      if (input === undefined && !opts.required) input = {};
      if (!isPlainObject(input)) throw new ConfigError(path, input, opts.expected ?? 'an object');
      rejectUnknownKeys(input, known, path);
      const out: Record<string, unknown> = {};
      for (const k of known) {
        const v = shape[k]!.resolve(input[k], optionPath(path, k));
        if (v !== undefined) out[k] = v;
      }
      const resolved = out as ResolvedShape<S>;
      opts.check?.(resolved, path);
      return Object.freeze(resolved) as ResolvedShape<S>;
    },
  };
}

/**
 * An array of items, each by its spec (paths `to[0]`, `to[1]`), frozen.
 *
 * @example
 * ```ts
 * array(string({ nonEmpty: true }), { minLength: 1 }).resolve(['a'], 'tags'); // ['a']
 * ```
 */
export function array<T>(
  item: Spec<T>,
  opts: { minLength?: number; expected?: string; default?: readonly T[] } = {},
): Spec<readonly T[]> {
  const hasDefault = 'default' in opts;
  const min = opts.minLength ?? 0;
  const text =
    opts.expected ??
    (min > 1 ? `an array of at least ${min} items` : min === 1 ? 'a non-empty array' : 'an array');
  return {
    resolve(input, path) {
      if (input === undefined && hasDefault) return opts.default!;
      if (!Array.isArray(input) || input.length < min) throw new ConfigError(path, input, text);
      return Object.freeze(input.map((x, i) => item.resolve(x, optionPath(path, i))));
    },
  };
}

/**
 * An object used as a map: any key, each value by its spec (paths `headers["x.trace"]`), frozen.
 *
 * @example
 * ```ts
 * record(string()).resolve({ 'x-tenant': 'a' }, 'match.headers');
 * ```
 */
export function record<T>(
  value: Spec<T>,
  opts: { expected?: string; key?: Spec<string> } = {},
): Spec<Readonly<Record<string, T>>> {
  return {
    resolve(input, path) {
      if (!isPlainObject(input)) throw new ConfigError(path, input, opts.expected ?? 'an object');
      const out: Record<string, T> = {};
      for (const [k, v] of Object.entries(input)) {
        const p = optionPath(path, k);
        opts.key?.resolve(k, p);
        out[k] = value.resolve(v, p);
      }
      return Object.freeze(out);
    },
  };
}

/**
 * A feature that is on or off: `false` turns it off, `true` gives the defaults, an object is resolved by
 * `spec`, and an absent value is on (with the defaults) or off as `whenAbsent` says.
 *
 * @example
 * ```ts
 * const admission = toggle(object({ maxInFlight: number({ min: 1, integer: true, default: 1024 }) }), {
 *   whenAbsent: 'on',
 *   expected: 'an options object, true or false',
 * });
 * admission.resolve(false, 'admission'); // false
 * admission.defaults; // { maxInFlight: 1024 }
 * ```
 */
export function toggle<T>(
  spec: Spec<T>,
  opts: { whenAbsent: 'on' | 'off'; expected: string; path?: string },
): Spec<T | false> & { readonly defaults: T } {
  const defaults = spec.resolve({}, opts.path ?? '');
  return {
    defaults,
    resolve(input, path) {
      if (input === false) return false;
      if (input === true) return defaults;
      if (input === undefined) return opts.whenAbsent === 'on' ? defaults : false;
      if (!isPlainObject(input)) throw new ConfigError(path, input, opts.expected);
      return Object.keys(input).length === 0 ? defaults : spec.resolve(input, path);
    },
  };
}
