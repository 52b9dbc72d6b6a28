// Stack.build composes adjacent inline filters at the top of a stack into one service (src/core/inline.ts): it
// enters them in order, calls the service below them, and runs their exits innermost first in one reaction; a
// run of one, or a plain filter on top, is left as built. Unit level, over a mock service.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CallContext } from '../../src/core/context.js';
import { InlineRun } from '../../src/core/inline.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MeshRequest, MeshResponse } from '../../src/core/message.js';
import { Params } from '../../src/core/params.js';
import {
  callMapped,
  callThen,
  Filter,
  InlineFilter,
  SAME,
  type Continuation,
  type MappingService,
  type Service,
} from '../../src/core/service.js';
import { Stack, type ModuleEnv, type StackModule } from '../../src/core/stack.js';
import { createMesh } from '../../src/client/mesh.js';
import { defaultStacks } from '../../src/client/default-stack.js';
import { AdmissionFilter } from '../../src/resilience/admission.js';
import { CircuitBreakerFilter } from '../../src/resilience/breaker.js';
import { DeadlineFilter } from '../../src/resilience/deadline.js';
import { RetryFilter } from '../../src/resilience/retry.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { mockResponse, mockService } from '../../src/testing/mock.js';
import { meshRequest } from '../support/requests.js';

/** The first filter of class `cls` in a built chain, walking `next` from the outermost service. */
function findFilter<T>(service: unknown, cls: abstract new (...args: never[]) => T): T | undefined {
  let s: unknown = service;
  for (let depth = 0; s !== undefined && s !== null && depth < 64; depth++) {
    if (s instanceof cls) return s;
    s = s instanceof Filter ? (s as unknown as { next: unknown }).next : undefined;
  }
  return undefined;
}

const env: ModuleEnv<'logical'> = {
  level: 'logical',
  target: { service: 'users' },
  params: Params.empty,
  clock: new FakeClock(),
  rng: { next: () => 0 },
  logger: silentLogger,
};

const context = (): CallContext => new CallContext('users', undefined, Infinity, undefined, 0, silentLogger);

/** Logs its hooks; `retry` makes its exit send the call below once more (a promise, as retries' exit does). */
class Logged extends InlineFilter {
  constructor(
    next: Service,
    private readonly name: string,
    private readonly log: string[],
    private readonly retry = false,
  ) {
    super(next);
  }
  enter(): undefined {
    this.log.push(`enter ${this.name}`);
    return undefined;
  }
  exit(res: MeshResponse, req: MeshRequest, ctx: CallContext): MeshResponse | Promise<MeshResponse> {
    this.log.push(`exit ${this.name} ${res.statusCode}`);
    if (this.retry && res.statusCode === 503) {
      res.body.resume();
      return this.below.call(req, ctx);
    }
    return res;
  }
  fail(err: unknown): never {
    this.log.push(`fail ${this.name} ${(err as Error).message}`);
    throw err;
  }
}

class Plain extends Filter {
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.next.call(req, ctx);
  }
}

function logged(name: string, log: string[], retry = false): StackModule {
  return { role: name, description: 'logs', make: (next) => new Logged(next, name, log, retry) };
}

const plain: StackModule = { role: 'plain', description: 'plain', make: (next) => new Plain(next) };

describe('Stack.build', () => {
  it('composes the inline filters at the top into one service over the first service that is not one', () => {
    const log: string[] = [];
    const { service } = mockService();
    const built = Stack.of('logical', [logged('a', log), logged('b', log), plain, logged('c', log)]).build(
      service,
      env,
    );
    expect(built).toBeInstanceOf(InlineRun);
    const run = built as InlineRun;
    expect(run.filters).toHaveLength(2);
    expect(run.below).toBeInstanceOf(Plain);
    // Walking the chain still finds every module, through the run.
    expect(findFilter(built, Plain)).toBe(run.below);
    expect(findFilter(built, Logged)).toBe(run.filters[0]);
  });

  it('leaves a single inline filter, or a plain filter on top, as built', () => {
    const log: string[] = [];
    const { service } = mockService();
    expect(Stack.of('logical', [logged('a', log), plain]).build(service, env)).toBeInstanceOf(Logged);
    expect(
      Stack.of('logical', [plain, logged('a', log), logged('b', log)]).build(service, env),
    ).toBeInstanceOf(Plain);
    expect(Stack.of('logical', []).build(service, env)).toBe(service);
  });
});

describe('a composed run', () => {
  it('enters in order, exits innermost first, and answers in the reaction of the call below', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    const built = Stack.of('logical', [logged('a', log), logged('b', log), logged('c', log)]).build(
      service,
      env,
    );
    const pending = built.call(meshRequest(), context());
    expect(log).toEqual(['enter a', 'enter b', 'enter c']);
    const call = await handle.nextCall();
    call.respond(mockResponse(200));
    let settled = false;
    void pending.then(() => (settled = true));
    // The mock's answer settles one promise; the run's reaction and the caller's `then` follow it.
    await Promise.resolve();
    await Promise.resolve();
    expect(settled).toBe(true);
    expect(log).toEqual(['enter a', 'enter b', 'enter c', 'exit c 200', 'exit b 200', 'exit a 200']);
  });

  it('hands the exits above a filter to the promise its exit returns (a retry)', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    let calls = 0;
    handle.onCall = (call) => call.respond(mockResponse(++calls === 1 ? 503 : 200));
    const built = Stack.of('logical', [logged('a', log), logged('b', log, true)]).build(service, env);
    const res = await built.call(meshRequest(), context());
    expect(res.statusCode).toBe(200);
    expect(log).toEqual(['enter a', 'enter b', 'exit b 503', 'exit a 200']);
  });

  it('fails every filter entered, innermost first, when the call below fails', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    handle.onCall = (call) => call.fail(new Error('down'));
    const built = Stack.of('logical', [logged('a', log), logged('b', log)]).build(service, env);
    await expect(built.call(meshRequest(), context())).rejects.toThrow('down');
    expect(log).toEqual(['enter a', 'enter b', 'fail b down', 'fail a down']);
  });

  it('maps the answer in its own reaction (callMapped), and through a plain `then` otherwise', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    handle.onCall = (call) => call.respond(mockResponse(204, {}, Readable.from([])));
    const run = Stack.of('logical', [logged('a', log), logged('b', log)]).build(service, env);
    expect(await callMapped(run, meshRequest(), context(), (r) => r.statusCode)).toBe(204);
    expect(await callMapped(service, meshRequest(), context(), (r) => r.statusCode)).toBe(204);
  });

  it('hands a failure to onError after the exits ran, and resolves with what it returns', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    handle.onCall = (call) => call.fail(new Error('down'));
    const run = Stack.of('logical', [logged('a', log), logged('b', log)]).build(service, env);
    const seen: string[] = [];
    const out = await callMapped(
      run,
      meshRequest(),
      context(),
      (r) => `response ${r.statusCode}`,
      (err) => {
        seen.push(`${(err as Error).message} after ${log.join(', ')}`);
        return 'handled';
      },
    );
    expect(out).toBe('handled');
    expect(seen).toEqual(['down after enter a, enter b, fail b down, fail a down']);
    // The same on a service that is not a run.
    expect(
      await callMapped(
        service,
        meshRequest(),
        context(),
        () => 'response',
        () => 'handled',
      ),
    ).toBe('handled');
  });
});

/** A level with a hook of its own on the answer that runs the caller's continuation in its own reaction. */
class Counting implements MappingService {
  readonly status = 'ready' as const;
  constructor(
    private readonly next: Service,
    private readonly log: string[],
    private readonly throwOwn = false,
  ) {}
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.callThen(req, ctx, SAME);
  }
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    const log = this.log;
    const throwOwn = this.throwOwn;
    return callThen(this.next, req, ctx, {
      answered(res) {
        log.push(`count ${res.statusCode}`);
        if (throwOwn) return k.failed(new Error('own hook'));
        return k.answered(res);
      },
      failed(err) {
        log.push(`count ${(err as Error).message}`);
        return k.failed(err);
      },
    });
  }
  close(): Promise<void> {
    return this.next.close();
  }
}

describe('callMapped over levels that continue the call in their own reaction (MappingService)', () => {
  it("settles a run over such levels in the transport's reaction: no promise hop per level", async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    const leaf = new Counting(new Counting(service, log), log);
    const run = Stack.of('logical', [logged('a', log), logged('b', log)]).build(leaf, env);
    const pending = callMapped(run, meshRequest(), context(), (r) => {
      log.push('mapped');
      return r.statusCode;
    });
    const call = await handle.nextCall();
    call.respond(mockResponse(200));
    // The mock's promise settles; its one reaction runs both levels' hooks, the exits and the caller's map
    // before this continuation (queued after it).
    await Promise.resolve();
    expect(log).toEqual([
      'enter a',
      'enter b',
      'count 200',
      'count 200',
      'exit b 200',
      'exit a 200',
      'mapped',
    ]);
    expect(await pending).toBe(200);
  });

  it('hands a failure below through every level to onError, and a throw of map to no one', async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    handle.onCall = (call) => call.fail(new Error('down'));
    const run = Stack.of('logical', [logged('a', log)]).build(new Counting(service, log), env);
    const out = await callMapped(
      run,
      meshRequest(),
      context(),
      String,
      (err) => `handled ${(err as Error).message}`,
    );
    expect(out).toBe('handled down');
    expect(log).toEqual(['enter a', 'count down', 'fail a down']);

    handle.onCall = (call) => call.respond(mockResponse(200));
    let handed = false;
    const thrown = callMapped(
      new Counting(service, []),
      meshRequest(),
      context(),
      () => {
        throw new Error('from map');
      },
      () => (handed = true),
    );
    await expect(thrown).rejects.toThrow('from map');
    expect(handed).toBe(false);
  });

  it("hands a level's own throw to the levels above, as a rejection would be", async () => {
    const log: string[] = [];
    const { service, handle } = mockService();
    handle.onCall = (call) => call.respond(mockResponse(200));
    const run = Stack.of('logical', [logged('a', log)]).build(new Counting(service, log, true), env);
    await expect(run.call(meshRequest(), context())).rejects.toThrow('own hook');
    expect(log).toEqual(['enter a', 'count 200', 'fail a own hook']);
  });

  it('turns a service that throws instead of rejecting into a later call of onError', async () => {
    const throwing: Service = {
      status: 'ready',
      call() {
        throw new Error('sync');
      },
      close: () => Promise.resolve(),
    };
    const mapping: MappingService = {
      ...throwing,
      callThen() {
        throw new Error('sync mapped');
      },
    };
    for (const [svc, msg] of [
      [throwing, 'sync'],
      [mapping, 'sync mapped'],
    ] as const) {
      let seen: string | undefined;
      const p = callMapped(svc, meshRequest(), context(), String, (err) => (seen = (err as Error).message));
      expect(seen).toBeUndefined();
      expect(await p).toBe(msg);
    }
  });
});

describe('the default concrete stack', () => {
  it('is one composed run: admission and the circuit breaker over the balancer leaf', async () => {
    const { service, handle } = mockService();
    handle.onCall = (call) => call.respond(mockResponse(200, {}, 'ok'));
    const concreteEnv: ModuleEnv<'concrete'> = {
      ...env,
      level: 'concrete',
      target: { service: 'users', destination: 'primary', discovery: 'static', balancer: 'p2c-peak-ewma' },
    };
    const built = defaultStacks().concrete.build(service, concreteEnv);
    try {
      expect(built).toBeInstanceOf(InlineRun);
      const run = built as InlineRun;
      expect(run.filters.map((f) => f.constructor.name)).toEqual([
        AdmissionFilter.name,
        CircuitBreakerFilter.name,
      ]);
      expect(run.below).toBe(service);
      // A call admitted is counted until its body is done.
      const admission = run.filters[0] as AdmissionFilter;
      const res = await built.call(meshRequest(), context());
      expect(admission.inFlight).toBe(1);
      await res.body.toArray();
      await new Promise((r) => setImmediate(r));
      expect(admission.inFlight).toBe(0);
    } finally {
      await built.close();
    }
  });
});

describe("a mesh's logical stack", () => {
  it("is one composed run: the mesh's end of a call, the deadline, the logical span and the retries", async () => {
    const mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:9'] } } });
    try {
      const stack = mesh.lookup('users')!.stack;
      expect(stack).toBeInstanceOf(InlineRun);
      const run = stack as InlineRun;
      expect(run.filters.map((f) => f.constructor.name)).toEqual([
        'CallEntry',
        'DeadlineFilter',
        'LogicalSpanFilter',
        'RetryFilter',
      ]);
      expect(findFilter(stack, DeadlineFilter)).toBe(run.filters[1]);
      expect(findFilter(stack, RetryFilter)).toBe(run.filters[3]);
    } finally {
      await mesh.close();
    }
  });
});
