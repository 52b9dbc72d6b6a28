// Each level's stack is built for a typed target (src/core/targets.ts, linkerd2-proxy's Logical / Concrete /
// Endpoint targets): a module reads its level's target from `env.target`, typed by the stack it sits in.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, staticDiscovery, type Mesh, type ModuleEnv, type StackModule } from 'meshfetch';
import {
  Params,
  Stack,
  silentLogger,
  type ConcreteTarget,
  type EndpointTarget,
  type LogicalTarget,
} from 'meshfetch/extend';
import { FakeClock, mockService, seededRng } from 'meshfetch/testing';

/** Modules that note the target each stack of their level is built for, and pass calls on untouched. */
function recorders(): {
  logical: StackModule<'logical'>;
  concrete: StackModule<'concrete'>;
  endpoint: StackModule<'endpoint'>;
  seen: { logical: LogicalTarget[]; concrete: ConcreteTarget[]; endpoint: EndpointTarget[] };
} {
  const seen = {
    logical: [] as LogicalTarget[],
    concrete: [] as ConcreteTarget[],
    endpoint: [] as EndpointTarget[],
  };
  return {
    seen,
    logical: {
      role: 'record-logical',
      description: 'Notes the logical target',
      make: (next, env) => (seen.logical.push(env.target), next),
    },
    concrete: {
      role: 'record-concrete',
      description: 'Notes the concrete target',
      make: (next, env) => (seen.concrete.push(env.target), next),
    },
    endpoint: {
      role: 'record-endpoint',
      description: 'Notes the endpoint target',
      make: (next, env) => (seen.endpoint.push(env.target), next),
    },
  };
}

describe('typed targets', () => {
  let mesh: Mesh | undefined;
  afterEach(async () => {
    await mesh?.close({ gracePeriodMs: 0 });
    mesh = undefined;
  });

  it('a module at each level receives the target of the stack it is built in', () => {
    const r = recorders();
    mesh = createMesh({
      services: {
        users: {
          destinations: {
            v1: { endpoints: [{ host: '127.0.0.1', port: 1, tags: ['zone-a'], meta: { version: '1' } }] },
            v2: { endpoints: ['127.0.0.1:2', '127.0.0.1:3'] },
          },
          routes: [
            {
              to: [
                { destination: 'v1', weight: 1 },
                { destination: 'v2', weight: 1 },
              ],
            },
          ],
        },
      },
      stack: (d) => ({
        logical: d.logical.prepend(r.logical),
        concrete: d.concrete.prepend(r.concrete),
        endpoint: d.endpoint.prepend(r.endpoint),
      }),
    });
    expect(r.seen.logical).toEqual([{ service: 'users' }]);
    expect(r.seen.concrete).toEqual([
      { service: 'users', destination: 'v1', discovery: 'static', balancer: 'p2c-peak-ewma' },
      { service: 'users', destination: 'v2', discovery: 'static', balancer: 'p2c-peak-ewma' },
    ]);
    expect(r.seen.endpoint).toEqual([
      {
        service: 'users',
        destination: 'v1',
        address: '127.0.0.1:1',
        tags: ['zone-a'],
        meta: { version: '1' },
      },
      { service: 'users', destination: 'v2', address: '127.0.0.1:2', tags: [], meta: {} },
      { service: 'users', destination: 'v2', address: '127.0.0.1:3', tags: [], meta: {} },
    ]);
  });

  it('the primary destination is named primary, and a new endpoint gets its own target', () => {
    const r = recorders();
    const users = staticDiscovery(['127.0.0.1:1']);
    mesh = createMesh({
      services: { users: { discovery: users, balancer: 'round-robin' } },
      stack: (d) => ({
        ...d,
        concrete: d.concrete.prepend(r.concrete),
        endpoint: d.endpoint.prepend(r.endpoint),
      }),
    });
    expect(r.seen.concrete).toEqual([
      { service: 'users', destination: 'primary', discovery: 'static', balancer: 'round-robin' },
    ]);
    expect(r.seen.endpoint.map((t) => t.address)).toEqual(['127.0.0.1:1']);
    users.set(['127.0.0.1:1', '[::1]:2']);
    expect(r.seen.endpoint.map((t) => [t.destination, t.address])).toEqual([
      ['primary', '127.0.0.1:1'],
      ['primary', '[::1]:2'],
    ]);
  });

  it('a module for any level reads the target after narrowing on env.level', () => {
    const seen: string[] = [];
    const anyLevel: StackModule = {
      role: 'describe-target',
      description: 'Notes where it is built',
      make(next, env: ModuleEnv) {
        if (env.level === 'endpoint') seen.push(`endpoint ${env.target.address}`);
        else if (env.level === 'concrete') seen.push(`concrete ${env.target.destination}`);
        else seen.push(`logical ${env.target.service}`);
        return next;
      },
    };
    const base = { params: Params.empty, clock: new FakeClock(), rng: seededRng(1), logger: silentLogger };
    const leaf = mockService().service;
    Stack.of('logical', [anyLevel]).build(leaf, { ...base, level: 'logical', target: { service: 'users' } });
    Stack.of('concrete', [anyLevel]).build(leaf, {
      ...base,
      level: 'concrete',
      target: { service: 'users', destination: 'v2', discovery: 'static', balancer: 'round-robin' },
    });
    Stack.of('endpoint', [anyLevel]).build(leaf, {
      ...base,
      level: 'endpoint',
      target: { service: 'users', destination: 'v2', address: '10.0.0.1:80', tags: [], meta: {} },
    });
    expect(seen).toEqual(['logical users', 'concrete v2', 'endpoint 10.0.0.1:80']);
  });

  it('a module typed for one level fits only that level’s stack (checked by the compiler)', () => {
    const r = recorders();
    // @ts-expect-error: an endpoint module in the logical stack
    const wrong = Stack.of('logical', [r.endpoint]);
    // @ts-expect-error: a logical module in the endpoint stack
    const wrong2 = Stack.of('endpoint', []).append(r.logical);
    // A module for any level fits every stack; a generic helper takes a stack of any level.
    const strip = (s: Stack): Stack => s.roles().reduce((acc, role) => acc.remove(role), s);
    expect(strip(Stack.of('endpoint', [r.endpoint])).roles()).toEqual([]);
    expect([wrong.roles(), wrong2.roles()]).toEqual([['record-endpoint'], ['record-logical']]);
  });
});
