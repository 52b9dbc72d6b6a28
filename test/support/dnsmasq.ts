/**
 * Test harness for a REAL dnsmasq on loopback, the DNS server the DNS discovery tests change under load. It
 * serves one test domain from an addn-hosts file (A and AAAA records) and `--srv-host` entries (SRV), and
 * always stops the process again (also when a test fails or the worker exits).
 *
 * The flags and why (dnsmasq(8), version 2.90):
 * - `-k` stay in the foreground; `--log-facility=-` log to stderr, where the harness reads "read <file>" to
 *   know a SIGHUP was applied;
 * - `--port`, `--listen-address=127.0.0.1`, `--bind-interfaces`: loopback only, a high port;
 * - `--no-resolv --no-hosts --conf-file=/dev/null --pid-file=`: nothing from the machine's own setup;
 * - `--local=/<domain>/`: answer for the test domain from local data only; without it a name dnsmasq does
 *   not know is forwarded, and with no upstream that is REFUSED instead of NXDOMAIN;
 * - `--local-ttl=1`: the TTL of local answers (0 without it);
 * - `--user=root` when run as root (dnsmasq otherwise drops to a `dnsmasq` user that may not exist).
 * SIGHUP re-reads the addn-hosts file but not `--srv-host` entries: changing those takes a restart
 * ({@link Dnsmasq.setSrv}).
 *
 * The binary is found through `DNSMASQ_BIN`, then `PATH`, then `.tools/dnsmasq/usr/sbin/dnsmasq` at the repo
 * root, run with `LD_LIBRARY_PATH=.tools/dnsmasq/lib` (where `bash scripts/install-dnsmasq.sh` puts Debian's
 * dnsmasq-base and the libraries the machine lacks).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOCAL_DIR = join(REPO_ROOT, '.tools', 'dnsmasq');

/** An SRV record as `--srv-host=<name>,<target>,<port>,<priority>,<weight>`. */
export interface SrvHost {
  name: string;
  target: string;
  port: number;
  priority: number;
  weight: number;
}

export interface Dnsmasq {
  readonly port: number;
  /** `127.0.0.1:<port>`, for `dnsDiscovery({ servers: [...] })`. */
  readonly address: string;
  /** Rewrites the hosts file (name → addresses) and SIGHUPs dnsmasq; resolves once it has re-read it. */
  setHosts(hosts: Record<string, readonly string[]>): Promise<void>;
  /** Restarts dnsmasq on the same port with these `--srv-host` entries (SIGHUP does not reload them). */
  setSrv(srv: readonly SrvHost[]): Promise<void>;
  /** Stops the process (SIGTERM, SIGKILL after 5 s), keeping its files for {@link Dnsmasq.start}. Idempotent. */
  stop(): Promise<void>;
  /** Starts it again on the same port after {@link Dnsmasq.stop} (or restarts it). */
  start(): Promise<void>;
  /** Stops it and removes its files. */
  close(): Promise<void>;
  /** The last lines it printed. */
  logs(): string;
}

const children = new Set<ChildProcess>();
let hookInstalled = false;

function works(bin: string, env: NodeJS.ProcessEnv): boolean {
  try {
    return spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 10_000, env }).status === 0;
  } catch {
    return false;
  }
}

/**
 * The dnsmasq binary and the environment to run it with. Throws an error that says how to get one.
 *
 * @example
 * ```ts
 * const { bin, env } = findDnsmasq();
 * ```
 */
export function findDnsmasq(): { bin: string; env: NodeJS.ProcessEnv } {
  const libs = join(LOCAL_DIR, 'lib');
  const env = {
    ...process.env,
    LD_LIBRARY_PATH: [libs, process.env.LD_LIBRARY_PATH].filter(Boolean).join(delimiter),
  };
  const fromEnv = process.env.DNSMASQ_BIN;
  if (fromEnv) {
    if (works(fromEnv, env)) return { bin: fromEnv, env };
    throw new Error(`DNSMASQ_BIN=${fromEnv} does not run; point it to a working dnsmasq or unset it`);
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = dir && join(dir, 'dnsmasq');
    if (candidate && existsSync(candidate) && works(candidate, env)) return { bin: candidate, env };
  }
  const local = join(LOCAL_DIR, 'usr', 'sbin', 'dnsmasq');
  if (existsSync(local) && works(local, env)) return { bin: local, env };
  throw new Error(
    'No dnsmasq found (looked at $DNSMASQ_BIN, $PATH and .tools/dnsmasq/usr/sbin/dnsmasq). ' +
      'Run `bash scripts/install-dnsmasq.sh` (part of `npm run setup`), or set DNSMASQ_BIN.',
  );
}

/** A port free for both UDP and TCP on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => res(p));
      });
    });
    const udpFree = await new Promise<boolean>((res) => {
      const u = createSocket('udp4');
      u.once('error', () => {
        u.close();
        res(false);
      });
      u.bind(port, '127.0.0.1', () => u.close(() => res(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('could not find a free port');
}

function hostsText(hosts: Record<string, readonly string[]>): string {
  return Object.entries(hosts)
    .flatMap(([name, addresses]) => addresses.map((a) => `${a} ${name}`))
    .join('\n')
    .concat('\n');
}

/**
 * Starts dnsmasq for `domain` (e.g. `mesh.test`) and waits until it answers.
 *
 * @example
 * ```ts
 * const dns = await startDnsmasq('mesh.test', { 'users.mesh.test': ['127.0.0.1', '127.0.0.2'] });
 * await dns.setHosts({ 'users.mesh.test': ['127.0.0.1'] });
 * await dns.stop();
 * ```
 */
export async function startDnsmasq(
  domain: string,
  hosts: Record<string, readonly string[]>,
  srv: readonly SrvHost[] = [],
): Promise<Dnsmasq> {
  const { bin, env } = findDnsmasq();
  if (!hookInstalled) {
    hookInstalled = true;
    process.once('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshfetch-dnsmasq-'));
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, hostsText(hosts));
  const port = await freePort();
  let srvHosts = srv;
  let child: ChildProcess | undefined;
  let output = '';
  let lineListeners: Array<(line: string) => void> = [];

  const waitForLine = (re: RegExp, what: string, ms = 10_000): Promise<void> =>
    new Promise((res, rej) => {
      const timer = setTimeout(() => {
        lineListeners = lineListeners.filter((l) => l !== listener);
        rej(new Error(`dnsmasq: no "${what}" in ${ms} ms:\n${output.slice(-2000)}`));
      }, ms);
      const listener = (line: string): void => {
        if (!re.test(line)) return;
        clearTimeout(timer);
        lineListeners = lineListeners.filter((l) => l !== listener);
        res();
      };
      lineListeners.push(listener);
    });

  const start = async (): Promise<void> => {
    const args = [
      '-k',
      '--log-facility=-',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hostsFile}`,
      `--local=/${domain}/`,
      '--local-ttl=1',
      '--pid-file=',
      '--conf-file=/dev/null',
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
      ...srvHosts.map((s) => `--srv-host=${s.name},${s.target},${s.port},${s.priority},${s.weight}`),
    ];
    output = '';
    const started = waitForLine(/read .*hosts/, 'read hosts');
    const c = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    children.add(c);
    let partial = '';
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
      partial += chunk.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) for (const l of [...lineListeners]) l(line);
    };
    c.stdout?.on('data', collect);
    c.stderr?.on('data', collect);
    c.once('exit', () => children.delete(c));
    const exited = new Promise<never>((_, rej) =>
      c.once('exit', (code) => rej(new Error(`dnsmasq exited (code ${code}):\n${output.slice(-2000)}`))),
    );
    exited.catch(() => {});
    await Promise.race([started, exited]);
    // It has read its files; now check that it answers on the port (bounded).
    const r = new Resolver({ timeout: 200, tries: 1 });
    r.setServers([`127.0.0.1:${port}`]);
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        await r.resolve4(`nonexistent-probe.${domain}`);
        return;
      } catch (e) {
        if (
          (e as NodeJS.ErrnoException).code === 'ENOTFOUND' ||
          (e as NodeJS.ErrnoException).code === 'ENODATA'
        )
          return;
        if (performance.now() > deadline)
          throw new Error(`dnsmasq does not answer: ${String(e)}\n${output}`, { cause: e });
      }
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c) return;
    child = undefined;
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    c.stdout?.destroy();
    c.stderr?.destroy();
    children.delete(c);
  };

  try {
    await start();
  } catch (e) {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    port,
    address: `127.0.0.1:${port}`,
    async setHosts(next) {
      writeFileSync(hostsFile, hostsText(next));
      const reread = waitForLine(/read .*hosts/, 'read hosts after SIGHUP');
      child?.kill('SIGHUP');
      await reread;
    },
    async setSrv(next) {
      srvHosts = next;
      await stop();
      await start();
    },
    stop,
    async start() {
      await stop();
      await start();
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    logs: () => output,
  };
}
