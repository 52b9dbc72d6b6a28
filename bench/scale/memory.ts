/**
 * Memory of the mesh at scale, from `process.memoryUsage()` after forced garbage collections (needs
 * `--expose-gc`; `npm run bench` passes it):
 *
 * - heap per endpoint: one service with N static endpoints minus one service with 1, over N - 1, for each
 *   balancer (a node, its load metric, its endpoint stack and an idle `PoolService` whose undici Pool does
 *   not exist yet: pools are created on first use);
 * - heap per configured service: S services of one endpoint each minus an empty mesh, over S (and the same
 *   less one endpoint's share: the service's own stacks, destination and config);
 * - a mesh of 100 services x 50 endpoints: configured and idle; after one call per service (100 pools, one
 *   connection each); and, with round robin so that 50 calls per service reach every endpoint once, after
 *   every endpoint has a pool and a kept-alive connection (5,000). Traffic goes to servers on 127.0.0.1 in a
 *   child process (bench/scale/servers.ts), whose memory is not counted.
 *
 * Each "per" figure is the median of a few repetitions. Part of bench/scale (see index.ts).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createMesh, type BalancerName, type Mesh, type ServiceConfig } from 'meshfetch';
import { median } from '../lib/stats.js';

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('bench/scale needs --expose-gc (npm run bench passes it)');
  gc();
  gc();
}

/** Memory now, after two full collections (bytes). */
export function usage(): NodeJS.MemoryUsage {
  gcNow();
  return process.memoryUsage();
}

const heap = (): number => usage().heapUsed;

function endpoints(n: number, base = 20_000): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.0.1:${base + i}`);
}

/** Heap per endpoint for one balancer (bytes). */
export interface PerEndpoint {
  balancer: BalancerName;
  endpoints: number;
  bytesPerEndpoint: number;
  reps: number[];
}

/** Measures heap per static endpoint with each balancer. */
export async function heapPerEndpoint(n: number, reps: number): Promise<PerEndpoint[]> {
  const out: PerEndpoint[] = [];
  for (const balancer of ['p2c-peak-ewma', 'p2c-least-loaded', 'round-robin'] as const) {
    const xs: number[] = [];
    for (let r = 0; r < reps; r++) {
      const h0 = heap();
      const one = createMesh({ services: { svc: { endpoints: endpoints(1), balancer } } });
      const h1 = heap();
      const many = createMesh({ services: { svc: { endpoints: endpoints(n), balancer } } });
      const h2 = heap();
      xs.push((h2 - h1 - (h1 - h0)) / (n - 1));
      await Promise.all([one.close(), many.close()]);
    }
    out.push({ balancer, endpoints: n, bytesPerEndpoint: Math.round(median(xs)), reps: xs.map(Math.round) });
  }
  return out;
}

/** Heap per configured service. */
export interface PerService {
  services: number;
  /** An empty mesh (no service), bytes. */
  emptyMeshBytes: number;
  /** A service with one static endpoint, bytes. */
  bytesPerService: number;
  reps: number[];
}

/** Measures heap per configured service (one static endpoint each, default balancer, no traffic). */
export async function heapPerService(s: number, reps: number): Promise<PerService> {
  const xs: number[] = [];
  const empties: number[] = [];
  for (let r = 0; r < reps; r++) {
    // An empty mesh is small next to GC noise: measure `s` of them at once.
    const h0 = heap();
    const empty = Array.from({ length: s }, () => createMesh({ services: {} }));
    const h1 = heap();
    const services: Record<string, ServiceConfig> = {};
    for (let i = 0; i < s; i++) services[`svc-${i}`] = { endpoints: [`127.0.0.1:${20_000 + i}`] };
    const mesh = createMesh({ services });
    const h2 = heap();
    const emptyOne = (h1 - h0) / s;
    empties.push(emptyOne);
    xs.push((h2 - h1 - emptyOne) / s);
    await Promise.all([...empty.map((m) => m.close()), mesh.close()]);
  }
  return {
    services: s,
    emptyMeshBytes: Math.round(median(empties)),
    bytesPerService: Math.round(median(xs)),
    reps: xs.map(Math.round),
  };
}

/** One stage of the big mesh. */
export interface MeshStage {
  stage: string;
  /** Pools that exist (calls made reach distinct endpoints). */
  pools: number;
  heapUsedBytes: number;
  externalBytes: number;
  rssBytes: number;
}

/** The 100 x 50 mesh. */
export interface BigMesh {
  services: number;
  endpointsPerService: number;
  /** heapUsed etc. before the mesh existed. */
  before: MeshStage;
  stages: MeshStage[];
}

interface Servers {
  ports: number[];
  stop(): Promise<void>;
}

function startServers(count: number): Promise<Servers> {
  const file = fileURLToPath(new URL('./servers.ts', import.meta.url));
  const execArgv = process.execArgv.filter((a) => a !== '--expose-gc' && !a.startsWith('--cpu-prof'));
  const child = fork(file, [String(count)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('scale servers did not start within 20 s')), 20_000);
    child.once('error', reject);
    child.once('message', (m: { ports: number[] }) => {
      clearTimeout(t);
      resolve({
        ports: m.ports,
        async stop() {
          process.off('exit', kill);
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.disconnect();
          const k = setTimeout(kill, 3_000);
          await exited;
          clearTimeout(k);
        },
      });
    });
  });
}

function stage(name: string, pools: number, u: NodeJS.MemoryUsage): MeshStage {
  return { stage: name, pools, heapUsedBytes: u.heapUsed, externalBytes: u.external, rssBytes: u.rss };
}

async function call(mesh: Mesh, service: string): Promise<void> {
  const r = await mesh.request(`http://${service}/`);
  if (r.statusCode !== 200) throw new Error(`${service}: status ${r.statusCode}`);
  await r.body.text();
}

/** Builds the 100 x 50 mesh (sizes configurable) and measures it at each stage; see the file comment. */
export async function bigMesh(services: number, perService: number): Promise<BigMesh> {
  const servers = await startServers(perService);
  try {
    const eps = servers.ports.map((p) => `127.0.0.1:${p}`);
    const names = Array.from({ length: services }, (_, i) => `svc-${i}`);
    const config = (balancer: BalancerName): Record<string, ServiceConfig> =>
      Object.fromEntries(names.map((n) => [n, { endpoints: eps, balancer }]));
    const before = stage('before', 0, usage());
    const stages: MeshStage[] = [];

    let mesh = createMesh({ services: config('p2c-peak-ewma') });
    stages.push(stage('configured, no traffic (P2C Peak-EWMA)', 0, usage()));
    await Promise.all(names.map((n) => call(mesh, n)));
    stages.push(stage('after one call per service', services, usage()));
    await mesh.close();

    mesh = createMesh({ services: config('round-robin') });
    stages.push(stage('configured, no traffic (round robin)', 0, usage()));
    // Round robin visits every endpoint once in `perService` calls; services in parallel, calls in sequence.
    await Promise.all(
      names.map(async (n) => {
        for (let i = 0; i < perService; i++) await call(mesh, n);
      }),
    );
    stages.push(stage('after one call per endpoint (round robin)', services * perService, usage()));
    await mesh.close();
    return { services, endpointsPerService: perService, before, stages };
  } finally {
    await servers.stop();
  }
}
