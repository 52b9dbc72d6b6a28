/**
 * The parts of a call's URL the entry points need, parsed once: `parseTarget`, and a bounded cache of parsed
 * URL strings for the entry points' hot path.
 */
import { InvalidRequestError } from '../core/errors.js';

/** What the entry points need of a URL. */
export interface Target {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly host: string;
  readonly origin: string;
  /** Path and query. */
  readonly path: string;
  /** The URL without its fragment. */
  readonly href: string;
}

/**
 * Parses an absolute http(s) URL (a string or a `URL`); anything else is an {@link InvalidRequestError} naming
 * `url`.
 *
 * @example
 * ```ts
 * parseTarget('http://users/v1/me?x=1#top'); // { hostname: 'users', path: '/v1/me?x=1', href: 'http://users/v1/me?x=1', ... }
 * ```
 */
export function parseTarget(url: unknown): Target {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : (url as URL);
  } catch {
    throw new InvalidRequestError('url', url, 'an absolute http(s) URL');
  }
  if (!(u instanceof URL)) throw new InvalidRequestError('url', url, 'an absolute http(s) URL');
  const protocol = u.protocol;
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new InvalidRequestError('url', String(url), 'an http: or https: URL');
  const href = u.hash === '' ? u.href : u.href.slice(0, -u.hash.length);
  return {
    protocol,
    hostname: u.hostname,
    host: u.host,
    origin: u.origin,
    path: u.pathname + u.search,
    href,
  };
}

/**
 * Parsed URL strings, so a service called with the same few URLs does not pay for WHATWG URL parsing on
 * every call. Bounded: when full, it starts over.
 *
 * @example
 * ```ts
 * const urls = new UrlCache(512);
 * urls.get('http://users/v1/me').hostname; // 'users'
 * ```
 */
export class UrlCache {
  private readonly map = new Map<string, Target>();
  constructor(private readonly max: number) {}
  get(url: string): Target {
    let t = this.map.get(url);
    if (t === undefined) {
      t = parseTarget(url);
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(url, t);
    }
    return t;
  }
}
