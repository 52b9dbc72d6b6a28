/**
 * What a benchmark ran on: CPU model, cores, memory, Node and undici versions, the load at the start, the
 * date and the git commit. Every result file and every table header carries it, because a number without
 * its machine says nothing.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { createRequire } from 'node:module';

/** Facts about the machine and the software a run used. */
export interface MachineInfo {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  /** The undici the `undici` package resolves to (the one meshfetch uses). */
  undici: string;
  /** The undici bundled in Node (the global fetch's). */
  builtinUndici: string;
  loadAverage: [number, number, number];
  gitCommit: string;
  /** True when the work tree had uncommitted changes under src/ when the run started. */
  srcDirty: boolean;
  /** Those changes (`git status --porcelain -- src`), so a result can be tied to the code it measured. */
  srcChanges: string[];
  /** Which build of meshfetch `import 'meshfetch'` loaded: the tsc output users run, or the sources via tsx. */
  library: string;
}

function library(): string {
  try {
    const url = import.meta.resolve('meshfetch');
    return url.includes('/dist/') ? 'dist/ (the tsc build users run)' : 'src/ through tsx (meshfetch-source)';
  } catch {
    return 'unknown';
  }
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux: fall through
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function git(args: string[]): string {
  try {
    // trimEnd, not trim: porcelain status lines start with a meaningful space.
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
  } catch {
    return '';
  }
}

/** Collects {@link MachineInfo} now. */
export function machineInfo(): MachineInfo {
  const require = createRequire(import.meta.url);
  let undici = 'unknown';
  try {
    undici = (require('undici/package.json') as { version: string }).version;
  } catch {
    // keep 'unknown'
  }
  const la = os.loadavg();
  const changes = git(['status', '--porcelain', '--', 'src'])
    .split('\n')
    .filter((l) => l.length > 0);
  return {
    date: new Date().toISOString(),
    cpuModel: cpuModel(),
    cores: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    undici,
    builtinUndici: process.versions.undici ?? 'unknown',
    loadAverage: [la[0]!, la[1]!, la[2]!],
    gitCommit: git(['rev-parse', '--short', 'HEAD']) || 'unknown',
    srcDirty: changes.length > 0,
    srcChanges: changes,
    library: library(),
  };
}

/** One line for a table header or a log. */
export function describeMachine(m: MachineInfo): string {
  return (
    `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node} (built-in undici ` +
    `${m.builtinUndici}), undici ${m.undici}; load average ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; ` +
    `commit ${m.gitCommit}${m.srcDirty ? ' (src/ modified)' : ''}; ${m.date}`
  );
}
