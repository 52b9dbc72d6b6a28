/**
 * Peak EWMA: a load metric that reacts at once to an endpoint getting slower and recovers cautiously, so that
 * P2C moves traffic off a degraded endpoint within a few requests (the Buoyant "Beyond Round Robin"
 * experiment: Peak EWMA degrades last) — without starving endpoints it knows little about.
 *
 * Sources:
 * - Finagle `loadbalancer/PeakEwma.scala`: `w = exp(-dt / Tau)`, a sample above the estimate replaces it,
 *   `cost = estimate * (pending + 1)`; an endpoint with no latency history costs **0** (its `cost` starts at
 *   0.0), so it is chosen until it has a sample, and `Penalty + pending` (`Long.MaxValue >> 16` ns) while its
 *   first request is in flight: one probe at a time.
 * - tower `load/peak_ewma.rs` (used by linkerd2-proxy): the same update; a default RTT for endpoints never
 *   measured, decayed towards 0 while no sample arrives. A fixed seed that loses to every measured endpoint
 *   starves new instances (meshfetch seeded 30 ms until 0.x and a scaled-out instance got 0 of 6,000 calls),
 *   so Finagle's rule is used instead.
 * - Envoy's slow start (`slow_start_config`): a new host's weight is scaled by
 *   `max(min_weight_percent, time_factor ^ (1 / aggression))`, `time_factor = max(t_s, 1) / window_s`.
 * - gRPC's weighted round robin (gRFC A58): errors count against an endpoint through an error penalty, so a
 *   backend that fails fast does not look fast.
 *
 * What differs from Finagle and tower, and why (docs/balancers.md, "Peak EWMA"):
 * - Reading `cost(now)` does not change the metric (they fold a zero sample on every read, so the estimate
 *   depends on how often it is read); the decay towards 0 is applied when the cost is computed.
 * - An endpoint stays *probing* for its first `probeSamples` outcomes, each of which replaces the estimate:
 *   a cold start (connect, TLS, JIT, caches) is forgiven as soon as later answers say otherwise.
 * - Decay per sample as well as per time: a sample below the estimate moves it by at least `1 - exp(-1 /
 *   decaySamples)`, so at low traffic one peak does not outweigh many fast answers for tens of seconds (with
 *   time alone, a sample 1 s after the previous one moves a 10 s EWMA by 10 %).
 * - Re-probing at the rate of evidence: an endpoint passed over in `reprobeAfter` cost comparisons in a row
 *   without a new sample of its own gets one probe whose answer replaces its stale estimate. A probe that
 *   confirms the estimate doubles the count before the next one (up to 16 times).
 * - Failures: their time is not a latency sample. A failed attempt is folded in as a peak of twice the
 *   larger of its time, `failureCostMs` and the latency estimate over answers only, doubling with each
 *   failure in a row.
 */
import { numberOption, optionRecord } from './options.js';
import type { LoadMetric, LoadPhase } from './types.js';

/**
 * Options of {@link PeakEwmaLoad} (and of the `p2cPeakEwma` factory).
 *
 * @example
 * ```ts
 * const options: PeakEwmaOptions = { tauMs: 5_000, maxProbes: 2, slowStartMs: 30_000 };
 * ```
 */
export interface PeakEwmaOptions {
  /**
   * Decay time constant in ms (Finagle's `decayTime`, tower's `decay`): a sample's weight falls by `1/e`
   * every `tauMs`, and an idle endpoint's cost decays towards 0 at that rate. Default 10 000. > 0.
   */
  tauMs?: number;
  /**
   * Decay per sample: each sample below the estimate moves it by at least `1 - exp(-1 / decaySamples)` of the
   * way (about 10 % with the default 10), whatever the time since the previous one. Default 10. >= 1.
   */
  decaySamples?: number;
  /**
   * Requests in flight, at most, to an endpoint that is probing (new, warming up or re-probed) while it
   * costs 0: beyond it a new endpoint costs `penalty + pending` (Finagle's single probe), so a cold instance
   * is not stampeded. Default 1. An integer >= 1.
   */
  maxProbes?: number;
  /**
   * Outcomes (answers, failures or cancellations) an endpoint is probed for before its estimate is trusted;
   * each replaces the previous one, so a slow first response (connect, cold caches) is forgotten at the next
   * answer. Default 3. An integer >= 1.
   */
  probeSamples?: number;
  /**
   * Cost comparisons an endpoint may lose in a row, with no sample of its own in between, before it gets a
   * probe whose answer replaces its estimate. Doubles (up to 16 x) while probes confirm the estimate. Default
   * 20. An integer >= 1.
   */
  reprobeAfter?: number;
  /**
   * Floor of the latency a failed attempt counts as, in ms, before doubling (see the file comment). Default
   * 10. > 0.
   */
  failureCostMs?: number;
  /**
   * Cost of an endpoint that has `maxProbes` requests in flight and no outcome yet, plus its pending count
   * (Finagle's `Penalty`). Default 1e9. > 0.
   */
  penalty?: number;
  /**
   * Slow start window in ms (Envoy's `slow_start_window`): for this long after it was created, an endpoint's
   * cost is divided by `max(slowStartMinWeight, (max(age_s, 1) / window_s) ^ (1 / slowStartAggression))`.
   * Default 0 (off). >= 0.
   */
  slowStartMs?: number;
  /** Envoy's `aggression`: 1 ramps linearly, larger values ramp faster at first. Default 1. > 0. */
  slowStartAggression?: number;
  /** Envoy's `min_weight_percent`, as a fraction: the least weight during slow start. Default 0.1. (0, 1]. */
  slowStartMinWeight?: number;
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
  readonly decaySamples: number;
  readonly maxProbes: number;
  readonly probeSamples: number;
  readonly reprobeAfter: number;
  readonly failureCostMs: number;
  readonly penalty: number;
  readonly slowStartMs: number;
  readonly slowStartAggression: number;
  readonly slowStartMinWeight: number;
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
  decaySamples: 10,
  maxProbes: 1,
  probeSamples: 3,
  reprobeAfter: 20,
  failureCostMs: 10,
  penalty: 1e9,
  slowStartMs: 0,
  slowStartAggression: 1,
  slowStartMinWeight: 0.1,
});

/**
 * The option keys {@link PeakEwmaLoad} understands.
 *
 * @example
 * ```ts
 * PEAK_EWMA_OPTION_KEYS.includes('tauMs'); // true
 * ```
 */
export const PEAK_EWMA_OPTION_KEYS = [
  'tauMs',
  'decaySamples',
  'maxProbes',
  'probeSamples',
  'reprobeAfter',
  'failureCostMs',
  'penalty',
  'slowStartMs',
  'slowStartAggression',
  'slowStartMinWeight',
] as const;

/**
 * Validates Peak EWMA options and fills in defaults. Throws a `ConfigError` naming the option
 * (`balancer.tauMs`) on a bad value.
 *
 * @example
 * ```ts
 * resolvePeakEwmaOptions({ tauMs: 5_000 }).maxProbes; // 1
 * ```
 */
export function resolvePeakEwmaOptions(
  options?: PeakEwmaOptions,
  known: readonly string[] = PEAK_EWMA_OPTION_KEYS,
): ResolvedPeakEwmaOptions {
  const o = optionRecord(options, known);
  const d = PEAK_EWMA_DEFAULTS;
  const positive = { min: 0, exclusiveMin: true };
  const count = { min: 1, integer: true };
  return {
    tauMs: numberOption(o, 'tauMs', d.tauMs, positive),
    decaySamples: numberOption(o, 'decaySamples', d.decaySamples, { min: 1 }),
    maxProbes: numberOption(o, 'maxProbes', d.maxProbes, count),
    probeSamples: numberOption(o, 'probeSamples', d.probeSamples, count),
    reprobeAfter: numberOption(o, 'reprobeAfter', d.reprobeAfter, count),
    failureCostMs: numberOption(o, 'failureCostMs', d.failureCostMs, positive),
    penalty: numberOption(o, 'penalty', d.penalty, positive),
    slowStartMs: numberOption(o, 'slowStartMs', d.slowStartMs, { min: 0 }),
    slowStartAggression: numberOption(o, 'slowStartAggression', d.slowStartAggression, positive),
    slowStartMinWeight: numberOption(o, 'slowStartMinWeight', d.slowStartMinWeight, {
      min: 0,
      exclusiveMin: true,
      max: 1,
    }),
  };
}

/** Consecutive cancellations double a cancelled request's lower bound at most this many times (64 x). */
const MAX_CANCEL_DOUBLINGS = 6;
/** Consecutive failures double a failure's cost at most this many times (64 x). */
const MAX_FAILURE_DOUBLINGS = 6;
/** Confirmed re-probes double the comparisons before the next one at most this many times (16 x). */
const MAX_REPROBE_DOUBLINGS = 4;

/**
 * Peak-sensitive exponentially weighted moving average of an endpoint's round-trip time, times the requests
 * it would have in flight: `cost = rtt * (pending + 1)`.
 *
 * - Probing (the first `probeSamples` outcomes, and a re-probe): cost 0 while fewer than `maxProbes` requests
 *   are in flight; then `penalty + pending` with no outcome yet, else the estimate's cost. Each outcome
 *   replaces the estimate.
 * - Measured: `observe(rtt, now)` replaces the estimate with a higher sample; a lower one moves it by
 *   `1 - w` with `w = min(exp(-(now - lastSample) / tauMs), exp(-1 / decaySamples))`. `cost(now)` is the
 *   estimate decayed by `exp(-(now - lastSample) / tauMs)`, times `pending + 1`.
 * - Slow start (when `slowStartMs > 0`): the cost divided by Envoy's ramp while the endpoint is young.
 *
 * @example
 * ```ts
 * const load = new PeakEwmaLoad({ tauMs: 10_000 }, clock.now());
 * load.cost(clock.now());        // 0: never measured, so it gets the next pick
 * load.start(clock.now());
 * load.observe(12, clock.now()); // headers after 12 ms
 * load.end(clock.now());
 * ```
 */
export class PeakEwmaLoad implements LoadMetric {
  private readonly o: ResolvedPeakEwmaOptions;
  private readonly bornAt: number;
  private inFlight = 0;
  /** The estimate (ms), meaningful once `outcomes > 0`. */
  private estimate = 0;
  /** When the estimate last moved. */
  private stamp: number;
  /** Outcomes (answers, failures, cancellations) folded in so far, counted up to `probeSamples`. */
  private outcomes = 0;
  /**
   * The same peak EWMA over answers only (failures left out): the base of a failure's cost, so that failures
   * alternating with answers do not compound one another's cost.
   */
  private latency = 0;
  private latencyStamp = 0;
  private hasLatency = false;
  /** Cancellations since this endpoint last answered (see {@link PeakEwmaLoad.observeCancelled}). */
  private cancelledInRow = 0;
  /** Failures since this endpoint last answered well. */
  private failuresInRow = 0;
  /** Cost comparisons lost since the last outcome. */
  private passes = 0;
  /** Comparisons lost in a row that trigger a re-probe (doubles while re-probes confirm the estimate). */
  private reprobeAt: number;
  private reprobing = false;

  /**
   * @param options validated (a bad value throws a `ConfigError`); or already resolved options.
   * @param now the clock's time at creation (the start of slow start).
   */
  constructor(options?: PeakEwmaOptions | ResolvedPeakEwmaOptions, now = 0) {
    this.o = resolvePeakEwmaOptions(options);
    this.bornAt = now;
    this.stamp = now;
    this.reprobeAt = this.o.reprobeAfter;
  }

  /** Requests sent and not yet finished. */
  get pending(): number {
    return this.inFlight;
  }

  /** The RTT estimate (ms) as of the last outcome, or `undefined` before the first one. */
  get rttEstimate(): number | undefined {
    return this.outcomes > 0 ? this.estimate : undefined;
  }

  /** True once at least one outcome was folded in. */
  get hasSamples(): boolean {
    return this.outcomes > 0;
  }

  /**
   * True while the endpoint wants a probe (new, warming up, or re-probed) and has room for one: it then
   * costs 0. P2C offers a newly added endpoint in this state the next pick.
   */
  get probing(): boolean {
    return (this.outcomes < this.o.probeSamples || this.reprobing) && this.inFlight < this.o.maxProbes;
  }

  /** `probing` (wants samples), `warming` (in its slow start window) or `measured`. */
  phase(now: number): LoadPhase {
    if (this.outcomes < this.o.probeSamples || this.reprobing) return 'probing';
    return this.slowStartFactor(now) < 1 ? 'warming' : 'measured';
  }

  /** A request was sent (the time is not needed: the RTT comes with `observe`). */
  start(_now?: number): void {
    this.inFlight++;
  }

  /**
   * Folds in one RTT sample (ms). Samples that are not finite or are negative are ignored (a clock glitch must
   * not poison the estimate). `cold`: the request probably paid for a new connection (connect, TLS), so its
   * time is weighted down: above the estimate it moves the estimate half way instead of replacing it (while
   * probing every sample replaces the previous one anyway).
   */
  observe(rtt: number, now: number, cold = false): void {
    if (!(rtt >= 0) || rtt === Infinity) return;
    this.cancelledInRow = 0;
    this.failuresInRow = 0;
    this.passes = 0;
    const probe = this.replacing();
    if (probe) {
      this.replace(rtt, now);
    } else if (rtt > this.estimate) {
      // A peak replaces the estimate; a cold one (a connect included) moves it half way.
      this.estimate = cold ? (this.rtt(now) + rtt) / 2 : rtt;
      this.stamp = now;
    } else {
      this.estimate = this.blend(this.estimate, this.stamp, rtt, now);
      this.stamp = now;
    }
    this.latency =
      !this.hasLatency || probe
        ? rtt
        : rtt > this.latency
          ? cold
            ? (this.decayed(this.latency, this.latencyStamp, now) + rtt) / 2
            : rtt
          : this.blend(this.latency, this.latencyStamp, rtt, now);
    this.latencyStamp = now;
    this.hasLatency = true;
  }

  /**
   * A failed attempt (the classifier's `failure`, or back-pressure: 5xx, 429, a reset, a timeout): its time is
   * not a latency sample, so a fast 429 or 503 cannot make the endpoint look fast. It counts as a peak of
   * `2^k * max(elapsed, failureCostMs, the estimate over answers only)` for the k-th failure in a row (k = 1,
   * 2, ... up to 64 x), the way a cancellation counts as a lower bound.
   */
  observeFailure(elapsed: number, now: number): void {
    if (!(elapsed >= 0) || elapsed === Infinity) return;
    this.cancelledInRow = 0;
    const k = Math.min(++this.failuresInRow, MAX_FAILURE_DOUBLINGS);
    const latency = this.hasLatency ? this.decayed(this.latency, this.latencyStamp, now) : 0;
    const cost = 2 ** k * Math.max(elapsed, this.o.failureCostMs, latency);
    this.raise(cost, now);
  }

  /**
   * A cancelled request (a backup won, a deadline or timeout fired): `elapsed` is a lower bound of its RTT,
   * folded in only when it is above the estimate. Counting the cancellation as an ordinary sample would teach
   * the balancer that a 1 s endpoint answers in however long the backup took (bench/tail found exactly that).
   *
   * Each cancellation in a row, with no answer from the endpoint in between, doubles the bound: the first
   * counts as `elapsed`, the next as twice that, up to 64 times. The endpoint's next answer resets the count.
   * While probing it counts as an outcome, so an endpoint that never answers is not probed forever.
   */
  observeCancelled(elapsed: number, now: number): void {
    if (!(elapsed >= 0) || elapsed === Infinity) return;
    const bound = elapsed * 2 ** Math.min(this.cancelledInRow, MAX_CANCEL_DOUBLINGS);
    this.cancelledInRow++;
    this.raise(bound, now);
  }

  /**
   * Folds in an outcome that can only raise the estimate (a failure's cost, a cancellation's bound): above the
   * estimate it replaces it; below, it leaves it as it is. Either way it counts as a probe's outcome.
   */
  private raise(value: number, now: number): void {
    this.passes = 0;
    if (this.outcomes === 0 || value > this.estimate) {
      if (this.replacing()) this.replace(value, now);
      else {
        this.estimate = value;
        this.stamp = now;
      }
    } else if (this.replacing()) {
      // The endpoint is no faster than thought: a re-probe confirms the estimate.
      this.endProbe(true);
    }
  }

  /**
   * The endpoint lost a cost comparison (P2C chose the other candidate). After `reprobeAfter` in a row with no
   * outcome of its own, its estimate is stale: it is probed again, and the answer replaces the estimate.
   */
  passed(_now?: number): void {
    if (this.reprobing || this.outcomes < this.o.probeSamples) return;
    if (++this.passes >= this.reprobeAt) this.reprobing = true;
  }

  /** A request is over; never goes below 0 pending. */
  end(_now?: number): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** The RTT (ms) that `cost(now)` uses: the estimate decayed towards 0 since it last moved (0 if none). */
  rtt(now: number): number {
    return this.outcomes > 0 ? this.decayed(this.estimate, this.stamp, now) : 0;
  }

  cost(now: number): number {
    return this.weightedCost(now, 1);
  }

  /** `rtt * (pending / weight + 1)`: the weight scales the queue, not the latency. */
  weightedCost(now: number, weight: number): number {
    const o = this.o;
    const inFlight = this.inFlight;
    if (this.outcomes < o.probeSamples || this.reprobing) {
      if (inFlight < o.maxProbes) return 0;
      if (this.outcomes === 0) return o.penalty + inFlight;
    }
    const cost = this.rtt(now) * (inFlight / weight + 1);
    return o.slowStartMs > 0 ? cost / this.slowStartFactor(now) : cost;
  }

  /** Envoy's slow start weight at `now`: 1 outside the window. */
  private slowStartFactor(now: number): number {
    const o = this.o;
    const age = now - this.bornAt;
    if (o.slowStartMs <= 0 || age >= o.slowStartMs) return 1;
    const timeFactor = Math.max(age, 1_000) / o.slowStartMs;
    return Math.min(1, Math.max(o.slowStartMinWeight, timeFactor ** (1 / o.slowStartAggression)));
  }

  /** True while outcomes replace the estimate (probing or re-probing). */
  private replacing(): boolean {
    return this.outcomes < this.o.probeSamples || this.reprobing;
  }

  /** Replaces the estimate with an outcome: a probe's answer. A re-probe that confirms the old one backs off. */
  private replace(value: number, now: number): void {
    const confirmed = value >= this.rtt(now);
    this.estimate = value;
    this.stamp = now;
    this.endProbe(confirmed);
  }

  /** One probe outcome: counted while probing; a re-probe ends, backing off when it `confirmed` the estimate. */
  private endProbe(confirmed: boolean): void {
    if (this.reprobing) {
      const base = this.o.reprobeAfter;
      this.reprobeAt = confirmed ? Math.min(this.reprobeAt * 2, base * 2 ** MAX_REPROBE_DOUBLINGS) : base;
      this.reprobing = false;
    }
    this.outcomes = Math.min(this.outcomes + 1, this.o.probeSamples);
    this.passes = 0;
  }

  /**
   * `value` (last moved at `stamp`) with a sample below it (or a cold one) folded in: decay per time and per
   * sample, whichever forgets faster.
   */
  private blend(value: number, stamp: number, rtt: number, now: number): number {
    const dt = Math.max(0, now - stamp);
    const w = Math.min(Math.exp(-dt / this.o.tauMs), Math.exp(-1 / this.o.decaySamples));
    return value * w + rtt * (1 - w);
  }

  private decayed(value: number, stamp: number, now: number): number {
    const dt = now - stamp;
    return dt > 0 ? value * Math.exp(-dt / this.o.tauMs) : value;
  }
}
