/**
 * Parsing and validation of endpoint addresses given by users or discovery sources. A malformed address in
 * config is a {@link ConfigError} naming the option path; discovery sources skip and report instead.
 */
import { ConfigError } from '../core/errors.js';
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
  let weight: unknown = 1;
  let priority: unknown = undefined;
  let tags: unknown = [];
  let meta: unknown = {};
  if (typeof input === 'string') {
    const hp = splitAddress(input);
    if (!hp) throw new ConfigError(path, input, 'an address "host:port" with a port in 1..65535');
    ({ host, port } = hp);
  } else if (input !== null && typeof input === 'object') {
    if ('address' in input) {
      const hp = typeof input.address === 'string' ? splitAddress(input.address) : undefined;
      if (!hp) throw new ConfigError(`${path}.address`, input.address, 'an address "host:port"');
      ({ host, port } = hp);
    } else {
      if (!isValidHost(input.host))
        throw new ConfigError(`${path}.host`, input.host, 'a hostname or IP address');
      if (!isValidPort(input.port))
        throw new ConfigError(`${path}.port`, input.port, 'an integer in 1..65535');
      host = input.host;
      port = input.port;
    }
    if (input.weight !== undefined) weight = input.weight;
    if (input.priority !== undefined) priority = input.priority;
    if (input.tags !== undefined) tags = input.tags;
    if (input.meta !== undefined) meta = input.meta;
  } else {
    throw new ConfigError(path, input, 'an address string or an object { host, port }');
  }
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new ConfigError(`${path}.weight`, weight, 'a finite number > 0');
  }
  if (
    priority !== undefined &&
    (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0 || priority > 65535)
  ) {
    throw new ConfigError(`${path}.priority`, priority, 'an integer in 0..65535');
  }
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) {
    throw new ConfigError(`${path}.tags`, tags, 'an array of strings');
  }
  if (meta === null || typeof meta !== 'object' || Object.values(meta).some((v) => typeof v !== 'string')) {
    throw new ConfigError(`${path}.meta`, meta, 'an object of string values');
  }
  return {
    id: endpointId(host, port),
    host,
    port,
    weight,
    ...(priority !== undefined && priority !== 0 ? { priority: priority as number } : {}),
    tags: Object.freeze([...(tags as string[])]),
    meta: Object.freeze({ ...(meta as Record<string, string>) }),
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
