/**
 * The clients the overhead benchmark compares, each a closed-loop `call()` that sends one GET and reads the
 * whole response body (every variant does the same work: status check, body read to the end as text).
 *
 * Each variant owns its own connections (its own Pool, Agent or mesh), created once and kept warm across
 * rounds, so no variant pays another's connection setup or shares its sockets.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, Pool, fetch as undiciFetch } from 'undici';
import { createMesh, defaultStacks, type Mesh, type Stack, type Stacks } from 'meshfetch';

/** The two mesh stacks measured. */
export type StackKind = 'balancer-only' | 'full';

/** A variant's static description. */
export interface VariantSpec {
  id: string;
  /** Short name for tables and plots. */
  label: string;
  /** The entry point, without the stack. */
  entry: string;
  stack?: StackKind;
  /** Goes through HAProxy (needs it installed). */
  hop?: boolean;
}

/** In round order (A B C ...). */
export const VARIANTS: readonly VariantSpec[] = [
  { id: 'pool', label: 'undici Pool.request', entry: 'undici Pool.request' },
  { id: 'undici-fetch', label: 'undici fetch (Agent)', entry: 'undici fetch' },
  { id: 'global-fetch', label: 'global fetch (built-in)', entry: 'global fetch' },
  {
    id: 'mesh-request-bal',
    label: 'mesh.request, balancer only',
    entry: 'mesh.request',
    stack: 'balancer-only',
  },
  { id: 'mesh-request-full', label: 'mesh.request, full stack', entry: 'mesh.request', stack: 'full' },
  { id: 'mesh-fetch-bal', label: 'mesh.fetch, balancer only', entry: 'mesh.fetch', stack: 'balancer-only' },
  { id: 'mesh-fetch-full', label: 'mesh.fetch, full stack', entry: 'mesh.fetch', stack: 'full' },
  {
    id: 'dispatcher-bal',
    label: 'fetch + mesh.dispatcher, balancer only',
    entry: 'global fetch + mesh.dispatcher',
    stack: 'balancer-only',
  },
  {
    id: 'dispatcher-full',
    label: 'fetch + mesh.dispatcher, full stack',
    entry: 'global fetch + mesh.dispatcher',
    stack: 'full',
  },
  { id: 'haproxy', label: 'HAProxy hop (Pool.request)', entry: 'undici Pool.request -> HAProxy', hop: true },
];

/** A ready client. */
export interface Client {
  call(): Promise<void>;
  close(): Promise<void>;
}

/** Where the clients send. */
export interface Upstreams {
  serverPort: number;
  haproxyPort?: number;
}

/** The logical service name the mesh variants call (http://backend/). */
export const SERVICE = 'backend';

/** Removes every module of a stack: what is left is the leaf (router, balancer, pool). */
function strip(s: Stack): Stack {
  return s.roles().reduce((acc, role) => acc.remove(role), s);
}

/** "Balancer only": no module at any level; the call goes entry point -> router -> balancer -> pool. */
export function balancerOnly(s: Stacks): Stacks {
  return { logical: strip(s.logical), concrete: strip(s.concrete), endpoint: strip(s.endpoint) };
}

/** The roles of the full default stack, for the report. */
export function fullStackRoles(): Record<'logical' | 'concrete' | 'endpoint', string[]> {
  const s = defaultStacks();
  return { logical: s.logical.roles(), concrete: s.concrete.roles(), endpoint: s.endpoint.roles() };
}

function check(status: number): void {
  if (status !== 200) throw new Error(`unexpected status ${status}`);
}

function meshFor(kind: StackKind, port: number): Mesh {
  return createMesh({
    services: { [SERVICE]: { endpoints: [`127.0.0.1:${port}`] } },
    ...(kind === 'balancer-only' ? { stack: balancerOnly } : {}),
  });
}

function poolClient(port: number): Client {
  const pool = new Pool(`http://127.0.0.1:${port}`);
  return {
    async call() {
      const r = await pool.request({ method: 'GET', path: '/' });
      check(r.statusCode);
      await r.body.text();
    },
    close: () => pool.close(),
  };
}

/** Builds the client of a variant. */
export function makeClient(v: VariantSpec, up: Upstreams): Client {
  const port = up.serverPort;
  const url = `http://127.0.0.1:${port}/`;
  const meshUrl = `http://${SERVICE}/`;
  switch (v.id) {
    case 'pool':
      return poolClient(port);
    case 'haproxy':
      if (up.haproxyPort === undefined) throw new Error('HAProxy is not running');
      return poolClient(up.haproxyPort);
    case 'undici-fetch': {
      const agent = new Agent();
      return {
        async call() {
          const r = await undiciFetch(url, { dispatcher: agent });
          check(r.status);
          await r.text();
        },
        close: () => agent.close(),
      };
    }
    case 'global-fetch':
      // Node's built-in fetch with its own global Agent; nothing to close (its sockets are unref'ed).
      return {
        async call() {
          const r = await fetch(url);
          check(r.status);
          await r.text();
        },
        close: async () => {},
      };
  }
  const mesh = meshFor(v.stack!, port);
  const close = (): Promise<void> => mesh.close({ gracePeriodMs: 1_000 });
  switch (v.entry) {
    case 'mesh.request':
      return {
        async call() {
          const r = await mesh.request(meshUrl);
          check(r.statusCode);
          await r.body.text();
        },
        close,
      };
    case 'mesh.fetch':
      return {
        async call() {
          const r = await mesh.fetch(meshUrl);
          check(r.status);
          await r.text();
        },
        close,
      };
    case 'global fetch + mesh.dispatcher':
      return {
        async call() {
          const r = await fetch(meshUrl, { dispatcher: mesh.dispatcher });
          check(r.status);
          await r.text();
        },
        close,
      };
  }
  throw new Error(`unknown variant ${v.id}`);
}

/** The running upstream server process. */
export interface UpstreamServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Node flags of this process minus profiling ones, for child processes (keeps tsx's loader). */
export function childExecArgv(): string[] {
  return process.execArgv.filter(
    (a) => !a.startsWith('--cpu-prof') && !a.startsWith('--prof') && a !== '--expose-gc',
  );
}

/** Starts bench/overhead/server.ts in its own process and waits for its port. */
export function startServer(): Promise<UpstreamServer> {
  const file = fileURLToPath(new URL('./server.ts', import.meta.url));
  const child: ChildProcess = fork(file, [], {
    execArgv: childExecArgv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the benchmark server did not start within 20 s'));
    }, 20_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the benchmark server exited early (code ${code})`)));
    child.once('message', (m: { port: number; pid: number }) => {
      clearTimeout(t);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      resolve({
        port: m.port,
        pid: m.pid,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.disconnect();
          const k = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(k);
        },
      });
    });
  });
}
