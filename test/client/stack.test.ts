// The stack API: modules inserted, replaced and removed by role; order is "first sees the request first".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallContext } from 'meshfetch/extend';
import {
  ConfigError,
  createMesh,
  type MeshRequest,
  type MeshResponse,
  type Service,
  type StackModule,
} from 'meshfetch';
import { defaultStacks, Filter, Stack } from 'meshfetch/extend';
import { startServer, type TestServer } from '../support/servers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s.close();
});

class Tag extends Filter {
  constructor(
    next: Service,
    private readonly name: string,
    private readonly log: string[],
  ) {
    super(next);
  }
  async call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    this.log.push(`${this.name}:${ctx.attempt.endpoint ?? '-'}`);
    const prev = req.headers['x-order'];
    req.headers['x-order'] = prev ? `${String(prev)},${this.name}` : this.name;
    return this.next.call(req, ctx);
  }
}

const tag = (name: string, log: string[]): StackModule => ({
  role: name,
  description: `adds ${name} to x-order`,
  make: (next) => new Tag(next, name, log),
});

describe('Stack', () => {
  it('builds the default stacks with documented roles', () => {
    const d = defaultStacks();
    expect(d.logical.roles()).toEqual(['deadline', 'logical-span', 'retries', 'backup-requests']);
    expect(d.concrete.roles()).toEqual(['admission', 'circuit-breaker']);
    expect(d.endpoint.roles()).toEqual(['failure-accrual', 'attempt-timeout', 'attempt-span']);
    expect(d.concrete.level).toBe('concrete');
    expect(d.endpoint.level).toBe('endpoint');
  });

  it('inserts modules by role at each level; the first listed sees the request first', async () => {
    const log: string[] = [];
    const mesh = createMesh({
      services: { users: { endpoints: [s.address] } },
      stack: (d) => ({
        logical: d.logical
          .insertBefore('deadline', tag('outer', log))
          .insertAfter('deadline', tag('inner', log)),
        concrete: d.concrete.append(tag('concrete', log)),
        endpoint: d.endpoint.prepend(tag('endpoint', log)),
      }),
    });
    const echo = (await (await mesh.request('http://users/')).body.json()) as {
      headers: Record<string, string>;
    };
    expect(echo.headers['x-order']).toBe('outer,inner,concrete,endpoint');
    // The endpoint-level module runs after the balancer chose the endpoint.
    expect(log).toEqual(['outer:-', 'inner:-', 'concrete:-', `endpoint:${s.address}`]);
    await mesh.close();
  });

  it('replaces and removes modules by role', async () => {
    const log: string[] = [];
    const mesh = createMesh({
      services: { users: { endpoints: [s.address], timeoutMs: 1 } },
      stack: (d) => ({ ...d, logical: d.logical.replace('deadline', tag('instead', log)) }),
    });
    // With the deadline module replaced, a 1 ms timeout is no longer enforced.
    const res = await mesh.request('http://users/');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(log).toEqual(['instead:-']);
    await mesh.close();
    const removed = defaultStacks().logical.remove('deadline');
    expect(removed.roles()).toEqual(['logical-span', 'retries', 'backup-requests']);
  });

  it('names the known roles when a role is unknown, and refuses duplicates', () => {
    expect(() => defaultStacks().logical.insertBefore('no-such-role', tag('x', []))).toThrow(/deadline/);
    expect(() => defaultStacks().logical.remove('nope')).toThrow(ConfigError);
    expect(() => Stack.of('endpoint', [tag('a', []), tag('a', [])])).toThrow(/unique/);
    expect(() => createMesh({ stack: () => ({}) as never })).toThrow(ConfigError);
  });
});
