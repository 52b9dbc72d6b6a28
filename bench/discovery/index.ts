/**
 * bench/discovery: how fast Consul health changes reach the balancer, and what applying one Consul answer
 * costs for a large service (issue 4, "Benchmark"; issue 8, "Scale").
 *
 * 1. Convergence (convergence.ts): a real `consul agent -dev` on 127.0.0.1 (the test harness in
 *    test/support/consul.ts), N instances with TTL checks backed by real HTTP servers on 127.0.0.1, a mesh
 *    with `consulDiscovery`; one instance's check is flipped to critical and back, again and again; each flip
 *    is timed from just before the HTTP call that changes the check to the moment the mesh's Destination has
 *    applied the new set (the balancer no longer picks the endpoint, or picks it again). Paced traffic through
 *    the mesh confirms it: no request sent after that moment reaches the removed instance.
 *    Target: removal p99 <= 100 ms on loopback.
 * 2. Update cost (update-cost.ts): one answer of 50 / 500 / 5,000 instances where one instance changed, split
 *    into (a) JSON.parse + parseHealthEntries + reconcileEndpoints (proportional to the answer) and (b)
 *    everything after the diff (the Destination's node map and the balancer's update), which the issue
 *    expects to be proportional to the change.
 *
 * Output: tables on stdout, bench/results/discovery.json and discovery.svg, and bench/discovery/RESULTS.md;
 * a --quick run writes only bench/results/quick/discovery.json and .svg (not committed).
 *
 * Run (Consul from `npm run consul:install`, or CONSUL_BIN / PATH):
 *   npx tsx --conditions=meshfetch-source bench/discovery/index.ts            # full: 100 flips 1 s apart, ~3.5 min
 *   npx tsx --conditions=meshfetch-source bench/discovery/index.ts --quick    # 10 flips, 300 ms apart, ~25 s
 * Options: --flips N, --cycle-ms N (time between two critical flips), --instances N, --skip-convergence,
 * --only update-cost (runs only part 2; a full run then keeps the convergence results of the committed
 * bench/results/discovery.json, saying which run they come from, instead of replacing them with "not run").
 * Exit code 0 when the measurements ran (a MISS against the target is reported, not an error); 1 on an error.
 * Without a Consul binary the convergence part is reported as not run and the rest still runs.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type as osType } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findConsulBinary } from '../../test/support/consul.js';
import { runConvergence, type ConvergenceResult } from './convergence.js';
import {
  convergenceTable,
  findings,
  renderMarkdown,
  renderSvg,
  roundSummary,
  updateCostTables,
  type DiscoveryResults,
} from './report.js';
import { runUpdateCost, type UpdateCostResult } from './update-cost.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const RESULTS_DIR = join(REPO, 'bench', 'results');
// Quick runs write beside, never over, the committed full results (bench/results/.gitignore ignores quick/).
const QUICK_DIR = join(RESULTS_DIR, 'quick');
const TARGET_P99_MS = 100;

interface Args {
  quick: boolean;
  flips: number;
  cycleMs: number;
  instances: number;
  skipConvergence: boolean;
  /** `--only update-cost`: part 2 only, keeping the last convergence results. */
  onlyUpdateCost: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const quick = argv.includes('--quick');
  const args: Args = {
    quick,
    flips: quick ? 10 : 100,
    // Quick: changes 300 ms apart (critical, then passing 300 ms later).
    cycleMs: quick ? 600 : 1_000,
    instances: 3,
    skipConvergence: false,
    onlyUpdateCost: false,
  };
  const int = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`${name} wants an integer in ${min}..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') continue;
    else if (a === '--flips') args.flips = int(a, argv[++i], 1, 10_000);
    else if (a === '--cycle-ms') args.cycleMs = int(a, argv[++i], 100, 60_000);
    else if (a === '--instances') args.instances = int(a, argv[++i], 2, 50);
    else if (a === '--skip-convergence') args.skipConvergence = true;
    else if (a === '--only') {
      const what = argv[++i];
      if (what !== 'update-cost') throw new Error(`--only wants "update-cost", got ${String(what)}`);
      args.onlyUpdateCost = true;
    }
    // bench/run.ts passes every flag to every benchmark; the ones meant for others are ignored.
    else if (a.startsWith('--')) console.warn(`bench/discovery: ignoring ${a}`);
  }
  return args;
}

/** Prettier-formats a file's text when prettier is installed (it is a dev dependency), so lint stays clean. */
async function formatted(text: string, file: string): Promise<string> {
  try {
    const prettier = await import('prettier');
    const config = (await prettier.resolveConfig(file)) ?? {};
    return await prettier.format(text, { ...config, filepath: file });
  } catch {
    return text;
  }
}

function roundConvergence(c: ConvergenceResult): ConvergenceResult {
  const r = (v: number | null): number | null => (v === null ? null : Math.round(v * 100) / 100);
  return {
    ...c,
    consulStartMs: Math.round(c.consulStartMs),
    removal: roundSummary(c.removal),
    recovery: roundSummary(c.recovery),
    checkApi: roundSummary(c.checkApi),
    trafficRemoval: roundSummary(c.trafficRemoval),
    traffic: { ...c.traffic, perSecond: Math.round(c.traffic.perSecond) },
    samples: c.samples.map((s) => ({
      ...s,
      convergedMs: r(s.convergedMs),
      checkApiMs: r(s.checkApiMs)!,
      trafficMs: r(s.trafficMs),
    })),
  };
}

function roundCost(u: UpdateCostResult): UpdateCostResult {
  return {
    ...u,
    rows: u.rows.map((row) => ({
      ...row,
      jsonParseUs: roundSummary(row.jsonParseUs),
      parseEntriesUs: roundSummary(row.parseEntriesUs),
      reconcileUs: roundSummary(row.reconcileUs),
      beforeDiffUs: roundSummary(row.beforeDiffUs),
      applyUs: roundSummary(row.applyUs),
      applyAloneUs: row.applyAloneUs && roundSummary(row.applyAloneUs),
      applyFullUs: row.applyFullUs && roundSummary(row.applyFullUs),
      totalUs: roundSummary(row.totalUs),
    })),
    balancerUpdateUs: u.balancerUpdateUs.map((b) => ({ ...b, us: roundSummary(b.us) })),
    balancerApplyUs: u.balancerApplyUs.map((b) => ({ ...b, us: roundSummary(b.us) })),
  };
}

/** The convergence results of the committed full run (bench/results/discovery.json), if it has any. */
function previousConvergence():
  | {
      convergence: DiscoveryResults['convergence'];
      verdict: DiscoveryResults['convergenceVerdict'];
      from: { date: string; command: string };
    }
  | undefined {
  try {
    const prev = JSON.parse(readFileSync(join(RESULTS_DIR, 'discovery.json'), 'utf8')) as DiscoveryResults;
    if ('skipped' in prev.convergence) return undefined;
    return {
      convergence: prev.convergence,
      verdict: prev.convergenceVerdict,
      from: prev.convergenceFrom ?? { date: prev.run.date, command: prev.run.command },
    };
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const loadAtStart = loadavg()[0]!;
  const log = (line: string): void => console.log(line);
  const abort = new AbortController();
  // First signal: stop the loops and clean up (finally blocks stop the agent); second: exit at once (the
  // harness's exit hook still kills the agent).
  const onSignal = (sig: NodeJS.Signals): void => {
    if (abort.signal.aborted) process.exit(130);
    console.warn(`bench/discovery: ${sig}, stopping and cleaning up (again to exit at once)`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const mode = args.quick ? 'quick' : 'full';
  // bench/run.ts tells us the command the user typed; run standalone, it is this file's own command line.
  const command =
    process.env.MESHFETCH_BENCH_COMMAND ||
    [
      'npx tsx --conditions=meshfetch-source',
      relative(REPO, fileURLToPath(import.meta.url)),
      ...process.argv.slice(2),
    ].join(' ');
  log(`bench/discovery (${mode}): ${command}`);

  let convergence: ConvergenceResult | { skipped: string };
  let consulFound: string | undefined;
  // --only update-cost: the convergence results of the last full run are carried over (see the file comment).
  const carried = args.onlyUpdateCost ? previousConvergence() : undefined;
  if (carried) convergence = carried.convergence;
  else if (args.onlyUpdateCost) convergence = { skipped: '--only update-cost (no earlier results to keep)' };
  else if (args.skipConvergence) convergence = { skipped: '--skip-convergence' };
  else {
    try {
      findConsulBinary();
    } catch (e) {
      consulFound = (e as Error).message;
    }
    if (consulFound !== undefined) {
      console.warn(`bench/discovery: convergence not run: ${consulFound}`);
      convergence = { skipped: consulFound };
    } else {
      log(
        `\n1. Convergence: ${args.flips} flips, ${args.cycleMs} ms apart, ${args.instances} instances (real Consul, loopback)`,
      );
      convergence = await runConvergence({
        instances: args.instances,
        flips: args.flips,
        cycleMs: args.cycleMs,
        flipTimeoutMs: 5_000,
        signal: abort.signal,
        log,
      });
    }
  }
  if (abort.signal.aborted) throw new Error('interrupted');

  log('\n2. Cost of applying one Consul answer where one instance changed');
  const updateCost = await runUpdateCost({
    sizes: [50, 500, 5_000],
    budget: args.quick ? 200_000 : 1_000_000,
    minReps: args.quick ? 20 : 100,
    maxReps: args.quick ? 2_000 : 10_000,
    log,
  });

  const verdict = carried
    ? carried.verdict
    : 'skipped' in convergence
      ? 'NOT RUN'
      : convergence.removal.timeouts === 0 &&
          convergence.traffic.routedAfterRemoval === 0 &&
          convergence.removal.p99 !== null &&
          convergence.removal.p99 <= TARGET_P99_MS
        ? 'PASS'
        : 'MISS';
  const c = cpus();
  const results: DiscoveryResults = {
    benchmark: 'discovery',
    run: {
      date: new Date().toISOString(),
      mode,
      command,
      machine: {
        cpu: `${c[0]?.model.trim() ?? 'unknown'}${c[0]?.speed ? ` @ ${c[0].speed} MHz` : ''}`,
        cores: c.length,
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        os: `${osType()} ${release()}`,
        node: process.version,
      },
      durationS: Math.round((performance.now() - started) / 1_000),
      loadAverage1m: {
        start: Math.round(loadAtStart * 100) / 100,
        end: Math.round(loadavg()[0]! * 100) / 100,
      },
    },
    target: { convergenceP99Ms: TARGET_P99_MS },
    convergence: 'skipped' in convergence ? convergence : roundConvergence(convergence),
    convergenceVerdict: verdict,
    ...(carried ? { convergenceFrom: carried.from } : {}),
    updateCost: roundCost(updateCost),
    findings: findings(updateCost),
  };

  log('');
  if (carried) log(`Convergence: not re-run; kept from the run of ${carried.from.date}`);
  else if ('skipped' in convergence) log(`Convergence: not run (${convergence.skipped})`);
  else {
    log(convergenceTable(convergence));
    log(
      `${verdict}: removal p99 ${convergence.removal.p99?.toFixed(1)} ms (target <= ${TARGET_P99_MS} ms); requests routed to a removed instance after the update: ${convergence.traffic.routedAfterRemoval}`,
    );
  }
  const t = updateCostTables(updateCost);
  log(`\nUpdate cost, one instance removed / re-added (medians):\n${t.split}`);
  log(`\nAll scenarios:\n${t.scenarios}`);
  log('');
  for (const f of results.findings) log(`- ${f}`);

  const dir = args.quick ? QUICK_DIR : RESULTS_DIR;
  mkdirSync(dir, { recursive: true });
  const jsonFile = join(dir, 'discovery.json');
  const svgFile = join(dir, 'discovery.svg');
  writeFileSync(jsonFile, await formatted(`${JSON.stringify(results, null, 2)}\n`, jsonFile));
  writeFileSync(svgFile, renderSvg(results));
  const written = [jsonFile, svgFile];
  if (!args.quick) {
    const mdFile = join(HERE, 'RESULTS.md');
    const rerun = 'npx tsx --conditions=meshfetch-source bench/discovery/index.ts';
    writeFileSync(mdFile, await formatted(renderMarkdown(results, rerun), mdFile));
    written.push(mdFile);
  }
  log(`\nwrote ${written.map((f) => relative(REPO, f)).join(', ')}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('bench/discovery failed:', err);
    process.exit(1);
  },
);
