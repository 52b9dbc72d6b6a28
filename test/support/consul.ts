/**
 * Test harness for a REAL Consul agent. The Consul tests never talk to an imitation of Consul: this starts
 * `consul agent -dev` bound to 127.0.0.1 on free ports (HTTP, serf LAN/WAN, server RPC; gRPC off; DNS off
 * unless `dns` is set: then `-dns-port` and a `dns_config { service_ttl }` so SRV answers carry a TTL),
 * optionally with ACLs on (default deny, a management token), waits for a leader, and always stops the
 * process again (also when a test fails or the worker exits).
 *
 * The binary is found through `CONSUL_BIN`, then `PATH`, then `.consul/usr/bin/consul` at the repo root
 * (where `npm run consul:install` puts Debian bullseye's consul 1.8.7).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Options of {@link startConsul}.
 *
 * @example
 * ```ts
 * const opts: StartConsulOptions = { acl: true, datacenter: 'dc2', joinWan: dc1.serfWanAddr };
 * ```
 */
export interface StartConsulOptions {
  /** Turn ACLs on: default policy deny, a management token (returned as `token`). Default false. */
  acl?: boolean;
  /** Datacenter name. Default `dc1`. */
  datacenter?: string;
  /** Node name. Default a unique `node-<random>`. */
  node?: string;
  /** Join the LAN pool of another agent (its `serfLanAddr`). */
  join?: string;
  /** Join the WAN pool of another server (its `serfWanAddr`), e.g. for a two-datacenter test. */
  joinWan?: string;
  /** Node metadata (`-node-meta key:value`). */
  nodeMeta?: Record<string, string>;
  /** How long to wait for a leader (ms). Default 20 000. */
  startTimeoutMs?: number;
  /** Consul log level. Default `warn`. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'err';
  /**
   * Turn the DNS interface on, on a free loopback port (`dnsAddr`), with this TTL for every service answer
   * (`dns_config { service_ttl { "*" = ... } }`; Consul answers TTL 0 without it). Default off.
   */
  dns?: { serviceTtl: string };
}

/**
 * A running dev agent started by {@link startConsul}.
 *
 * @example
 * ```ts
 * const consul = await startConsul();
 * await consul.api('PUT', '/v1/agent/service/register', { Name: 'users', Port: 9001 });
 * await consul.restart(); // same ports, empty state
 * await consul.stop();
 * ```
 */
export interface ConsulAgent {
  /** `http://127.0.0.1:<port>`. */
  readonly httpAddr: string;
  readonly host: string;
  /** The HTTP API port. */
  readonly port: number;
  /** The management token when started with `acl: true`. */
  readonly token: string | undefined;
  readonly datacenter: string;
  readonly node: string;
  /** `127.0.0.1:<serf LAN port>`, for another agent's `join`. */
  readonly serfLanAddr: string;
  /** `127.0.0.1:<serf WAN port>`, for another server's `joinWan`. */
  readonly serfWanAddr: string;
  /** `127.0.0.1:<DNS port>` when started with `dns`, for `dnsDiscovery({ servers: [...] })`. */
  readonly dnsAddr: string | undefined;
  /** The process id (changes on restart). */
  readonly pid: number | undefined;
  /** Milliseconds the last start took until a leader was known. */
  readonly startMs: number;
  /** Whether the process is running. */
  readonly running: boolean;
  /** Stops the agent (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
  /** (Re)starts it on the same ports, also after stop() or kill(); dev mode is in-memory, so its state starts fresh (lower indexes). */
  restart(): Promise<void>;
  /** Kills the agent at once (SIGKILL): no graceful leave. */
  kill(): Promise<void>;
  /** Calls the HTTP API with the management token (if any); returns the parsed JSON (or text) body. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  /** The last lines the agent printed (for failure messages). */
  logs(): string;
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Whatever happens to the test worker, no agent outlives it.
  process.once('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

function runs(bin: string): boolean {
  try {
    return spawnSync(bin, ['version'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
  } catch {
    return false;
  }
}

/**
 * Finds a working `consul` binary: `CONSUL_BIN`, then `PATH`, then `.consul/usr/bin/consul`.
 * Throws an error that says how to get one.
 *
 * @example
 * ```ts
 * const bin = findConsulBinary(); // '/repo/.consul/usr/bin/consul'
 * ```
 */
export function findConsulBinary(): string {
  const fromEnv = process.env.CONSUL_BIN;
  if (fromEnv) {
    if (runs(fromEnv)) return fromEnv;
    throw new Error(
      `CONSUL_BIN=${fromEnv} does not run (\`${fromEnv} version\` failed). Point it to a working consul binary, or unset it and run \`npm run consul:install\`.`,
    );
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'consul');
    if (existsSync(candidate) && runs(candidate)) return candidate;
  }
  const local = join(REPO_ROOT, '.consul', 'usr', 'bin', 'consul');
  if (existsSync(local) && runs(local)) return local;
  throw new Error(
    'No consul binary found (looked at $CONSUL_BIN, $PATH and .consul/usr/bin/consul). ' +
      'Run `npm run consul:install` (installs Debian bullseye consul 1.8.7 into .consul/), ' +
      'or set CONSUL_BIN=/path/to/consul.',
  );
}

/** A port free for both TCP and UDP on 127.0.0.1 (serf uses both on the same port). */
async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => res(p));
      });
    });
    if (taken.has(port)) continue;
    const udpFree = await new Promise<boolean>((res) => {
      const u = createSocket('udp4');
      u.once('error', () => {
        u.close();
        res(false);
      });
      u.bind(port, '127.0.0.1', () => u.close(() => res(true)));
    });
    if (udpFree) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('could not find a free port');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `consul agent -dev` on loopback and waits for a leader.
 *
 * @example
 * ```ts
 * let consul: ConsulAgent;
 * beforeAll(async () => { consul = await startConsul({ acl: true }); });
 * afterAll(() => consul.stop());
 * ```
 */
export async function startConsul(options: StartConsulOptions = {}): Promise<ConsulAgent> {
  const bin = findConsulBinary();
  installExitHook();
  const taken = new Set<number>();
  const ports = {
    http: await freePort(taken),
    serfLan: await freePort(taken),
    serfWan: await freePort(taken),
    server: await freePort(taken),
    dns: options.dns ? await freePort(taken) : -1,
  };
  const datacenter = options.datacenter ?? 'dc1';
  const node = options.node ?? `node-${randomUUID().slice(0, 8)}`;
  const token = options.acl ? randomUUID() : undefined;
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  // DNS and gRPC off (-1); HTTPS stays off (its default). `master` bootstraps a management token and `agent`
  // lets the agent register its own node under default-deny (Consul 1.8 names).
  const hcl = [
    options.dns ? 'ports { grpc = -1 }' : 'ports { dns = -1, grpc = -1 }',
    'disable_update_check = true',
    ...(options.dns ? [`dns_config { service_ttl { "*" = "${options.dns.serviceTtl}" } }`] : []),
    ...(token
      ? [
          'acl {',
          '  enabled = true',
          '  default_policy = "deny"',
          '  down_policy = "extend-cache"',
          '  enable_token_persistence = false',
          `  tokens { master = "${token}", agent = "${token}" }`,
          '}',
        ]
      : []),
  ].join('\n');
  const args = [
    'agent',
    '-dev',
    '-bind=127.0.0.1',
    '-client=127.0.0.1',
    '-advertise=127.0.0.1',
    `-http-port=${ports.http}`,
    `-serf-lan-port=${ports.serfLan}`,
    `-serf-wan-port=${ports.serfWan}`,
    `-server-port=${ports.server}`,
    ...(options.dns ? [`-dns-port=${ports.dns}`] : []),
    `-datacenter=${datacenter}`,
    `-node=${node}`,
    `-log-level=${options.logLevel ?? 'warn'}`,
    ...(options.join ? [`-retry-join=${options.join}`] : []),
    ...(options.joinWan ? [`-retry-join-wan=${options.joinWan}`] : []),
    ...Object.entries(options.nodeMeta ?? {}).map(([k, v]) => `-node-meta=${k}:${v}`),
  ];

  const host = '127.0.0.1';
  const httpAddr = `http://${host}:${ports.http}`;
  let child: ChildProcess | undefined;
  let output = '';
  let startMs = 0;

  // node:http without keep-alive (agent: false): the harness leaves no idle socket behind that would blur
  // the tests that count the process's active sockets.
  const api = <T>(method: string, path: string, body?: unknown): Promise<T> =>
    new Promise<T>((resolvePromise, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string | number> = {};
      if (token) headers['x-consul-token'] = token;
      if (payload) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = payload.length;
      }
      const req = httpRequest(
        { host, port: ports.http, method, path, headers, agent: false, timeout: 10_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            if ((res.statusCode ?? 0) >= 300) {
              reject(new Error(`consul ${method} ${path}: ${res.statusCode} ${text}`));
              return;
            }
            if (text === '') return resolvePromise(undefined as T);
            try {
              resolvePromise(JSON.parse(text) as T);
            } catch {
              resolvePromise(text as T);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`consul ${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });

  const waitReady = async (): Promise<void> => {
    const deadline = performance.now() + startTimeoutMs;
    let last = 'no answer';
    while (performance.now() < deadline) {
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `consul agent exited during start (code ${child?.exitCode}):\n${output.slice(-4000)}`,
        );
      }
      try {
        const leader = await api<string>('GET', '/v1/status/leader');
        if (typeof leader === 'string' && leader.length > 0) {
          // The agent's own node must be in the catalog before services registered through it show up in
          // health queries; with ACLs the token must also be usable.
          const nodes = await api<{ Node: string }[]>('GET', '/v1/catalog/nodes');
          if (nodes.some((n) => n.Node === node)) {
            if (token) await api('GET', '/v1/acl/token/self');
            return;
          }
          last = 'own node not yet in the catalog';
        } else last = 'no leader yet';
      } catch (e) {
        last = (e as Error).message;
      }
      await sleep(50);
    }
    throw new Error(`consul agent not ready after ${startTimeoutMs} ms (${last}):\n${output.slice(-4000)}`);
  };

  const start = async (): Promise<void> => {
    const t0 = performance.now();
    output = '';
    // The config file (it may hold the management token) lives only until the agent has read it.
    const dir = mkdtempSync(join(tmpdir(), 'meshfetch-consul-'));
    const configFile = join(dir, 'agent.hcl');
    writeFileSync(configFile, hcl, { mode: 0o600 });
    const c = spawn(bin, [...args, `-config-file=${configFile}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    children.add(c);
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    c.stdout?.on('data', collect);
    c.stderr?.on('data', collect);
    c.once('exit', () => children.delete(c));
    try {
      await waitReady();
    } catch (e) {
      await stopProcess('SIGKILL');
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    startMs = performance.now() - t0;
  };

  const stopProcess = async (signal: NodeJS.Signals): Promise<void> => {
    const c = child;
    if (!c) return;
    child = undefined;
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill(signal);
      const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    c.stdout?.destroy();
    c.stderr?.destroy();
    children.delete(c);
  };

  await start();

  return {
    httpAddr,
    host,
    port: ports.http,
    token,
    datacenter,
    node,
    serfLanAddr: `${host}:${ports.serfLan}`,
    serfWanAddr: `${host}:${ports.serfWan}`,
    dnsAddr: options.dns ? `${host}:${ports.dns}` : undefined,
    get pid() {
      return child?.pid;
    },
    get startMs() {
      return startMs;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    async stop() {
      await stopProcess('SIGTERM');
    },
    async restart() {
      await stopProcess('SIGTERM');
      await start();
    },
    async kill() {
      await stopProcess('SIGKILL');
    },
    api,
    logs: () => output,
  };
}

/**
 * A service instance for {@link registerInstance} (the agent's `/v1/agent/service/register` body, trimmed).
 *
 * @example
 * ```ts
 * const inst: TestInstance = { name: 'users', id: 'users-1', address: '127.0.0.1', port: 9001, weights: { passing: 3, warning: 1 } };
 * ```
 */
export interface TestInstance {
  name: string;
  id: string;
  address?: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  weights?: { passing: number; warning: number };
  /** Add a TTL check (`service:<id>`), initially passing unless `status` says otherwise. Default true. */
  ttlCheck?: boolean;
  status?: 'passing' | 'warning' | 'critical';
}

/**
 * Registers a service instance with a test agent (raw HTTP API, so tests can set weights and odd addresses).
 *
 * @example
 * ```ts
 * await registerInstance(consul, { name: 'users', id: 'users-1', address: '127.0.0.1', port: 9001 });
 * await setCheck(consul, 'users-1', 'critical');
 * ```
 */
export async function registerInstance(agent: ConsulAgent, inst: TestInstance): Promise<void> {
  const body: Record<string, unknown> = {
    Name: inst.name,
    ID: inst.id,
    Port: inst.port,
    Tags: inst.tags ?? [],
    Meta: inst.meta ?? {},
  };
  if (inst.address !== undefined) body.Address = inst.address;
  if (inst.weights) body.Weights = { Passing: inst.weights.passing, Warning: inst.weights.warning };
  if (inst.ttlCheck !== false) body.Check = { TTL: '10m', Status: inst.status ?? 'passing' };
  await agent.api('PUT', '/v1/agent/service/register', body);
}

/**
 * Sets the TTL check of an instance registered by {@link registerInstance}.
 *
 * @example
 * ```ts
 * await setCheck(consul, 'users-1', 'critical');
 * ```
 */
export async function setCheck(
  agent: ConsulAgent,
  serviceId: string,
  status: 'passing' | 'warning' | 'critical',
): Promise<void> {
  const verb = status === 'passing' ? 'pass' : status === 'warning' ? 'warn' : 'fail';
  await agent.api('PUT', `/v1/agent/check/${verb}/service:${encodeURIComponent(serviceId)}`);
}

/**
 * Deregisters an instance from the test agent.
 *
 * @example
 * ```ts
 * await deregisterInstance(consul, 'users-1');
 * ```
 */
export async function deregisterInstance(agent: ConsulAgent, serviceId: string): Promise<void> {
  await agent.api('PUT', `/v1/agent/service/deregister/${encodeURIComponent(serviceId)}`);
}

/**
 * Polls `check` until it returns a truthy value or the deadline passes (then throws with `what`).
 *
 * @example
 * ```ts
 * await waitFor(() => resolver.addr.state === 'bound', 'resolver bound');
 * ```
 */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`,
      );
    }
    await sleep(10);
  }
}
