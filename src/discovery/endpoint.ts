/**
 * Parsing and validation of endpoint addresses given by users or discovery sources. A malformed address in
 * config is a {@link ConfigError} naming the option path; discovery sources skip and report instead.
 */
import { ConfigError } from '../core/errors.js';
import { custom, isPlainObject, number, object, optional, string } from '../core/validate.js';
import type { Endpoint } from './types.js';

/**
 * An endpoint as a user writes it: `'host:port'`, `'[::1]:port'`, or an object.
 *
 * @example
 * ```ts
 * const list: EndpointInput[] = ['127.0.0.1:8080', { host: '127.0.0.1', port: 8081, weight: 2 }];
 * ```
 */
export type EndpointInput =
  | string
  | {
      host: string;
      port: number;
      weight?: number;
      /** Failover tier: lower serves first (see {@link Endpoint.priority}). Default 0. */
      priority?: number;
      tags?: readonly string[];
      meta?: Readonly<Record<string, string>>;
    }
  | {
      address: string;
      weight?: number;
      /** Failover tier: lower serves first (see {@link Endpoint.priority}). Default 0. */
      priority?: number;
      tags?: readonly string[];
      meta?: Readonly<Record<string, string>>;
    };

const HOST_RE = /^[A-Za-z0-9._-]+$/;
const V6_RE = /^[0-9A-Fa-f:.]+$/;

/** Formats host and port as an endpoint id (`[v6]:port` for IPv6 literals). */
export function endpointId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for an integer port in 1..65535. */
export function isValidPort(port: unknown): port is number {
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535;
}

/** True for a hostname, IPv4 or bare IPv6 literal. */
export function isValidHost(host: unknown): host is string {
  if (typeof host !== 'string' || host.length === 0 || host.length > 253) return false;
  return HOST_RE.test(host) || (host.includes(':') && V6_RE.test(host));
}

/** Splits `host:port` / `[v6]:port`. Returns undefined when malformed. */
export function splitAddress(address: string): { host: string; port: number } | undefined {
  let host: string;
  let portText: string;
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close < 0 || address[close + 1] !== ':') return undefined;
    host = address.slice(1, close);
    portText = address.slice(close + 2);
  } else {
    const colon = address.lastIndexOf(':');
    if (colon <= 0 || address.indexOf(':') !== colon) return undefined;
    host = address.slice(0, colon);
    portText = address.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (!isValidPort(port) || !isValidHost(host)) return undefined;
  return { host, port };
}

const tagsSpec = custom(
  (v, path): readonly string[] => {
    if (!Array.isArray(v) || v.some((t) => typeof t !== 'string'))
      throw new ConfigError(path, v, 'an array of strings');
    return Object.freeze([...(v as string[])]);
  },
  { default: Object.freeze([]) },
);

const metaSpec = custom(
  (v, path): Readonly<Record<string, string>> => {
    if (!isPlainObject(v) || Object.values(v).some((x) => typeof x !== 'string'))
      throw new ConfigError(path, v, 'an object of string values');
    return Object.freeze({ ...(v as Record<string, string>) });
  },
  { default: Object.freeze({}) },
);

/** What both object forms of an endpoint carry besides where it is (`id`: an {@link Endpoint} given back). */
const endpointAttributes = {
  weight: number({ min: 0, exclusiveMin: true, default: 1 }),
  priority: optional(number({ min: 0, max: 65535, integer: true })),
  tags: tagsSpec,
  meta: metaSpec,
  id: optional(string()),
};

/** `{ address: 'host:port', ... }`, declared once. */
const byAddress = object({
  address: custom((v, path) => {
    const hp = typeof v === 'string' ? splitAddress(v) : undefined;
    if (!hp) throw new ConfigError(path, v, 'an address "host:port"');
    return hp;
  }),
  ...endpointAttributes,
});

/** `{ host, port, ... }`, declared once. */
const byHost = object({
  host: custom((v, path) => {
    if (!isValidHost(v)) throw new ConfigError(path, v, 'a hostname or IP address');
    return v;
  }),
  port: number({ min: 1, max: 65535, integer: true }),
  ...endpointAttributes,
});

/**
 * Validates one user-given endpoint; throws a {@link ConfigError} naming `path` on bad input.
 *
 * @example
 * ```ts
 * parseEndpoint('127.0.0.1:8080', 'services.users.endpoints[0]');
 * ```
 */
export function parseEndpoint(input: EndpointInput, path: string): Endpoint {
  let host: string;
  let port: number;
  let attrs: {
    weight: number;
    priority?: number;
    tags: readonly string[];
    meta: Readonly<Record<string, string>>;
  };
  if (typeof input === 'string') {
    const hp = splitAddress(input);
    if (!hp) throw new ConfigError(path, input, 'an address "host:port" with a port in 1..65535');
    ({ host, port } = hp);
    attrs = { weight: 1, tags: Object.freeze([]), meta: Object.freeze({}) };
  } else if (isPlainObject(input)) {
    if ('address' in input) {
      const r = byAddress.resolve(input, path);
      ({ host, port } = r.address);
      attrs = r;
    } else {
      const r = byHost.resolve(input, path);
      host = r.host;
      port = r.port;
      attrs = r;
    }
  } else {
    throw new ConfigError(path, input, 'an address string or an object { host, port }');
  }
  return {
    id: endpointId(host, port),
    host,
    port,
    weight: attrs.weight,
    ...(attrs.priority !== undefined && attrs.priority !== 0 ? { priority: attrs.priority } : {}),
    tags: attrs.tags,
    meta: attrs.meta,
  };
}

/** Two endpoints with the same id carry the same weight, priority, tags and meta. */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (a.id !== b.id || a.weight !== b.weight || a.tags.length !== b.tags.length) return false;
  if ((a.priority ?? 0) !== (b.priority ?? 0)) return false;
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false;
  const ak = Object.keys(a.meta);
  const bk = Object.keys(b.meta);
  if (ak.length !== bk.length) return false;
  for (const k of ak) if (a.meta[k] !== b.meta[k]) return false;
  return true;
}
