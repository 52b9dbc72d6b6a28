/**
 * `npm run bench`: runs every benchmark under bench/ one after the other, each in its own process (so one
 * benchmark's heap, JIT state and sockets do not leak into the next), passing the same flags to each.
 *
 *   npm run bench                 # full run (the overhead benchmark alone takes about 13 minutes)
 *   npm run bench -- --quick      # a few minutes for everything
 *   npm run bench -- --bench overhead --rounds 3
 *
 * Each benchmark prints its tables and writes JSON + SVG under bench/results/ (quick runs under
 * bench/results/quick/, which is not committed). A benchmark that misses a target still exits 0: benchmarks
 * report, tests judge. A benchmark that crashes or runs past its time limit makes this exit non-zero.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFlag, parseFlags } from './lib/cli.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The benchmarks, in run order. A missing entry file (not written yet) is skipped with a note. */
const BENCHMARKS = [
  { name: 'overhead', file: 'overhead/index.ts', fullMinutes: 20, quickMinutes: 4 },
  { name: 'overhead-tls', file: 'overhead/tls.ts', fullMinutes: 3, quickMinutes: 1 },
  { name: 'discovery', file: 'discovery/index.ts', fullMinutes: 20, quickMinutes: 5 },
  { name: 'discovery-dns', file: 'discovery/dns.ts', fullMinutes: 8, quickMinutes: 3 },
  { name: 'tail', file: 'tail/index.ts', fullMinutes: 15, quickMinutes: 5 },
  { name: 'scale', file: 'scale/index.ts', fullMinutes: 5, quickMinutes: 3 },
  { name: 'fairness', file: 'fairness/index.ts', fullMinutes: 12, quickMinutes: 5 },
];

function run(file: string, args: string[], limitMs: number, command: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, '--expose-gc', file, ...args], {
      stdio: 'inherit',
      env: { ...process.env, MESHFETCH_BENCH_COMMAND: command },
    });
    const timer = setTimeout(() => {
      console.error(`bench: ${file} ran past ${Math.round(limitMs / 60_000)} minutes; stopping it`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    }, limitMs);
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flags = parseFlags(args);
  const quick = flags.quick === true;
  const only = listFlag(flags, 'bench');
  // --bench is ours; everything else goes to every benchmark.
  const passed: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--bench') i++;
    else if (!args[i]!.startsWith('--bench=')) passed.push(args[i]!);
  }
  const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  const summary: string[] = [];
  let failed = false;
  for (const b of BENCHMARKS) {
    if (only && !only.includes(b.name)) continue;
    const file = path.join(here, b.file);
    if (!existsSync(file)) {
      summary.push(`${b.name}: skipped (${path.relative(process.cwd(), file)} does not exist yet)`);
      continue;
    }
    console.log(`\n=== bench/${b.file} ${passed.join(' ')} ===\n`);
    const t0 = performance.now();
    // --baseline (the overhead benchmark's comparison with another build) adds four clients to its rounds.
    const limitMinutes = (quick ? b.quickMinutes : b.fullMinutes) * (flags.baseline !== undefined ? 1.5 : 1);
    const code = await run(file, passed, limitMinutes * 60_000, command);
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    summary.push(`${b.name}: ${code === 0 ? 'done' : `FAILED (exit ${code})`} in ${secs} s`);
    if (code !== 0) failed = true;
  }
  console.log(`\n=== summary ===\n${summary.join('\n')}`);
  if (failed) process.exitCode = 1;
}

void main();
