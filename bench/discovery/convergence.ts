/**
 * Convergence: how long after a health change in Consul the balancer stops (or starts again) picking an
 * endpoint. Real parts only: a `consul agent -dev` on loopback started by the test harness
 * (test/support/consul.ts), N instances registered with TTL checks, each backed by a real node:http server
 * on 127.0.0.1, and a mesh made by `createMesh` with `consulDiscovery` and its default options and balancer
 * (P2C Peak EWMA).
 *
 * What is measured, per flip: t0 is taken just before the HTTP call that changes the TTL check
 * (`PUT /v1/agent/check/fail|pass/...`); the end is the moment the mesh's Destination has applied a Consul
 * answer in which the endpoint is gone (or back). The end is observed by a listener on the resolver the mesh
 * made, subscribed after the Destination's own listener: the resolver calls its listeners in subscription
 * order, synchronously, so our listener runs right after `Destination.apply` returned, i.e. right after
 * `distributor.update()` received the new node set. It confirms the state by reading
 * `destination.endpoints()`. No polling interval blurs the number (a 5 ms poll of `destination.endpoints()`
 * stands by as a fallback and is reported if it ever wins).
 *
 * Traffic confirms it from the outside: a paced loop of requests (one at a time, ~1 ms apart) through
 * `mesh.request()` runs during the whole run; each backend answers with its index. For each removal we
 * record when the last request routed to the flipped instance was sent (traffic view of the same moment,
 * quantised by the request spacing), and count requests sent after the listener fired that still reached it
 * (must be 0: the balancer no longer picks it). A pick happens in the same macrotask as the send (no I/O
 * between `mesh.request()` and `distributor.pick()`), so the send time is the pick time.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { consulDiscovery, createMesh, type ConsulResolver, type Discovery, type Mesh } from 'meshfetch';
import { registerInstance, setCheck, startConsul, type ConsulAgent } from '../../test/support/consul.js';
import { summarize, type Summary } from './stats.js';

const SERVICE = 'bench-conv';

/** Options of {@link runConvergence}. */
export interface ConvergenceOptions {
  /** Registered instances (each with its own server). */
  readonly instances: number;
  /** Flip cycles: each sets one instance critical, then passing again half a cycle later. */
  readonly flips: number;
  /** Time from one critical flip to the next (ms); the passing flip comes half-way. */
  readonly cycleMs: number;
  /** Give up waiting for one flip to show after this long (ms); counted as a timeout. */
  readonly flipTimeoutMs: number;
  /** Aborts the run early (SIGINT / SIGTERM); cleanup still happens. */
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
}

/** One flip of one TTL check. */
export interface FlipSample {
  readonly cycle: number;
  /** critical: the endpoint must leave the balancer; passing: it must come back. */
  readonly direction: 'critical' | 'passing';
  readonly instance: number;
  /** Flip to balancer updated (ms), or null on timeout. */
  readonly convergedMs: number | null;
  /** What saw it first: the resolver listener, or the fallback poll of destination.endpoints(). */
  readonly observedBy: 'listener' | 'poll' | 'timeout';
  /** How long the HTTP call that changed the check took (ms). */
  readonly checkApiMs: number;
  /** Removal: last request routed to the instance, sent this long after t0 (ms); recovery: the first. */
  readonly trafficMs: number | null;
  /** Requests sent in this flip's window (until the next flip). */
  readonly requests: number;
  /** Removal only: requests sent after the balancer was updated that still reached the instance. */
  readonly routedAfterRemoval: number;
}

/** The outcome of {@link runConvergence}. */
export interface ConvergenceResult {
  readonly instances: number;
  readonly flips: number;
  readonly cycleMs: number;
  readonly balancer: string;
  readonly consulVersion: string;
  readonly consulStartMs: number;
  readonly discoveryOptions: Record<string, unknown>;
  readonly removal: Summary & { readonly timeouts: number };
  readonly recovery: Summary & { readonly timeouts: number };
  readonly checkApi: Summary;
  readonly trafficRemoval: Summary;
  readonly traffic: {
    readonly requests: number;
    readonly errors: number;
    readonly perSecond: number;
    readonly routedAfterRemoval: number;
    readonly perBackend: number[];
  };
  readonly resolverStats: Record<string, number>;
  readonly samples: FlipSample[];
}

interface Backend {
  readonly index: number;
  readonly port: number;
  close(): Promise<void>;
}

async function startBackend(index: number): Promise<Backend> {
  const body = String(index);
  const server = createServer((req, res) => {
    req.resume();
    res.setHeader('content-type', 'text/plain');
    res.end(body);
  });
  // Above the mesh's keep-alive (4 s) so the client always closes idle sockets first.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    index,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A flip in progress; the traffic loop and the listener both write to it. */
interface Watch {
  readonly cycle: number;
  readonly direction: 'critical' | 'passing';
  readonly instance: number;
  readonly endpointId: string;
  t0: number;
  hit: number | undefined;
  observedBy: 'listener' | 'poll' | 'timeout';
  lastTargetSend: number | undefined;
  firstTargetSend: number | undefined;
  requests: number;
  routedAfterRemoval: number;
  done: () => void;
}

/**
 * Runs the convergence benchmark against a fresh dev agent; always stops the agent, the servers and the
 * mesh before returning or throwing.
 */
export async function runConvergence(o: ConvergenceOptions): Promise<ConvergenceResult> {
  let consul: ConsulAgent | undefined;
  const backends: Backend[] = [];
  let mesh: Mesh | undefined;
  let stopTraffic = false;
  let trafficLoop: Promise<void> | undefined;
  try {
    consul = await startConsul();
    const agent = consul;
    const version = String(
      ((await agent.api<{ Config?: { Version?: string } }>('GET', '/v1/agent/self')) ?? {}).Config?.Version ??
        'unknown',
    );
    o.log(`consul ${version} dev agent on ${agent.httpAddr} (ready in ${Math.round(agent.startMs)} ms)`);
    for (let i = 0; i < o.instances; i++) backends.push(await startBackend(i));
    const idOf = (i: number): string => `${SERVICE}-${i}`;
    for (const b of backends) {
      await registerInstance(agent, { name: SERVICE, id: idOf(b.index), address: '127.0.0.1', port: b.port });
    }

    let resolver: ConsulResolver | undefined;
    const source = consulDiscovery({ address: agent.httpAddr });
    // The same ConsulDiscovery, only handing us the resolver it makes for the mesh.
    const discovery: Discovery = {
      kind: source.kind,
      resolve(ctx) {
        resolver = source.resolve(ctx);
        return resolver;
      },
    };
    const m = createMesh({ services: { [SERVICE]: { discovery, timeoutMs: 2_000 } } });
    mesh = m;
    const logical = m.lookup(SERVICE);
    if (!logical || !resolver) throw new Error('the mesh did not build the service');
    const destination = logical.destination;
    const r = resolver;
    const hasEndpoint = (id: string): boolean => destination.endpoints().some((n) => n.id === id);

    let watch: Watch | undefined;
    // Subscribed after the Destination's own listener (made in createMesh): runs right after it applied.
    r.subscribe(() => {
      const w = watch;
      if (w && w.hit === undefined && w.t0 > 0 && hasEndpoint(w.endpointId) === (w.direction === 'passing')) {
        w.hit = performance.now();
        w.observedBy = 'listener';
        w.done();
      }
    });

    const readyBy = performance.now() + 15_000;
    while (destination.endpoints().length !== o.instances) {
      if (performance.now() > readyBy || o.signal.aborted)
        throw new Error(
          `the mesh did not see ${o.instances} endpoints in time (has ${destination.endpoints().length}; resolver ${JSON.stringify(r.snapshot())})`,
        );
      await sleep(10);
    }

    // Paced traffic: one request at a time, ~1 ms apart, for the whole run (bounded by a hard cap too).
    const traffic = { requests: 0, errors: 0, perBackend: backends.map(() => 0), startedAt: 0, endedAt: 0 };
    const trafficCap = performance.now() + o.flips * o.cycleMs + 120_000;
    const url = `http://${SERVICE}/`;
    trafficLoop = (async () => {
      traffic.startedAt = performance.now();
      while (!stopTraffic && performance.now() < trafficCap) {
        const tSend = performance.now();
        const w = watch;
        try {
          const res = await m.request(url);
          const b = Number(await res.body.text());
          traffic.requests++;
          if (Number.isInteger(b) && b >= 0 && b < traffic.perBackend.length) traffic.perBackend[b]!++;
          if (w && w.t0 > 0 && tSend >= w.t0) {
            w.requests++;
            if (b === w.instance) {
              w.lastTargetSend = tSend;
              w.firstTargetSend ??= tSend;
              if (w.direction === 'critical' && w.hit !== undefined && tSend > w.hit) w.routedAfterRemoval++;
            }
          }
        } catch {
          traffic.errors++;
        }
        await sleep(1);
      }
      traffic.endedAt = performance.now();
    })();
    // Let the traffic warm up (pools, Peak EWMA estimates) before the first flip.
    await sleep(Math.min(1_000, o.cycleMs));

    const samples: FlipSample[] = [];
    const apiMs = new Map<Watch, number>();
    const finish = (w: Watch): void => {
      const seen =
        w.direction === 'critical'
          ? w.lastTargetSend === undefined
            ? null
            : w.lastTargetSend - w.t0
          : w.firstTargetSend === undefined
            ? null
            : w.firstTargetSend - w.t0;
      samples.push({
        cycle: w.cycle,
        direction: w.direction,
        instance: w.instance,
        convergedMs: w.hit === undefined ? null : w.hit - w.t0,
        observedBy: w.observedBy,
        checkApiMs: apiMs.get(w) ?? NaN,
        trafficMs: seen,
        requests: w.requests,
        routedAfterRemoval: w.routedAfterRemoval,
      });
    };
    let previous: Watch | undefined;
    const startAt = performance.now();
    for (let cycle = 0; cycle < o.flips && !o.signal.aborted; cycle++) {
      const instance = cycle % o.instances;
      for (const direction of ['critical', 'passing'] as const) {
        const slot = startAt + cycle * o.cycleMs + (direction === 'passing' ? o.cycleMs / 2 : 0);
        const wait = slot - performance.now();
        if (wait > 0) await sleep(wait);
        if (o.signal.aborted) break;
        if (previous) finish(previous);
        let done!: () => void;
        const reached = new Promise<void>((resolve) => (done = resolve));
        const w: Watch = {
          cycle,
          direction,
          instance,
          endpointId: `127.0.0.1:${backends[instance]!.port}`,
          t0: 0,
          hit: undefined,
          observedBy: 'timeout',
          lastTargetSend: undefined,
          firstTargetSend: undefined,
          requests: 0,
          routedAfterRemoval: 0,
          done,
        };
        watch = w;
        previous = w;
        w.t0 = performance.now();
        await setCheck(agent, idOf(instance), direction);
        apiMs.set(w, performance.now() - w.t0);
        const deadline = w.t0 + o.flipTimeoutMs;
        while (w.hit === undefined && performance.now() < deadline && !o.signal.aborted) {
          await Promise.race([reached, sleep(5)]);
          if (w.hit === undefined && hasEndpoint(w.endpointId) === (direction === 'passing')) {
            w.hit = performance.now();
            w.observedBy = 'poll';
          }
        }
        if (w.hit === undefined) {
          o.log(`  cycle ${cycle} ${direction}: no change seen within ${o.flipTimeoutMs} ms`);
          // Put the instance back in a known state before going on.
          if (direction === 'critical') await setCheck(agent, idOf(instance), 'passing');
        }
      }
      if ((cycle + 1) % 10 === 0 || cycle + 1 === o.flips) {
        const last = samples.filter((s) => s.direction === 'critical').at(-1);
        o.log(
          `  ${cycle + 1}/${o.flips} flips (last removal ${last?.convergedMs?.toFixed(1) ?? '-'} ms, ${traffic.requests} requests so far)`,
        );
      }
    }
    // Let the last window collect its traffic, then close it.
    await sleep(Math.min(200, o.cycleMs / 2));
    if (previous) finish(previous);
    stopTraffic = true;
    await trafficLoop;

    const removal = samples.filter((s) => s.direction === 'critical');
    const recovery = samples.filter((s) => s.direction === 'passing');
    const ok = (xs: FlipSample[]): number[] =>
      xs.flatMap((s) => (s.convergedMs === null ? [] : [s.convergedMs]));
    const seconds = (traffic.endedAt - traffic.startedAt) / 1_000;
    const snap = r.snapshot();
    return {
      instances: o.instances,
      flips: removal.length,
      cycleMs: o.cycleMs,
      balancer: logical.config.balancer.kind,
      consulVersion: version,
      consulStartMs: agent.startMs,
      discoveryOptions: {
        waitMs: source.options.waitMs,
        minIntervalMs: source.options.minIntervalMs,
        burst: source.options.burst,
        passingOnly: source.options.passingOnly,
        consistency: source.options.consistency,
      },
      removal: { ...summarize(ok(removal)), timeouts: removal.length - ok(removal).length },
      recovery: { ...summarize(ok(recovery)), timeouts: recovery.length - ok(recovery).length },
      checkApi: summarize(samples.map((s) => s.checkApiMs)),
      trafficRemoval: summarize(removal.flatMap((s) => (s.trafficMs === null ? [] : [s.trafficMs]))),
      traffic: {
        requests: traffic.requests,
        errors: traffic.errors,
        perSecond: seconds > 0 ? traffic.requests / seconds : 0,
        routedAfterRemoval: removal.reduce((n, s) => n + s.routedAfterRemoval, 0),
        perBackend: traffic.perBackend,
      },
      resolverStats: { ...snap.stats },
      samples,
    };
  } finally {
    stopTraffic = true;
    await trafficLoop?.catch(() => {});
    await mesh?.close({ gracePeriodMs: 1_000 }).catch(() => {});
    await Promise.all(backends.map((b) => b.close()));
    await consul?.stop();
  }
}
