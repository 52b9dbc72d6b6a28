/**
 * Ablation of the mesh.request hot path: the same closed loop as the overhead benchmark, with one piece of
 * the mesh added or removed at a time, alternated in rounds, reporting client CPU per call and throughput
 * against bare `Pool.request`. It answers "what costs what" where a profile only shows where time is spent.
 *
 * Run:
 *   npm run build && npx tsx --expose-gc bench/overhead/ablation.ts [--concurrency 64]
 *     [--rounds 6] [--seconds 1.5] [--out bench/results/overhead-ablation.md]
 */
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { Pool } from 'undici';
import {
  createMesh,
  type Clock,
  type MeshRequest,
  type MeshResponse,
  type Service,
  type StackModule,
  type Stacks,
} from 'meshfetch';
import { defaultStacks, Filter, type CallContext, type Stack } from 'meshfetch/extend';
import { numberFlag, parseFlags } from '../lib/cli.js';
import { closedLoop } from '../lib/load.js';
import { describeMachine, machineInfo } from '../lib/machine.js';
import { writeFormatted } from '../lib/output.js';
import { median } from '../lib/stats.js';
import { markdownTable, num } from '../lib/table.js';
import { SERVICE, startServer, type Client } from './variants.js';

interface Case {
  id: string;
  label: string;
  make(port: number): Client;
}

function check(status: number): void {
  if (status !== 200) throw new Error(`unexpected status ${status}`);
}

/** Every role of the default stacks, logical first. */
function allRoles(): string[] {
  const s = defaultStacks();
  return [...s.logical.roles(), ...s.concrete.roles(), ...s.endpoint.roles()];
}

/** The default stacks with only the listed roles kept (at every level). */
function keep(roles: readonly string[]): (s: Stacks) => Stacks {
  const k = (st: Stack): Stack =>
    st.roles().reduce((acc, r) => (roles.includes(r) ? acc : acc.remove(r)), st);
  return (s) => ({ logical: k(s.logical), concrete: k(s.concrete), endpoint: k(s.endpoint) });
}

/**
 * Pieces of the deadline filter, measured apart: a timer per call only; an AbortController per call (its
 * signal handed to undici) only; and the whole deadline built on a cheap EventEmitter "signal" (which undici
 * accepts) instead of an AbortController, as a candidate fix.
 */
class TimerOnly extends Filter {
  constructor(
    next: Service,
    private readonly clock: Clock,
  ) {
    super(next);
  }
  async call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    const t = this.clock.setTimeout(() => {}, 30_000);
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      this.clock.clearTimeout(t);
      throw err;
    }
    res.body.once('close', () => this.clock.clearTimeout(t));
    return res;
  }
}

class SignalOnly extends Filter {
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    ctx.signal = new AbortController().signal;
    return this.next.call(req, ctx);
  }
}

class LightSignal extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

class EmitterDeadline extends Filter {
  constructor(
    next: Service,
    private readonly clock: Clock,
  ) {
    super(next);
  }
  async call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    const sig = new LightSignal();
    const t = this.clock.setTimeout(
      () => sig.abort(new Error('deadline exceeded')),
      ctx.deadline - this.clock.now(),
    );
    ctx.signal = sig as unknown as AbortSignal;
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      this.clock.clearTimeout(t);
      throw err;
    }
    res.body.once('close', () => this.clock.clearTimeout(t));
    return res;
  }
}

function module(role: string, make: StackModule['make']): StackModule {
  return { role, description: `ablation: ${role}`, make };
}

function meshCase(
  id: string,
  label: string,
  opts: {
    roles?: readonly string[];
    timeoutMs?: number;
    urlObject?: boolean;
    extra?: StackModule;
  },
): Case {
  return {
    id,
    label,
    make(port) {
      const mesh = createMesh({
        services: {
          [SERVICE]: {
            endpoints: [`127.0.0.1:${port}`],
            ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
          },
        },
        ...(opts.roles
          ? {
              stack: (s: Stacks) => {
                const k = keep(opts.roles!)(s);
                return opts.extra ? { ...k, logical: k.logical.prepend(opts.extra) } : k;
              },
            }
          : {}),
      });
      const url: string | URL = opts.urlObject ? new URL(`http://${SERVICE}/`) : `http://${SERVICE}/`;
      return {
        async call() {
          const r = await mesh.request(url);
          check(r.statusCode);
          await r.body.text();
        },
        close: () => mesh.close({ gracePeriodMs: 1_000 }),
      };
    },
  };
}

const CASES: Case[] = [
  {
    id: 'pool',
    label: 'Pool.request (floor)',
    make(port) {
      const pool = new Pool(`http://127.0.0.1:${port}`);
      return {
        async call() {
          const r = await pool.request({ method: 'GET', path: '/' });
          check(r.statusCode);
          await r.body.text();
        },
        close: () => pool.close(),
      };
    },
  },
  {
    id: 'pool-signal',
    label: 'Pool.request + a new AbortController signal per call',
    make(port) {
      const pool = new Pool(`http://127.0.0.1:${port}`);
      return {
        async call() {
          const ac = new AbortController();
          const r = await pool.request({ method: 'GET', path: '/', signal: ac.signal });
          check(r.statusCode);
          await r.body.text();
        },
        close: () => pool.close(),
      };
    },
  },
  {
    id: 'pool-emitter',
    label: 'Pool.request + a new EventEmitter "signal" per call',
    make(port) {
      const pool = new Pool(`http://127.0.0.1:${port}`);
      return {
        async call() {
          // undici accepts an EventEmitter with `aborted` as a signal: the cheap alternative to AbortSignal.
          const ee = Object.assign(new EventEmitter(), { aborted: false });
          const r = await pool.request({ method: 'GET', path: '/', signal: ee });
          check(r.statusCode);
          await r.body.text();
        },
        close: () => pool.close(),
      };
    },
  },
  meshCase('bal', 'mesh.request, no modules (balancer only)', { roles: [] }),
  meshCase('bal-url', 'mesh.request, no modules, URL object reused (no parse)', {
    roles: [],
    urlObject: true,
  }),
  meshCase('timer', 'mesh.request, a timer per call only (bench filter)', {
    roles: [],
    extra: module('timer-only', (next, env) => new TimerOnly(next, env.clock)),
  }),
  meshCase('signal', 'mesh.request, an AbortController per call only (bench filter)', {
    roles: [],
    extra: module('signal-only', (next) => new SignalOnly(next)),
  }),
  meshCase('emitter-deadline', 'mesh.request, deadline on an EventEmitter signal (bench filter)', {
    roles: [],
    extra: module('emitter-deadline', (next, env) => new EmitterDeadline(next, env.clock)),
  }),
  // One case per module of the current default stack: the balancer plus that module alone.
  ...allRoles().map((role) => meshCase(`only-${role}`, `mesh.request, ${role} only`, { roles: [role] })),
  meshCase('full', 'mesh.request, full default stack', {}),
  meshCase('full-inf', 'mesh.request, full default stack, timeoutMs: Infinity', { timeoutMs: Infinity }),
];

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const concurrency = Math.round(numberFlag(flags, 'concurrency', 64));
  const rounds = Math.round(numberFlag(flags, 'rounds', 6));
  const seconds = numberFlag(flags, 'seconds', 1.5);
  const server = await startServer();
  const clients = CASES.map((c) => ({
    c,
    client: c.make(server.port),
    cpu: [] as number[],
    rps: [] as number[],
  }));
  const gc = (globalThis as { gc?: () => void }).gc;
  try {
    for (const x of clients) {
      await x.client.call();
      await closedLoop(x.client.call, { concurrency, durationMs: 1_000 });
    }
    for (let r = 1; r <= rounds; r++) {
      for (const x of clients) {
        gc?.();
        await closedLoop(x.client.call, { concurrency, durationMs: 300 });
        const cpu0 = process.cpuUsage();
        const res = await closedLoop(x.client.call, { concurrency, durationMs: seconds * 1000 });
        const cpu = process.cpuUsage(cpu0);
        if (res.errors) throw new Error(`${x.c.id}: ${res.firstError}`);
        x.cpu.push((cpu.user + cpu.system) / res.count);
        x.rps.push(res.count / (res.elapsedMs / 1000));
      }
      console.error(`round ${r}/${rounds} done`);
    }
  } finally {
    await Promise.allSettled(clients.map((x) => x.client.close()));
    await server.stop();
  }
  const base = clients[0]!;
  const rows = clients.map((x) => {
    const cpu = median(x.cpu);
    const ratios = x.rps.map((v, i) => v / base.rps[i]!);
    return [
      x.c.label,
      num(cpu, 1),
      x === base ? '-' : `+${num(cpu - median(base.cpu), 1)}`,
      num(median(x.rps)),
      median(ratios).toFixed(3),
    ];
  });
  const text = [
    `Ablation at concurrency ${concurrency}: ${rounds} alternated rounds x ${seconds} s; medians over rounds.`,
    `Machine: ${describeMachine(machineInfo())}.`,
    '',
    '```sh',
    `npm run build && npx tsx --expose-gc bench/overhead/ablation.ts ${process.argv.slice(2).join(' ')}`,
    '```',
    '',
    markdownTable(['client', 'client CPU µs/call', 'vs floor', 'req/s', 'x Pool (paired)'], rows, [
      'l',
      'r',
      'r',
      'r',
      'r',
    ]),
    '',
  ].join('\n');
  console.log(text);
  if (typeof flags.out === 'string') await writeFormatted(path.resolve(flags.out), text);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
