/**
 * The demo's workload and what the client observes of it.
 *
 * Open loop: requests leave on a fixed schedule (request i at i / rate seconds) whatever the answers do, as
 * real users' requests would. A closed loop (N workers, each waiting for its answer) would hide a slow
 * backend: its workers would simply send less, and the latency it causes would turn into lost throughput
 * instead of showing in the percentiles (coordinated omission). So every balancer gets exactly the same
 * requests at the same times; only where they go differs. In-flight requests are capped (a request due while
 * the cap is reached is counted as shed, not sent) so nothing can grow without bound.
 *
 * A latency is measured by the client from just before `mesh.request` to the end of the response body.
 */
import { callOptions, MeshError, TransportError, type Mesh } from 'meshfetch';
import { BACKEND_HEADER } from './scenario.js';

/** One finished call, as the client saw it. */
export interface Sample {
  /** When it finished (ms, `performance.now()`). */
  readonly t: number;
  /** Client-observed latency (ms). */
  readonly ms: number;
  readonly ok: boolean;
}

/** What the client saw of one backend. */
export class EndpointStats {
  readonly samples: Sample[] = [];
  count = 0;
  errors = 0;
  constructor(readonly name: string) {}

  add(s: Sample): void {
    this.samples.push(s);
    this.count++;
    if (!s.ok) this.errors++;
  }

  /** The samples that finished after `since` (the array is in finishing order, so scan from the end). */
  since(since: number): Sample[] {
    const out: Sample[] = [];
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const s = this.samples[i]!;
      if (s.t < since) break;
      out.push(s);
    }
    return out;
  }
}

/** Everything one run observed. */
export class Recorder {
  readonly byEndpoint = new Map<string, EndpointStats>();
  /** Latencies of the successful (2xx) calls, for the overall percentiles. */
  readonly okLatencies: number[] = [];
  /** Error counts by kind (`HTTP 503`, `transport UND_ERR_SOCKET`, ...). */
  readonly errorKinds = new Map<string, number>();
  sent = 0;
  completed = 0;
  shed = 0;
  inflight = 0;
  /** Calls that failed with no endpoint to blame (e.g. no endpoint could be picked). */
  unattributed = 0;

  constructor(
    /** Address `host:port` to backend name, for errors that carry only the address. */
    private readonly names: ReadonlyMap<string, string>,
  ) {
    for (const name of names.values()) this.byEndpoint.set(name, new EndpointStats(name));
  }

  get errors(): number {
    let n = 0;
    for (const v of this.errorKinds.values()) n += v;
    return n;
  }

  record(endpoint: string | undefined, sample: Sample, errorKind?: string): void {
    this.completed++;
    if (errorKind !== undefined) this.errorKinds.set(errorKind, (this.errorKinds.get(errorKind) ?? 0) + 1);
    else this.okLatencies.push(sample.ms);
    const name = endpoint === undefined ? undefined : (this.names.get(endpoint) ?? endpoint);
    if (name === undefined) {
      this.unattributed++;
      return;
    }
    let stats = this.byEndpoint.get(name);
    if (stats === undefined) this.byEndpoint.set(name, (stats = new EndpointStats(name)));
    stats.add(sample);
  }
}

/** The shape of one run of the workload. */
export interface LoadOptions {
  /** Requests per second. */
  readonly rate: number;
  readonly durationMs: number;
  /** In-flight cap; a request due while it is reached is shed. */
  readonly maxInflight: number;
  /** Per-call deadline, sent with `callOptions` (covers the body too). */
  readonly deadlineMs: number;
  /** The URL to call; its host is the mesh service. */
  readonly url: string;
  /** Stops sending early (Ctrl-C). */
  readonly signal?: AbortSignal;
}

/** A name for an error, for the error breakdown. */
function errorKind(err: unknown): string {
  if (err instanceof TransportError) return `transport ${err.causeCode ?? err.code} (${err.phase})`;
  if (err instanceof MeshError) return err.code;
  if (err instanceof Error) return err.name;
  return String(err);
}

async function once(mesh: Mesh, options: LoadOptions, rec: Recorder, headers: Record<string, string>) {
  const t0 = performance.now();
  rec.sent++;
  rec.inflight++;
  try {
    const res = await mesh.request(options.url, { headers });
    await res.body.text();
    const t = performance.now();
    const header = res.headers[BACKEND_HEADER];
    const name = Array.isArray(header) ? header[0] : header;
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    rec.record(name, { t, ms: t - t0, ok }, ok ? undefined : `HTTP ${res.statusCode}`);
  } catch (err) {
    const t = performance.now();
    const endpoint = err instanceof MeshError ? err.endpoint : undefined;
    rec.record(endpoint, { t, ms: t - t0, ok: false }, errorKind(err));
  } finally {
    rec.inflight--;
  }
}

/**
 * Sends the workload through `mesh` and resolves when every call it sent has finished. `rec` fills in as
 * calls finish, so a caller can draw it while the run goes on.
 */
export async function runLoad(mesh: Mesh, options: LoadOptions, rec: Recorder): Promise<void> {
  const headers = callOptions({ deadlineMs: options.deadlineMs });
  const total = Math.round((options.rate * options.durationMs) / 1000);
  const start = performance.now();
  const pending = new Set<Promise<void>>();
  let due = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsed = performance.now() - start;
      const target = Math.min(total, Math.floor((elapsed * options.rate) / 1000) + 1);
      for (; due < target; due++) {
        if (rec.inflight >= options.maxInflight) {
          rec.shed++;
          continue;
        }
        // The same header object for every call is fine: mesh.request copies it.
        const p = once(mesh, options, rec, headers);
        pending.add(p);
        void p.then(() => pending.delete(p));
      }
      if (due >= total || options.signal?.aborted) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
  await Promise.all(pending);
}

/** The q-quantile (0..1) of `values`, nearest rank; NaN when empty. Sorts a copy. */
export function quantiles(values: readonly number[], qs: readonly number[]): number[] {
  if (values.length === 0) return qs.map(() => NaN);
  const sorted = Float64Array.from(values).sort();
  return qs.map((q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);
}
