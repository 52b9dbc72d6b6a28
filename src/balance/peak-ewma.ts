/**
 * Peak EWMA: a load metric that reacts at once to an endpoint getting slower and recovers only cautiously, so
 * that P2C moves traffic off a degraded endpoint within a few requests (the Buoyant "Beyond Round Robin"
 * experiment: Peak EWMA degrades last).
 *
 * Sources:
 * - Finagle `PeakEwma.scala` (finagle-core `loadbalancer/PeakEwma.scala`): `w = exp(-dt / Tau)`, a sample
 *   above the estimate replaces it, `cost = estimate * (pending + 1)`, and a `Penalty` (`Long.MaxValue >> 16`
 *   in nanoseconds) for an endpoint with requests in flight and no latency history yet.
 * - tower `load/peak_ewma.rs` (used by linkerd2-proxy): the same update, a default RTT for endpoints never
 *   measured, and decay of the estimate towards 0 while no sample arrives, so an idle endpoint is tried again.
 * - linkerd2-proxy seeds the default RTT at 30 ms; Finagle's and tower's decay time is 10 s.
 *
 * Two deliberate differences, both written down in docs/balancers.md:
 * - Reading `cost(now)` does not change the metric. Finagle and tower fold a zero sample into the estimate on
 *   every read, which makes the estimate depend on how often the balancer looks at it (under heavy traffic a
 *   sample below the estimate then counts for almost nothing). Here the estimate only moves on `observe`, and
 *   `cost(now)` applies the decay towards 0 for the time since the last sample, which is the same curve.
 * - The first sample replaces the seed instead of being averaged with it: the seed is a guess, not a
 *   measurement.
 */
import { numberOption, optionRecord } from './options.js';
import type { LoadMetric } from './types.js';

/**
 * Options of {@link PeakEwmaLoad} (and of the `p2cPeakEwma` factory).
 *
 * @example
 * ```ts
 * const options: PeakEwmaOptions = { tauMs: 5_000, defaultRttMs: 50 };
 * ```
 */
export interface PeakEwmaOptions {
  /**
   * Decay time constant in ms (Finagle's `decayTime`, tower's `decay`): a sample's weight falls by `1/e`
   * every `tauMs`. Default 10 000 (Finagle, tower). Must be > 0.
   */
  tauMs?: number;
  /**
   * RTT assumed for an endpoint with no sample yet, in ms (linkerd2-proxy's default RTT). Default 30. Must be
   * > 0.
   */
  defaultRttMs?: number;
  /**
   * Cost of an endpoint that has requests in flight but no sample yet, plus its pending count (Finagle's
   * `Penalty`): a new endpoint gets one probe request and no more until it answers. Default 1e9, i.e. an RTT
   * of about 11.6 days; Finagle's `Long.MaxValue >> 16` ns is about 1.4e8 ms. Must be > 0.
   */
  penalty?: number;
}

/**
 * The resolved options of a {@link PeakEwmaLoad}.
 *
 * @example
 * ```ts
 * const o: ResolvedPeakEwmaOptions = resolvePeakEwmaOptions({ tauMs: 5_000 });
 * ```
 */
export interface ResolvedPeakEwmaOptions {
  readonly tauMs: number;
  readonly defaultRttMs: number;
  readonly penalty: number;
}

/**
 * The reference defaults of Peak EWMA.
 *
 * @example
 * ```ts
 * PEAK_EWMA_DEFAULTS.tauMs; // 10000
 * ```
 */
export const PEAK_EWMA_DEFAULTS: ResolvedPeakEwmaOptions = Object.freeze({
  tauMs: 10_000,
  defaultRttMs: 30,
  penalty: 1e9,
});

/**
 * The option keys {@link PeakEwmaLoad} understands.
 *
 * @example
 * ```ts
 * PEAK_EWMA_OPTION_KEYS.includes('tauMs'); // true
 * ```
 */
export const PEAK_EWMA_OPTION_KEYS = ['tauMs', 'defaultRttMs', 'penalty'] as const;

/**
 * Validates Peak EWMA options and fills in defaults. Throws a `ConfigError` naming the option
 * (`balancer.tauMs`) on a bad value.
 *
 * @example
 * ```ts
 * resolvePeakEwmaOptions({ tauMs: 5_000 }); // { tauMs: 5000, defaultRttMs: 30, penalty: 1e9 }
 * ```
 */
export function resolvePeakEwmaOptions(
  options?: PeakEwmaOptions,
  known: readonly string[] = PEAK_EWMA_OPTION_KEYS,
): ResolvedPeakEwmaOptions {
  const o = optionRecord(options, known);
  return {
    tauMs: numberOption(o, 'tauMs', PEAK_EWMA_DEFAULTS.tauMs, { min: 0, exclusiveMin: true }),
    defaultRttMs: numberOption(o, 'defaultRttMs', PEAK_EWMA_DEFAULTS.defaultRttMs, {
      min: 0,
      exclusiveMin: true,
    }),
    penalty: numberOption(o, 'penalty', PEAK_EWMA_DEFAULTS.penalty, { min: 0, exclusiveMin: true }),
  };
}

/** Consecutive cancellations double a cancelled request's lower bound at most this many times (64 x). */
const MAX_CANCEL_DOUBLINGS = 6;

/**
 * Peak-sensitive exponentially weighted moving average of an endpoint's round-trip time, times the requests
 * it would have in flight: `cost = rtt * (pending + 1)`.
 *
 * - `observe(rtt, now)`: a sample above the estimate replaces it; otherwise
 *   `estimate = estimate * w + rtt * (1 - w)` with `w = exp(-(now - lastSample) / tauMs)`.
 * - `cost(now)`: the estimate decayed towards 0 by `exp(-(now - lastSample) / tauMs)`, times `pending + 1`.
 *   With no sample yet: `defaultRttMs` (decayed from creation, as in tower), or `penalty + pending` while a
 *   request is in flight.
 *
 * @example
 * ```ts
 * const load = new PeakEwmaLoad({ tauMs: 10_000 }, clock.now());
 * load.start(clock.now());
 * load.observe(12, clock.now()); // headers after 12 ms
 * load.end(clock.now());
 * load.cost(clock.now());        // 12
 * ```
 */
export class PeakEwmaLoad implements LoadMetric {
  private readonly tauMs: number;
  private readonly defaultRttMs: number;
  private readonly penalty: number;
  private inFlight = 0;
  private estimate: number;
  private stamp: number;
  private sampled = false;
  /** Cancellations since this endpoint last answered (see {@link PeakEwmaLoad.observeCancelled}). */
  private cancelledInRow = 0;

  /**
   * @param options decay, seed RTT and penalty; validated (a bad value throws a `ConfigError`).
   * @param now the clock's time at creation, from which the seed RTT decays.
   */
  constructor(options?: PeakEwmaOptions, now = 0) {
    const o = resolvePeakEwmaOptions(options);
    this.tauMs = o.tauMs;
    this.defaultRttMs = o.defaultRttMs;
    this.penalty = o.penalty;
    this.estimate = o.defaultRttMs;
    this.stamp = now;
  }

  /** Requests sent and not yet finished. */
  get pending(): number {
    return this.inFlight;
  }

  /** The RTT estimate (ms) as of the last sample, or `undefined` before the first one. */
  get rttEstimate(): number | undefined {
    return this.sampled ? this.estimate : undefined;
  }

  /** True once at least one sample was observed. */
  get hasSamples(): boolean {
    return this.sampled;
  }

  /** A request was sent (the time is not needed: the RTT comes with `observe`). */
  start(_now?: number): void {
    this.inFlight++;
  }

  /**
   * Folds in one RTT sample (ms). Samples that are not finite or are negative are ignored (a clock glitch must
   * not poison the estimate).
   */
  observe(rtt: number, now: number): void {
    if (!(rtt >= 0) || rtt === Infinity) return;
    this.cancelledInRow = 0;
    this.fold(rtt, now);
  }

  private fold(rtt: number, now: number): void {
    if (!this.sampled || rtt > this.estimate) {
      this.estimate = rtt;
    } else {
      const w = Math.exp(-Math.max(0, now - this.stamp) / this.tauMs);
      this.estimate = this.estimate * w + rtt * (1 - w);
    }
    this.sampled = true;
    this.stamp = now;
  }

  /**
   * A cancelled request (a backup won, a deadline or timeout fired): `elapsed` is a lower bound of its RTT,
   * folded in only when it is above the estimate. Counting the cancellation as an ordinary sample would teach
   * the balancer that a 1 s endpoint answers in however long the backup took (bench/tail found exactly that).
   *
   * A lower bound alone still lets an endpoint that never answers look only as slow as the backup delay, so
   * it keeps a share of the traffic (bench/tail: 4.5 % to a 1 s backend with backup requests). So each
   * cancellation in a row, with no answer from the endpoint in between, doubles the bound: the first counts as
   * `elapsed`, the next as twice that, then four times, up to 64 times. The endpoint's next answer resets the
   * count. A healthy endpoint that loses a race now and then is judged as before; one that loses every race
   * soon costs more than its peers and is left alone until its estimate decays (tau) and P2C tries it again.
   */
  observeCancelled(elapsed: number, now: number): void {
    if (!(elapsed >= 0) || elapsed === Infinity) return;
    const bound = elapsed * 2 ** Math.min(this.cancelledInRow, MAX_CANCEL_DOUBLINGS);
    this.cancelledInRow++;
    if (!this.sampled || bound > this.estimate) this.fold(bound, now);
  }

  /** A request is over; never goes below 0 pending. */
  end(_now?: number): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** The RTT (ms) that `cost(now)` uses: the estimate (or seed) decayed towards 0 since the last sample. */
  rtt(now: number): number {
    const dt = now - this.stamp;
    return dt > 0 ? this.estimate * Math.exp(-dt / this.tauMs) : this.estimate;
  }

  cost(now: number): number {
    if (!this.sampled && this.inFlight > 0) return this.penalty + this.inFlight;
    return this.rtt(now) * (this.inFlight + 1);
  }

  /** `rtt * (pending / weight + 1)`: the weight scales the queue, not the latency. */
  weightedCost(now: number, weight: number): number {
    if (!this.sampled && this.inFlight > 0) return this.penalty + this.inFlight;
    return this.rtt(now) * (this.inFlight / weight + 1);
  }

  /** The default RTT this metric was seeded with (ms). */
  get seedRttMs(): number {
    return this.defaultRttMs;
  }
}
