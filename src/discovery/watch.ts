/**
 * What every discovery loop shares, whatever it asks (Consul's health endpoint, a DNS server): the current
 * {@link Addr} and its subscribers, the time of the last good answer and the errors since, the background
 * sleep between queries, and the rules that turn an answer or a failure into the next state:
 *
 * - an answer binds the set, publishing only a change (with `changes`, the diff from the previous bound set,
 *   so the mesh applies it in O(change)); after pending, negative or failed there is no diff: a full set;
 * - a known absence is `negative`, published once per reason;
 * - a failure keeps a bound set and marks it `stale` (an outage never empties it: linkerd/linkerd#665,
 *   #2145), with `updatedAt` the time of the last good answer so its age shows; before any answer the state
 *   is `failed` with the error (the mesh wraps it in a `DiscoveryError` naming the service); a negative
 *   state is kept (a known absence is still the best information).
 *
 * The loops themselves (consul/resolver.ts, dns/resolver.ts) keep what is theirs: how to ask, how to read an
 * answer, their own counters and snapshot. A loop holds one `DiscoveryWatch` rather than extending it, so its
 * public surface stays its own.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { publishDiscoveryError } from '../telemetry/events.js';
import { NO_CHANGES, reconcileEndpoints, type Reconciled } from './reconcile.js';
import type { Addr, DiscoveryContext, Endpoint, Subscription } from './types.js';

const PENDING: Addr = Object.freeze({ state: 'pending' });

/** A failure of one query, as the loop classified it. */
export interface WatchFailure {
  /** The error kept as `lastError` and, before any answer, in the `failed` state (safe to show). */
  readonly error: Error;
  /** Its kind, for the discovery error event (`DnsQueryError.kind`, `ConsulRequestError.kind`). */
  readonly kind: string;
  /** Extra fields for the log line (status, code). */
  readonly fields?: Record<string, unknown>;
}

/**
 * The state of one discovery loop and the rules that move it (see the file comment).
 *
 * @example
 * ```ts
 * const watch = new DiscoveryWatch(ctx, 'dns', { service: ctx.service, name }, () => stats.updates++);
 * watch.answered();
 * watch.bind(endpoints, watch.lastSuccessAt!);
 * ```
 */
export class DiscoveryWatch {
  #addr: Addr = PENDING;
  readonly #listeners = new Set<(addr: Addr) => void>();
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #service: string;
  #consecutiveErrors = 0;
  #lastError: Error | undefined;
  #lastSuccessAt: number | undefined;
  #skippedKey = '';
  #closed = false;
  #timer: TimerHandle | undefined;
  #wake: (() => void) | undefined;

  constructor(
    ctx: DiscoveryContext,
    /** The loop's name in logs and events: 'consul', 'dns'. */
    private readonly kind: string,
    /** The fields every log line of this loop carries. */
    readonly fields: Readonly<Record<string, unknown>>,
    /** Called on every published change (the loop's `updates` counter). */
    private readonly onPublish: () => void,
  ) {
    this.#clock = ctx.clock;
    this.#log = ctx.logger;
    this.#service = ctx.service;
  }

  get addr(): Addr {
    return this.#addr;
  }
  get closed(): boolean {
    return this.#closed;
  }
  get consecutiveErrors(): number {
    return this.#consecutiveErrors;
  }
  /** The last failure's error, or undefined after a good answer. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }
  /** Mesh-clock ms of the last good answer. */
  get lastSuccessAt(): number | undefined {
    return this.#lastSuccessAt;
  }

  /** How long ago the source last confirmed the current set (ms; undefined unless bound). */
  get ageMs(): number | undefined {
    if (this.#addr.state !== 'bound') return undefined;
    return this.#clock.now() - (this.#lastSuccessAt ?? this.#addr.updatedAt);
  }

  subscribe(listener: (addr: Addr) => void): Subscription {
    this.#listeners.add(listener);
    return { unsubscribe: () => void this.#listeners.delete(listener) };
  }

  /**
   * A background wait between queries: unref'd by the clock, so discovery never keeps a process alive; it
   * ends at once on {@link close}.
   */
  sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.#wake = undefined;
        resolve();
      }, ms);
    });
  }

  /** Marks the loop closed and ends its sleep. The loop's own close then waits for the loop. */
  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wake?.();
    this.#wake = undefined;
  }

  /** Drops the subscribers (after the loop has ended). */
  clearListeners(): void {
    this.#listeners.clear();
  }

  /** A good answer arrived: the errors are over. Returns the answer's time. */
  answered(): number {
    const now = this.#clock.now();
    this.#lastSuccessAt = now;
    this.#consecutiveErrors = 0;
    this.#lastError = undefined;
    return now;
  }

  /**
   * Binds the set to `list` when it differs from the current one (or the current one is stale or not bound);
   * returns the reconciliation when something was published, undefined otherwise. `unchanged` lets a loop
   * that already knows nothing changed skip the diff.
   */
  bind(list: readonly Endpoint[], at: number, unchanged = false): Reconciled | undefined {
    const a = this.#addr;
    if (a.state === 'bound' && !a.stale && unchanged) return undefined;
    const r = reconcileEndpoints(a.state === 'bound' ? a.endpoints : [], list);
    if (a.state === 'bound' && !a.stale && !r.changed) return undefined;
    if (a.state === 'bound' && a.stale)
      this.#log.info(
        { ...this.fields, endpoints: r.endpoints.length },
        `${this.kind} answers again; endpoint set is fresh`,
      );
    if (r.changed || a.state !== 'bound')
      this.#log.debug(
        {
          ...this.fields,
          endpoints: r.endpoints.length,
          added: r.added,
          removed: r.removed,
          updated: r.updated,
        },
        `${this.kind} endpoint set changed`,
      );
    // The diff is relative to the previous bound Addr (stale or not); after pending, negative or failed: none.
    const changes = a.state === 'bound' ? r.changes : undefined;
    this.#set({ state: 'bound', endpoints: r.endpoints, stale: false, updatedAt: at, changes });
    return r;
  }

  /** The source says the name does not exist: `negative` with `reason`, published once per reason. */
  absent(reason: string, logMessage: string): void {
    const a = this.#addr;
    if (a.state === 'negative' && a.reason === reason) return;
    this.#log.info({ ...this.fields }, logMessage);
    this.#set({ state: 'negative', reason });
  }

  /** A query failed: counted, published as an event, logged (warn on the first and every 20th), and the state moved. */
  failed(f: WatchFailure, logMessage: string): void {
    const e = f.error;
    this.#consecutiveErrors++;
    this.#lastError = e;
    publishDiscoveryError({
      service: this.#service,
      kind: this.kind,
      errorKind: f.kind,
      message: e.message,
      consecutiveErrors: this.#consecutiveErrors,
      stale: this.#addr.state === 'bound',
      at: this.#clock.now(),
    });
    const fields = {
      ...this.fields,
      kind: f.kind,
      ...f.fields,
      attempt: this.#consecutiveErrors,
      error: e.message,
    };
    if (this.#consecutiveErrors === 1 || this.#consecutiveErrors % 20 === 0)
      this.#log.warn(fields, logMessage);
    else this.#log.debug(fields, logMessage);
    const a = this.#addr;
    if (a.state === 'bound') {
      // Same set as the previous bound Addr: nothing changed; updatedAt is the last good answer's time.
      if (!a.stale)
        this.#set({ ...a, stale: true, updatedAt: this.#lastSuccessAt ?? a.updatedAt, changes: NO_CHANGES });
    } else if (a.state === 'pending' || a.state === 'failed') {
      if (a.state === 'failed' && a.error.message === e.message) return;
      this.#set({ state: 'failed', error: e });
    }
  }

  /**
   * Entries of the last answer that gave no endpoint, as the loop describes them: logged when the list
   * changes (by `key`), returned frozen. Returns undefined when the list is the same as last time.
   */
  skipped<T extends object>(list: T[], key: string, logMessage: string): readonly T[] | undefined {
    if (key === this.#skippedKey) return undefined;
    this.#skippedKey = key;
    const frozen = Object.freeze(list.map((s) => Object.freeze(s)));
    if (list.length > 0) this.#log.warn({ ...this.fields, skipped: list }, logMessage);
    return frozen;
  }

  #set(addr: Addr): void {
    this.#addr = addr;
    this.onPublish();
    for (const l of [...this.#listeners]) {
      try {
        l(addr);
      } catch (err) {
        this.#log.error({ ...this.fields, error: String(err) }, 'a discovery listener threw');
      }
    }
  }
}
