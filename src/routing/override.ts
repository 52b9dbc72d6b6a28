/**
 * Per-request routing overrides: Linkerd 1's per-request delegation (`l5d-dtab`), made small. A request may
 * carry a `mesh-dtab` header that says, for some services, where this request (and every call made while
 * serving it) should go instead of where the rules send it, e.g. "for users, use the instances whose meta says
 * owner=alice". The server helper takes it from a trusted caller into the incoming-request context
 * (AsyncLocalStorage), the router applies it to every outgoing call the handler makes and forwards it, so a
 * whole chain of services routes one developer's test traffic to their own instances (environment isolation).
 *
 * Grammar (whitespace is allowed around every token):
 *
 * ```
 * override    = [ entry *( ";" entry ) ]           ; a later entry for the same service wins
 * entry       = service "=>" alternative *( "|" alternative )
 * service     = a lower-case DNS name: the logical service (URL host), e.g. users or users.internal
 * alternative = "#" destination                      ; a destination named in the service's config
 *             | selector *( "," selector )           ; a subset of the service's own discovery
 * selector    = key "=" value                        ; instances whose meta has key=value
 *             | "tag:" value                         ; instances carrying the tag
 *             | "@" datacenter                       ; the service's Consul discovery in that datacenter
 * ```
 *
 * `users => owner=alice | #stable; billing => @dc2` sends users to alice's instances while they have healthy
 * endpoints (else to the configured destination `stable`) and billing to datacenter dc2. Alternatives behave as
 * a destination's fallbacks: the first available one is used. Names: destinations, keys and datacenters are
 * letters, digits, `_`, `-` (destinations and values also `.`; values also `:`, `/`, `+`). Limits: 1024
 * characters, 16 entries, 4 alternatives per entry, 8 selectors per alternative.
 *
 * Anything else is an {@link InvalidOverrideError} (400) for that call only: never a crash, never an effect on
 * another call. Parsing is syntax only; a destination name is checked when the router applies the override.
 */
import { InvalidOverrideError } from './errors.js';

/** The request header that carries an override (Linkerd 1's `l5d-dtab`, in the mesh's header namespace). */
export const OVERRIDE_HEADER = 'mesh-dtab';

/** Longest override accepted (characters). */
export const MAX_OVERRIDE_LENGTH = 1024;
const MAX_ENTRIES = 16;
const MAX_ALTERNATIVES = 4;
const MAX_SELECTORS = 8;

const SERVICE_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const DEST_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const KEY_RE = /^[A-Za-z0-9_-]{1,128}$/;
const VALUE_RE = /^[A-Za-z0-9_.:/+-]{1,256}$/;
const DC_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Where an override sends a service: a configured destination, or a subset of the service's own discovery
 * (by tags, meta and datacenter). `key` is the canonical text of the target (`#v2`, `tag:canary,owner=alice`).
 *
 * @example
 * ```ts
 * const t: OverrideTarget = { kind: 'subset', tags: [], meta: { owner: 'alice' }, datacenter: undefined, key: 'owner=alice' };
 * ```
 */
export type OverrideTarget =
  | { readonly kind: 'destination'; readonly name: string; readonly key: string }
  | {
      readonly kind: 'subset';
      readonly tags: readonly string[];
      readonly meta: Readonly<Record<string, string>>;
      readonly datacenter: string | undefined;
      readonly key: string;
    };

/**
 * One service's override: its alternatives in order.
 *
 * @example
 * ```ts
 * parseOverrides('users => #v2').get('users')?.targets[0]; // { kind: 'destination', name: 'v2', key: '#v2' }
 * ```
 */
export interface OverrideEntry {
  readonly service: string;
  readonly targets: readonly OverrideTarget[];
  /** Canonical text of the entry. */
  readonly text: string;
}

/**
 * A parsed override: at most one entry per service (the last one written wins, as in Linkerd's dtabs), in the
 * order of their last occurrence. Immutable; `text` is its canonical form, the one forwarded downstream.
 *
 * @example
 * ```ts
 * const o = parseOverrides('users => owner=alice; users => #v2');
 * o.text; // 'users => #v2'
 * ```
 */
export class RouteOverrides {
  /** The canonical text (what the mesh forwards in {@link OVERRIDE_HEADER}). */
  readonly text: string;
  private constructor(private readonly entries: ReadonlyMap<string, OverrideEntry>) {
    this.text = [...entries.values()].map((e) => e.text).join('; ');
  }

  /** An override with no entries. */
  static readonly empty = new RouteOverrides(new Map());

  /** @internal Builds from entries in order; a later entry for a service replaces an earlier one. */
  static of(entries: Iterable<OverrideEntry>): RouteOverrides {
    const m = new Map<string, OverrideEntry>();
    for (const e of entries) {
      m.delete(e.service);
      m.set(e.service, e);
    }
    return new RouteOverrides(m);
  }

  /** The entry for `service`, if any. */
  get(service: string): OverrideEntry | undefined {
    return this.entries.get(service);
  }

  /** Number of services overridden. */
  get size(): number {
    return this.entries.size;
  }

  /** The entries in order. */
  list(): OverrideEntry[] {
    return [...this.entries.values()];
  }

  /**
   * This override followed by `later` (whose entries win). Idempotent: `a.then(a.then(b))` equals `a.then(b)`,
   * so re-applying an inherited override on every retry does not grow the header.
   *
   * @example
   * ```ts
   * parseOverrides('users => #a').then(parseOverrides('users => #b')).text; // 'users => #b'
   * ```
   */
  then(later: RouteOverrides): RouteOverrides {
    if (later.entries.size === 0) return this;
    if (this.entries.size === 0) return later;
    return RouteOverrides.of([...this.entries.values(), ...later.entries.values()]);
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
}

/** Splits `s` on `sep`, keeping each piece's offset in the original text. */
function split(s: string, sep: string, base: number): Array<{ text: string; at: number }> {
  const out: Array<{ text: string; at: number }> = [];
  let start = 0;
  for (;;) {
    const i = s.indexOf(sep, start);
    const piece = i < 0 ? s.slice(start) : s.slice(start, i);
    out.push({ text: piece, at: base + start });
    if (i < 0) return out;
    start = i + sep.length;
  }
}

/** Trims a piece, moving its offset past the leading whitespace. */
function trim(p: { text: string; at: number }): { text: string; at: number } {
  const lead = p.text.length - p.text.trimStart().length;
  return { text: p.text.trim(), at: p.at + lead };
}

function parseAlternative(p: { text: string; at: number }): OverrideTarget {
  const alt = trim(p);
  if (alt.text === '') throw new InvalidOverrideError('an empty alternative', p.text, p.at);
  if (alt.text.startsWith('#')) {
    const name = alt.text.slice(1).trim();
    if (!DEST_RE.test(name)) {
      throw new InvalidOverrideError(
        'expected a destination name after "#" (letters, digits, "_", ".", "-")',
        alt.text,
        alt.at,
      );
    }
    return { kind: 'destination', name, key: `#${name}` };
  }
  const selectors = split(alt.text, ',', alt.at);
  if (selectors.length > MAX_SELECTORS) {
    throw new InvalidOverrideError(`more than ${MAX_SELECTORS} selectors`, alt.text, alt.at);
  }
  const tags = new Set<string>();
  const meta: Record<string, string> = {};
  let datacenter: string | undefined;
  for (const raw of selectors) {
    const sel = trim(raw);
    const t = sel.text;
    if (t.startsWith('@')) {
      const dc = t.slice(1).trim();
      if (!DC_RE.test(dc)) throw new InvalidOverrideError('expected a datacenter name after "@"', t, sel.at);
      if (datacenter !== undefined)
        throw new InvalidOverrideError('more than one datacenter in one alternative', t, sel.at);
      datacenter = dc;
    } else if (t.startsWith('tag:')) {
      const tag = t.slice(4).trim();
      if (!VALUE_RE.test(tag)) throw new InvalidOverrideError('expected a tag after "tag:"', t, sel.at);
      tags.add(tag);
    } else {
      const eq = t.indexOf('=');
      if (eq < 0) {
        throw new InvalidOverrideError(
          'expected "#destination", "key=value", "tag:value" or "@datacenter"',
          t,
          sel.at,
        );
      }
      const key = t.slice(0, eq).trim();
      const value = t.slice(eq + 1).trim();
      if (!KEY_RE.test(key)) throw new InvalidOverrideError('expected a meta key before "="', t, sel.at);
      if (!VALUE_RE.test(value)) throw new InvalidOverrideError('expected a meta value after "="', t, sel.at);
      if (Object.prototype.hasOwnProperty.call(meta, key))
        throw new InvalidOverrideError(`meta key "${key}" given twice`, t, sel.at);
      meta[key] = value;
    }
  }
  const sortedTags = [...tags].sort();
  const metaKeys = Object.keys(meta).sort();
  const sortedMeta: Record<string, string> = {};
  for (const k of metaKeys) sortedMeta[k] = meta[k]!;
  const key = [
    ...sortedTags.map((t) => `tag:${t}`),
    ...metaKeys.map((k) => `${k}=${meta[k]}`),
    ...(datacenter !== undefined ? [`@${datacenter}`] : []),
  ].join(',');
  return { kind: 'subset', tags: sortedTags, meta: Object.freeze(sortedMeta), datacenter, key };
}

function parseEntry(p: { text: string; at: number }): OverrideEntry {
  const e = trim(p);
  const arrow = e.text.indexOf('=>');
  if (arrow < 0) throw new InvalidOverrideError('expected "service => target"', e.text, e.at);
  const service = e.text.slice(0, arrow).trim();
  if (!SERVICE_RE.test(service)) {
    throw new InvalidOverrideError(
      'expected a service name (a lower-case host name) before "=>"',
      e.text.slice(0, arrow),
      e.at,
    );
  }
  const alts = split(e.text.slice(arrow + 2), '|', e.at + arrow + 2);
  if (alts.length > MAX_ALTERNATIVES) {
    throw new InvalidOverrideError(`more than ${MAX_ALTERNATIVES} alternatives`, e.text, e.at);
  }
  const targets = alts.map(parseAlternative);
  return Object.freeze({
    service,
    targets: Object.freeze(targets),
    text: `${service} => ${targets.map((t) => t.key).join(' | ')}`,
  });
}

/**
 * Parses an override (see the grammar in the file comment). Throws {@link InvalidOverrideError} naming the
 * offending part; never throws anything else, whatever the input.
 *
 * @example
 * ```ts
 * const o = parseOverrides('users => owner=alice | #stable; billing => @dc2');
 * o.get('users')?.targets.length; // 2
 * parseOverrides('users => ');     // throws InvalidOverrideError
 * ```
 */
export function parseOverrides(text: string): RouteOverrides {
  if (typeof text !== 'string') throw new InvalidOverrideError('expected a string', String(text), -1);
  if (text.length > MAX_OVERRIDE_LENGTH) {
    throw new InvalidOverrideError(`longer than ${MAX_OVERRIDE_LENGTH} characters`, text, 0);
  }
  const entries: OverrideEntry[] = [];
  for (const piece of split(text, ';', 0)) {
    if (piece.text.trim() === '') continue; // tolerate "a => #x;" and an empty header
    if (entries.length === MAX_ENTRIES)
      throw new InvalidOverrideError(`more than ${MAX_ENTRIES} entries`, piece.text, piece.at);
    entries.push(parseEntry(piece));
  }
  return entries.length === 0 ? RouteOverrides.empty : RouteOverrides.of(entries);
}

/** Recently parsed header values (most are the same few strings, forwarded hop after hop). */
const cache = new Map<string, RouteOverrides>();
const CACHE_SIZE = 256;

/**
 * Reads an override from a header value as it comes off the wire or from a header record (a repeated header
 * is joined with `;`), with a small cache. Returns `undefined` when there is no header. Throws
 * {@link InvalidOverrideError} when it is malformed.
 *
 * @example
 * ```ts
 * const o = readOverrideHeader(req.headers[OVERRIDE_HEADER]);
 * ```
 */
export function readOverrideHeader(
  value: string | readonly string[] | undefined,
): RouteOverrides | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === 'string' ? value : value.join(';');
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  const parsed = parseOverrides(text);
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  cache.set(text, parsed);
  return parsed;
}
