/**
 * Latency statistics for the benchmarks: an HDR histogram from `node:perf_hooks` (recorded in nanoseconds, 3
 * significant figures) and the few summary numbers the tables print. Percentiles from the histogram, not
 * from a sorted array, so memory stays flat however many requests a run makes.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

/** A new latency histogram (values in nanoseconds). */
export function newHistogram(): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: 120e9, figures: 3 });
}

/** Records a duration given in (fractional) milliseconds, as from two `performance.now()` readings. */
export function recordMs(h: RecordableHistogram, ms: number): void {
  const ns = Math.round(ms * 1e6);
  h.record(ns < 1 ? 1 : ns);
}

/** Summary of a histogram, in microseconds. */
export interface LatencySummary {
  count: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

/** Summarises a histogram recorded in nanoseconds. */
export function summarize(h: RecordableHistogram): LatencySummary {
  const us = (ns: number): number => ns / 1e3;
  if (h.count === 0) return { count: 0, meanUs: 0, p50Us: 0, p90Us: 0, p99Us: 0, p999Us: 0, maxUs: 0 };
  return {
    count: h.count,
    meanUs: us(h.mean),
    p50Us: us(h.percentile(50)),
    p90Us: us(h.percentile(90)),
    p99Us: us(h.percentile(99)),
    p999Us: us(h.percentile(99.9)),
    maxUs: us(h.max),
  };
}

/** Latency at each of `ps` (percentiles, 0-100), in microseconds: the points of a percentile curve. */
export function percentileCurve(h: RecordableHistogram, ps: readonly number[]): Array<[number, number]> {
  return ps.map((p) => [p, h.count === 0 ? 0 : h.percentile(p) / 1e3]);
}

/** Median of a list of numbers (NaN for an empty list). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Smallest and largest of a list. */
export function range(xs: readonly number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of xs) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return [lo, hi];
}
