/**
 * The earliest-deadline-first schedule of weighted round robin: each scheduled node is next due at a virtual
 * deadline, and a pick moves it 1/w later, so over time a node of weight w is picked in proportion to w.
 * O(log n) per pick with a binary heap keyed by (deadline, seq); smooth weighted round robin would be O(n).
 *
 * Source: Envoy `upstream/edf_scheduler.h` and `load_balancer_impl.cc` (`RoundRobinLoadBalancer`), which use
 * the same schedule for unequal weights, with a random starting phase per node so that many clients do not
 * march in step.
 *
 * Apart from the distributor (round-robin.ts), which decides which nodes are scheduled (their status, panic
 * mode) and when the schedule is rebuilt; this file only keeps the heap and the deadlines, by node index (the
 * distributor's dense array with swap-remove: entry `i` is node `i`).
 */
import type { Rng } from '../core/rng.js';
import type { WeightBook } from './weights.js';

/**
 * A binary min-heap of node indices keyed by (virtual deadline, sequence number), with each node's position
 * in the heap so that a node leaves in O(log n).
 *
 * @example
 * ```ts
 * const edf = new EdfSchedule(weights);
 * edf.reserve(n);
 * edf.clear(n);
 * edf.rephase(n, rng);
 * for (let i = 0; i < n; i++) edf.push(i);
 * edf.heapify();
 * edf.next(); // the index of the node due first
 * ```
 */
export class EdfSchedule {
  private heap = new Int32Array(0);
  private len = 0;
  /** Node index -> position in `heap`, or -1. */
  private pos = new Int32Array(0);
  private deadline = new Float64Array(0);
  private seq = new Float64Array(0);
  private counter = 0;
  /** True when every node has a deadline (the heap was built since the last full update). */
  phased = false;

  /** @param weights the distributor's weights: node `i` is due again 1 / `weights.at(i)` after a pick. */
  constructor(private readonly weights: WeightBook) {}

  /** How many nodes are scheduled. */
  get size(): number {
    return this.len;
  }

  /** The schedule's current virtual time: the deadline of the next node due (0 when none is scheduled). */
  now(): number {
    return this.len > 0 ? this.deadline[this.heap[0]!]! : 0;
  }

  /** Whether node `i` is scheduled. */
  has(i: number): boolean {
    return this.pos[i]! >= 0;
  }

  /** Empties the heap; nodes below `n` keep their deadlines. */
  clear(n: number): void {
    this.pos.fill(-1, 0, n);
    this.len = 0;
  }

  /**
   * Gives every node below `n` a random phase in [0, 1/w): it desynchronises clients without changing the
   * long-run shares.
   */
  rephase(n: number, rng: Rng): void {
    for (let i = 0; i < n; i++) {
      this.deadline[i] = rng.next() / this.weights.at(i);
      this.seq[i] = i;
    }
    this.counter = n;
    this.phased = true;
  }

  /**
   * Moves node `i`'s deadline up to `now` if it lies before: a node coming back joins at the current virtual
   * time, not in the past (it would otherwise be picked again and again until it caught up).
   */
  catchUp(i: number, now: number): void {
    if (this.deadline[i]! < now) this.deadline[i] = now;
  }

  /** Appends node `i` without ordering the heap (call {@link EdfSchedule.heapify} after the last one). */
  push(i: number): void {
    this.heap[this.len] = i;
    this.pos[i] = this.len++;
  }

  /** Orders the heap after {@link EdfSchedule.push}: O(n). */
  heapify(): void {
    for (let k = (this.len >> 1) - 1; k >= 0; k--) this.siftDown(k);
  }

  /**
   * A new node `i`, not yet scheduled: due at the current virtual time plus a random phase, as a fresh
   * schedule would place it.
   */
  join(i: number, rng: Rng): void {
    this.deadline[i] = this.now() + rng.next() / this.weights.at(i);
    this.seq[i] = this.counter++;
  }

  /** Marks node `i` as not scheduled (a new slot). */
  detach(i: number): void {
    this.pos[i] = -1;
  }

  /** Schedules node `i` at its deadline: O(log n). */
  insert(i: number): void {
    const k = this.len++;
    this.heap[k] = i;
    this.pos[i] = k;
    this.siftUp(k);
  }

  /** Takes node `i` out of the heap in O(log n). */
  remove(i: number): void {
    const p = this.pos[i]!;
    this.pos[i] = -1;
    const lastPos = --this.len;
    if (p === lastPos) return;
    const tail = this.heap[lastPos]!;
    this.heap[p] = tail;
    this.pos[tail] = p;
    this.siftDown(p);
    this.siftUp(this.pos[tail]!);
  }

  /** Node `from` moved into slot `to` (swap-remove): its deadline and heap entry move with it. */
  move(from: number, to: number): void {
    this.deadline[to] = this.deadline[from]!;
    this.seq[to] = this.seq[from]!;
    const hp = (this.pos[to] = this.pos[from]!);
    if (hp >= 0) this.heap[hp] = to;
  }

  /** The node due first; its deadline moves 1/w later: O(log n). */
  next(): number {
    const top = this.heap[0]!;
    this.deadline[top] = this.deadline[top]! + 1 / this.weights.at(top);
    this.seq[top] = this.counter++;
    this.siftDown(0);
    return top;
  }

  /** Grows the per-node arrays to hold at least `n` nodes (doubling: appends are O(1) amortised). */
  reserve(n: number): void {
    if (n <= this.pos.length) return;
    const cap = Math.max(n, this.pos.length * 2, 8);
    const grow = <T extends Int32Array | Float64Array>(a: T, make: (c: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.heap = grow(this.heap, (c) => new Int32Array(c));
    this.pos = grow(this.pos, (c) => new Int32Array(c));
    this.deadline = grow(this.deadline, (c) => new Float64Array(c));
    this.seq = grow(this.seq, (c) => new Float64Array(c));
  }

  private before(a: number, b: number): boolean {
    const da = this.deadline[a]!;
    const db = this.deadline[b]!;
    return da < db || (da === db && this.seq[a]! < this.seq[b]!);
  }

  private siftDown(k: number): void {
    const heap = this.heap;
    const pos = this.pos;
    const len = this.len;
    const item = heap[k]!;
    for (;;) {
      const left = 2 * k + 1;
      if (left >= len) break;
      const right = left + 1;
      const child = right < len && this.before(heap[right]!, heap[left]!) ? right : left;
      if (!this.before(heap[child]!, item)) break;
      heap[k] = heap[child]!;
      pos[heap[k]!] = k;
      k = child;
    }
    heap[k] = item;
    pos[item] = k;
  }

  private siftUp(k: number): void {
    const heap = this.heap;
    const pos = this.pos;
    const item = heap[k]!;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!this.before(item, heap[parent]!)) break;
      heap[k] = heap[parent]!;
      pos[heap[k]!] = k;
      k = parent;
    }
    heap[k] = item;
    pos[item] = k;
  }
}
