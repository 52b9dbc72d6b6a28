/**
 * Routing configuration, written in code: the ordered rules of a logical service and the named concrete
 * destinations they send traffic to, with their validation. Everything is checked when the mesh is created
 * (or when rules are swapped at run time) with a {@link ConfigError} that names the exact option path, so a
 * typo in a rule fails at startup rather than misrouting traffic. The resolved form is immutable: a routing
 * table swap replaces it whole.
 */
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import type { MeshRequest } from '../core/message.js';
import type { EndpointInput } from '../discovery/endpoint.js';
import { StaticDiscovery } from '../discovery/static.js';
import type { Discovery, Endpoint } from '../discovery/types.js';
import type { SplitOption } from './hash.js';

/**
 * A subset of a discovery source's endpoints: those carrying every tag and every meta pair (Consul service tags
 * and meta, or the `tags`/`meta` of static endpoints).
 *
 * @example
 * ```ts
 * const v2: SubsetSelector = { meta: { version: 'v2' } };
 * ```
 */
export interface SubsetSelector {
  tags?: readonly string[];
  meta?: Readonly<Record<string, string>>;
}

/**
 * A named concrete destination: a discovery source (its own, or the service's) and optionally a subset of its
 * endpoints, a Consul datacenter, and fallbacks used while it has no healthy endpoints (or its breaker is open).
 *
 * @example
 * ```ts
 * const v1: DestinationConfig = { subset: { meta: { version: 'v1' } }, fallbacks: ['v1-dc2'] };
 * const v1dc2: DestinationConfig = { subset: { meta: { version: 'v1' } }, datacenter: 'dc2' };
 * ```
 */
export interface DestinationConfig {
  /** A static endpoint list for this destination. Give this, `discovery`, or neither (the service's). */
  endpoints?: readonly EndpointInput[];
  /** Where this destination's endpoints come from. Default: the service's `discovery` / `endpoints`. */
  discovery?: Discovery;
  /** Only the endpoints carrying these tags and meta. Default: all of them. */
  subset?: SubsetSelector;
  /** Read another Consul datacenter (the discovery must be a `consulDiscovery`). Default: its own. */
  datacenter?: string;
  /** Destinations to use, in order, while this one has no healthy endpoints or its breaker is open. */
  fallbacks?: readonly string[];
}

/**
 * One part of a weighted split.
 *
 * @example
 * ```ts
 * const split: WeightedDestination[] = [{ destination: 'v1', weight: 95 }, { destination: 'v2', weight: 5 }];
 * ```
 */
export interface WeightedDestination {
  destination: string;
  /** A share (>= 0; the split needs a positive total). Relative: 95/5 and 19/1 are the same split. */
  weight: number;
}

/**
 * What a rule matches. Every given condition must hold; an empty match matches everything.
 *
 * @example
 * ```ts
 * const beta: RouteMatch = { method: ['GET', 'HEAD'], pathPrefix: '/v1/', headers: { 'x-beta': 'true' } };
 * ```
 */
export interface RouteMatch {
  /** An HTTP method or a list of them. */
  method?: string | readonly string[];
  /** The path (without the query) starts with this. */
  pathPrefix?: string;
  /** The path (without the query) matches this RegExp (no `g` or `y` flag). */
  path?: RegExp;
  /** Header values (names case-insensitive): a string matches exactly, a RegExp is tested. */
  headers?: Readonly<Record<string, string | RegExp>>;
}

/**
 * How a split assigns a request when it should be sticky: a hash of a header's value, or of a key computed from
 * the request. The same key goes to the same destination in every process; a request without a key (header
 * absent, function returns undefined or throws) is assigned at random.
 *
 * @example
 * ```ts
 * const byUser: StickyKey = { header: 'x-user-id' };
 * const byCookie: StickyKey = { key: (req) => String(req.headers.cookie ?? '').match(/uid=(\w+)/)?.[1] };
 * ```
 */
export type StickyKey = { header: string } | { key: (req: MeshRequest) => string | undefined };

/**
 * One routing rule. Rules are tried in order; the first whose `match` holds routes the request.
 *
 * @example
 * ```ts
 * const rules: RouteRule[] = [
 *   { name: 'beta', match: { headers: { 'x-beta': 'true' } }, to: 'v2' },
 *   { name: 'canary', to: [{ destination: 'v1', weight: 95 }, { destination: 'v2', weight: 5 }], sticky: { header: 'x-user-id' } },
 * ];
 * ```
 */
export interface RouteRule {
  /** A name for snapshots and errors. Default `rule[<index>]`. */
  name?: string;
  /** When the rule applies. Default: always. */
  match?: RouteMatch;
  /** A destination name, or a weighted split. */
  to: string | readonly WeightedDestination[];
  /** Make the split sticky (hash a key instead of drawing at random). */
  sticky?: StickyKey;
}

/** A validated subset. `key` is its canonical text, e.g. `tag:canary,version=v2`. */
export interface ResolvedSubset {
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly key: string;
}

/** A validated destination. */
export interface ResolvedDestination {
  readonly name: string;
  /** The discovery source, already pointed at `datacenter` when one is given. */
  readonly discovery: Discovery;
  readonly subset: ResolvedSubset | undefined;
  readonly datacenter: string | undefined;
  readonly fallbacks: readonly string[];
}

/** A validated rule, ready to match. */
export interface CompiledRule {
  readonly name: string;
  readonly methods: ReadonlySet<string> | undefined;
  readonly pathPrefix: string | undefined;
  readonly path: RegExp | undefined;
  readonly headers: ReadonlyArray<readonly [string, string | RegExp]>;
  readonly split: readonly SplitOption[];
  readonly total: number;
  readonly sticky: ((req: MeshRequest) => string | undefined) | undefined;
  /** The rule as given (for `mesh.routes()`). */
  readonly source: RouteRule;
}

/** A service's validated routing. */
export interface ResolvedRouting {
  readonly destinations: ReadonlyMap<string, ResolvedDestination>;
  readonly rules: readonly CompiledRule[];
  /** The service-level discovery (subset overrides take subsets of it); undefined with destinations only. */
  readonly base: Discovery | undefined;
}

/** The name of the destination a service without routing sends everything to. */
export const PRIMARY = 'primary';

const DEST_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const DC_RE = /^[A-Za-z0-9_-]{1,64}$/;
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DEST_KEYS = new Set(['endpoints', 'discovery', 'subset', 'datacenter', 'fallbacks']);
const RULE_KEYS = new Set(['name', 'match', 'to', 'sticky']);
const MATCH_KEYS = new Set(['method', 'pathPrefix', 'path', 'headers']);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkKeys(obj: Record<string, unknown>, allowed: Set<string>, path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.has(k))
      throw new ConfigError(
        optionPath(path, k),
        obj[k],
        `no such option (known: ${[...allowed].join(', ')})`,
      );
  }
}

function isDiscovery(v: unknown): v is Discovery {
  return isObject(v) && typeof v.resolve === 'function';
}

/** Discoveries derived for a datacenter, kept so two destinations in one datacenter share one watch. */
const byDatacenter = new WeakMap<Discovery, Map<string, Discovery>>();

/**
 * The discovery `base` pointed at `datacenter` (it must offer `inDatacenter`, as `consulDiscovery` does). The
 * same object for the same pair, so destinations in one datacenter share one watch.
 *
 * @example
 * ```ts
 * const dc2 = discoveryInDatacenter(consul, 'dc2', 'services.users.destinations.v1.datacenter');
 * ```
 */
export function discoveryInDatacenter(base: Discovery, datacenter: string, path: string): Discovery {
  const derive = (base as { inDatacenter?: unknown }).inDatacenter;
  if (typeof derive !== 'function') {
    throw new ConfigError(
      path,
      datacenter,
      `a discovery that has datacenters (consulDiscovery), not '${base.kind}'`,
    );
  }
  let m = byDatacenter.get(base);
  if (!m) byDatacenter.set(base, (m = new Map()));
  let d = m.get(datacenter);
  if (!d) m.set(datacenter, (d = derive.call(base, datacenter) as Discovery));
  return d;
}

/**
 * Validates a subset selector.
 *
 * @example
 * ```ts
 * resolveSubset({ tags: ['canary'], meta: { version: 'v2' } }, 'subset').key; // 'tag:canary,version=v2'
 * ```
 */
export function resolveSubset(v: unknown, path: string): ResolvedSubset | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) throw new ConfigError(path, v, 'an object { tags?, meta? }');
  checkKeys(v, new Set(['tags', 'meta']), path);
  const tags: string[] = [];
  if (v.tags !== undefined) {
    if (!Array.isArray(v.tags)) throw new ConfigError(`${path}.tags`, v.tags, 'an array of tags');
    v.tags.forEach((t: unknown, i: number) => {
      if (typeof t !== 'string' || t.length === 0)
        throw new ConfigError(`${path}.tags[${i}]`, t, 'a non-empty string');
      if (!tags.includes(t)) tags.push(t);
    });
  }
  const meta: Record<string, string> = {};
  if (v.meta !== undefined) {
    if (!isObject(v.meta)) throw new ConfigError(`${path}.meta`, v.meta, 'an object of string values');
    for (const k of Object.keys(v.meta).sort()) {
      const x = v.meta[k];
      if (typeof x !== 'string') throw new ConfigError(optionPath(`${path}.meta`, k), x, 'a string');
      meta[k] = x;
    }
  }
  tags.sort();
  return subsetOf(tags, meta);
}

/** @internal Builds a {@link ResolvedSubset} from already-valid parts (sorted tags and meta keys). */
export function subsetOf(tags: readonly string[], meta: Readonly<Record<string, string>>): ResolvedSubset {
  const key = [...tags.map((t) => `tag:${t}`), ...Object.keys(meta).map((k) => `${k}=${meta[k]}`)].join(',');
  return Object.freeze({ tags: Object.freeze([...tags]), meta: Object.freeze({ ...meta }), key });
}

/**
 * True when `endpoint` carries every tag and meta pair of `subset`.
 *
 * @example
 * ```ts
 * inSubset(endpoint, { tags: [], meta: { version: 'v2' }, key: 'version=v2' });
 * ```
 */
export function inSubset(endpoint: Endpoint, subset: ResolvedSubset): boolean {
  for (const t of subset.tags) if (!endpoint.tags.includes(t)) return false;
  for (const k in subset.meta) if (endpoint.meta[k] !== subset.meta[k]) return false;
  return true;
}

/**
 * Validates the named destinations of a service. The service's own discovery (`base`), when it has one, is
 * also the destination `primary` unless one is configured under that name.
 *
 * @example
 * ```ts
 * resolveDestinations({ v2: { subset: { meta: { version: 'v2' } } } }, consul, 'services.users.destinations');
 * ```
 */
export function resolveDestinations(
  raw: unknown,
  base: Discovery | undefined,
  path: string,
): Map<string, ResolvedDestination> {
  const out = new Map<string, ResolvedDestination>();
  if (raw !== undefined && !isObject(raw))
    throw new ConfigError(path, raw, 'an object of destinations by name');
  const entries = Object.entries((raw ?? {}) as Record<string, unknown>);
  if (base !== undefined && !entries.some(([n]) => n === PRIMARY)) {
    out.set(PRIMARY, {
      name: PRIMARY,
      discovery: base,
      subset: undefined,
      datacenter: undefined,
      fallbacks: [],
    });
  }
  const fallbackPaths: Array<[string, unknown]> = [];
  for (const [name, dc] of entries) {
    const p = optionPath(path, name);
    if (!DEST_RE.test(name))
      throw new ConfigError(p, name, 'a destination name (letters, digits, "_", ".", "-"; at most 63)');
    if (!isObject(dc))
      throw new ConfigError(p, dc, 'an object { endpoints?, discovery?, subset?, datacenter?, fallbacks? }');
    checkKeys(dc, DEST_KEYS, p);
    let discovery: Discovery;
    if (dc.endpoints !== undefined && dc.discovery !== undefined) {
      throw new ConfigError(
        `${p}.discovery`,
        'both endpoints and discovery',
        'only one of endpoints or discovery',
      );
    } else if (dc.endpoints !== undefined) {
      discovery = new StaticDiscovery(dc.endpoints as readonly EndpointInput[], `${p}.endpoints`);
    } else if (dc.discovery !== undefined) {
      if (!isDiscovery(dc.discovery))
        throw new ConfigError(`${p}.discovery`, dc.discovery, 'a Discovery (e.g. consulDiscovery({...}))');
      discovery = dc.discovery;
    } else if (base !== undefined) {
      discovery = base;
    } else {
      throw new ConfigError(
        `${p}.discovery`,
        undefined,
        'a discovery source or endpoints (the service has no discovery of its own to share)',
      );
    }
    let datacenter: string | undefined;
    if (dc.datacenter !== undefined) {
      if (typeof dc.datacenter !== 'string' || !DC_RE.test(dc.datacenter))
        throw new ConfigError(
          `${p}.datacenter`,
          dc.datacenter,
          'a datacenter name (letters, digits, "_", "-")',
        );
      datacenter = dc.datacenter;
      discovery = discoveryInDatacenter(discovery, datacenter, `${p}.datacenter`);
    }
    const subset = resolveSubset(dc.subset, `${p}.subset`);
    fallbackPaths.push([name, dc.fallbacks]);
    out.set(name, { name, discovery, subset, datacenter, fallbacks: [] });
  }
  for (const [name, fb] of fallbackPaths) {
    if (fb === undefined) continue;
    const p = `${optionPath(path, name)}.fallbacks`;
    if (!Array.isArray(fb)) throw new ConfigError(p, fb, 'an array of destination names');
    const list: string[] = [];
    fb.forEach((f: unknown, i: number) => {
      if (typeof f !== 'string' || !out.has(f))
        throw new ConfigError(
          `${p}[${i}]`,
          f,
          `a destination of this service (${[...out.keys()].join(', ')})`,
        );
      if (f === name) throw new ConfigError(`${p}[${i}]`, f, 'another destination than itself');
      if (list.includes(f)) throw new ConfigError(`${p}[${i}]`, f, 'each fallback once');
      list.push(f);
    });
    out.set(name, { ...out.get(name)!, fallbacks: Object.freeze(list) });
  }
  return out;
}

function resolveMatch(
  v: unknown,
  path: string,
): Pick<CompiledRule, 'methods' | 'pathPrefix' | 'path' | 'headers'> {
  if (v === undefined) return { methods: undefined, pathPrefix: undefined, path: undefined, headers: [] };
  if (!isObject(v)) throw new ConfigError(path, v, 'an object { method?, pathPrefix?, path?, headers? }');
  checkKeys(v, MATCH_KEYS, path);
  let methods: Set<string> | undefined;
  if (v.method !== undefined) {
    const list = typeof v.method === 'string' ? [v.method] : v.method;
    if (!Array.isArray(list) || list.length === 0)
      throw new ConfigError(`${path}.method`, v.method, 'an HTTP method or a non-empty list of them');
    methods = new Set();
    list.forEach((m: unknown, i: number) => {
      if (typeof m !== 'string' || !TOKEN_RE.test(m))
        throw new ConfigError(
          Array.isArray(v.method) ? `${path}.method[${i}]` : `${path}.method`,
          m,
          'an HTTP method',
        );
      methods!.add(normalizeMethod(m));
    });
  }
  let pathPrefix: string | undefined;
  if (v.pathPrefix !== undefined) {
    if (typeof v.pathPrefix !== 'string' || !v.pathPrefix.startsWith('/'))
      throw new ConfigError(`${path}.pathPrefix`, v.pathPrefix, 'a string starting with "/"');
    pathPrefix = v.pathPrefix;
  }
  let re: RegExp | undefined;
  if (v.path !== undefined) {
    if (!(v.path instanceof RegExp)) throw new ConfigError(`${path}.path`, v.path, 'a RegExp');
    if (v.path.global || v.path.sticky)
      throw new ConfigError(
        `${path}.path`,
        String(v.path),
        'a RegExp without the g or y flag (they keep state)',
      );
    re = v.path;
  }
  const headers: Array<readonly [string, string | RegExp]> = [];
  if (v.headers !== undefined) {
    if (!isObject(v.headers))
      throw new ConfigError(`${path}.headers`, v.headers, 'an object of header values (string or RegExp)');
    for (const [name, value] of Object.entries(v.headers)) {
      const hp = optionPath(`${path}.headers`, name);
      if (!TOKEN_RE.test(name)) throw new ConfigError(hp, name, 'a header name');
      if (value instanceof RegExp) {
        if (value.global || value.sticky)
          throw new ConfigError(hp, String(value), 'a RegExp without the g or y flag (they keep state)');
      } else if (typeof value !== 'string') {
        throw new ConfigError(hp, value, 'a string (exact match) or a RegExp');
      }
      headers.push([name.toLowerCase(), value]);
    }
  }
  return { methods, pathPrefix, path: re, headers };
}

/** Upper-cases the standard methods (as the entry points do) and keeps others as given. */
function normalizeMethod(m: string): string {
  const up = m.toUpperCase();
  return ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'].includes(up) ? up : m;
}

function resolveSticky(v: unknown, path: string): CompiledRule['sticky'] {
  if (v === undefined) return undefined;
  if (!isObject(v) || Object.keys(v).length !== 1)
    throw new ConfigError(path, v, 'either { header: name } or { key: (req) => string }');
  if ('header' in v) {
    const h = v.header;
    if (typeof h !== 'string' || !TOKEN_RE.test(h))
      throw new ConfigError(`${path}.header`, h, 'a header name');
    const name = h.toLowerCase();
    return (req) => {
      const x = req.headers[name];
      return Array.isArray(x) ? x[0] : x;
    };
  }
  if ('key' in v) {
    if (typeof v.key !== 'function')
      throw new ConfigError(`${path}.key`, v.key, 'a function (req) => string');
    return v.key as (req: MeshRequest) => string | undefined;
  }
  throw new ConfigError(path, v, 'either { header: name } or { key: (req) => string }');
}

/**
 * Validates and compiles a service's rules against its destinations. With no rules, everything goes to
 * `primary` (which must exist).
 *
 * @example
 * ```ts
 * const rules = resolveRoutes([{ to: 'v1' }], destinations, 'services.users.routes');
 * ```
 */
export function resolveRoutes(
  raw: unknown,
  destinations: ReadonlyMap<string, ResolvedDestination>,
  path: string,
): CompiledRule[] {
  const known = (): string => [...destinations.keys()].join(', ') || 'none';
  if (raw === undefined) {
    if (!destinations.has(PRIMARY)) {
      throw new ConfigError(
        path,
        undefined,
        `routing rules (there is no destination "${PRIMARY}" to send every request to; destinations: ${known()})`,
      );
    }
    raw = [{ name: 'default', to: PRIMARY }];
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(path, raw, 'a non-empty array of rules');
  const names = new Set<string>();
  return raw.map((r: unknown, i: number): CompiledRule => {
    const p = `${path}[${i}]`;
    if (!isObject(r)) throw new ConfigError(p, r, 'a rule { match?, to, sticky?, name? }');
    checkKeys(r, RULE_KEYS, p);
    let name = `rule[${i}]`;
    if (r.name !== undefined) {
      if (typeof r.name !== 'string' || r.name.length === 0 || r.name.length > 100)
        throw new ConfigError(`${p}.name`, r.name, 'a non-empty string of at most 100 characters');
      name = r.name;
    }
    if (names.has(name)) throw new ConfigError(`${p}.name`, name, 'a rule name not already used');
    names.add(name);
    const match = resolveMatch(r.match, `${p}.match`);
    let split: SplitOption[];
    if (typeof r.to === 'string') {
      if (!destinations.has(r.to))
        throw new ConfigError(`${p}.to`, r.to, `a destination of this service (${known()})`);
      split = [{ name: r.to, weight: 1 }];
    } else if (Array.isArray(r.to) && r.to.length > 0) {
      split = r.to.map((w: unknown, j: number) => {
        const wp = `${p}.to[${j}]`;
        if (!isObject(w)) throw new ConfigError(wp, w, 'an object { destination, weight }');
        checkKeys(w, new Set(['destination', 'weight']), wp);
        if (typeof w.destination !== 'string' || !destinations.has(w.destination))
          throw new ConfigError(
            `${wp}.destination`,
            w.destination,
            `a destination of this service (${known()})`,
          );
        if (typeof w.weight !== 'number' || !Number.isFinite(w.weight) || w.weight < 0)
          throw new ConfigError(`${wp}.weight`, w.weight, 'a finite number >= 0');
        return { name: w.destination, weight: w.weight };
      });
      const seen = new Set<string>();
      split.forEach((s, j) => {
        if (seen.has(s.name))
          throw new ConfigError(`${p}.to[${j}].destination`, s.name, 'each destination once per split');
        seen.add(s.name);
      });
    } else {
      throw new ConfigError(
        `${p}.to`,
        r.to,
        'a destination name or a non-empty array of { destination, weight }',
      );
    }
    const total = split.reduce((a, s) => a + s.weight, 0);
    if (!(total > 0)) throw new ConfigError(`${p}.to`, r.to, 'weights with a positive total');
    const sticky = resolveSticky(r.sticky, `${p}.sticky`);
    return Object.freeze({
      name,
      ...match,
      split: Object.freeze(split),
      total,
      sticky,
      source: r as unknown as RouteRule,
    });
  });
}

/**
 * Validates a service's routing: its destinations (the service's own discovery is `primary`) and its rules.
 *
 * @example
 * ```ts
 * resolveRouting({ routes: [{ to: 'primary' }] }, consul, 'services.users');
 * ```
 */
export function resolveRouting(
  input: { routes?: unknown; destinations?: unknown },
  base: Discovery | undefined,
  path: string,
): ResolvedRouting {
  const destinations = resolveDestinations(input.destinations, base, `${path}.destinations`);
  const rules = resolveRoutes(input.routes, destinations, `${path}.routes`);
  return { destinations, rules, base };
}
