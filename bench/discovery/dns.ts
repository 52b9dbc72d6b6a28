/**
 * bench/discovery/dns.ts: DNS discovery (issue 23, "Figures"), with a real dnsmasq on loopback
 * (test/support/dnsmasq.ts; `bash scripts/install-dnsmasq.sh`) and real HTTP servers on 127.0.0.x.
 *
 * 1. Change to traffic at TTL 1 s: dnsmasq answers with `--local-ttl=1`, the mesh uses `dnsDiscovery` with its
 *    defaults (so it refreshes every second) and the default balancer, under a closed loop of 8 concurrent
 *    calls. A record is added (hosts file rewritten, SIGHUP) at a random phase of the refresh cycle; timed from
 *    just before the SIGHUP to (a) the destination applying the new set (the `meshfetch:discovery:update`
 *    event naming it) and (b) the first request arriving at the new server; then removed again, timed to the
 *    destination dropping it. Target: p99 of (b) <= 2 s.
 * 2. Refresh cost of 1,000 unchanged records: one name with 1,000 A records (a truncated UDP answer, then the
 *    whole set over TCP, as c-ares does), refreshed every 50 ms (`maxTtlMs: 50`); the main thread's active
 *    time (`performance.eventLoopUtilization()`) over the window minus that of an idle window of the same
 *    length, per refresh. It covers everything the refresh costs the event loop: c-ares' socket callbacks and
 *    parsing into 1,000 JS objects, and the resolver's comparison with the previous set (nothing is published
 *    when nothing changed). Target: <= 2 ms.
 * 3. Scale-out against resolving once: a name with 2 A records grows to 8 while 8 concurrent calls flow. Two
 *    clients in turn: undici's Agent (what `fetch` uses) with keep-alive and a `lookup` that asks the same
 *    dnsmasq and shuffles the answer (CoreDNS's `loadbalance` plugin, on in Kubernetes' default Corefile, does
 *    the same), and meshfetch with `dnsDiscovery`. The share of requests each address takes in the seconds
 *    after the scale-out, per client, is the plot.
 *
 * Output: tables on stdout, bench/results/discovery-dns.json and discovery-dns.svg, bench/discovery/DNS-RESULTS.md
 * (a --quick run writes only under bench/results/quick/).
 *
 * Run:
 *   npx tsx --conditions=meshfetch-source bench/discovery/dns.ts            # full: 40 changes, ~3 min
 *   npx tsx --conditions=meshfetch-source bench/discovery/dns.ts --quick    # 8 changes, ~1 min
 * Options: --changes N, --concurrency N. Exit code 0 when the measurements ran (a MISS is reported, not an
 * error); 1 on an error.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Resolver } from 'node:dns/promises';
import { cpus, loadavg, release, totalmem, type as osType } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { CHANNELS, createMesh, dnsDiscovery, type DiscoveryUpdateEvent, type Mesh } from 'meshfetch';
import { startDnsmasq, type Dnsmasq } from '../../test/support/dnsmasq.js';
import { startLoopbackFleet, type LoopbackFleet } from '../../test/support/loopback-fleet.js';
import { barChart, svgDocument, writeSvg, type Panel } from '../lib/svg.js';
import { writeFormatted, writeJson } from '../lib/output.js';
import { fmt, round, summarize, table, type Summary } from './stats.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const DOMAIN = 'bench.test';
const NAME = `users.${DOMAIN}`;
const BIG = `big.${DOMAIN}`;
const SCALE = `scale.${DOMAIN}`;
const HOSTS = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`);
const TARGET_CHANGE_P99_MS = 2_000;
const TARGET_REFRESH_MS = 2;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function roundSummary(s: Summary): Summary {
  return {
    count: s.count,
    min: round(s.min),
    p50: round(s.p50),
    p90: round(s.p90),
    p99: round(s.p99),
    max: round(s.max),
    mean: round(s.mean),
  };
}

interface Args {
  quick: boolean;
  changes: number;
  concurrency: number;
}

function parseArgs(argv: readonly string[]): Args {
  const quick = argv.includes('--quick');
  const args: Args = { quick, changes: quick ? 8 : 40, concurrency: 8 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const int = (min: number, max: number): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < min || n > max)
        throw new Error(`${a} wants an integer in ${min}..${max}`);
      return n;
    };
    if (a === '--changes') args.changes = int(1, 1_000);
    else if (a === '--concurrency') args.concurrency = int(1, 256);
    else if (a.startsWith('--') && a !== '--quick') console.warn(`bench/discovery/dns: ignoring ${a}`);
  }
  return args;
}

/** A closed loop of `concurrency` callers of `call` until stopped; counts calls and failures. */
function closedLoop(
  call: () => Promise<void>,
  concurrency: number,
): { stop(): Promise<void>; calls(): number; failures(): number } {
  let running = true;
  let calls = 0;
  let failures = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        await call();
      } catch {
        failures++;
      }
      calls++;
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    calls: () => calls,
    failures: () => failures,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

function meshCall(m: Mesh): () => Promise<void> {
  return async () => {
    const res = await m.request('http://users/');
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  };
}

// ---- 1. change to traffic -------------------------------------------------------------------------------

interface ChangeResult {
  readonly changes: number;
  readonly concurrency: number;
  readonly addApplied: Summary;
  readonly addTraffic: Summary;
  readonly removeApplied: Summary;
  readonly timeouts: number;
  readonly calls: number;
  readonly failures: number;
}

async function changeToTraffic(
  dns: Dnsmasq,
  fleet: LoopbackFleet,
  args: Args,
  log: (s: string) => void,
): Promise<ChangeResult> {
  const base = HOSTS.slice(0, 3);
  await dns.setHosts({ [NAME]: base });
  const m = createMesh({
    services: {
      users: { discovery: dnsDiscovery({ name: NAME, port: fleet.port, servers: [dns.address] }) },
    },
  });
  const applied = new Map<string, { added?: number; removed?: number }>();
  const onUpdate = (msg: unknown): void => {
    const e = msg as DiscoveryUpdateEvent;
    const now = performance.now();
    for (const id of e.added) applied.set(id, { ...applied.get(id), added: now });
    for (const id of e.removed) applied.set(id, { ...applied.get(id), removed: now });
  };
  subscribe(CHANNELS.discoveryUpdate, onUpdate);
  let firstArrival: { host: string; at: number } | undefined;
  let watching: string | undefined;
  fleet.onRequest = (host) => {
    if (host === watching && firstArrival === undefined) firstArrival = { host, at: performance.now() };
  };
  const load = closedLoop(meshCall(m), args.concurrency);
  const addApplied: number[] = [];
  const addTraffic: number[] = [];
  const removeApplied: number[] = [];
  let timeouts = 0;
  try {
    // Warm up: every base record measured.
    await sleep(2_000);
    for (let k = 0; k < args.changes; k++) {
      const host = HOSTS[3 + (k % 5)]!;
      const id = `${host}:${fleet.port}`;
      // A random phase of the 1 s refresh cycle.
      await sleep(500 + Math.random() * 1_000);
      applied.delete(id);
      firstArrival = undefined;
      watching = host;
      const t0 = performance.now();
      await dns.setHosts({ [NAME]: [...base, host] });
      const deadline = t0 + 10_000;
      while (
        (firstArrival === undefined || applied.get(id)?.added === undefined) &&
        performance.now() < deadline
      )
        await sleep(2);
      const a = applied.get(id)?.added;
      const arrived = firstArrival as { at: number } | undefined;
      if (a === undefined || arrived === undefined) timeouts++;
      else {
        addApplied.push(a - t0);
        addTraffic.push(arrived.at - t0);
      }
      watching = undefined;
      await sleep(500 + Math.random() * 1_000);
      const t1 = performance.now();
      await dns.setHosts({ [NAME]: base });
      while (applied.get(id)?.removed === undefined && performance.now() < t1 + 10_000) await sleep(2);
      const r = applied.get(id)?.removed;
      if (r === undefined) timeouts++;
      else removeApplied.push(r - t1);
      log(
        `  change ${k + 1}/${args.changes}: ${host} added -> applied ${fmt(a === undefined ? null : a - t0, ' ms')}, first request ${fmt(arrived ? arrived.at - t0 : null, ' ms')}; removed -> applied ${fmt(r === undefined ? null : r - t1, ' ms')}`,
      );
    }
  } finally {
    await load.stop();
    fleet.onRequest = undefined;
    unsubscribe(CHANNELS.discoveryUpdate, onUpdate);
    await m.close();
  }
  return {
    changes: args.changes,
    concurrency: args.concurrency,
    addApplied: summarize(addApplied),
    addTraffic: summarize(addTraffic),
    removeApplied: summarize(removeApplied),
    timeouts,
    calls: load.calls(),
    failures: load.failures(),
  };
}

// ---- 2. refresh cost ------------------------------------------------------------------------------------

interface RefreshCostResult {
  readonly records: number;
  readonly windowMs: number;
  readonly refreshes: number;
  readonly activeMsIdle: number;
  readonly activeMsRefreshing: number;
  readonly perRefreshMs: number;
  /** Process CPU time (user + system) per refresh, idle window subtracted: immune to waiting for a core. */
  readonly cpuPerRefreshMs: number;
  /**
   * The floor, measured the same way in the same run: Node's `resolve4(name, { ttl: true })` alone, at the same
   * pace, without the resolver (c-ares' work and the 1,000 objects Node makes of the answer).
   */
  readonly rawPerQueryMs: number;
  readonly rawCpuPerQueryMs: number;
  readonly updatesPublished: number;
}

async function refreshCost(dns: Dnsmasq, windowMs: number): Promise<RefreshCostResult> {
  const records = 1_000;
  const addrs = Array.from({ length: records }, (_, i) => `127.1.${((i + 1) >> 8) & 255}.${(i + 1) & 255}`);
  await dns.setHosts({ [BIG]: addrs });
  const ctx = {
    service: 'big',
    clock: (await import('meshfetch')).systemClock,
    rng: (await import('meshfetch/extend')).systemRng,
    logger: (await import('meshfetch/extend')).silentLogger,
  };
  // Idle window first: what the event loop does anyway (timers of this script).
  const idle0 = performance.eventLoopUtilization();
  const idleCpu0 = process.cpuUsage();
  await sleep(windowMs);
  const idle = performance.eventLoopUtilization(idle0);
  const idleCpu = process.cpuUsage(idleCpu0);
  const r = dnsDiscovery({ name: BIG, port: 80, servers: [dns.address], minTtlMs: 20, maxTtlMs: 50 }).resolve(
    ctx,
  );
  try {
    const deadline = performance.now() + 10_000;
    while (!(r.addr.state === 'bound' && r.addr.endpoints.length === records)) {
      if (performance.now() > deadline)
        throw new Error(`no answer of ${records} records: ${JSON.stringify(r.snapshot())}`);
      await sleep(10);
    }
    await sleep(500); // JIT warm-up over the first refreshes
    const before = r.snapshot().stats;
    const u0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    await sleep(windowMs);
    const busy = performance.eventLoopUtilization(u0);
    const cpu = process.cpuUsage(cpu0);
    const after = r.snapshot().stats;
    const refreshes = after.lookups - before.lookups;
    await r.close();
    // The floor: the bare query at the same pace, the resolver closed.
    const raw = new Resolver({ timeout: 2_000, tries: 2 });
    raw.setServers([dns.address]);
    const w0 = performance.eventLoopUtilization();
    const c0 = process.cpuUsage();
    let queries = 0;
    const end = performance.now() + windowMs;
    while (performance.now() < end) {
      await raw.resolve4(BIG, { ttl: true });
      queries++;
      await sleep(50);
    }
    const w = performance.eventLoopUtilization(w0);
    const c = process.cpuUsage(c0);
    const idleShare = (x: { idle: number; active: number }): number =>
      (idle.active * (x.idle + x.active)) / (idle.idle + idle.active);
    return {
      rawPerQueryMs: (w.active - idleShare(w)) / Math.max(1, queries),
      rawCpuPerQueryMs:
        (c.user +
          c.system -
          ((idleCpu.user + idleCpu.system) * (w.idle + w.active)) / (idle.idle + idle.active)) /
        1_000 /
        Math.max(1, queries),
      records,
      windowMs,
      refreshes,
      activeMsIdle: idle.active,
      activeMsRefreshing: busy.active,
      perRefreshMs:
        (busy.active - (idle.active * (busy.idle + busy.active)) / (idle.idle + idle.active)) /
        Math.max(1, refreshes),
      cpuPerRefreshMs:
        (cpu.user + cpu.system - idleCpu.user - idleCpu.system) / 1_000 / Math.max(1, refreshes),
      updatesPublished: after.updates - before.updates,
    };
  } finally {
    await r.close();
  }
}

// ---- 3. scale-out ---------------------------------------------------------------------------------------

interface ShareResult {
  readonly client: string;
  /** Requests per address in the window after the scale-out. */
  readonly after: Record<string, number>;
  readonly before: Record<string, number>;
  readonly calls: number;
  readonly failures: number;
}

async function scaleOut(
  dns: Dnsmasq,
  fleet: LoopbackFleet,
  args: Args,
  log: (s: string) => void,
): Promise<ShareResult[]> {
  const beforeMs = args.quick ? 2_000 : 4_000;
  const afterMs = args.quick ? 4_000 : 10_000;
  const out: ShareResult[] = [];
  const lookupResolver = new Resolver({ timeout: 1_000, tries: 2 });
  lookupResolver.setServers([dns.address]);
  const clients: Array<{ name: string; make(): { call: () => Promise<void>; close(): Promise<void> } }> = [
    {
      name: 'undici Agent (resolves at connect)',
      make() {
        const agent = new Agent({
          connect: {
            // The OS resolver cannot be pointed at a loopback port: ask the same dnsmasq, shuffled like CoreDNS.
            lookup: (
              hostname: string,
              opts: { all?: boolean },
              cb: (err: Error | null, address: unknown, family?: number) => void,
            ) => {
              lookupResolver.resolve4(hostname).then(
                (a) => {
                  const address = a[Math.floor(Math.random() * a.length)]!;
                  // net.connect asks for every address (`all`) when it may race families (autoSelectFamily).
                  if (opts.all) cb(null, [{ address, family: 4 }]);
                  else cb(null, address, 4);
                },
                (err: Error) => cb(err, opts.all ? [] : '', 4),
              );
            },
          } as never,
        });
        return {
          call: async () => {
            const res = await agent.request({
              origin: `http://${SCALE}:${fleet.port}`,
              path: '/',
              method: 'GET',
            });
            await res.body.text();
          },
          close: () => agent.close(),
        };
      },
    },
    {
      name: 'meshfetch dnsDiscovery',
      make() {
        const m = createMesh({
          services: {
            users: { discovery: dnsDiscovery({ name: SCALE, port: fleet.port, servers: [dns.address] }) },
          },
        });
        return { call: meshCall(m), close: () => m.close() };
      },
    },
  ];
  for (const c of clients) {
    await dns.setHosts({ [SCALE]: HOSTS.slice(0, 2) });
    const client = c.make();
    fleet.hits.clear();
    const load = closedLoop(client.call, args.concurrency);
    await sleep(beforeMs);
    const before = Object.fromEntries(fleet.hits);
    await dns.setHosts({ [SCALE]: HOSTS });
    fleet.hits.clear();
    await sleep(afterMs);
    const after = Object.fromEntries(fleet.hits);
    await load.stop();
    await client.close();
    out.push({ client: c.name, before, after, calls: load.calls(), failures: load.failures() });
    log(`  ${c.name}: after the scale-out ${HOSTS.map((h) => `${h} ${after[h] ?? 0}`).join(', ')}`);
  }
  return out;
}

// ---- report ---------------------------------------------------------------------------------------------

function share(counts: Record<string, number>): number[] {
  const total = HOSTS.reduce((s, h) => s + (counts[h] ?? 0), 0) || 1;
  return HOSTS.map((h) => (100 * (counts[h] ?? 0)) / total);
}

function renderSvg(change: ChangeResult, scale: ShareResult[]): string {
  const panels: Panel[] = [
    barChart({
      title: 'Share of requests per address in the seconds after 2 records grew to 8',
      unit: '% of requests',
      categories: HOSTS.map((h, i) => `${h}${i < 2 ? ' (before)' : ' (new)'}`),
      series: scale.map((s) => ({
        name: s.client,
        values: share(s.after).map((v) => Math.round(v * 10) / 10),
      })),
      refLines: [{ value: 12.5, label: 'even (12.5 %)' }],
      valueDecimals: 1,
    }),
    barChart({
      title: 'DNS change to traffic at TTL 1 s (ms, dnsmasq, default options)',
      unit: 'ms',
      categories: ['added: applied', 'added: first request', 'removed: applied'],
      series: (['p50', 'p99', 'max'] as const).map((q) => ({
        name: q,
        values: [change.addApplied[q], change.addTraffic[q], change.removeApplied[q]].map((v) =>
          v === null ? null : Math.round(v),
        ),
      })),
      refLines: [{ value: TARGET_CHANGE_P99_MS, label: 'target p99' }],
    }),
  ];
  return svgDocument(panels, 'meshfetch: DNS discovery', 'bench/discovery/dns.ts; loopback, dnsmasq 2.90');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string): void => console.log(s);
  const started = performance.now();
  const load0 = loadavg()[0]!;
  const command =
    process.env.MESHFETCH_BENCH_COMMAND ||
    [
      'npx tsx --conditions=meshfetch-source',
      relative(REPO, fileURLToPath(import.meta.url)),
      ...process.argv.slice(2),
    ].join(' ');
  log(`bench/discovery/dns (${args.quick ? 'quick' : 'full'}): ${command}`);
  const [dns, fleet] = await Promise.all([
    startDnsmasq(DOMAIN, { [NAME]: HOSTS.slice(0, 3) }),
    startLoopbackFleet(HOSTS),
  ]);
  try {
    log(`\n1. Change to traffic at TTL 1 s: ${args.changes} changes, ${args.concurrency} concurrent calls`);
    const change = await changeToTraffic(dns, fleet, args, log);
    log('\n2. Refresh cost of 1,000 unchanged records');
    const cost = await refreshCost(dns, args.quick ? 2_000 : 5_000);
    log('\n3. Scale-out 2 -> 8 records');
    const scale = await scaleOut(dns, fleet, args, log);

    const changeVerdict =
      change.addTraffic.p99 !== null && change.addTraffic.p99 <= TARGET_CHANGE_P99_MS && change.timeouts === 0
        ? 'PASS'
        : 'MISS';
    const costVerdict = cost.perRefreshMs <= TARGET_REFRESH_MS ? 'PASS' : 'MISS';
    const c = cpus();
    const results = {
      benchmark: 'discovery-dns',
      run: {
        date: new Date().toISOString(),
        mode: args.quick ? 'quick' : 'full',
        command,
        machine: {
          cpu: `${c[0]?.model.trim() ?? 'unknown'}`,
          cores: c.length,
          memoryGiB: Math.round(totalmem() / 2 ** 30),
          os: `${osType()} ${release()}`,
          node: process.version,
        },
        durationS: Math.round((performance.now() - started) / 1_000),
        loadAverage1m: { start: round(load0), end: round(loadavg()[0]!) },
      },
      targets: { changeToTrafficP99Ms: TARGET_CHANGE_P99_MS, refreshOf1000UnchangedMs: TARGET_REFRESH_MS },
      changeToTraffic: {
        ...change,
        addApplied: roundSummary(change.addApplied),
        addTraffic: roundSummary(change.addTraffic),
        removeApplied: roundSummary(change.removeApplied),
        verdict: changeVerdict,
      },
      refreshCost: {
        ...Object.fromEntries(Object.entries(cost).map(([k, v]) => [k, round(v)])),
        verdict: costVerdict,
      },
      scaleOut: scale.map((s) => ({ ...s, shareAfterPct: share(s.after).map((v) => round(v)) })),
    };
    const rows = (
      [
        ['added: applied by the destination', change.addApplied],
        ['added: first request at the new record', change.addTraffic],
        ['removed: applied by the destination', change.removeApplied],
      ] as const
    ).map(([k, s]) => [k, String(s.count), fmt(s.p50), fmt(s.p90), fmt(s.p99), fmt(s.max)]);
    const changeTable = table(
      ['from the DNS change (SIGHUP) to', 'samples', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
      rows,
    );
    const costTable = table(
      [
        'records',
        'refreshes',
        'window ms',
        'event-loop active ms (idle window)',
        'event-loop active ms (refreshing)',
        'event-loop ms per refresh',
        'CPU ms per refresh',
        'bare resolve4: event-loop ms / CPU ms',
        'updates published',
      ],
      [
        [
          String(cost.records),
          String(cost.refreshes),
          String(cost.windowMs),
          fmt(cost.activeMsIdle),
          fmt(cost.activeMsRefreshing),
          fmt(cost.perRefreshMs),
          fmt(cost.cpuPerRefreshMs),
          `${fmt(cost.rawPerQueryMs)} / ${fmt(cost.rawCpuPerQueryMs)}`,
          String(cost.updatesPublished),
        ],
      ],
    );
    const scaleTable = table(
      ['client', ...HOSTS, 'calls', 'failures'],
      scale.map((s) => [
        s.client,
        ...share(s.after).map((v) => `${fmt(v)} %`),
        String(s.calls),
        String(s.failures),
      ]),
    );
    log(
      `\n${changeTable}\n${changeVerdict}: p99 change to first request ${fmt(change.addTraffic.p99, ' ms')} (target <= ${TARGET_CHANGE_P99_MS} ms), timeouts ${change.timeouts}, calls ${change.calls}, failures ${change.failures}`,
    );
    log(
      `\n${costTable}\n${costVerdict}: ${fmt(cost.perRefreshMs, ' ms')} of event-loop time per refresh of 1,000 unchanged records (target <= ${TARGET_REFRESH_MS} ms)`,
    );
    log(`\nShare per address after the scale-out:\n${scaleTable}`);

    const dir = args.quick ? join(REPO, 'bench', 'results', 'quick') : join(REPO, 'bench', 'results');
    await writeJson(join(dir, 'discovery-dns.json'), results);
    writeSvg(join(dir, 'discovery-dns.svg'), renderSvg(change, scale));
    if (!args.quick) {
      const md = [
        '# bench/discovery/dns: results',
        '',
        'Written by `bench/discovery/dns.ts` on a full run, with bench/results/discovery-dns.json and discovery-dns.svg. See the header of `dns.ts` for what is measured and how.',
        '',
        `- Date: ${results.run.date}`,
        `- Machine: ${results.run.machine.cpu}, ${results.run.machine.cores} cores, ${results.run.machine.memoryGiB} GiB RAM, ${results.run.machine.os}`,
        `- Node: ${process.version}; dnsmasq 2.90 (Debian bookworm's dnsmasq-base)`,
        `- Command: \`${command}\` (${results.run.durationS} s)`,
        `- Load average (1 min) at start / end: ${results.run.loadAverage1m.start} / ${results.run.loadAverage1m.end} on ${c.length} cores`,
        '',
        '![share per address after a scale-out, and DNS change to traffic](../results/discovery-dns.svg)',
        '',
        '## Change to traffic at TTL 1 s',
        '',
        `dnsmasq with \`--local-ttl=1\`; \`dnsDiscovery({ name, port, servers })\` with its defaults (minTtlMs 1000, so one refresh a second) and the default balancer (p2c-peak-ewma); ${args.concurrency} concurrent calls in a closed loop; ${args.changes} changes, each at a random phase of the refresh cycle.`,
        '',
        changeTable,
        '',
        `**${changeVerdict}**: p99 from the change to the first request at the new record ${fmt(change.addTraffic.p99, ' ms')} (target <= ${TARGET_CHANGE_P99_MS} ms). Timeouts: ${change.timeouts}. Calls during the run: ${change.calls}, failed: ${change.failures}.`,
        '',
        '## Refresh cost of 1,000 unchanged records',
        '',
        costTable,
        '',
        `**${costVerdict}**: ${fmt(cost.perRefreshMs, ' ms')} of event-loop time (${fmt(cost.cpuPerRefreshMs, ' ms')} of CPU) per refresh (target <= ${TARGET_REFRESH_MS} ms): c-ares' callbacks and parsing (a truncated UDP answer, then TCP), the 1,000 record objects Node makes of the answer, and the resolver's comparison with the previous set; nothing was published (${cost.updatesPublished} updates). The bare \`resolve4(name, { ttl: true })\` at the same pace, measured right after in the same process, costs ${fmt(cost.rawPerQueryMs, ' ms')} of event-loop time (${fmt(cost.rawCpuPerQueryMs, ' ms')} of CPU): the resolver's own share is the difference. Event-loop time counts the time the main thread was runnable, so on a machine with more runnable threads than cores (the load average above) it includes waiting for a core; CPU time does not.`,
        '',
        '## Scale-out: resolving once against following DNS',
        '',
        `A name with 2 A records grows to 8 while ${args.concurrency} concurrent calls flow; share of the requests in the ${args.quick ? 4 : 10} s after the change. undici's Agent connects to one address of the answer per connection (shuffled, as CoreDNS's loadbalance plugin does) and keeps its connections alive, so new records take no traffic; meshfetch refreshes the set at its TTL and balances over every record.`,
        '',
        scaleTable,
        '',
      ].join('\n');
      await writeFormatted(join(HERE, 'DNS-RESULTS.md'), md);
    }
    log(`\nwrote results under ${relative(REPO, dir)}`);
  } finally {
    await Promise.all([dns.close(), fleet.close()]);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('bench/discovery/dns failed:', err);
    process.exit(1);
  },
);
