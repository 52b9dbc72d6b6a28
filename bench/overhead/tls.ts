/**
 * The TLS and HTTP/2 overhead benchmark, in one run:
 *
 * - `mesh.request` over TLS (HTTP/1.1, full default stack) against bare undici `Pool.request` with the same
 *   certificates, at concurrency 1 and 64 (target: the mesh at >= 0.95x the pool's throughput at c=64);
 * - HTTP/2 against HTTP/1.1 over TLS at c=64, both through the mesh;
 * - the cost of a call that needs a new connection (TCP + TLS handshake: the server answers with
 *   `Connection: close`) against one on a reused connection, sequential, through the mesh.
 *
 * The certificates are made for the run with the openssl CLI (a CA and a server leaf for `bench`). The
 * upstreams (tls-server.ts) run in their own process. The clients share this process and take turns in short
 * slices (round-robin, `--rounds` rounds of `--seconds` per slice), so a client and its reference are measured
 * seconds apart and the host's slow windows hit both alike; ratios are computed per round and the medians
 * reported. Keep the runs short on a shared machine: the figures are indicative there.
 *
 * Run: `npm run bench -- --bench overhead-tls`, or
 *   npm run build && npx tsx bench/overhead/tls.ts [--quick] [--rounds 3] [--seconds 1] [--handshakes 200]
 * Results: bench/results/overhead-tls.json (with --quick: bench/results/quick/) and a table on stdout.
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { createMesh, type Mesh } from 'meshfetch';
import { numberFlag, parseFlags } from '../lib/cli.js';
import { closedLoop } from '../lib/load.js';
import { summarize } from '../lib/stats.js';
import { formatTable, num } from '../lib/table.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { writeJson } from '../lib/output.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const flags = parseFlags(process.argv.slice(2));
const QUICK = flags.quick === true;
const ROUNDS = numberFlag(flags, 'rounds', QUICK ? 1 : 3);
const SECONDS = numberFlag(flags, 'seconds', QUICK ? 0.5 : 1);
const HANDSHAKES = numberFlag(flags, 'handshakes', QUICK ? 50 : 200);

/** A CA and a server certificate for `bench`, made with openssl in a temporary directory. */
function makeCerts(): { dir: string; ca: string; certFile: string; keyFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshfetch-bench-tls-'));
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=bench-ca', '-days', '1',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']); // prettier-ignore
  run(['req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=bench']);
  writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:bench\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.crt', '-days', '1', '-extfile', 'ext']); // prettier-ignore
  return {
    dir,
    ca: readFileSync(path.join(dir, 'ca.crt'), 'utf8'),
    certFile: path.join(dir, 'server.crt'),
    keyFile: path.join(dir, 'server.key'),
  };
}

interface Client {
  call(): Promise<void>;
  close(): Promise<void>;
}

function check(status: number): void {
  if (status !== 200) throw new Error(`status ${status}`);
}

function poolClient(port: number, ca: string): Client {
  const pool = new Pool(`https://127.0.0.1:${port}`, {
    connections: 128,
    allowH2: false,
    keepAliveTimeout: 4_000,
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { ca, servername: 'bench' },
  });
  return {
    async call() {
      const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'bench' } });
      check(r.statusCode);
      await r.body.text();
    },
    close: () => pool.close(),
  };
}

function meshClient(port: number, ca: string, http2: boolean, urlPath = '/'): Client & { mesh: Mesh } {
  const mesh = createMesh({
    services: { bench: { endpoints: [`127.0.0.1:${port}`], transport: { http2, tls: { ca } } } },
  });
  const url = `https://bench${urlPath}`;
  return {
    mesh,
    async call() {
      const r = await mesh.request(url);
      check(r.statusCode);
      await r.body.text();
    },
    close: () => mesh.close({ gracePeriodMs: 1_000 }),
  };
}

interface Slice {
  rps: number;
  /** This process's CPU time per call (µs): the client's cost, less disturbed by other load than req/s. */
  cpuUs: number;
  p50Us: number;
  p99Us: number;
  errors: number;
}

async function slice(c: Client, concurrency: number): Promise<Slice> {
  await closedLoop(() => c.call(), { concurrency, durationMs: 100 }); // lead-in, unmeasured
  const cpu0 = process.cpuUsage();
  const r = await closedLoop(() => c.call(), { concurrency, durationMs: SECONDS * 1_000 });
  const cpu = process.cpuUsage(cpu0);
  const s = summarize(r.histogram);
  return {
    rps: r.count / (r.elapsedMs / 1e3),
    cpuUs: (cpu.user + cpu.system) / Math.max(1, r.count),
    p50Us: s.p50Us,
    p99Us: s.p99Us,
    errors: r.errors,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const certs = makeCerts();
  const server = fork(path.join(here, 'tls-server.ts'), [certs.certFile, certs.keyFile], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ports = await new Promise<{ h1: number; h2: number }>((resolve, reject) => {
    server.once('message', (m) => resolve(m as { h1: number; h2: number }));
    server.once('exit', (code) => reject(new Error(`tls-server exited with ${code}`)));
  });
  const clients: Record<string, Client> = {
    'pool-tls': poolClient(ports.h1, certs.ca),
    'mesh-tls-h1': meshClient(ports.h1, certs.ca, false),
    'mesh-tls-h2': meshClient(ports.h2, certs.ca, true),
  };
  const plan: Array<[string, number]> = [
    ['pool-tls', 1],
    ['mesh-tls-h1', 1],
    ['pool-tls', 64],
    ['mesh-tls-h1', 64],
    ['mesh-tls-h2', 64],
  ];
  const samples = new Map<string, Slice[]>();
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order each round so neither side always runs first.
    const order = round % 2 === 0 ? plan : [...plan].reverse();
    for (const [id, c] of order) {
      const s = await slice(clients[id]!, c);
      const k = `${id}@${c}`;
      (samples.get(k) ?? samples.set(k, []).get(k)!).push(s);
    }
  }
  const ratio = (a: string, b: string): number[] =>
    samples.get(a)!.map((s, i) => s.rps / samples.get(b)![i]!.rps);
  const cpuRatio = (a: string, b: string): number[] =>
    samples.get(a)!.map((s, i) => s.cpuUs / samples.get(b)![i]!.cpuUs);
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;

  // Handshake (new connection per call) against reuse, sequential through the mesh.
  const fresh = meshClient(ports.h1, certs.ca, false, '/close');
  const reused = clients['mesh-tls-h1']!;
  const timeSeq = async (c: Client): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < HANDSHAKES; i++) {
      const t0 = performance.now();
      await c.call();
      out.push((performance.now() - t0) * 1e3);
    }
    return out;
  };
  await timeSeq(fresh); // warm-up
  const newConn = await timeSeq(fresh);
  const reuse = await timeSeq(reused);
  const opened = fresh.mesh.snapshot().services[0]!.endpoints[0]!.transport?.https?.opened ?? 0;

  const rows = [...samples.entries()].map(([k, v]) => [
    k,
    num(median(v.map((s) => s.rps)), 0),
    num(median(v.map((s) => s.cpuUs)), 1),
    num(median(v.map((s) => s.p50Us)), 0),
    num(median(v.map((s) => s.p99Us)), 0),
    String(v.reduce((n, s) => n + s.errors, 0)),
  ]);
  const pairs = {
    meshOverPoolC1: ratio('mesh-tls-h1@1', 'pool-tls@1'),
    meshOverPoolC64: ratio('mesh-tls-h1@64', 'pool-tls@64'),
    h2OverH1C64: ratio('mesh-tls-h2@64', 'mesh-tls-h1@64'),
    cpuMeshOverPoolC1: cpuRatio('mesh-tls-h1@1', 'pool-tls@1'),
    cpuMeshOverPoolC64: cpuRatio('mesh-tls-h1@64', 'pool-tls@64'),
  };
  const ratios = Object.fromEntries(Object.entries(pairs).map(([k, v]) => [k, median(v)])) as Record<
    keyof typeof pairs,
    number
  >;
  const handshake = {
    newConnectionP50Us: median(newConn),
    reusedP50Us: median(reuse),
    connectionsOpened: opened,
  };
  console.log(`\nTLS overhead: ${ROUNDS} rounds x ${SECONDS} s slices; ${describeMachine(machineInfo())}\n`);
  console.log(
    formatTable(['client@concurrency', 'req/s', 'CPU µs/call', 'p50 µs', 'p99 µs', 'errors'], rows),
  );
  console.log(
    `\nmesh.request / Pool.request over TLS, req/s (median of paired rounds, range): c=1 ${ratios.meshOverPoolC1.toFixed(3)}x (${range(pairs.meshOverPoolC1)}), c=64 ${ratios.meshOverPoolC64.toFixed(3)}x (${range(pairs.meshOverPoolC64)}); target >= 0.95x at c=64: ${ratios.meshOverPoolC64 >= 0.95 ? 'met' : 'NOT met'}`,
  );
  console.log(
    `client CPU per call, mesh / pool: c=1 ${ratios.cpuMeshOverPoolC1.toFixed(3)}x (${range(pairs.cpuMeshOverPoolC1)}), c=64 ${ratios.cpuMeshOverPoolC64.toFixed(3)}x (${range(pairs.cpuMeshOverPoolC64)})`,
  );
  console.log(
    `HTTP/2 / HTTP/1.1 through the mesh at c=64, req/s: ${ratios.h2OverH1C64.toFixed(3)}x (${range(pairs.h2OverH1C64)})`,
  );
  console.log(
    `call on a new connection (TCP + TLS handshake) p50 ${num(handshake.newConnectionP50Us, 0)} µs vs reused ${num(handshake.reusedP50Us, 0)} µs (${HANDSHAKES} sequential calls each; ${opened} connections opened)`,
  );
  const out = path.join(here, '..', 'results', ...(QUICK ? ['quick'] : []));
  mkdirSync(out, { recursive: true });
  await writeJson(path.join(out, 'overhead-tls.json'), {
    machine: machineInfo(),
    rounds: ROUNDS,
    seconds: SECONDS,
    samples: Object.fromEntries(samples),
    ratios,
    pairs,
    handshake,
  });
  await Promise.all([...Object.values(clients), fresh].map((c) => c.close()));
  server.disconnect();
  rmSync(certs.dir, { recursive: true, force: true });
}

await main();
