/**
 * One timer for many per-call deadlines. A `setTimeout` per call, cleared when the call ends, was the
 * deadline module's main cost (bench/overhead, `mesh-request-without:deadline`): Node allocates a Timeout, files it in a list per duration (created and
 * dropped again when a lone call ends), and an unref'ed timer flips the loop's ref count through two native
 * calls. Nearly every deadline is cancelled long before it fires, so here a deadline is a link in a list and
 * the clock holds a single timer, armed for the earliest entry and moved only when it fires.
 *
 * The shape is Node's own (lib/internal/timers.js) and Netty's: one list per duration, in insertion order, so
 * each list is sorted by due time and adding and removing are O(1) unlinks with no allocation beyond the
 * entry itself. Durations are keyed by whole milliseconds; within a key, entries added in the same
 * millisecond with fractional durations may be out of order by less than 1 ms, so an entry can fire up to
 * 1 ms after its due time (Node's timers have the same granularity). When the timer fires it walks the heads
 * of the lists (the lists in flight, typically one per configured timeout), fires what is due and re-arms for
 * the earliest head left. Removing the entry the timer was armed for does not re-arm it: the timer then fires
 * once for nothing and re-arms, at most once per duration's worth of traffic.
 */
import type { Clock, TimerHandle } from './clock.js';

/** Beyond this many lists, an emptied list is dropped at once (many distinct durations: propagated deadlines). */
const MAX_IDLE_LISTS = 32;

/** An entry of a {@link TimerQueue}: the queue owns the link fields, the owner implements `fire`. */
export interface QueuedTimer {
  /** Due time on the queue's clock (ms). */
  dueAt: number;
  /** @internal */
  qPrev: QueuedTimer | undefined;
  /** @internal */
  qNext: QueuedTimer | undefined;
  /** @internal The list the entry is in; undefined when it is in none. */
  qList: TimerList | undefined;
  /** Runs once, when the entry is due (it has already been removed). */
  fire(): void;
}

/** @internal The entries of one duration, oldest first. */
export class TimerList {
  head: QueuedTimer | undefined = undefined;
  tail: QueuedTimer | undefined = undefined;
  constructor(readonly key: number) {}
}

/**
 * Deadlines on one clock, served by one real timer.
 *
 * @example
 * ```ts
 * const q = timerQueue(clock);
 * const entry = { dueAt: 0, qPrev: undefined, qNext: undefined, qList: undefined, fire: () => console.log('late') };
 * q.add(entry, 500); // due 500 ms from now
 * q.remove(entry);   // done first: nothing fires
 * ```
 */
export class TimerQueue {
  private readonly lists = new Map<number, TimerList>();
  private timer: TimerHandle | undefined = undefined;
  /** When the armed timer is due (Infinity when none is armed). */
  private armedAt = Infinity;
  private entries = 0;

  constructor(private readonly clock: Clock) {}

  /** Entries waiting (for tests and diagnostics). */
  get size(): number {
    return this.entries;
  }

  /** Duration lists kept (for tests: bounded, however many distinct durations pass through). */
  get listCount(): number {
    return this.lists.size;
  }

  /** Whether the one real timer is armed (for tests: it is not, once every entry is gone and it has fired). */
  get armed(): boolean {
    return this.timer !== undefined;
  }

  /**
   * Files `entry` to fire `durationMs` from now (its `dueAt` is set here). An entry already in the queue is
   * moved.
   */
  add(entry: QueuedTimer, durationMs: number, now: number = this.clock.now()): void {
    if (entry.qList !== undefined) this.remove(entry);
    const dueAt = now + durationMs;
    entry.dueAt = dueAt;
    const key = Math.ceil(durationMs);
    let list = this.lists.get(key);
    if (list === undefined) {
      list = new TimerList(key);
      this.lists.set(key, list);
    }
    entry.qList = list;
    entry.qNext = undefined;
    entry.qPrev = list.tail;
    if (list.tail === undefined) list.head = entry;
    else list.tail.qNext = entry;
    list.tail = entry;
    this.entries++;
    if (dueAt < this.armedAt) this.arm(dueAt, now);
  }

  /** Takes `entry` out; nothing happens if it is not in the queue (it fired, or was removed already). */
  remove(entry: QueuedTimer): void {
    const list = entry.qList;
    if (list === undefined) return;
    const prev = entry.qPrev;
    const next = entry.qNext;
    if (prev === undefined) list.head = next;
    else prev.qNext = next;
    if (next === undefined) list.tail = prev;
    else next.qPrev = prev;
    entry.qList = entry.qPrev = entry.qNext = undefined;
    this.entries--;
    // An emptied list stays for the next entry of its duration (a lone call at a time would otherwise make
    // and drop one per call); empty lists are dropped when the timer fires, or when there are too many.
    if (list.head === undefined && this.lists.size > MAX_IDLE_LISTS) this.lists.delete(list.key);
  }

  private arm(dueAt: number, now: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.armedAt = dueAt;
    this.timer = this.clock.setTimeout(this.onTimer, Math.max(0, dueAt - now));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = this.clock.now();
    let due: QueuedTimer[] | undefined;
    let next = Infinity;
    for (const list of this.lists.values()) {
      if (list.head === undefined) {
        this.lists.delete(list.key);
        continue;
      }
      let e: QueuedTimer | undefined = list.head;
      while (e !== undefined && e.dueAt <= now) {
        const after: QueuedTimer | undefined = e.qNext;
        this.remove(e);
        (due ??= []).push(e);
        e = after;
      }
      if (e !== undefined && e.dueAt < next) next = e.dueAt;
    }
    // Re-armed before the entries fire, so an entry added by a `fire` compares against the right time.
    if (next !== Infinity) this.arm(next, now);
    if (due === undefined) return;
    let failed = false;
    let first: unknown;
    for (const e of due) {
      try {
        e.fire();
      } catch (err) {
        // Every due entry still fires; the first error then surfaces as a throwing timer's would.
        if (!failed) first = err;
        failed = true;
      }
    }
    if (failed) throw first;
  };
}

const queues = new WeakMap<Clock, TimerQueue>();

/**
 * The queue of `clock` (one per clock: every mesh on the system clock shares one real timer).
 *
 * @example
 * ```ts
 * timerQueue(systemClock).size; // deadlines of calls in flight
 * ```
 */
export function timerQueue(clock: Clock): TimerQueue {
  let q = queues.get(clock);
  if (q === undefined) {
    q = new TimerQueue(clock);
    queues.set(clock, q);
  }
  return q;
}
