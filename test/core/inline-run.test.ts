// The stack build composes the inline filters at the top of a stack into one service (src/core/inline.ts:
// enter in order, exits innermost first, inside one reaction). A differential test: the same inline filters,
// once at the top of the logical stack (composed with the mesh's end of a call) and once under a plain filter
// (each runs its own `call`), must log the same hooks in the same order and give the caller the same outcome,
// for every way a hook can go.
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMesh,
  type Mesh,
  type MeshRequest,
  type MeshResponse,
  type Service,
  type StackModule,
} from 'meshfetch';
import { Filter, InlineFilter, type CallContext, type Stack } from 'meshfetch/extend';
import { ParsedResponse } from '../../src/core/message.js';
import { startServer, type TestServer } from '../support/servers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer((req, res) => {
    if (req.url === '/boom') {
      req.socket.destroy();
      return;
    }
    res.end(`ok ${req.url}`);
  });
});
afterAll(async () => {
  await s.close();
});

/** The plan a request carries in `x-plan`: `verb:filter` directives, comma-separated. */
function wants(req: MeshRequest, verb: string, name: string): boolean {
  const plan = req.headers['x-plan'];
  return typeof plan === 'string' && plan.split(',').includes(`${verb}:${name}`);
}

/** Drops a response this filter will not pass on. */
function discard(res: MeshResponse): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

function synthetic(): MeshResponse {
  return new ParsedResponse(
    299,
    'Recovered',
    { 'x-recovered': '1' },
    Readable.from([Buffer.from('made up')]),
  );
}

/** Logs its hooks and does what the request's plan tells it to. */
class Probe extends InlineFilter {
  calls = 0;
  constructor(
    next: Service,
    readonly name: string,
    private readonly log: string[],
  ) {
    super(next);
  }

  override call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    this.calls++;
    return super.call(req, ctx);
  }

  enter(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    this.log.push(`enter ${this.name}`);
    if (wants(req, 'throw-enter', this.name)) throw new Error(`enter ${this.name} threw`);
    if (wants(req, 'short', this.name))
      return this.below.call({ ...req, headers: { ...req.headers, 'x-plan': '' }, path: '/short' }, ctx);
    return undefined;
  }

  exit(res: MeshResponse, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse> {
    this.log.push(`exit ${this.name} ${res.statusCode}`);
    if (wants(req, 'exit-throw', this.name)) {
      discard(res);
      throw new Error(`exit ${this.name} threw`);
    }
    if (wants(req, 'exit-again', this.name)) {
      discard(res);
      return this.below.call({ ...req, headers: { ...req.headers, 'x-plan': '' }, path: '/again' }, ctx);
    }
    return res;
  }

  fail(err: unknown, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse> {
    this.log.push(`fail ${this.name} ${(err as Error).message.slice(0, 24)}`);
    if (wants(req, 'recover', this.name)) return synthetic();
    if (wants(req, 'recover-again', this.name))
      return this.below.call({ ...req, headers: { ...req.headers, 'x-plan': '' }, path: '/again' }, ctx);
    throw err;
  }
}

/** A plain filter: above the probes, it ends the composed run above them (each probe runs its own `call`). */
class Barrier extends Filter {
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.next.call(req, ctx);
  }
}

interface Setup {
  mesh: Mesh;
  log: string[];
  probes: Probe[];
}

function setup(barrier: boolean): Setup {
  const log: string[] = [];
  const probes: Probe[] = [];
  const probe = (name: string): StackModule => ({
    role: `probe-${name}`,
    description: 'logs its hooks',
    make: (next) => {
      const p = new Probe(next, name, log);
      probes.push(p);
      return p;
    },
  });
  const barrierModule: StackModule = { role: 'barrier', description: 'plain', make: (n) => new Barrier(n) };
  const strip = (st: Stack): Stack => st.roles().reduce((acc, r) => acc.remove(r), st);
  const mesh = createMesh({
    services: { users: { endpoints: [s.address], retries: false } },
    stack: (d) => {
      let logical = strip(d.logical).append(probe('A')).append(probe('B')).append(probe('C'));
      if (barrier) logical = logical.prepend(barrierModule);
      return { ...d, logical };
    },
  });
  return { mesh, log, probes };
}

async function outcome(mesh: Mesh, path: string, plan: string): Promise<string> {
  try {
    const res = await mesh.request(`http://users${path}`, { headers: { 'x-plan': plan } });
    const body = await text(res.body); // any Readable: a recovering filter may answer with its own
    // The body-done hooks run on 'close', which follows 'end'.
    if (!res.body.closed) await once(res.body, 'close');
    return `${res.statusCode} ${body}`;
  } catch (err) {
    return `rejected: ${(err as Error).message.slice(0, 40)}`;
  }
}

const CASES: Array<[path: string, plan: string]> = [
  ['/ok', ''],
  ['/ok', 'short:B'],
  ['/ok', 'short:A'],
  ['/ok', 'throw-enter:B'],
  ['/ok', 'exit-throw:C'],
  ['/ok', 'exit-throw:C,recover:A'],
  ['/ok', 'exit-again:B'],
  ['/ok', 'exit-again:C,exit-throw:B'],
  ['/boom', ''],
  ['/boom', 'recover:B'],
  ['/boom', 'recover-again:C'],
  ['/boom', 'recover-again:B,exit-throw:A'],
];

describe('inline filters composed by the stack build', () => {
  it('log the same hooks in the same order and give the same outcome as when each runs its own call', async () => {
    const fused = setup(false);
    const chained = setup(true);
    try {
      for (const [path, plan] of CASES) {
        fused.log.length = 0;
        chained.log.length = 0;
        const a = await outcome(fused.mesh, path, plan);
        const b = await outcome(chained.mesh, path, plan);
        expect({ path, plan, outcome: a, log: fused.log }).toEqual({
          path,
          plan,
          outcome: b,
          log: chained.log,
        });
      }
      // The composed run ran the probes' hooks itself (their `call` ran only where a probe sent the rest of a call
      // on its own); under the barrier, every call went through each probe's `call`.
      // (B sent the rest for short:B and recover-again:B, A for short:A, which went through B's and C's `call`).
      expect(fused.probes.map((p) => `${p.name} ${p.calls}`).sort()).toEqual(['A 0', 'B 1', 'C 4']);
      expect(chained.probes.find((p) => p.name === 'A')!.calls).toBe(CASES.length);
    } finally {
      await Promise.all([fused.mesh.close(), chained.mesh.close()]);
    }
  });

  it('settles every call: exits that recover or retry still end the body and the in-flight count', async () => {
    const { mesh } = setup(false);
    try {
      for (const [path, plan] of CASES) {
        await outcome(mesh, path, plan);
        expect({ path, plan, inflight: mesh.snapshot().inflightCalls }).toEqual({ path, plan, inflight: 0 });
      }
    } finally {
      await mesh.close();
    }
  });
});
