// Peak EWMA: the update rule, probing (cost 0 until measured) and the penalty, decay while idle, and
// property tests of the estimate (bounds, peak sensitivity, monotone decay towards lower samples). The rules
// of a measured endpoint are checked on `classic()` loads: measured from the first sample and with decay per
// time only (Finagle's and tower's rule); test/balance/fairness.test.ts covers probing, decay per sample,
// re-probing and failures.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { PEAK_EWMA_DEFAULTS, PeakEwmaLoad, type PeakEwmaOptions } from '../../src/balance/index.js';
import { ConfigError } from '../../src/core/errors.js';

const TAU = PEAK_EWMA_DEFAULTS.tauMs;

/** A load measured from its first sample, whose estimate decays with time only. */
function classic(options: PeakEwmaOptions = {}, now = 0): PeakEwmaLoad {
  return new PeakEwmaLoad({ probeSamples: 1, decaySamples: 1e20, ...options }, now);
}

describe('PeakEwmaLoad', () => {
  test('reference defaults: tau 10 s (Finagle, tower), one probe at a time (Finagle), slow start off', () => {
    expect(PEAK_EWMA_DEFAULTS).toEqual({
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
  });

  test('no samples, nothing pending: cost 0 (Finagle), however old the endpoint', () => {
    const load = new PeakEwmaLoad({}, 1_000);
    expect(load.cost(1_000)).toBe(0);
    expect(load.rttEstimate).toBeUndefined();
    expect(load.cost(1_000 + TAU)).toBe(0);
    expect(load.probing).toBe(true);
    expect(load.phase(1_000)).toBe('probing');
  });

  test('no samples, maxProbes pending: penalty + pending, so a new endpoint gets one probe at a time', () => {
    const load = new PeakEwmaLoad({ penalty: 1e6 });
    load.start(0);
    expect(load.probing).toBe(false);
    expect(load.cost(0)).toBe(1e6 + 1);
    load.start(0);
    expect(load.cost(0)).toBe(1e6 + 2);
    expect(load.weightedCost(0, 4)).toBe(1e6 + 2);
    // Requests that end without an outcome (the classifier ignored them) leave it unmeasured.
    load.end(0);
    load.end(0);
    expect(load.cost(0)).toBe(0);
  });

  test('a cancelled attempt is a lower bound: it raises the estimate, never lowers it', () => {
    const load = classic({}, 0);
    load.observe(1_000, 0); // the endpoint answered in 1 s
    load.observeCancelled(12, 10); // a backup won after 12 ms: says nothing about a faster endpoint
    expect(load.rttEstimate).toBe(1_000);
    const slow = classic({}, 0);
    slow.observe(1_000, 0);
    slow.observeCancelled(1_500, 20); // cancelled after 1.5 s: at least that slow
    expect(slow.rttEstimate).toBe(1_500);
    const fresh = classic({}, 0);
    fresh.observeCancelled(40, 5); // no sample yet: the lower bound is the best there is
    expect(fresh.rttEstimate).toBe(40);
    fresh.observeCancelled(Number.NaN, 6);
    fresh.observeCancelled(-1, 6);
    expect(fresh.rttEstimate).toBe(40);
  });

  test('cancellations in a row double the lower bound (up to 64 x) until the endpoint answers again', () => {
    const load = classic({}, 0);
    load.observe(10, 0);
    // Every race lost after 20 ms: 20, then 40, 80, 160, ...
    const seen: number[] = [];
    for (let t = 1; t <= 9; t++) {
      load.observeCancelled(20, t);
      seen.push(load.rttEstimate!);
    }
    expect(seen).toEqual([20, 40, 80, 160, 320, 640, 1_280, 1_280, 1_280]);
    // An answer resets the count: the next lost race counts as its elapsed time again.
    load.observe(10, 10); // 10 ms after the last sample: the estimate barely moves (tau 10 s)
    const after = load.rttEstimate!;
    expect(after).toBeLessThan(1_280);
    expect(after).toBeGreaterThan(1_000);
    load.observeCancelled(2_000, 11);
    expect(load.rttEstimate).toBe(2_000);
    load.observe(10, 12);
    load.observeCancelled(20, 13); // below the estimate: ignored, as before
    expect(load.rttEstimate).toBeGreaterThan(1_900);
    // A healthy endpoint that loses a race now and then, answering in between, is judged by the elapsed time.
    const healthy = classic({}, 0);
    healthy.observe(10, 0);
    for (let t = 1; t <= 20; t += 2) {
      healthy.observeCancelled(15, t);
      healthy.observe(10, t + 1);
    }
    expect(healthy.rttEstimate!).toBeLessThanOrEqual(15);
  });

  test('while probing, each outcome replaces the estimate: a slow first answer is forgotten at the next', () => {
    const load = new PeakEwmaLoad({}, 0);
    load.observe(200, 10);
    expect(load.rttEstimate).toBe(200);
    expect(load.cost(10)).toBe(0); // still probing, no probe in flight
    load.observe(5, 20);
    expect(load.rttEstimate).toBe(5);
    load.observe(6, 30);
    expect(load.phase(30)).toBe('measured');
    expect(load.cost(30)).toBe(6);
    load.observe(50, 40); // measured now: a peak replaces the estimate
    expect(load.rttEstimate).toBe(50);
  });

  test('cost = rtt * (pending + 1); weightedCost = rtt * (pending / weight + 1)', () => {
    const load = classic();
    load.observe(20, 0);
    load.start(0);
    load.start(0);
    load.start(0);
    expect(load.pending).toBe(3);
    expect(load.cost(0)).toBe(80);
    expect(load.weightedCost(0, 2)).toBe(50);
    load.end(0);
    expect(load.cost(0)).toBe(60);
  });

  test('a lower sample moves the estimate by 1 - exp(-dt/tau) of the way', () => {
    const load = classic();
    load.observe(100, 0);
    load.observe(0, TAU);
    expect(load.rttEstimate).toBeCloseTo(100 / Math.E, 9);
    // No time between samples: the lower sample has no weight.
    load.observe(0, TAU);
    expect(load.rttEstimate).toBeCloseTo(100 / Math.E, 9);
  });

  test('while idle the cost decays towards 0 (an idle endpoint is tried again); reading it changes nothing', () => {
    const load = classic();
    load.observe(100, 0);
    const c1 = load.cost(TAU);
    expect(c1).toBeCloseTo(100 / Math.E, 9);
    expect(load.cost(TAU)).toBe(c1);
    expect(load.rttEstimate).toBe(100);
    expect(load.cost(10 * TAU)).toBeLessThan(0.01);
  });

  test('bad samples are ignored; end() never goes below 0 pending', () => {
    const load = classic();
    load.observe(10, 0);
    for (const bad of [NaN, -1, Infinity, -Infinity]) load.observe(bad, 5);
    expect(load.rttEstimate).toBe(10);
    load.end(0);
    expect(load.pending).toBe(0);
  });

  test('a clock that goes backwards does not inflate the estimate', () => {
    const load = classic();
    load.observe(100, 1_000);
    load.observe(10, 0);
    expect(load.rttEstimate).toBe(100);
    expect(load.cost(0)).toBe(100);
  });

  test('options are validated', () => {
    expect(() => new PeakEwmaLoad({ tauMs: 0 })).toThrow(ConfigError);
    expect(() => new PeakEwmaLoad({ maxProbes: 0 })).toThrow(/balancer\.maxProbes/);
    expect(() => new PeakEwmaLoad({ slowStartMinWeight: 2 })).toThrow(/balancer\.slowStartMinWeight/);
    expect(() => new PeakEwmaLoad({ penalty: Infinity })).toThrow(/balancer\.penalty/);
  });
});

// Samples: RTT in ms and the time since the previous one.
const samplesArb = fc.array(
  fc.record({
    rtt: fc.double({ min: 0, max: 10_000, noNaN: true }),
    dt: fc.double({ min: 0, max: 100_000, noNaN: true }),
  }),
  { minLength: 1, maxLength: 60 },
);
const tauArb = fc.double({ min: 1, max: 100_000, noNaN: true });

describe('properties of the estimate', () => {
  test('stays within [min sample, max sample] whatever the timing', () => {
    fc.assert(
      fc.property(samplesArb, tauArb, (samples, tauMs) => {
        const load = classic({ tauMs });
        let t = 0;
        let lo = Infinity;
        let hi = -Infinity;
        for (const { rtt, dt } of samples) {
          t += dt;
          load.observe(rtt, t);
          lo = Math.min(lo, rtt);
          hi = Math.max(hi, rtt);
          const e = load.rttEstimate!;
          expect(e).toBeGreaterThanOrEqual(lo * (1 - 1e-12));
          expect(e).toBeLessThanOrEqual(hi * (1 + 1e-12));
          // The cost while idle never exceeds the estimate times (pending + 1).
          expect(load.cost(t + dt)).toBeLessThanOrEqual(e * (1 + 1e-12));
        }
      }),
    );
  });

  test('peak sensitive: a sample above the estimate replaces it', () => {
    fc.assert(
      fc.property(
        samplesArb,
        fc.double({ min: 0, max: 10_000, noNaN: true }),
        tauArb,
        (samples, extra, tauMs) => {
          const load = classic({ tauMs });
          let t = 0;
          for (const { rtt, dt } of samples) load.observe(rtt, (t += dt));
          const peak = load.rttEstimate! + extra + 1e-6;
          load.observe(peak, t + 1);
          expect(load.rttEstimate).toBe(peak);
        },
      ),
    );
  });

  test('a run of a lower sample decays the estimate monotonically towards it, never below', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1, max: 10_000, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 5_000, noNaN: true }), { minLength: 1, maxLength: 50 }),
        tauArb,
        (peak, fraction, steps, tauMs) => {
          const low = peak * fraction;
          const load = classic({ tauMs });
          load.observe(peak, 0);
          let t = 0;
          let previous = peak;
          for (const dt of steps) {
            t += dt;
            load.observe(low, t);
            const e = load.rttEstimate!;
            // Monotone up to one rounding step (low === peak can round a last bit up).
            expect(e).toBeLessThanOrEqual(previous * (1 + 1e-12));
            expect(e).toBeGreaterThanOrEqual(low * (1 - 1e-12));
            // Exactly the closed form: low + (peak - low) * exp(-t / tau).
            expect(Math.abs(e - (low + (peak - low) * Math.exp(-t / tauMs)))).toBeLessThanOrEqual(
              peak * 1e-9,
            );
            previous = e;
          }
        },
      ),
      // Shrinking arrays of doubles can take minutes; report the first counterexample as found.
      { endOnFailure: true },
    );
  });

  test('the idle cost is non-increasing in time and follows exp(-dt/tau)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.001, max: 10_000, noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(fc.double({ min: 0, max: 50_000, noNaN: true }), { minLength: 1, maxLength: 20 }),
        tauArb,
        (rtt, pending, steps, tauMs) => {
          const load = classic({ tauMs });
          load.observe(rtt, 0);
          for (let k = 0; k < pending; k++) load.start(0);
          let t = 0;
          let previous = load.cost(0);
          expect(previous).toBeCloseTo(rtt * (pending + 1), 6);
          for (const dt of steps) {
            t += dt;
            const c = load.cost(t);
            expect(c).toBeLessThanOrEqual(previous);
            expect(Math.abs(c - rtt * (pending + 1) * Math.exp(-t / tauMs))).toBeLessThanOrEqual(
              previous * 1e-9 + 1e-12,
            );
            previous = c;
          }
        },
      ),
    );
  });
});
