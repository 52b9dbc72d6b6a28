/**
 * meshfetch demo: latency-aware load balancing, shown live, with no Consul and no network.
 *
 * What it shows. Seven local HTTP backends stand behind one logical service, `demo`: five healthy ones at
 * about 10 ms, `slowpoke`, which turns slow (150 ms), and `flaky`, which fails 30 % of its requests (25 %
 * with a fast 503, 5 % by resetting the connection). A fixed-rate stream of requests goes through
 * `mesh.request('http://demo/work')` with the default stack, whatever it holds at the time (it is printed).
 *
 *   Phase 1 (10 s): the default balancer, P2C over Peak EWMA, with a live per-endpoint table redrawn twice a
 *   second: the share of the requests each backend received, the requests in flight to it, the p50/p99 the
 *   client observed for the calls it answered, the failures it dealt out, and the latency estimate and status
 *   that `mesh.snapshot()` reports. `slowpoke` turns slow at 3 s: watch its share fall.
 *   Phase 2 (3 x 4 s): the same workload (same request schedule, same seeds, `slowpoke` slow throughout) with
 *   round robin, P2C least-loaded and P2C Peak-EWMA, then a side-by-side table: overall latency, calls that
 *   failed, retries, and the share of the requests the slow and the flaky backend received. The verdict lines
 *   under it are computed from what was measured in this run, not written in advance.
 *
 * Where the numbers come from. Shares and failures are counted by the backends themselves, so retries are
 * included (the client only sees the attempt that answered last). Latencies are timed by the client, from
 * just before `mesh.request` to the end of the response body. The table cells from `mesh.snapshot()` are
 * what the balancer itself sees.
 *
 * Run:
 *   npm run demo                    # about 25 s
 *   npm run demo -- --quick         # about 5 s (or DEMO_QUICK=1), for tests and CI
 *
 * On a terminal the live table redraws in place; when stdout is not a terminal (CI logs, a pipe) each frame
 * is appended instead, every 2 s (1 s with --quick) so the log stays readable. NO_COLOR turns colours off.
 * Every request goes to 127.0.0.1; the mesh rejects any other host (`unknownHosts: 'reject'`). Everything
 * the demo starts is closed at the end and the process exits by itself with code 0.
 *
 * Files: scenario.ts (the backends' behaviour), backends.ts (the servers, in a child process; why is written
 * there), fleet.ts (starting and steering them), load.ts (the open-loop workload and what the client
 * observes), render.ts (tables and colours).
 */
import { createMesh, type BalancerName, type EndpointSnapshot, type Mesh } from 'meshfetch';
import { defaultStacks, seededRng } from 'meshfetch/extend';
import { Fleet, type BackendInfo } from './fleet.js';
import { quantiles, Recorder, runLoad, type LoadOptions } from './load.js';
import { bar, makeStyle, ms, pct, table, width, type Column } from './render.js';
import { BACKENDS, describeBackend, type Counts } from './scenario.js';

const QUICK = process.argv.includes('--quick') || process.env.DEMO_QUICK === '1';
const TTY = process.stdout.isTTY === true;
const st = makeStyle(TTY && !process.env.NO_COLOR);

/** Durations and rates; --quick shortens everything to about 5 s in all. */
const PLAN = QUICK
  ? {
      warmUpMs: 300,
      phase1Ms: 1_200,
      slowAtMs: 400,
      phase2Ms: 800,
      windowMs: 1_000,
      frameMs: TTY ? 500 : 1_000,
    }
  : {
      warmUpMs: 500,
      phase1Ms: 10_000,
      slowAtMs: 3_000,
      phase2Ms: 4_000,
      windowMs: 2_000,
      frameMs: TTY ? 500 : 2_000,
    };
/** Requests per second, open loop. */
const RATE = 1_000;
/** At most this many calls in flight; a call due beyond it is shed (counted, not sent). */
const MAX_INFLIGHT = 400;
/** Each call's total budget, sent with `callOptions({ deadlineMs })`. */
const DEADLINE_MS = 1_000;
/** One seed for the mesh's P2C draws and the backends' latencies and failures, reused by every run. */
const SEED = 42;
const SERVICE = 'demo';
const COMPARED: readonly BalancerName[] = ['round-robin', 'p2c-least-loaded', 'p2c-peak-ewma'];

const stop = new AbortController();
let interrupts = 0;
process.on('SIGINT', () => {
  if (++interrupts > 1) process.exit(130);
  // No output here: it would land in the middle of a live frame. The runs stop sending at once, the calls in
  // flight finish (within their deadline), and main() says what happened.
  process.exitCode = 130;
  stop.abort();
});

function meshFor(fleet: Fleet, balancer?: BalancerName): Mesh {
  return createMesh({
    rng: seededRng(SEED),
    // Only the backends: a URL naming any other host fails instead of leaving the machine.
    unknownHosts: 'reject',
    services: {
      [SERVICE]: {
        endpoints: fleet.backends.map((b) => b.address),
        ...(balancer === undefined ? {} : { balancer }),
        timeoutMs: 2_000,
      },
    },
  });
}

function load(durationMs: number): LoadOptions {
  return {
    rate: RATE,
    durationMs,
    maxInflight: MAX_INFLIGHT,
    deadlineMs: DEADLINE_MS,
    url: `http://${SERVICE}/work`,
    signal: stop.signal,
  };
}

function names(fleet: Fleet): Map<string, string> {
  return new Map(fleet.backends.map((b) => [b.address, b.spec.name]));
}

function colourName(b: BackendInfo): string {
  const n = b.spec.name;
  return b.spec.role === 'slow' ? st.yellow(n) : b.spec.role === 'flaky' ? st.red(n) : n;
}

/** The stack a call goes through, first to see the request first. */
function describeStack(): string {
  const s = defaultStacks();
  return [
    ...s.logical.roles(),
    'router',
    ...s.concrete.roles(),
    'balancer',
    ...s.endpoint.roles(),
    'undici Pool',
  ]
    .map((r) => (r === 'balancer' ? st.bold(r) : r))
    .join(' → ');
}

function errorSummary(rec: Recorder): string {
  const kinds = [...rec.errorKinds.entries()].sort((a, b) => b[1] - a[1]);
  if (kinds.length === 0) return 'failed 0';
  return `failed ${st.red(String(rec.errors))} (${kinds.map(([k, n]) => `${k} ×${n}`).join(', ')})`;
}

// ---------------------------------------------------------------------------------------------------------
// Phase 1: the live table.

/** Writes frames: in place on a terminal (cursor up, clear down), appended otherwise. */
class Screen {
  private rows = 0;
  draw(lines: readonly string[]): void {
    if (!TTY) {
      process.stdout.write(lines.join('\n') + '\n\n');
      return;
    }
    const cols = process.stdout.columns || 80;
    let out = this.rows > 0 ? `\x1b[${this.rows}A\r\x1b[0J` : '';
    out += lines.join('\n') + '\n';
    process.stdout.write(out);
    // A line wider than the terminal wraps: count the rows it really takes.
    this.rows = lines.reduce((n, l) => n + Math.max(1, Math.ceil(width(l) / cols)), 0);
  }
}

/** On a terminal narrower than `lines`, the narrower alternative (it leaves out the behaviour column). */
function fit(lines: string[], narrower: () => string[]): string[] {
  const cols = process.stdout.columns || 80;
  return TTY && lines.some((l) => width(l) > cols) ? narrower() : lines;
}

/** Backend-side counts at one instant of a run, kept so the live table can take differences over a window. */
interface CountsAt {
  readonly t: number;
  readonly counts: Record<string, Counts>;
}

function received(c: Record<string, Counts>, name: string): number {
  return c[name]?.received ?? 0;
}

function sum(c: Record<string, Counts>, f: (x: Counts) => number): number {
  return Object.values(c).reduce((n, x) => n + f(x), 0);
}

function liveFrame(
  fleet: Fleet,
  mesh: Mesh,
  rec: Recorder,
  history: readonly CountsAt[],
  elapsed: number,
  done: boolean,
): string[] {
  const now = performance.now();
  const snap = new Map<string, EndpointSnapshot>();
  for (const e of mesh.snapshot().services.find((s) => s.name === SERVICE)?.endpoints ?? [])
    snap.set(e.address, e);
  // Share: requests each backend received in the window (the newest counts minus the oldest ones in it).
  const latest = history[history.length - 1]!;
  const base = history.findLast((h) => h.t <= latest.t - PLAN.windowMs * 0.9) ?? history[0]!;
  const inWindow = fleet.backends.map(
    (b) => received(latest.counts, b.spec.name) - received(base.counts, b.spec.name),
  );
  const windowTotal = inWindow.reduce((a, b) => a + b, 0);
  const shares = inWindow.map((n) => (windowTotal === 0 ? NaN : n / windowTotal));
  // Every bar on one scale, full at 30 % or at the largest share, whichever is more.
  const scale = Math.max(0.3, ...shares.filter(Number.isFinite));
  const slowNow = elapsed >= PLAN.slowAtMs;
  const rows = fleet.backends.map((b, i) => {
    const c = latest.counts[b.spec.name];
    const failed = (c?.http503 ?? 0) + (c?.reset ?? 0);
    const e = snap.get(b.address);
    const share = shares[i]!;
    const [p50, p99] = quantiles(
      rec.byEndpoint
        .get(b.spec.name)!
        .since(now - PLAN.windowMs)
        .map((x) => x.ms),
      [0.5, 0.99],
    );
    const behaviour = describeBackend(b.spec, PLAN.slowAtMs);
    const status = e?.status ?? 'closed';
    return [
      colourName(b),
      b.spec.role === 'slow' && slowNow ? st.yellow(behaviour) : st.dim(behaviour),
      `${st.cyan(bar(share / scale, 10))} ${pct(share).padStart(6)}`,
      String(c?.received ?? 0),
      String(e?.inflight ?? 0),
      ms(p50!),
      ms(p99!),
      failed > 0 ? st.red(String(failed)) : '0',
      ms(e?.latencyMs ?? NaN),
      status === 'ready' ? st.green(status) : st.red(status),
    ];
  });
  const win = `${PLAN.windowMs / 1000} s`;
  const columns: Column[] = [
    { title: 'endpoint', align: 'l' },
    { title: 'behaviour', align: 'l' },
    { title: `share (last ${win})`, align: 'l' },
    { title: 'received', align: 'r', min: 6 },
    { title: 'in-flight', align: 'r' },
    { title: 'p50 ms', align: 'r' },
    { title: 'p99 ms', align: 'r' },
    { title: 'failed', align: 'r' },
    { title: 'EWMA ms', align: 'r' },
    { title: 'status', align: 'l' },
  ];
  const total = PLAN.phase1Ms;
  const progress = `${(Math.min(elapsed, total) / 1000).toFixed(1)} / ${(total / 1000).toFixed(1)} s`;
  const attempts = sum(latest.counts, (x) => x.received);
  return [
    `${st.bold('Phase 1 of 2')} · P2C Peak-EWMA (the default) · ${RATE} req/s  ${st.cyan(bar(elapsed / total, 16))} ${progress}${done ? st.dim(' (done)') : ''}`,
    st.dim(
      `share: requests each backend received in the last ${win} · received, failed (503 or reset): whole phase`,
    ),
    st.dim(
      `p50, p99: calls it answered in the last ${win}, timed by the client to the end of the body (a retried call includes its earlier attempts)`,
    ),
    st.dim('in-flight, EWMA (the Peak-EWMA latency estimate), status: mesh.snapshot()'),
    ...fit(table(columns, rows, st), () =>
      table(
        columns.toSpliced(1, 1),
        rows.map((r) => r.toSpliced(1, 1)),
        st,
      ),
    ),
    `calls: sent ${rec.sent} · done ${rec.completed} · ${errorSummary(rec)} · in flight ${rec.inflight} · shed ${rec.shed}` +
      ` · backends received ${attempts}` +
      (rec.sent > 0 && attempts > rec.sent
        ? ` (${pct((attempts - rec.sent) / rec.sent)} more: retries)`
        : ''),
  ];
}

/**
 * A moment of the same traffic through a throwaway mesh, not counted and not shown. V8 compiles the hot paths
 * of both processes here; without it the first seconds of phase 1 show the JIT warming up (p99 of 30-50 ms
 * on every backend), and Peak EWMA, which keeps a peak for about its decay time (10 s), would carry that
 * spike in every estimate through most of the phase.
 */
async function warmUp(fleet: Fleet): Promise<void> {
  const mesh = meshFor(fleet, 'round-robin');
  try {
    await fleet.run(SEED + 1, null); // nobody slow yet
    await runLoad(mesh, load(PLAN.warmUpMs), new Recorder(names(fleet)));
  } finally {
    await mesh.close();
  }
}

async function phase1(fleet: Fleet): Promise<void> {
  const rec = new Recorder(names(fleet));
  const mesh = meshFor(fleet); // no balancer given: the default, P2C Peak-EWMA
  const screen = new Screen();
  const history: CountsAt[] = [];
  try {
    await fleet.run(SEED, PLAN.slowAtMs);
    const start = performance.now();
    history.push({ t: start, counts: {} });
    let drawing: Promise<void> | undefined;
    const frame = async (done: boolean): Promise<void> => {
      const counts = await fleet.stats();
      const t = performance.now();
      history.push({ t, counts });
      // Keep the newest entry at least a window old, and everything after it.
      while (history.length > 2 && history[1]!.t <= t - PLAN.windowMs * 0.9) history.shift();
      screen.draw(liveFrame(fleet, mesh, rec, history, t - start, done));
    };
    const timer = setInterval(() => {
      // Once the last call has been sent only the final frame remains; a slow frame is never overtaken.
      if (performance.now() - start < PLAN.phase1Ms && drawing === undefined)
        drawing = frame(false).finally(() => (drawing = undefined));
    }, PLAN.frameMs);
    try {
      await runLoad(mesh, load(PLAN.phase1Ms), rec);
    } finally {
      clearInterval(timer);
      await drawing;
    }
    await frame(true);
  } finally {
    await mesh.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Phase 2: the same workload with each balancer, side by side.

interface Result {
  readonly balancer: BalancerName;
  readonly rec: Recorder;
  readonly p: readonly number[];
  readonly max: number;
  readonly errorRate: number;
  /** Requests the backends received, retries included. */
  readonly attempts: number;
  /** Shares of those requests. */
  readonly slowShare: number;
  readonly flakyShare: number;
  /** 503s and resets the flaky backend dealt out. */
  readonly flakyFailures: number;
}

async function runOne(fleet: Fleet, balancer: BalancerName): Promise<Result> {
  const rec = new Recorder(names(fleet));
  const mesh = meshFor(fleet, balancer);
  if (TTY) process.stdout.write(st.dim(`  ${balancer.padEnd(17)} running for ${PLAN.phase2Ms / 1000} s …`));
  let counts: Record<string, Counts>;
  try {
    await fleet.run(SEED, 0);
    await runLoad(mesh, load(PLAN.phase2Ms), rec);
    counts = await fleet.stats();
  } finally {
    await mesh.close();
  }
  const attempts = sum(counts, (x) => x.received);
  const byRole = (role: string): Counts =>
    counts[fleet.backends.find((x) => x.spec.role === role)!.spec.name]!;
  const p = quantiles(rec.okLatencies, [0.5, 0.9, 0.99]);
  const r: Result = {
    balancer,
    rec,
    p,
    max: rec.okLatencies.length === 0 ? NaN : rec.okLatencies.reduce((m, v) => Math.max(m, v), -Infinity),
    errorRate: rec.completed === 0 ? NaN : rec.errors / rec.completed,
    attempts,
    slowShare: attempts === 0 ? NaN : byRole('slow').received / attempts,
    flakyShare: attempts === 0 ? NaN : byRole('flaky').received / attempts,
    flakyFailures: byRole('flaky').http503 + byRole('flaky').reset,
  };
  if (TTY) process.stdout.write('\r\x1b[2K');
  console.log(
    `  ${balancer.padEnd(17)} ${rec.completed} calls · p99 ${ms(p[2]!)} ms · failed ${pct(r.errorRate)} · to slowpoke ${pct(r.slowShare)} · to flaky ${pct(r.flakyShare)}`,
  );
  return r;
}

function comparison(fleet: Fleet, results: readonly Result[]): string[] {
  const slow = fleet.backends.find((b) => b.spec.role === 'slow')!.spec;
  const flaky = fleet.backends.find((b) => b.spec.role === 'flaky')!.spec;
  const failPct = Math.round(((flaky.errorRate ?? 0) + (flaky.resetRate ?? 0)) * 100);
  // [label, value, format, lower is better (its best value is highlighted)]
  type Row = [string, (r: Result) => number, (v: number) => string, boolean];
  const specs: Row[] = [
    ['calls', (r) => r.rec.sent, String, false],
    ['p50 ms (2xx)', (r) => r.p[0]!, ms, true],
    ['p90 ms (2xx)', (r) => r.p[1]!, ms, true],
    ['p99 ms (2xx)', (r) => r.p[2]!, ms, true],
    ['max ms (2xx)', (r) => r.max, ms, true],
    ['calls failed', (r) => r.errorRate, pct, true],
    ['retries (extra requests per call)', (r) => (r.attempts - r.rec.sent) / r.rec.sent, pct, true],
    [`requests to ${slow.name} (${describeBackend(slow, 0)})`, (r) => r.slowShare, pct, true],
    [`requests to ${flaky.name} (${failPct}% fail)`, (r) => r.flakyShare, pct, true],
    [`failures ${flaky.name} dealt out`, (r) => r.flakyFailures, String, true],
  ];
  if (results.some((r) => r.rec.shed > 0))
    specs.push(['shed (in-flight cap)', (r) => r.rec.shed, String, true]);
  const rows = specs.map(([label, f, fmt, lowerIsBetter]) => {
    const values = results.map(f);
    const best = Math.min(...values.filter(Number.isFinite));
    const highlight = lowerIsBetter && results.length > 1 && values.some((v) => v !== best);
    return [label, ...values.map((v) => (highlight && v === best ? st.bold(st.green(fmt(v))) : fmt(v)))];
  });
  const columns: Column[] = [
    { title: `same workload, ${PLAN.phase2Ms / 1000} s each`, align: 'l' },
    ...results.map((r) => ({ title: r.balancer, align: 'r' as const, min: 14 })),
  ];
  return table(columns, rows, st);
}

function verdict(results: readonly Result[]): string[] {
  const fair = 1 / BACKENDS.length;
  const by = (f: (r: Result) => number): Result =>
    results.reduce((a, b) => (Number.isFinite(f(b)) && !(f(a) <= f(b)) ? b : a));
  const p99 = by((r) => r.p[2]!);
  const rr = results.find((r) => r.balancer === 'round-robin');
  const slow = by((r) => r.slowShare);
  const lines = [
    `lowest p99: ${st.bold(p99.balancer)}, ${ms(p99.p[2]!)} ms` +
      (rr && rr !== p99
        ? ` (round robin: ${ms(rr.p[2]!)} ms, ${(rr.p[2]! / p99.p[2]!).toFixed(1)}× higher)`
        : ''),
    `least traffic to the slow backend: ${st.bold(slow.balancer)}, ${pct(slow.slowShare)} of the requests (an even split gives each ${pct(fair)})`,
  ];
  const favoured = results.filter((r) => r.balancer !== 'round-robin' && r.flakyShare > fair * 1.1);
  if (favoured.length > 0) {
    lines.push(
      `${favoured.map((r) => `${st.bold(r.balancer)} (${pct(r.flakyShare)})`).join(' and ')} sent the flaky backend more than an even share:`,
      st.dim(
        '  its failures come back fast, and a balancer that sees only latency and load takes a fast failure for a fast answer',
      ),
    );
  }
  return lines;
}

async function phase2(fleet: Fleet): Promise<void> {
  console.log(
    `\n${st.bold('Phase 2 of 2')}  the same workload with each balancer (${RATE} req/s for ${PLAN.phase2Ms / 1000} s, same seeds, ${st.yellow('slowpoke')} slow from the start)`,
  );
  const results: Result[] = [];
  for (const b of COMPARED) {
    if (stop.signal.aborted) break;
    results.push(await runOne(fleet, b));
  }
  if (results.length === 0) return;
  console.log('');
  for (const l of comparison(fleet, results)) console.log(`  ${l}`);
  console.log(
    st.dim(
      '  latency: client-side, successful calls, to the end of the body · requests: as the backends counted them, retries included',
    ),
  );
  console.log('');
  for (const l of verdict(results)) console.log(`  ${l}`);
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  // Bounded whatever happens: the demo never runs for long, even if something hangs.
  setTimeout(() => {
    console.error('demo: still running after 90 s; giving up');
    process.exit(1);
  }, 90_000).unref();
  console.log(
    st.bold('meshfetch demo') +
      ` — one logical service, "${SERVICE}", balanced in-process over ${BACKENDS.length} local backends${QUICK ? st.dim(' (quick mode)') : ''}`,
  );
  const fleet = await Fleet.start();
  try {
    for (const b of fleet.backends) {
      console.log(
        `  ${colourName(b)}${' '.repeat(Math.max(0, 8 - b.spec.name.length))}  ${b.address.padEnd(15)}  ${st.dim(describeBackend(b.spec, b.spec.role === 'slow' ? PLAN.slowAtMs : 0))}`,
      );
    }
    console.log(
      `  traffic: ${RATE} req/s open loop through mesh.request('http://${SERVICE}/work'), deadline ${DEADLINE_MS} ms per call, seed ${SEED}`,
    );
    console.log(`  stack, first to see a call first: ${describeStack()}`);
    console.log(st.dim(`  warming up for ${PLAN.warmUpMs / 1000} s (not counted) …`) + '\n');
    await warmUp(fleet);
    if (!stop.signal.aborted) await phase1(fleet);
    if (!stop.signal.aborted) await phase2(fleet);
  } finally {
    await fleet.stop();
  }
  if (stop.signal.aborted) console.log(st.yellow('\ninterrupted: the rest of the demo was skipped'));
  console.log(
    st.dim(`\ndone in ${((performance.now() - t0) / 1000).toFixed(1)} s; backends and mesh closed`),
  );
}

await main();
