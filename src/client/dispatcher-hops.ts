/**
 * One deadline for every hop of a redirect chain that the caller follows itself, on `mesh.dispatcher`
 * (./dispatcher.ts). The built-in fetch follows redirects itself and dispatches each hop with the caller's
 * original `mesh-deadline-ms` (WHATWG Fetch, "HTTP-redirect fetch": the request's header list is kept), and
 * undici's Dispatcher API (`dispatch(options, handler)`) gives a dispatcher nothing that ties a hop to the
 * fetch it belongs to: each hop has fresh options and a fresh handler. So the dispatcher ties them by what it
 * sees itself: the redirect it answered, and the request that follows it to the URL its `Location` names.
 * `mesh.fetch` follows its own redirects and carries the deadline exactly (./fetch.ts).
 */
import type { Dispatcher } from 'undici';
import { DEADLINE_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import type { Clock } from '../core/clock.js';
import { utf8Location } from './fetch-parts.js';
import { ForwardingHandler } from './forwarding-handler.js';

type Handler = Dispatcher.DispatchHandler;

/** Statuses after which fetch (and undici's redirect interceptor) dispatches the next hop. */
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

/**
 * How long after a redirect has been answered its next hop is recognised (ms, on the mesh clock). fetch
 * dispatches it within the same turn of the event loop; past this, a request is a new one.
 */
const HOP_WINDOW_MS = 1_000;

/** At most this many redirects waiting for their next hop are remembered (the oldest are forgotten). */
const MAX_PENDING_HOPS = 1_024;

/** A redirect answered to a request that carried a deadline, waiting for its next hop. */
interface PendingHop {
  /** The `mesh-deadline-ms` value the first hop carried (fetch sends it unchanged on every hop). */
  readonly header: string;
  /** The deadline of the whole chain, anchored by its first hop, on the mesh clock. */
  readonly at: number;
  /** After this (mesh clock), the entry is forgotten. */
  readonly until: number;
}

/**
 * One deadline for every hop of a redirect chain the caller follows itself (the built-in fetch; undici's
 * redirect interceptor). A request with `mesh-deadline-ms` anchors the chain's deadline (now + budget).
 * When the dispatcher answers it with a redirect, it remembers the URL the `Location` names, with the
 * header's value and the anchored deadline; the next request to exactly that URL carrying the same header
 * value, within {@link HOP_WINDOW_MS} and before the deadline, is that redirect's next hop: its header is
 * rewritten to what remains, and it carries the anchor on. Each remembered redirect is used once.
 *
 * The limits: an unrelated request to the very URL a redirect has just named, carrying the same
 * `mesh-deadline-ms` value, in the instant between the redirect's answer and its next hop, takes the
 * remaining budget instead (it can only be shortened, never lengthened), and the redirect's own next hop then
 * starts a fresh budget; a next hop whose URL the dispatcher resolves differently from the caller (a
 * `Location` it cannot parse) starts a fresh budget, as it did before. `mesh.fetch` follows redirects
 * itself and carries its deadline exactly (./fetch.ts).
 */
export class HopDeadlines {
  private readonly pending = new Map<string, PendingHop[]>();
  private size = 0;

  /**
   * The deadline of the chain this request belongs to, its header rewritten to the remaining budget when it
   * is a redirect's next hop; undefined for a header that does not parse (the call rejects it).
   */
  carry(url: string, headers: Record<string, unknown>, header: string, now: number): number | undefined {
    if (this.size > 0) {
      const list = this.pending.get(url);
      if (list !== undefined) {
        for (let i = list.length - 1; i >= 0; i--) {
          const hop = list[i]!;
          if (hop.until < now) {
            list.splice(i, 1);
            this.size--;
          } else if (hop.header === header) {
            list.splice(i, 1);
            this.size--;
            if (list.length === 0) this.pending.delete(url);
            headers[DEADLINE_HEADER] = String(Math.max(0, Math.floor(hop.at - now)));
            return hop.at;
          }
        }
        if (list.length === 0) this.pending.delete(url);
      }
    }
    const ms = parseDeadlineHeader(header);
    return ms === undefined ? undefined : now + ms;
  }

  /** Remembers a redirect answered to a request of the chain whose deadline is `at`. */
  redirected(from: string, location: string | string[], header: string, at: number, now: number): void {
    let next: string;
    try {
      const u = new URL(utf8Location(location), from);
      next = u.origin + u.pathname + u.search;
    } catch {
      return; // fetch fails on it too, or follows it where we cannot tell
    }
    if (this.size >= MAX_PENDING_HOPS) {
      this.pending.clear();
      this.size = 0;
    }
    // Kept for the window even past the chain's deadline: a next hop that arrives late still belongs to the
    // chain (it fails at once with no time left) rather than starting a fresh budget.
    const hop: PendingHop = { header, at, until: now + HOP_WINDOW_MS };
    const list = this.pending.get(next);
    if (list === undefined) this.pending.set(next, [hop]);
    else list.push(hop);
    this.size++;
  }
}

/** What deliver needs to remember a redirect for the chain's next hop. */
export interface Chain {
  readonly hops: HopDeadlines;
  readonly url: string;
  readonly header: string;
  readonly at: number;
  readonly clock: Clock;
}

/**
 * Watches a pass-through answer for a redirect (the chain's next hop may come back to the dispatcher), and
 * otherwise hands every event to the handler it wraps.
 */
export class RedirectWatch extends ForwardingHandler {
  constructor(
    inner: Handler,
    private readonly chain: Chain,
  ) {
    super(inner);
  }
  override onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    remember(this.chain, statusCode, headers.location);
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }
}

export function remember(chain: Chain, status: number, location: string | string[] | undefined): void {
  if (location === undefined || !REDIRECT_STATUS.has(status)) return;
  chain.hops.redirected(chain.url, location, chain.header, chain.at, chain.clock.now());
}
