// Admission, unit level: a mock destination whose responses and failures the test controls. The count is
// released exactly once per admitted call (body end, body close, failure), past the bound calls are refused at
// once without reaching the destination, and options are validated.
import { PassThrough, Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Attempt } from '../../src/core/attempt.js';
import { CallContext } from '../../src/core/context.js';
import { ConfigError, MeshError, TransportError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MeshRequest, MeshResponse } from '../../src/core/message.js';
import { Params } from '../../src/core/params.js';
import {
  ADMISSION_DEFAULTS,
  AdmissionParam,
  OverloadedError,
  admissionModule,
  admissionOf,
  resolveAdmissionOptions,
  type AdmissionFilter,
} from '../../src/resilience/admission.js';
import { defaultClassifier } from '../../src/resilience/classifier.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { mockService, type MockCall, type MockHandle } from '../../src/testing/mock.js';
import { meshRequest } from '../support/requests.js';
import { targetOf } from '../support/targets.js';

type Held = MockCall<MeshRequest, MeshResponse>;

const request = meshRequest;

const context = (): CallContext => new CallContext('users', undefined, Infinity, undefined, 0, silentLogger);

function res(body: Readable): MeshResponse {
  return { statusCode: 200, statusText: 'OK', rawHeaders: [], body };
}

/** Admission over a mock destination (`dest`, whose calls the test answers). */
function setup(maxInFlight = 3): { dest: MockHandle<MeshRequest, MeshResponse>; f: AdmissionFilter } {
  const { service, handle: dest } = mockService();
  const s = admissionModule.make(service, {
    level: 'concrete',
    target: targetOf('concrete'),
    params: Params.empty.with(AdmissionParam, resolveAdmissionOptions({ maxInFlight }, 'admission')),
    clock: new FakeClock(),
    rng: { next: () => 0 },
    logger: silentLogger,
  });
  return { dest, f: admissionOf(s)! };
}

/** Lets stream events ('end', 'close') and promise callbacks run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('admission', () => {
  it('counts a call until its body ends', async () => {
    const { dest, f } = setup();
    const p = f.call(request(), context());
    expect(f.inFlight).toBe(1);
    const body = new PassThrough();
    dest.calls[0]!.respond(res(body));
    const r = await p;
    expect(r.body).toBe(body); // untouched
    expect(f.inFlight).toBe(1); // headers are not the end of a call
    body.end('x');
    r.body.resume();
    await settle();
    expect(f.inFlight).toBe(0);
  });

  it('counts a call until its body is destroyed (caller gave up, abort, error)', async () => {
    const { dest, f } = setup();
    const calls = [0, 1, 2].map(() => f.call(request(), context()));
    const bodies = [new PassThrough(), new PassThrough(), new PassThrough()];
    dest.calls.forEach((h, i) => h.respond(res(bodies[i]!)));
    const rs = await Promise.all(calls);
    expect(f.inFlight).toBe(3);
    rs[0]!.body.destroy();
    rs[1]!.body.on('error', () => {});
    rs[1]!.body.destroy(new Error('reset'));
    await settle();
    expect(f.inFlight).toBe(1);
    // End and close both fire for a body read to the end: released once.
    rs[2]!.body.resume();
    bodies[2]!.end();
    await settle();
    expect(f.inFlight).toBe(0);
  });

  it('releases a call that fails, or whose body is already over when it returns', async () => {
    const { dest, f } = setup();
    const failed = f.call(request(), context());
    const e = new TransportError('reset', { phase: 'headers' });
    dest.calls[0]!.fail(e);
    await expect(failed).rejects.toBe(e); // passed on unchanged
    expect(f.inFlight).toBe(0);
    const gone = new PassThrough();
    gone.destroy();
    const p = f.call(request(), context());
    dest.calls[1]!.respond(res(gone));
    await p;
    expect(f.inFlight).toBe(0);
    const empty = Readable.from([]);
    empty.resume();
    await settle();
    expect(empty.readableEnded).toBe(true);
    const q = f.call(request(), context());
    dest.calls[2]!.respond(res(empty));
    await q;
    expect(f.inFlight).toBe(0);
  });

  it('a next that throws synchronously is released too', async () => {
    const { service, handle } = mockService();
    handle.onCall = () => {
      throw new Error('sync');
    };
    const f = admissionOf(
      admissionModule.make(service, {
        level: 'concrete',
        target: targetOf('concrete'),
        params: Params.empty,
        clock: new FakeClock(),
        rng: { next: () => 0 },
        logger: silentLogger,
      }),
    )!;
    await expect(f.call(request(), context())).rejects.toThrow('sync');
    expect(f.inFlight).toBe(0);
  });

  it('past the bound, refuses at once with OverloadedError without reaching the destination', async () => {
    const { dest, f } = setup(3);
    const calls = [0, 1, 2].map(() => f.call(request(), context()));
    expect(f.status).toBe('busy');
    const ctx = context();
    ctx.attempt = new Attempt(2);
    const e = await f.call(request(), ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OverloadedError);
    expect(e).toBeInstanceOf(MeshError);
    expect(e).toMatchObject({
      code: 'MESH_OVERLOADED',
      phase: 'route',
      retryable: false,
      service: 'users',
      destination: 'primary',
      limit: 3,
      attempts: 2,
    });
    expect((e as Error).message).toMatch(/users.*primary.*limit 3/);
    expect(dest.calls).toHaveLength(3);
    expect(f.snapshot()).toEqual({ inFlight: 3, limit: 3, rejected: 1 });
    // The shared classifier does not retry it: retrying adds load to a destination that is full.
    expect(defaultClassifier({ req: request(), ctx, error: e }).retryable).toBe(false);
    // Room again once one call is over.
    dest.calls[0]!.fail(new Error('x'));
    await calls[0]!.catch(() => {});
    expect(f.status).toBe('ready');
    const p = f.call(request(), context());
    expect(dest.calls).toHaveLength(4);
    for (const h of dest.calls.slice(1)) h.fail(new Error('x'));
    await Promise.allSettled([...calls, p]);
    expect(f.inFlight).toBe(0);
  });

  it('passes the status below through when it is not ready', () => {
    const { dest, f } = setup();
    dest.status = 'down';
    expect(f.status).toBe('down');
  });

  it('keeps an exact count under any interleaving of starts, ends, destroys and failures (property)', async () => {
    type Op = { kind: 'start' } | { kind: 'fail' | 'respond' | 'end' | 'destroy'; i: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.constant({ kind: 'start' as const }),
      fc.record({
        kind: fc.constantFrom('fail' as const, 'respond' as const, 'end' as const, 'destroy' as const),
        i: fc.nat(20),
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(op, { maxLength: 60 }),
        async (limit, ops) => {
          const { dest, f } = setup(limit);
          // Model: each admitted call is 'waiting' (no response yet), 'open' (body not over) or 'done'.
          const calls: Array<{
            state: 'waiting' | 'open' | 'done';
            body?: PassThrough;
            held: Held;
            p: Promise<unknown>;
          }> = [];
          let refused = 0;
          for (const o of ops) {
            const live = calls.filter((c) => c.state !== 'done').length;
            if (o.kind === 'start') {
              const p = f.call(request(), context()).then(
                (r) => r.body.resume(),
                (e: unknown) => e,
              );
              if (live >= limit) {
                expect(await p).toBeInstanceOf(OverloadedError);
                refused++;
              } else calls.push({ state: 'waiting', held: dest.calls.at(-1)!, p });
            } else {
              const c = calls[o.i % Math.max(1, calls.length)];
              if (c === undefined || c.state === 'done') continue;
              if (c.state === 'waiting') {
                if (o.kind === 'fail') {
                  c.held.fail(new Error('fail'));
                  c.state = 'done';
                } else {
                  c.body = new PassThrough();
                  c.held.respond(res(c.body));
                  c.state = 'open';
                }
                await c.p;
              } else if (o.kind === 'end' || o.kind === 'destroy') {
                if (o.kind === 'end') c.body!.end();
                else c.body!.destroy();
                c.state = 'done';
                await settle();
              }
            }
            expect(f.inFlight).toBe(calls.filter((x) => x.state !== 'done').length);
          }
          expect(f.rejected).toBe(refused);
          for (const c of calls) {
            if (c.state === 'waiting') c.held.fail(new Error('end of test'));
            else c.body?.destroy();
          }
          await Promise.all(calls.map((c) => c.p));
          await settle();
          expect(f.inFlight).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('admission keeps its own count, whatever is below it', () => {
  it('the bound holds, and a finished body or a failure frees a place', async () => {
    const { dest, f } = setup(2);
    const a = f.call(request(), context());
    const b = f.call(request(), context());
    expect(f.inFlight).toBe(2);
    expect(f.status).toBe('busy');
    await expect(f.call(request(), context())).rejects.toBeInstanceOf(OverloadedError);
    expect(dest.calls).toHaveLength(2);
    const body = new PassThrough();
    dest.calls[0]!.respond(res(body));
    await a;
    expect(f.inFlight).toBe(2); // the body is still open
    body.destroy();
    await settle();
    expect(f.inFlight).toBe(1);
    dest.calls[1]!.fail(new TransportError('boom', { phase: 'connect', retryable: true }));
    await expect(b).rejects.toBeInstanceOf(TransportError);
    expect(f.inFlight).toBe(0);
    expect(f.snapshot()).toEqual({ inFlight: 0, limit: 2, rejected: 1 });
  });

  it('counts a call until it fails, and refuses past the bound meanwhile', async () => {
    const { dest, f } = setup(1);
    const a = f.call(request(), context());
    expect(f.inFlight).toBe(1);
    await expect(f.call(request(), context())).rejects.toBeInstanceOf(OverloadedError);
    dest.calls[0]!.fail(new TransportError('boom', { phase: 'connect', retryable: true }));
    await expect(a).rejects.toBeInstanceOf(TransportError);
    expect(f.inFlight).toBe(0);
  });
});

describe('admission options', () => {
  const path = 'services.users.admission';

  it('defaults to 1024 in flight; true and undefined give the defaults; false leaves the module out', () => {
    expect(ADMISSION_DEFAULTS).toEqual({ maxInFlight: 1024 });
    expect(AdmissionParam.defaultValue).toBe(ADMISSION_DEFAULTS);
    expect(resolveAdmissionOptions(undefined, path)).toBe(ADMISSION_DEFAULTS);
    expect(resolveAdmissionOptions(true, path)).toBe(ADMISSION_DEFAULTS);
    expect(resolveAdmissionOptions({}, path)).toBe(ADMISSION_DEFAULTS);
    expect(resolveAdmissionOptions({ maxInFlight: 5 }, path)).toEqual({ maxInFlight: 5 });
    expect(resolveAdmissionOptions(false, path)).toBe(false);
    const { service: dest } = mockService();
    const made = admissionModule.make(dest, {
      level: 'concrete',
      target: targetOf('concrete'),
      params: Params.empty.with(AdmissionParam, false),
      clock: new FakeClock(),
      rng: { next: () => 0 },
      logger: silentLogger,
    });
    expect(made).toBe(dest);
    expect(admissionOf(made)).toBeUndefined();
    expect(admissionModule.role).toBe('admission');
  });

  it.each([
    [{ maxInFlight: 0 }, `${path}.maxInFlight`],
    [{ maxInFlight: 2.5 }, `${path}.maxInFlight`],
    [{ maxInFlight: '10' }, `${path}.maxInFlight`],
    [{ maxInFlight: Infinity }, `${path}.maxInFlight`],
    [{ maxInflight: 10 }, `${path}.maxInflight`],
    [null, path],
    ['lots', path],
    [[10], path],
  ])('rejects %j with a ConfigError at %s', (input, where) => {
    let err: unknown;
    try {
      resolveAdmissionOptions(input as never, path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(where);
  });
});
