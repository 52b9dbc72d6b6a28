/**
 * HAProxy from Debian's packages as the reference for a sidecar hop. A benchmark that wants it calls
 * {@link findHaproxy} first: when it is missing, the benchmark prints {@link HAPROXY_INSTALL_HINT} and skips
 * its HAProxy columns rather than failing. The config is a committed template; the ports are substituted
 * into a temporary copy at run time.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { waitForPort } from './proc.js';

/** How to install HAProxy on Debian/Ubuntu. */
export const HAPROXY_INSTALL_HINT = 'apt-get update && apt-get install -y haproxy';

/**
 * The HAProxy binary, with its version; undefined if there is none. `$HAPROXY_BIN` names it explicitly
 * (nothing else is tried then); otherwise `haproxy` on PATH, then Debian's /usr/sbin/haproxy.
 */
export function findHaproxy(): { bin: string; version: string } | undefined {
  const candidates = process.env.HAPROXY_BIN ? [process.env.HAPROXY_BIN] : ['haproxy', '/usr/sbin/haproxy'];
  for (const bin of candidates) {
    const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) continue;
    const first = (r.stdout || '').split('\n')[0] ?? '';
    const m = /version (\S+)/i.exec(first);
    return { bin, version: m ? m[1]! : first.trim() };
  }
  return undefined;
}

/** A running HAProxy. */
export interface RunningHaproxy {
  pid: number;
  /** The config actually used (the template with the values substituted). */
  config: string;
  stop(): Promise<void>;
}

/**
 * Starts HAProxy in the foreground (`-db`, so the pid we hold is the process doing the work) with the
 * template at `templatePath`, each `__NAME__` replaced by `vars.NAME`, then waits for `waitPort` to accept.
 */
export async function startHaproxy(
  bin: string,
  templatePath: string,
  vars: Record<string, string | number>,
  waitPort: number,
): Promise<RunningHaproxy> {
  let config = readFileSync(templatePath, 'utf8');
  for (const [k, v] of Object.entries(vars)) config = config.split(`__${k}__`).join(String(v));
  const missing = /__[A-Z_]+__/.exec(config);
  if (missing) throw new Error(`HAProxy template ${templatePath}: no value for ${missing[0]}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfetch-haproxy-'));
  const cfgPath = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfgPath, config);
  const check = spawnSync(bin, ['-c', '-q', '-f', cfgPath], { encoding: 'utf8' });
  if (check.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`HAProxy rejected the config: ${(check.stderr || check.stdout).trim()}`);
  }
  const child: ChildProcess = spawn(bin, ['-db', '-f', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 10_000) stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForPort(waitPort, 5_000);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`HAProxy did not start: ${(err as Error).message}; stderr: ${stderr.trim()}`, {
      cause: err,
    });
  }
  if (child.pid === undefined) throw new Error('HAProxy has no pid');
  // Never leave HAProxy behind: if this process exits for any reason before stop(), kill it (an 'exit'
  // handler must be synchronous, hence SIGKILL).
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  return {
    pid: child.pid,
    config,
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
