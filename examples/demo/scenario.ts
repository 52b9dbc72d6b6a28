/**
 * The demo's scenario, shared by the parent (the mesh and the load) and the child process (the backends):
 * who the backends are, how each one behaves, and the messages the two processes exchange.
 */

/** How one backend answers. Latencies are in ms; rates are fractions of requests. */
export interface BackendSpec {
  /** Shown in the tables and sent back in the `x-backend` response header. */
  readonly name: string;
  readonly role: 'normal' | 'slow' | 'flaky';
  /** Latency to response headers: `baseMs ± jitterMs`, uniform. */
  readonly baseMs: number;
  readonly jitterMs: number;
  /** For the slow one: the latency once it has turned slow (when it does is set per run, see {@link RunMessage}). */
  readonly slowMs?: number;
  readonly slowJitterMs?: number;
  /** For the flaky one: share of requests answered `503` at once (the overload shedding a real server does). */
  readonly errorRate?: number;
  /** For the flaky one: share of requests whose connection is destroyed before any response byte. */
  readonly resetRate?: number;
}

/** Five healthy backends, one that turns slow, one that fails 30 % of the time. */
export const BACKENDS: readonly BackendSpec[] = [
  { name: 'alpha', role: 'normal', baseMs: 10, jitterMs: 2 },
  { name: 'bravo', role: 'normal', baseMs: 10, jitterMs: 2 },
  { name: 'charlie', role: 'normal', baseMs: 10, jitterMs: 2 },
  { name: 'delta', role: 'normal', baseMs: 10, jitterMs: 2 },
  { name: 'echo', role: 'normal', baseMs: 10, jitterMs: 2 },
  { name: 'slowpoke', role: 'slow', baseMs: 10, jitterMs: 2, slowMs: 150, slowJitterMs: 15 },
  { name: 'flaky', role: 'flaky', baseMs: 10, jitterMs: 2, errorRate: 0.25, resetRate: 0.05 },
];

/** The response header that names the backend that answered. */
export const BACKEND_HEADER = 'x-backend';

/** A short description of a backend's behaviour, for the tables. */
export function describeBackend(spec: BackendSpec, slowAtMs: number): string {
  const base = `${spec.baseMs}±${spec.jitterMs} ms`;
  if (spec.role === 'slow') {
    const slow = `${spec.slowMs}±${spec.slowJitterMs ?? 0} ms`;
    return slowAtMs <= 0 ? slow : `${base} → ${slow} at ${(slowAtMs / 1000).toFixed(1)} s`;
  }
  if (spec.role === 'flaky') {
    const parts = [base];
    if (spec.errorRate) parts.push(`${Math.round(spec.errorRate * 100)}% 503`);
    if (spec.resetRate) parts.push(`${Math.round(spec.resetRate * 100)}% reset`);
    return parts.join(', ');
  }
  return base;
}

/** Parent → child: start a run. Every backend reseeds its randomness and restarts its schedule. */
export interface RunMessage {
  readonly type: 'run';
  readonly seed: number;
  /** When, from the start of the run, the slow backend turns slow (0: slow from the start; null: never). */
  readonly slowAtMs: number | null;
}

/** Parent → child: report the counts since the run started. */
export interface StatsMessage {
  readonly type: 'stats';
}

/** Parent → child: close the servers and exit. */
export interface StopMessage {
  readonly type: 'stop';
}

export type ToBackends = RunMessage | StatsMessage | StopMessage;

/**
 * What one backend received since the run started, counted by the backend itself: the truth about where the
 * traffic went, retries included (the client sees only the attempt that answered last).
 */
export interface Counts {
  received: number;
  /** Answered 503. */
  http503: number;
  /** Connection destroyed. */
  reset: number;
}

/** Child → parent. */
export type FromBackends =
  | { readonly type: 'ready'; readonly ports: Record<string, number> }
  | { readonly type: 'running' }
  | { readonly type: 'stats'; readonly counts: Record<string, Counts> };
