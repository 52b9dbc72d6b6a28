/**
 * Process helpers: CPU time of another process from /proc (for HAProxy and the test server, which the
 * client's `process.cpuUsage()` cannot see), free loopback ports, waiting for a port to accept.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

let clkTck: number | undefined;

function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/**
 * User + system CPU time of a process (all its threads) in microseconds, from `/proc/<pid>/stat` fields 14
 * and 15 (utime, stime, in clock ticks: 10 ms each at the usual CLK_TCK of 100, so measure over seconds).
 * Undefined when /proc is not there or the process is gone.
 */
export function processCpuUs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state), so field 14 (utime) is rest[11] and field 15 (stime) rest[12].
    const ticks = Number(rest[11]) + Number(rest[12]);
    return Number.isFinite(ticks) ? (ticks * 1e6) / ticksPerSecond() : undefined;
  } catch {
    return undefined;
  }
}

/** The resolution of {@link processCpuUs}, in microseconds. */
export function processCpuResolutionUs(): number {
  return 1e6 / ticksPerSecond();
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once 127.0.0.1:port accepts a connection; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 5_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > end) throw new Error(`nothing accepted connections on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * CPU time used by the whole machine (all cores, every process) so far, in microseconds, from the first
 * line of /proc/stat: busy = everything but idle and iowait. Subtracting the benchmark's own processes from
 * its delta gives the load that other tenants put on a shared machine during a measurement.
 */
export function machineBusyUs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    const busy = f.reduce((a, b, i) => (i === 3 || i === 4 || i > 7 ? a : a + b), 0);
    return Number.isFinite(busy) ? (busy * 1e6) / ticksPerSecond() : undefined;
  } catch {
    return undefined;
  }
}
