/**
 * Profiles the overhead benchmark's clients: for each variant, a child process drives it in a closed loop
 * and records a V8 CPU profile (through the inspector, around the measured window only: no start-up, no
 * warm-up); this process then prints, per call, where the CPU time went: by bucket (meshfetch's files,
 * undici, Node streams, timers, AbortSignal, GC, ...) side by side for the variants, then the hottest
 * functions by self time and meshfetch's functions by inclusive time.
 *
 * Run:
 *   npm run build && npx tsx bench/overhead/profile.ts \
 *     --variant pool,mesh-request-bal,mesh-request-full --concurrency 64 --seconds 5
 * Variant ids are those of bench/overhead/variants.ts. Profiles are kept in $TMPDIR/meshfetch-profiles/ (open
 * them in Chrome DevTools); with --out FILE the summary is also written as Markdown.
 */
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { summarizeProfile, top, type CpuProfile, type ProfileSummary } from '../lib/cpuprofile.js';
import { findHaproxy, startHaproxy } from '../lib/haproxy.js';
import { closedLoop } from '../lib/load.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { freePort } from '../lib/proc.js';
import { markdownTable, num, type Align } from '../lib/table.js';
import { childExecArgv, findVariant, makeClient, startServer, VARIANTS } from './variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

interface WorkerResult {
  variant: string;
  count: number;
  elapsedMs: number;
  cpuUs: number;
  profileFile: string;
}

async function worker(id: string, concurrency: number, seconds: number, interval: number, dir: string) {
  const v = findVariant(id);
  if (!v) throw new Error(`unknown variant ${id}; known: ${VARIANTS.map((x) => x.id).join(', ')}`);
  const server = await startServer();
  let haproxyPort: number | undefined;
  let stopHaproxy: (() => Promise<void>) | undefined;
  if (v.hop) {
    const found = findHaproxy();
    if (!found) throw new Error('HAProxy is not installed');
    haproxyPort = await freePort();
    const h = await startHaproxy(
      found.bin,
      path.join(here, 'haproxy.cfg'),
      { FRONTEND_PORT: haproxyPort, BACKEND_PORT: server.port },
      haproxyPort,
    );
    stopHaproxy = () => h.stop();
  }
  const client = makeClient(v, { serverPort: server.port, haproxyPort });
  try {
    await client.call();
    await closedLoop(client.call, { concurrency, durationMs: 1_500 });
    (globalThis as { gc?: () => void }).gc?.();
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval });
    await session.post('Profiler.start');
    const cpu0 = process.cpuUsage();
    const res = await closedLoop(client.call, { concurrency, durationMs: seconds * 1000 });
    const cpu = process.cpuUsage(cpu0);
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    const profileFile = path.join(dir, `${id}-c${concurrency}.cpuprofile`);
    writeFileSync(profileFile, JSON.stringify(profile));
    const out: WorkerResult = {
      variant: id,
      count: res.count,
      elapsedMs: res.elapsedMs,
      cpuUs: cpu.user + cpu.system,
      profileFile,
    };
    writeFileSync(path.join(dir, `${id}-c${concurrency}.json`), JSON.stringify(out));
  } finally {
    await client.close();
    await stopHaproxy?.();
    await server.stop();
  }
}

function runWorker(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), args, {
      execArgv: [...childExecArgv(), '--expose-gc'],
      stdio: 'inherit',
    });
    const t = setTimeout(() => child.kill('SIGKILL'), 5 * 60_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      if (code === 0) resolve();
      else reject(new Error(`profile worker ${args.join(' ')} exited with ${code}`));
    });
  });
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const concurrency = Math.round(numberFlag(flags, 'concurrency', 64));
  const seconds = numberFlag(flags, 'seconds', 5);
  const interval = Math.round(numberFlag(flags, 'interval', 100));
  const dir = path.join(os.tmpdir(), 'meshfetch-profiles');
  mkdirSync(dir, { recursive: true });
  if (typeof flags.worker === 'string') {
    await worker(flags.worker, concurrency, seconds, interval, dir);
    return;
  }
  const ids = listFlag(flags, 'variant') ?? ['pool', 'mesh-request-bal', 'mesh-request-full'];
  const n = Math.round(numberFlag(flags, 'top', 25));
  for (const id of ids) {
    await runWorker([
      '--worker',
      id,
      '--concurrency',
      String(concurrency),
      '--seconds',
      String(seconds),
      '--interval',
      String(interval),
    ]);
  }
  const runs = ids.map((id) => {
    const r = JSON.parse(readFileSync(path.join(dir, `${id}-c${concurrency}.json`), 'utf8')) as WorkerResult;
    const prof = JSON.parse(readFileSync(r.profileFile, 'utf8')) as CpuProfile;
    return { r, s: summarizeProfile(prof, repo) };
  });
  const perCall = (us: number, r: WorkerResult): string => num(us / r.count, 2);
  const md: string[] = [];
  md.push(
    `Profile of the overhead benchmark's clients at concurrency ${concurrency}, ${seconds} s each, sampling every ${interval} µs.`,
  );
  md.push(`Machine: ${describeMachine(machineInfo())}.`);
  md.push('');
  md.push('```sh');
  md.push(`npm run build && npx tsx bench/overhead/profile.ts ${process.argv.slice(2).join(' ')}`);
  md.push('```');
  md.push('');
  md.push('CPU time per call (µs) by bucket, from the samples (idle excluded):');
  md.push('');
  const buckets = new Map<string, number>();
  for (const { r, s } of runs)
    for (const [k, v] of s.selfByBucket)
      if (k !== '(idle)') buckets.set(k, (buckets.get(k) ?? 0) + v / r.count);
  const bucketRows = [...buckets.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k]) => [k, ...runs.map(({ r, s }) => perCall(s.selfByBucket.get(k) ?? 0, r))]);
  const busy = (s: ProfileSummary): number => s.totalUs - (s.selfByBucket.get('(idle)') ?? 0);
  bucketRows.push(['**total sampled (not idle)**', ...runs.map(({ r, s }) => perCall(busy(s), r))]);
  bucketRows.push(['process.cpuUsage() per call', ...runs.map(({ r }) => perCall(r.cpuUs, r))]);
  bucketRows.push(['requests/s', ...runs.map(({ r }) => num(r.count / (r.elapsedMs / 1000)))]);
  const align: Align[] = ['l', ...runs.map((): Align => 'r')];
  md.push(markdownTable(['bucket', ...ids], bucketRows, align));
  for (const { r, s } of runs) {
    md.push('');
    md.push(`Top functions by self time, ${r.variant} (µs per call):`);
    md.push('');
    md.push(
      markdownTable(
        ['function', 'self µs/call'],
        top(s.selfByFunction, n, (k) => !k.startsWith('(idle)')).map(([k, v]) => [k, perCall(v, r)]),
        ['l', 'r'],
      ),
    );
    const mine = top(s.inclusiveByFunction, n, (k) => / (src|dist)\//.test(k));
    if (mine.length > 0) {
      md.push('');
      md.push(`meshfetch functions by inclusive time, ${r.variant} (µs per call; synchronous parts only):`);
      md.push('');
      md.push(
        markdownTable(
          ['function', 'inclusive µs/call'],
          mine.map(([k, v]) => [k, perCall(v, r)]),
          ['l', 'r'],
        ),
      );
    }
  }
  const text = md.join('\n') + '\n';
  console.log(text);
  console.log(`profiles: ${dir}`);
  if (typeof flags.out === 'string') {
    writeFileSync(path.resolve(flags.out), text);
    console.log(`wrote ${flags.out}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
