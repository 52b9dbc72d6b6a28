// Peak EWMA: the update rule, the seed RTT and the penalty, decay while idle, and property tests of the
// estimate (bounds, peak sensitivity, monotone decay towards lower samples).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { PEAK_EWMA_DEFAULTS, PeakEwmaLoad } from '../../src/balance/index.js';
import { ConfigError } from '../../src/core/errors.js';

const TAU = PEAK_EWMA_DEFAULTS.tauMs;

describe('PeakEwmaLoad', () => {
  test('reference defaults: tau 10 s (Finagle, tower), seed 30 ms (linkerd2-proxy)', () => {
    expect(PEAK_EWMA_DEFAULTS).toEqual({ tauMs: 10_000, defaultRttMs: 30, penalty: 1e9 });
  });

  test('no samples, nothing pending: the seed RTT, decaying from creation', () => {
    const load = new PeakEwmaLoad({}, 1_000);
    expect(load.cost(1_000)).toBe(30);
    expect(load.rttEstimate).toBeUndefined();
    expect(load.cost(1_000 + TAU)).toBeCloseTo(30 / Math.E, 9);
  });

  test('no samples, requests pending: penalty + pending, so a new endpoint gets one probe at a time', () => {
    const load = new PeakEwmaLoad({ penalty: 1e6 });
    load.start(0);
    expect(load.cost(0)).toBe(1e6 + 1);
    load.start(0);
    expect(load.cost(0)).toBe(1e6 + 2);
    expect(load.weightedCost(0, 4)).toBe(1e6 + 2);
    // A request that ends without a sample (cancelled) leaves the seed.
    load.end(0);
    load.end(0);
    expect(load.cost(0)).toBe(30);
  });

  test('a cancelled attempt is a lower bound: it raises the estimate, never lowers it', () => {
    const load = new PeakEwmaLoad({}, 0);
    load.observe(1_000, 0); // the endpoint answered in 1 s
    load.observeCancelled(12, 10); // a backup won after 12 ms: says nothing about a faster endpoint
    expect(load.rttEstimate).toBe(1_000);
    const slow = new PeakEwmaLoad({}, 0);
    slow.observe(1_000, 0);
    slow.observeCancelled(1_500, 20); // cancelled after 1.5 s: at least that slow
    expect(slow.rttEstimate).toBe(1_500);
    const fresh = new PeakEwmaLoad({}, 0);
    fresh.observeCancelled(40, 5); // no sample yet: the lower bound is the best there is
    expect(fresh.rttEstimate).toBe(40);
    fresh.observeCancelled(Number.NaN, 6);
    fresh.observeCancelled(-1, 6);
    expect(fresh.rttEstimate).toBe(40);
  });

  test('cancellations in a row double the lower bound (up to 64 x) until the endpoint answers again', () => {
    const load = new PeakEwmaLoad({}, 0);
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
    const healthy = new PeakEwmaLoad({}, 0);
    healthy.observe(10, 0);
    for (let t = 1; t <= 20; t += 2) {
      healthy.observeCancelled(15, t);
      healthy.observe(10, t + 1);
    }
    expect(healthy.rttEstimate!).toBeLessThanOrEqual(15);
  });

  test('the first sample replaces the seed, even a lower one', () => {
    const load = new PeakEwmaLoad({}, 0);
    load.observe(5, 10);
    expect(load.rttEstimate).toBe(5);
    expect(load.cost(10)).toBe(5);
  });

  test('cost = rtt * (pending + 1); weightedCost = rtt * (pending / weight + 1)', () => {
    const load = new PeakEwmaLoad();
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
    const load = new PeakEwmaLoad();
    load.observe(100, 0);
    load.observe(0, TAU);
    expect(load.rttEstimate).toBeCloseTo(100 / Math.E, 9);
    // No time between samples: the lower sample has no weight.
    load.observe(0, TAU);
    expect(load.rttEstimate).toBeCloseTo(100 / Math.E, 9);
  });

  test('while idle the cost decays towards 0 (an idle endpoint is tried again); reading it changes nothing', () => {
    const load = new PeakEwmaLoad();
    load.observe(100, 0);
    const c1 = load.cost(TAU);
    expect(c1).toBeCloseTo(100 / Math.E, 9);
    expect(load.cost(TAU)).toBe(c1);
    expect(load.rttEstimate).toBe(100);
    expect(load.cost(10 * TAU)).toBeLessThan(0.01);
  });

  test('bad samples are ignored; end() never goes below 0 pending', () => {
    const load = new PeakEwmaLoad();
    load.observe(10, 0);
    for (const bad of [NaN, -1, Infinity, -Infinity]) load.observe(bad, 5);
    expect(load.rttEstimate).toBe(10);
    load.end(0);
    expect(load.pending).toBe(0);
  });

  test('a clock that goes backwards does not inflate the estimate', () => {
    const load = new PeakEwmaLoad();
    load.observe(100, 1_000);
    load.observe(10, 0);
    expect(load.rttEstimate).toBe(100);
    expect(load.cost(0)).toBe(100);
  });

  test('options are validated', () => {
    expect(() => new PeakEwmaLoad({ tauMs: 0 })).toThrow(ConfigError);
    expect(() => new PeakEwmaLoad({ defaultRttMs: -1 })).toThrow(/balancer\.defaultRttMs/);
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
        const load = new PeakEwmaLoad({ tauMs });
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
          const load = new PeakEwmaLoad({ tauMs });
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
          const load = new PeakEwmaLoad({ tauMs });
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
          const load = new PeakEwmaLoad({ tauMs });
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
