/**
 * The clients the overhead benchmark compares, each a closed-loop `call()` that sends one GET and reads the
 * whole response body (every variant does the same work: status check, body read to the end as text).
 *
 * Each variant owns its own connections (its own Pool, Agent or mesh), created once and kept warm across
 * rounds, so no variant pays another's connection setup or shares its sockets.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, Dispatcher1Wrapper, Pool, fetch as undiciFetch, type Dispatcher } from 'undici';
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { createMesh, type Mesh, type Stacks } from 'meshfetch';
import {
  CallContext,
  defaultStacks,
  defaultTransportOptions,
  silentLogger,
  type Stack,
} from 'meshfetch/extend';
import type * as PoolModule from '../../src/transport/pool.js';
// Not part of the public API: the pool leaf, for the `leaf` variant, loaded from the build as 'meshfetch' is
// (typed from the source, so the type check needs no build).
const { PoolService } = (await import(
  new URL('../../dist/transport/pool.js', import.meta.url).href
)) as typeof PoolModule;

/**
 * The mesh stacks measured: no module, the full default stack, and the full stack without the two span
 * modules (`logical-span`, `attempt-span`): the baseline that tracing's cost is measured against.
 */
export type StackKind = 'balancer-only' | 'full' | 'untraced' | { without: readonly string[] };

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
  /** The service's `timeoutMs` (default: the built-in one, which is not sent); a configured one is sent. */
  timeoutMs?: number;
  /** Registers the OpenTelemetry SDK (no-op exporter) while this variant runs. */
  otel?: boolean;
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
  // Tracing's cost: the full stack with no OpenTelemetry SDK (above), without the span modules, and with the
  // SDK registered (a batch span processor over a no-op exporter, a meter provider never collected).
  {
    id: 'mesh-request-untraced',
    label: 'mesh.request, full stack without span modules',
    entry: 'mesh.request',
    stack: 'untraced',
  },
  {
    id: 'mesh-request-otel-noop',
    label: 'mesh.request, full stack, OTel SDK + no-op exporter',
    entry: 'mesh.request',
    stack: 'full',
    otel: true,
  },
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
  {
    id: 'global-fetch-agent',
    label: 'fetch + plain Agent',
    entry: 'global fetch + undici Agent',
  },
  { id: 'haproxy', label: 'HAProxy hop (Pool.request)', entry: 'undici Pool.request -> HAProxy', hop: true },
];

/**
 * The mesh's pool leaf alone (`PoolService.call`, the handler of src/transport/handler.ts), without the rest
 * of the mesh: splits what a mesh call costs on the wire into the leaf (against `Pool.request`) and the layers
 * above it. On demand only (`--only pool,leaf,mesh-request-bal`).
 */
const LEAF: VariantSpec = { id: 'leaf', label: "the mesh's pool leaf alone", entry: 'leaf' };

/**
 * The two stacks with `timeoutMs` configured (30 000, the built-in default's value): a configured deadline is
 * sent to the next hop (`mesh-deadline-ms`), the built-in one is not, so against `mesh-request-bal` and
 * `mesh-request-full` these measure what propagating a deadline costs the client and the server. On demand
 * only.
 */
const WITH_DEADLINE_HEADER: readonly VariantSpec[] = [
  {
    id: 'mesh-request-bal-deadline',
    label: 'mesh.request, balancer only, deadline sent',
    entry: 'mesh.request',
    stack: 'balancer-only',
    timeoutMs: 30_000,
  },
  {
    id: 'mesh-request-full-deadline',
    label: 'mesh.request, full stack, deadline sent',
    entry: 'mesh.request',
    stack: 'full',
    timeoutMs: 30_000,
  },
];

/**
 * The variant with this id: one of {@link VARIANTS}, or an ablation made on demand,
 * `mesh-request-without:ROLE[,ROLE...]` (mesh.request over the full default stack minus those roles), for
 * measuring what one module costs on the wire (`--only pool,mesh-request-full,mesh-request-without:retries`),
 * or `dispatcher-without:ROLE[,ROLE...]`, the same through the built-in fetch with `mesh.dispatcher`.
 */
export function findVariant(id: string): VariantSpec | undefined {
  const known = VARIANTS.find((x) => x.id === id);
  if (known !== undefined) return known;
  if (id === 'leaf') return LEAF;
  const withHeader = WITH_DEADLINE_HEADER.find((x) => x.id === id);
  if (withHeader !== undefined) return withHeader;
  const m = /^(mesh-request|dispatcher)-without:([\w,-]+)$/.exec(id);
  if (m === null) return undefined;
  const roles = m[2]!.split(',');
  const dispatcher = m[1] === 'dispatcher';
  return {
    id,
    label: `${dispatcher ? 'fetch + mesh.dispatcher' : 'mesh.request'}, full stack without ${roles.join(', ')}`,
    entry: dispatcher ? 'global fetch + mesh.dispatcher' : 'mesh.request',
    stack: { without: roles },
  };
}

/** A ready client. */
export interface Client {
  call(): Promise<void>;
  close(): Promise<void>;
  /** Called before this variant's loops run (e.g. to register global OpenTelemetry providers). */
  enter?(): void;
  /** Called after them, before the next variant runs. */
  leave?(): void;
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

/** The full stack without the span modules (tracing's baseline). */
export function untraced(s: Stacks): Stacks {
  return { ...s, logical: s.logical.remove('logical-span'), endpoint: s.endpoint.remove('attempt-span') };
}

/** Exports nothing: the SDK does all its work (sampling, recording, batching) and drops the spans at the end. */
class NoopExporter implements SpanExporter {
  export(_spans: unknown[], done: (r: { code: number }) => void): void {
    done({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

/** A meter provider's reader that is never collected: the instruments record, nothing is exported. */
class IdleReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/**
 * Registers a tracer provider (batch processor, no-op exporter), a meter provider, the AsyncLocalStorage
 * context manager and the W3C propagator globally while a variant runs, and removes them after, so the other
 * variants of the same process run without an SDK.
 */
function otelToggle(): { enter(): void; leave(): void; shutdown(): Promise<void> } {
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new BatchSpanProcessor(new NoopExporter())],
  });
  const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
  const contextManager = new AsyncLocalStorageContextManager();
  const propagator = new W3CTraceContextPropagator();
  return {
    enter() {
      context.setGlobalContextManager(contextManager.enable());
      propagation.setGlobalPropagator(propagator);
      trace.setGlobalTracerProvider(tracerProvider);
      metrics.setGlobalMeterProvider(meterProvider);
    },
    leave() {
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
    },
    async shutdown() {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
    },
  };
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

function without(roles: readonly string[]): (s: Stacks) => Stacks {
  const rm = (st: Stack): Stack =>
    roles.reduce((acc, r) => (acc.roles().includes(r) ? acc.remove(r) : acc), st);
  return (s) => ({ logical: rm(s.logical), concrete: rm(s.concrete), endpoint: rm(s.endpoint) });
}

function meshFor(kind: StackKind, port: number, timeoutMs: number | undefined): Mesh {
  const stack =
    kind === 'balancer-only'
      ? balancerOnly
      : kind === 'untraced'
        ? untraced
        : typeof kind === 'object'
          ? without(kind.without)
          : undefined;
  return createMesh({
    services: {
      [SERVICE]: { endpoints: [`127.0.0.1:${port}`], ...(timeoutMs !== undefined ? { timeoutMs } : {}) },
    },
    ...(stack ? { stack } : {}),
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

function leafClient(port: number): Client {
  const leaf = new PoolService(
    `127.0.0.1:${port}`,
    SERVICE,
    `127.0.0.1:${port}`,
    defaultTransportOptions,
    'logical',
  );
  const ctx = new CallContext(SERVICE, undefined, Infinity, undefined, 0, silentLogger);
  return {
    async call() {
      const r = await leaf.call(
        {
          method: 'GET',
          protocol: 'http:',
          authority: SERVICE,
          service: SERVICE,
          path: '/',
          headers: {},
          body: null,
        },
        ctx as never,
      );
      check(r.statusCode);
      await (r.body as unknown as { text(): Promise<string> }).text();
    },
    close: () => leaf.close(),
  };
}

/** The built-in fetch is undici 8's (Node 26): it calls a dispatcher with undici 8's handler API only. */
const FETCH_SPEAKS_UNDICI_8 = Number((process.versions.undici ?? '0').split('.')[0]) >= 8;

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
    case 'global-fetch-agent': {
      // The reference of `mesh.dispatcher`: the built-in fetch with a plain npm-undici Agent as `dispatcher`,
      // seen by the fetch as mesh.dispatcher is. The fetch of undici 6 and 7 (Node 22, 24) hands legacy
      // handlers (`onConnect`, `onHeaders`...), which an undici 8 Agent refuses and mesh.dispatcher adapts
      // itself: undici's public `Dispatcher1Wrapper` does the same adaptation for the Agent. undici 8's fetch
      // (Node 26) speaks the Agent's API, so the Agent is passed bare there.
      const agent = new Agent();
      const dispatcher: Dispatcher = FETCH_SPEAKS_UNDICI_8 ? agent : new Dispatcher1Wrapper(agent);
      // npm undici's Dispatcher type is not the one the global fetch's types name (undici-types).
      const init = { dispatcher } as unknown as RequestInit;
      return {
        async call() {
          const r = await fetch(url, init);
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
  if (v.id === 'leaf') return leafClient(port);
  const mesh = meshFor(v.stack!, port, v.timeoutMs);
  const otel = v.otel === true ? otelToggle() : undefined;
  const close = async (): Promise<void> => {
    await mesh.close({ gracePeriodMs: 1_000 });
    await otel?.shutdown();
  };
  switch (v.entry) {
    case 'mesh.request':
      return {
        async call() {
          const r = await mesh.request(meshUrl);
          check(r.statusCode);
          await r.body.text();
        },
        close,
        ...(otel ? { enter: otel.enter, leave: otel.leave } : {}),
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
    case 'global fetch + mesh.dispatcher': {
      // One init object for every call, as for the plain Agent's reference.
      const init = { dispatcher: mesh.dispatcher } as unknown as RequestInit;
      return {
        async call() {
          const r = await fetch(meshUrl, init);
          check(r.status);
          await r.text();
        },
        close,
      };
    }
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
