/**
 * Routing configuration, written in code: the ordered rules of a logical service and the named concrete
 * destinations they send traffic to, with their validation. Everything is checked when the mesh is created
 * (or when rules are swapped at run time) with a {@link ConfigError} that names the exact option path, so a
 * typo in a rule fails at startup rather than misrouting traffic. The resolved form is immutable: a routing
 * table swap replaces it whole.
 */
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { custom, func, isPlainObject, number, object, optional, record, string } from '../core/validate.js';
import type { MeshRequest } from '../core/message.js';
import type { EndpointInput } from '../discovery/endpoint.js';
import { StaticDiscovery } from '../discovery/static.js';
import type { Discovery } from '../discovery/types.js';
import type { SplitOption } from './hash.js';
import { subsetSelector, type ResolvedSubset, type SubsetSelector } from '../concrete/subset.js';

export { inSubset, resolveSubset, type ResolvedSubset, type SubsetSelector } from '../concrete/subset.js';
/** @internal */
export { subsetOf } from '../concrete/subset.js';

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

function isDiscovery(v: unknown): v is Discovery {
  return isPlainObject(v) && typeof v.resolve === 'function';
}

/** A RegExp that keeps no state between tests (no `g` or `y` flag). */
function statelessRegExp(v: RegExp, path: string): RegExp {
  if (v.global || v.sticky)
    throw new ConfigError(path, String(v), 'a RegExp without the g or y flag (they keep state)');
  return v;
}

const destinationName = string({
  pattern: DEST_RE,
  expected: 'a destination name (letters, digits, "_", ".", "-"; at most 63)',
});

/** A destination as given; what it reads and its fallbacks are checked against the service afterwards. */
const destinationShape = object(
  {
    endpoints: optional(custom((v) => v as readonly EndpointInput[])),
    discovery: optional(
      custom((v, path) => {
        if (!isDiscovery(v)) throw new ConfigError(path, v, 'a Discovery (e.g. consulDiscovery({...}))');
        return v;
      }),
    ),
    subset: optional(subsetSelector),
    datacenter: optional(
      string({ pattern: DC_RE, expected: 'a datacenter name (letters, digits, "_", "-")' }),
    ),
    fallbacks: optional(custom((v) => v)),
  },
  {
    required: true,
    expected: 'an object { endpoints?, discovery?, subset?, datacenter?, fallbacks? }',
    check(d, path) {
      if (d.endpoints !== undefined && d.discovery !== undefined)
        throw new ConfigError(
          optionPath(path, 'discovery'),
          'both endpoints and discovery',
          'only one of endpoints or discovery',
        );
    },
  },
);

const methodName = string({ token: true, expected: 'an HTTP method' });

/** What a rule matches, declared once. */
const routeMatch = object(
  {
    method: optional(
      custom((v, path): ReadonlySet<string> => {
        if (typeof v === 'string') return new Set([normalizeMethod(methodName.resolve(v, path))]);
        if (!Array.isArray(v) || v.length === 0)
          throw new ConfigError(path, v, 'an HTTP method or a non-empty list of them');
        return new Set(v.map((m: unknown, i) => normalizeMethod(methodName.resolve(m, optionPath(path, i)))));
      }),
    ),
    pathPrefix: optional(string({ pattern: /^\//, expected: 'a string starting with "/"' })),
    path: optional(
      custom((v, path) => {
        if (!(v instanceof RegExp)) throw new ConfigError(path, v, 'a RegExp');
        return statelessRegExp(v, path);
      }),
    ),
    headers: optional(
      record(
        custom((v, path): string | RegExp => {
          if (v instanceof RegExp) return statelessRegExp(v, path);
          if (typeof v !== 'string') throw new ConfigError(path, v, 'a string (exact match) or a RegExp');
          return v;
        }),
        {
          key: string({ token: true, expected: 'a header name' }),
          expected: 'an object of header values (string or RegExp)',
        },
      ),
    ),
  },
  { expected: 'an object { method?, pathPrefix?, path?, headers? }' },
);

const stickyHeader = string({ token: true, expected: 'a header name' });
const stickyFunction = func<(req: MeshRequest) => string | undefined>({
  expected: 'a function (req) => string',
});

/** How a split is made sticky: `{ header }` or `{ key }`, exactly one. */
const stickyKey = optional(
  custom((v, path): ((req: MeshRequest) => string | undefined) => {
    const expected = 'either { header: name } or { key: (req) => string }';
    if (!isPlainObject(v) || Object.keys(v).length !== 1) throw new ConfigError(path, v, expected);
    if ('header' in v) {
      const name = stickyHeader.resolve(v.header, optionPath(path, 'header')).toLowerCase();
      return (req) => {
        const x = req.headers[name];
        return Array.isArray(x) ? x[0] : x;
      };
    }
    if ('key' in v) return stickyFunction.resolve(v.key, optionPath(path, 'key'));
    throw new ConfigError(path, v, expected);
  }),
);

const ruleName = optional(
  string({ pattern: /^[\s\S]{1,100}$/, expected: 'a non-empty string of at most 100 characters' }),
);

/** A rule, declared once; `to` is checked against the service's destinations (`known`). */
function routeRule(destinations: ReadonlyMap<string, ResolvedDestination>, known: () => string) {
  const destination = custom((v, path): string => {
    if (typeof v !== 'string' || !destinations.has(v))
      throw new ConfigError(path, v, `a destination of this service (${known()})`);
    return v;
  });
  const weighted = object(
    { destination, weight: number({ min: 0 }) },
    { required: true, expected: 'an object { destination, weight }' },
  );
  return object(
    {
      name: ruleName,
      match: routeMatch,
      to: custom((v, path): SplitOption[] => {
        if (typeof v === 'string') return [{ name: destination.resolve(v, path), weight: 1 }];
        if (!Array.isArray(v) || v.length === 0)
          throw new ConfigError(
            path,
            v,
            'a destination name or a non-empty array of { destination, weight }',
          );
        const split = v.map((w: unknown, j) => {
          const r = weighted.resolve(w, optionPath(path, j));
          return { name: r.destination, weight: r.weight };
        });
        const seen = new Set<string>();
        split.forEach((s, j) => {
          if (seen.has(s.name))
            throw new ConfigError(
              optionPath(optionPath(path, j), 'destination'),
              s.name,
              'each destination once per split',
            );
          seen.add(s.name);
        });
        return split;
      }),
      sticky: stickyKey,
    },
    { required: true, expected: 'a rule { match?, to, sticky?, name? }' },
  );
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
  if (raw !== undefined && !isPlainObject(raw))
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
  for (const [name, raw] of entries) {
    const p = optionPath(path, name);
    destinationName.resolve(name, p);
    const dc = destinationShape.resolve(raw, p);
    let discovery: Discovery;
    if (dc.endpoints !== undefined) {
      discovery = new StaticDiscovery(dc.endpoints, optionPath(p, 'endpoints'));
    } else if (dc.discovery !== undefined) {
      discovery = dc.discovery;
    } else if (base !== undefined) {
      discovery = base;
    } else {
      throw new ConfigError(
        optionPath(p, 'discovery'),
        undefined,
        'a discovery source or endpoints (the service has no discovery of its own to share)',
      );
    }
    if (dc.datacenter !== undefined)
      discovery = discoveryInDatacenter(discovery, dc.datacenter, optionPath(p, 'datacenter'));
    fallbackPaths.push([name, dc.fallbacks]);
    out.set(name, { name, discovery, subset: dc.subset, datacenter: dc.datacenter, fallbacks: [] });
  }
  for (const [name, fb] of fallbackPaths) {
    if (fb === undefined) continue;
    const p = optionPath(optionPath(path, name), 'fallbacks');
    if (!Array.isArray(fb)) throw new ConfigError(p, fb, 'an array of destination names');
    const list: string[] = [];
    fb.forEach((f: unknown, i: number) => {
      if (typeof f !== 'string' || !out.has(f))
        throw new ConfigError(
          optionPath(p, i),
          f,
          `a destination of this service (${[...out.keys()].join(', ')})`,
        );
      if (f === name) throw new ConfigError(optionPath(p, i), f, 'another destination than itself');
      if (list.includes(f)) throw new ConfigError(optionPath(p, i), f, 'each fallback once');
      list.push(f);
    });
    out.set(name, { ...out.get(name)!, fallbacks: Object.freeze(list) });
  }
  return out;
}

/** Upper-cases the standard methods (as the entry points do) and keeps others as given. */
function normalizeMethod(m: string): string {
  const up = m.toUpperCase();
  return ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'].includes(up) ? up : m;
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
  const rule = routeRule(destinations, known);
  const names = new Set<string>();
  return raw.map((r: unknown, i: number): CompiledRule => {
    const p = optionPath(path, i);
    const v = rule.resolve(r, p);
    const name = v.name ?? `rule[${i}]`;
    if (names.has(name)) throw new ConfigError(optionPath(p, 'name'), name, 'a rule name not already used');
    names.add(name);
    const split = v.to;
    const total = split.reduce((a, s) => a + s.weight, 0);
    if (!(total > 0))
      throw new ConfigError(optionPath(p, 'to'), (r as RouteRule).to, 'weights with a positive total');
    return Object.freeze({
      name,
      methods: v.match.method,
      pathPrefix: v.match.pathPrefix,
      path: v.match.path,
      headers: Object.entries(v.match.headers ?? {}).map(([h, x]) => [h.toLowerCase(), x] as const),
      split: Object.freeze(split),
      total,
      sticky: v.sticky,
      source: r as RouteRule,
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
