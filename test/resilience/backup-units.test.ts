// Deterministic tests of backup requests: the windowed latency estimator, the race (which attempt wins, what
// is cancelled, what is copied back, which listeners remain) over a mock service on a FakeClock, the
// shared retry budget, and the config errors.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, createMesh } from 'meshfetch';
import { FakeClock, mockResponse, mockService, seededRng } from 'meshfetch/testing';
import { Attempt } from '../../src/core/attempt.js';
import { CallContext, ChildSignal } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MeshRequest, MeshResponse } from '../../src/core/message.js';
import { Params } from '../../src/core/params.js';
import type { Service } from '../../src/core/service.js';
import { CallSignal } from '../../src/core/signal.js';
import { Stack, type StackModule } from '../../src/core/stack.js';
import {
  BACKUP_REQUEST_DEFAULTS,
  BackupRequestFilter,
  BackupRequestParam,
  backupRequestsModule,
  LatencyWindow,
  resolveBackupRequestOptions,
  type BackupRequestOptions,
} from '../../src/resilience/backup.js';
import { RETRY_BUDGET_DEFAULTS, RetryBudget, RetryBudgetParam } from '../../src/resilience/budget.js';
import { defaultClassifier } from '../../src/resilience/classifier.js';
import {
  RETRY_DEFAULTS,
  RetryFilter,
  RetryParam,
  retryModule,
  withRetryBudget,
} from '../../src/resilience/retry.js';

// ---------------------------------------------------------------------------------------------------------
// A mock service below the filter (mockService): every call waits until the test settles it; an abort of the
// attempt's signal rejects it with the signal's reason, as undici does. As a call arrives it is given an
// endpoint, handed out in turn and skipping tried ones (like a balancer with `ctx.tried`), and its body is
// read, as a transport sends it. `Pending` is the test's view of a call.

interface Pending {
  req: MeshRequest;
  ctx: CallContext;
  bodyBytes: Promise<Buffer>;
  ok(status?: number, body?: string): MeshResponse;
  fail(err: Error): void;
  readonly aborted: boolean;
}

function scripted(endpoints = ['a:1', 'b:2', 'c:3']): { service: Service; calls: Pending[] } {
  const { service, handle } = mockService();
  const calls: Pending[] = [];
  handle.onCall = (call) => {
    const { request: req, ctx } = call;
    ctx.attempt.endpoint = endpoints.find((e) => !ctx.tried?.has(e)) ?? endpoints[0]!;
    req.headers.host = 'svc';
    req.headers['mesh-deadline-ms'] = String(calls.length);
    calls.push({
      req,
      ctx,
      bodyBytes: readBody(req.body),
      ok: (status = 200, body = 'ok') => {
        const res = mockResponse(status, {}, body);
        call.respond(res);
        return res;
      },
      fail: (err) => call.fail(err),
      get aborted() {
        return call.aborted;
      },
    });
  };
  return { service, calls };
}

async function readBody(body: MeshRequest['body']): Promise<Buffer> {
  if (body === null || body === undefined) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Uint8Array | string>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

function request(method = 'GET', body: MeshRequest['body'] = null): MeshRequest {
  return {
    method,
    protocol: 'http:',
    authority: 'svc',
    service: 'svc',
    path: '/',
    headers: { 'x-a': '1' },
    body,
  };
}

function context(
  clock: FakeClock,
  signal: CallSignal | undefined = new CallSignal(),
  idempotent?: boolean,
): CallContext {
  return new CallContext('svc', signal, clock.now() + 10_000, idempotent, clock.now(), silentLogger);
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(options: Partial<BackupRequestOptions> = {}) {
  const clock = new FakeClock();
  const next = scripted();
  const filter = new BackupRequestFilter(
    next.service,
    { ...BACKUP_REQUEST_DEFAULTS, ...options },
    defaultClassifier,
    clock,
    silentLogger,
  );
  return { clock, next, filter };
}

/** Sends `n` calls that each answer after `ms`, so the window holds n samples of `ms`. */
async function warm(s: ReturnType<typeof setup>, n = 10, ms = 10): Promise<void> {
  for (let i = 0; i < n; i++) {
    const p = s.filter.call(request(), context(s.clock));
    s.clock.advance(ms);
    s.next.calls.at(-1)!.ok();
    await (await p).body.toArray();
  }
  s.next.calls.length = 0;
}

// ---------------------------------------------------------------------------------------------------------

describe('LatencyWindow', () => {
  it('estimates percentiles within one bucket (never below the exact value, at most 5 % above)', () => {
    const clock = new FakeClock();
    const w = new LatencyWindow(30_000, clock);
    const rng = seededRng(7);
    const samples: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      // Log-uniform between 0.1 ms and 2 s: a heavy tail, like real latencies.
      const v = 0.1 * Math.exp(rng.next() * Math.log(20_000));
      samples.push(v);
      w.record(v);
    }
    samples.sort((a, b) => a - b);
    for (const p of [0.5, 0.9, 0.95, 0.99, 0.999]) {
      const exact = samples[Math.ceil(p * samples.length) - 1]!;
      const est = w.percentile(p)!;
      expect(est).toBeGreaterThanOrEqual(exact);
      expect(est).toBeLessThanOrEqual(exact * 1.05 + 1e-9);
    }
    expect(w.count).toBe(5_000);
  });

  it('forgets samples older than the window, one slice at a time', () => {
    const clock = new FakeClock();
    const w = new LatencyWindow(30_000, clock); // 3 slices of 10 s
    expect(w.percentile(0.99)).toBeUndefined();
    for (let i = 0; i < 100; i++) w.record(100);
    clock.advance(10_000);
    for (let i = 0; i < 100; i++) w.record(5);
    expect(w.count).toBe(200);
    expect(w.percentile(0.99)).toBeGreaterThanOrEqual(100);
    clock.advance(20_000); // the slice with the 100 ms samples has expired
    expect(w.count).toBe(100);
    expect(w.percentile(0.99)).toBeLessThan(5.3);
    clock.advance(10_000);
    expect(w.count).toBe(0);
    expect(w.percentile(0.5)).toBeUndefined();
    clock.advance(1_000_000); // a long silence costs one pass over the ring, not one per elapsed slice
    w.record(0); // zero and sub-resolution values land in the first bucket
    expect(w.percentile(0.5)).toBeCloseTo(0.01);
  });
});

describe('ChildSignal and CallContext.fork', () => {
  it('follows its parent with one listener, can be aborted alone, and unlinks', () => {
    const parent = new CallSignal();
    const a = new ChildSignal(parent);
    const b = new ChildSignal(parent);
    expect(parent.listenerCount).toBe(2);
    a.abort(new Error('alone'));
    expect(a.aborted).toBe(true);
    expect(parent.aborted).toBe(false);
    expect(parent.listenerCount).toBe(1);
    const reason = new Error('deadline');
    parent.abort(reason);
    expect(b.reason).toBe(reason);
    b.unlink(); // after the parent aborted: nothing to remove, no error
    b.unlink();
    expect(new ChildSignal(parent).reason).toBe(reason); // born aborted when the parent already is
    const free = new ChildSignal(undefined);
    free.unlink();
    expect(free.aborted).toBe(false);
  });

  it('fork copies what an attempt reads and shares nothing an attempt writes', () => {
    const clock = new FakeClock();
    const ctx = context(clock, new CallSignal(), true);
    ctx.attempt = new Attempt(2);
    ctx.attempt.destination = 'primary';
    ctx.tried = new Set(['a:1']);
    const signal = new ChildSignal(ctx.signal);
    const record = new Attempt(2, true);
    const child = ctx.fork(signal, record);
    expect(child).toMatchObject({
      service: 'svc',
      deadline: ctx.deadline,
      idempotent: true,
      startedAt: ctx.startedAt,
      callerSignal: ctx.callerSignal,
    });
    expect(child.attempt).toBe(record);
    expect(child.signal).toBe(signal);
    expect(child.tried).not.toBe(ctx.tried);
    child.tried!.add('b:2');
    child.attempt.endpoint = 'b:2';
    expect([...ctx.tried]).toEqual(['a:1']);
    expect(ctx.attempt.endpoint).toBeUndefined();
    signal.unlink();
  });
});

describe('BackupRequestFilter: the delay', () => {
  it('sends no backup until the window has minSamples, then waits the clamped percentile', async () => {
    const s = setup({ minSamples: 10, minDelayMs: 20, maxDelayMs: 30 });
    expect(s.filter.delayMs).toBeNull();
    await warm(s, 9, 10);
    expect(s.filter.delayMs).toBeNull();
    // Not enough samples: a slow call gets no backup.
    const p = s.filter.call(request(), context(s.clock));
    s.clock.advance(1_000);
    expect(s.next.calls).toHaveLength(1);
    s.next.calls[0]!.ok();
    await (await p).body.toArray();
    // 10 samples now; the p99 (1000 ms) is clamped to maxDelayMs.
    s.clock.advance(1_000); // past the refresh interval
    expect(s.filter.delayMs).toBe(30);
    const s2 = setup({ minDelayMs: 20 });
    await warm(s2, 10, 1);
    expect(s2.filter.delayMs).toBe(20); // p99 ~1 ms, raised to minDelayMs
  });
});

describe('BackupRequestFilter: the race', () => {
  it('sends one backup to another endpoint with its own request, headers and context; the first answer wins', async () => {
    const s = setup();
    await warm(s);
    const parentSignal = new CallSignal();
    const ctx = context(s.clock, parentSignal);
    const req = request();
    const p = s.filter.call(req, ctx);
    expect(s.next.calls).toHaveLength(1);
    const delay = s.filter.delayMs!;
    expect(delay).toBeGreaterThanOrEqual(10);
    expect(delay).toBeLessThanOrEqual(10.5);
    s.clock.advance(delay - 0.01);
    expect(s.next.calls).toHaveLength(1);
    s.clock.advance(0.01);
    expect(s.next.calls).toHaveLength(2);
    const [orig, backup] = s.next.calls as [Pending, Pending];
    // Nothing mutable is shared: not the request, its headers, the context or the signal.
    expect(orig.req).not.toBe(req);
    expect(backup.req).not.toBe(orig.req);
    expect(backup.req.headers).not.toBe(orig.req.headers);
    expect(orig.req.headers).not.toBe(req.headers);
    expect(req.headers).toEqual({ 'x-a': '1' }); // the lower layers wrote to the copies only
    expect(orig.req.headers['mesh-deadline-ms']).toBe('0');
    expect(backup.req.headers['mesh-deadline-ms']).toBe('1');
    expect(backup.ctx).not.toBe(orig.ctx);
    expect(orig.ctx).not.toBe(ctx);
    expect(backup.ctx.signal).not.toBe(orig.ctx.signal);
    expect(backup.ctx.attempt.backup).toBe(true);
    expect(orig.ctx.attempt.backup).toBe(false);
    expect(backup.ctx.attempt).not.toBe(orig.ctx.attempt);
    // The backup prefers another endpoint.
    expect(orig.ctx.attempt.endpoint).toBe('a:1');
    expect(backup.ctx.attempt.endpoint).toBe('b:2');
    expect(parentSignal.listenerCount).toBe(2);

    const winner = backup.ok(200, 'from b');
    const res = await p;
    expect(res).toBe(winner);
    expect(orig.aborted).toBe(true);
    expect(orig.ctx.signal!.aborted).toBe(true);
    expect(orig.ctx.signal!.reason).toMatchObject({ name: 'AbortError' });
    expect(parentSignal.aborted).toBe(false); // only the loser was cancelled
    // What the layers above read comes back: the winner's record in the attempt the filter was handed.
    expect(ctx.attempt.endpoint).toBe('b:2');
    expect([...ctx.tried!].sort()).toEqual(['a:1', 'b:2']);
    expect(ctx.attempt.number).toBe(1);
    expect(ctx.attempt.backup).toBe(false);
    // The winner's link to the call's signal lasts until its body closes.
    expect(parentSignal.listenerCount).toBe(1);
    expect(Buffer.concat(await res.body.toArray()).toString()).toBe('from b');
    await flush();
    expect(parentSignal.listenerCount).toBe(0);
    expect(s.filter.snapshot()).toMatchObject({ sent: 1, won: 1, budgetExhausted: 0 });
    // For telemetry, on the call's context.
    expect(ctx.backupsSent).toBe(1);
    expect(ctx.backupWon).toBe(true);
  });

  it('a deadline or caller abort during the race reaches both attempts, and leaves no listener', async () => {
    const s = setup();
    await warm(s);
    const parentSignal = new CallSignal();
    const p = s.filter.call(request(), context(s.clock, parentSignal));
    s.clock.advance(20);
    expect(s.next.calls).toHaveLength(2);
    const reason = new Error('deadline');
    parentSignal.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(s.next.calls.every((c) => c.aborted)).toBe(true);
    expect(parentSignal.listenerCount).toBe(0);
  });

  it('returns a failure of the original that comes before the backup is due, without a backup', async () => {
    const s = setup();
    await warm(s);
    const parentSignal = new CallSignal();
    const p = s.filter.call(request(), context(s.clock, parentSignal));
    s.clock.advance(1);
    const res503 = s.next.calls[0]!.ok(503, 'unavailable');
    expect(await p).toBe(res503);
    expect(s.clock.pendingTimers).toBe(0);
    s.clock.advance(1_000);
    expect(s.next.calls).toHaveLength(1);
    await res503.body.toArray();
    await flush();
    expect(parentSignal.listenerCount).toBe(0);
    const failing = s.filter.call(request(), context(s.clock, parentSignal));
    s.next.calls[1]!.fail(Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    await expect(failing).rejects.toThrow('reset');
    expect(parentSignal.listenerCount).toBe(0);
    expect(s.filter.stats.sent).toBe(0);
  });

  it('when the backup fails while the original runs, waits for the original', async () => {
    const s = setup();
    await warm(s);
    const ctx = context(s.clock);
    const p = s.filter.call(request(), ctx);
    s.clock.advance(20);
    const [orig, backup] = s.next.calls as [Pending, Pending];
    backup.fail(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
    await flush();
    const late = orig.ok(200, 'late but fine');
    expect(await p).toBe(late);
    expect(ctx.attempt.endpoint).toBe('a:1');
    expect(s.filter.stats.won).toBe(0);
    await late.body.toArray();
  });

  it('when both fail, returns the later outcome and drains the earlier response', async () => {
    const s = setup();
    await warm(s);
    const p = s.filter.call(request(), context(s.clock));
    s.clock.advance(20);
    const [orig, backup] = s.next.calls as [Pending, Pending];
    const first = orig.ok(502, 'bad gateway');
    await flush();
    const second = backup.ok(503, 'unavailable');
    expect(await p).toBe(second);
    await flush();
    expect(first.body.readableEnded || first.body.destroyed).toBe(true);
    await second.body.toArray();
  });

  it('drains a loser that answers after the race was decided', async () => {
    const s = setup();
    await warm(s);
    const p = s.filter.call(request(), context(s.clock));
    s.clock.advance(20);
    const [orig, backup] = s.next.calls as [Pending, Pending];
    const a = orig.ok(200, 'a');
    const b = backup.ok(200, 'b'); // same turn: the original's answer is seen first
    expect(await p).toBe(a);
    await flush();
    expect(b.body.readableEnded || b.body.destroyed).toBe(true);
    await a.body.toArray();
  });

  it('sends no backup for a non-idempotent call unless it is marked idempotent', async () => {
    const s = setup();
    await warm(s);
    const post = s.filter.call(request('POST', 'x'), context(s.clock));
    expect(s.clock.pendingTimers).toBe(0);
    s.clock.advance(1_000);
    expect(s.next.calls).toHaveLength(1);
    s.next.calls[0]!.ok();
    await (await post).body.toArray();
    const ctx = context(s.clock, new CallSignal(), true);
    const marked = s.filter.call(request('POST', 'x'), ctx);
    s.clock.advance(2_000); // the slow POST is in the window too: the p99 is now ~1 s
    expect(s.next.calls).toHaveLength(3);
    s.next.calls[2]!.ok();
    await (await marked).body.toArray();
  });

  it('sends a streamed body byte for byte to the backup, and none while the stream is still being sent', async () => {
    const s = setup();
    await warm(s);
    const chunks = [Buffer.from('alpha-'), Buffer.from([0, 1, 2, 255]), Buffer.from('-omega')];
    const p = s.filter.call(request('PUT', Readable.from(chunks)), context(s.clock));
    const origBytes = await s.next.calls[0]!.bodyBytes; // the original sends the whole stream
    s.clock.advance(20);
    expect(s.next.calls).toHaveLength(2);
    expect(await s.next.calls[1]!.bodyBytes).toEqual(origBytes);
    expect(origBytes).toEqual(Buffer.concat(chunks));
    s.next.calls[1]!.ok();
    await (await p).body.toArray();

    // A stream nobody has finished reading cannot be sent twice: no backup.
    const unread = new Readable({ read() {} });
    const q = s.filter.call(request('PUT', unread), context(s.clock));
    s.clock.advance(1_000);
    expect(s.next.calls).toHaveLength(3);
    s.next.calls[2]!.ok();
    await (await q).body.toArray();
    expect(s.filter.stats.sent).toBe(1);
  });

  it('sends no backup when the budget is empty, and counts it', async () => {
    const s = setup();
    await warm(s);
    // A budget with nothing in it.
    s.filter.useRetryBudget(
      new RetryBudget({ ttlMs: 10_000, minRetriesPerSec: 0, percentCanRetry: 0 }, s.clock),
    );
    const p = s.filter.call(request(), context(s.clock));
    s.clock.advance(1_000);
    expect(s.next.calls).toHaveLength(1);
    s.next.calls[0]!.ok();
    await (await p).body.toArray();
    expect(s.filter.stats).toEqual({ sent: 0, won: 0, budgetExhausted: 1 });
  });
});

describe('BackupRequestFilter: one budget per logical service', () => {
  const env = (params: Params, clock: FakeClock) => ({
    level: 'logical' as const,
    target: { service: 'svc' },
    params,
    clock,
    rng: seededRng(1),
    logger: silentLogger,
  });

  it('spends the retry filter budget when retries sit above it, and deposits nothing itself', () => {
    const clock = new FakeClock();
    const params = Params.empty.with(BackupRequestParam, BACKUP_REQUEST_DEFAULTS);
    const built = Stack.of('logical', [retryModule, backupRequestsModule]).build(
      scripted().service,
      env(params, clock),
    );
    expect(built).toBeInstanceOf(RetryFilter);
    const retry = built as RetryFilter;
    const backup = (retry as unknown as { next: BackupRequestFilter }).next;
    expect(backup).toBeInstanceOf(BackupRequestFilter);
    expect(backup.retryBudget).toBe(retry.budget);
  });

  it('has a budget of its own with the same defaults when retries are off', async () => {
    const clock = new FakeClock();
    const params = Params.empty.with(BackupRequestParam, BACKUP_REQUEST_DEFAULTS).with(RetryParam, false);
    const next = scripted();
    const built = Stack.of('logical', [retryModule, backupRequestsModule]).build(
      next.service,
      env(params, clock),
    );
    expect(built).toBeInstanceOf(BackupRequestFilter);
    const backup = built as BackupRequestFilter;
    expect(backup.retryBudget.balance).toBe(100); // 10/s x 10 s
    for (let i = 0; i < 10; i++) {
      const p = backup.call(request(), context(clock));
      next.calls.at(-1)!.ok();
      await (await p).body.toArray();
    }
    expect(backup.retryBudget.balance).toBe(102); // + 20 % of 10 deposits
  });

  it('is off unless configured', () => {
    const clock = new FakeClock();
    const { service: next } = scripted();
    expect(backupRequestsModule.make(next, env(Params.empty, clock))).toBe(next);
    expect(RETRY_DEFAULTS.maxReplayBytes).toBeGreaterThan(0);
  });
});

describe('backupRequests config', () => {
  const mesh = (backupRequests: unknown, where: 'service' | 'defaults' = 'service') =>
    createMesh({
      services: {
        users: {
          endpoints: ['127.0.0.1:1'],
          ...(where === 'service' ? { backupRequests: backupRequests as never } : {}),
        },
      },
      ...(where === 'defaults' ? { defaults: { backupRequests: backupRequests as never } } : {}),
    });

  function configError(fn: () => unknown): ConfigError {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return e as ConfigError;
    }
    throw new Error('expected a ConfigError');
  }

  it.each([
    [{ percentile: 1.5 }, 'services.users.backupRequests.percentile'],
    [{ percentile: 0 }, 'services.users.backupRequests.percentile'],
    [{ percentile: 1 }, 'services.users.backupRequests.percentile'],
    [{ percentile: Number.NaN }, 'services.users.backupRequests.percentile'],
    [{ percentile: '0.9' }, 'services.users.backupRequests.percentile'],
    [{ minDelayMs: -1 }, 'services.users.backupRequests.minDelayMs'],
    [{ minDelayMs: Infinity }, 'services.users.backupRequests.minDelayMs'],
    [{ maxDelayMs: 0 }, 'services.users.backupRequests.maxDelayMs'],
    [{ minDelayMs: 50, maxDelayMs: 10 }, 'services.users.backupRequests.maxDelayMs'],
    [{ minSamples: 0 }, 'services.users.backupRequests.minSamples'],
    [{ minSamples: 2.5 }, 'services.users.backupRequests.minSamples'],
    [{ windowMs: 10 }, 'services.users.backupRequests.windowMs'],
    [{ percentil: 0.9 }, 'services.users.backupRequests.percentil'],
    ['yes', 'services.users.backupRequests'],
    [null, 'services.users.backupRequests'],
    [[0.9], 'services.users.backupRequests'],
  ])('%j is a ConfigError naming %s', async (value, path) => {
    const e = configError(() => mesh(value));
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
  });

  it('names defaults.backupRequests when the defaults are wrong', () => {
    expect(configError(() => mesh({ percentile: 2 }, 'defaults')).path).toBe(
      'defaults.backupRequests.percentile',
    );
  });

  it('accepts false, true and partial options (the benchmark passes { percentile: 0.95 })', async () => {
    expect(resolveBackupRequestOptions(undefined, 'p')).toBe(false);
    expect(resolveBackupRequestOptions(false, 'p')).toBe(false);
    expect(resolveBackupRequestOptions(true, 'p')).toEqual(BACKUP_REQUEST_DEFAULTS);
    expect(resolveBackupRequestOptions({ percentile: 0.95 }, 'p')).toEqual({
      ...BACKUP_REQUEST_DEFAULTS,
      percentile: 0.95,
    });
    expect(BACKUP_REQUEST_DEFAULTS).toEqual({
      percentile: 0.99,
      minDelayMs: 1,
      maxDelayMs: Infinity,
      minSamples: 10,
      windowMs: 30_000,
    });
    const m = mesh({ percentile: 0.95 });
    expect(m.snapshot().services[0]!.backupRequests).toEqual({
      sent: 0,
      won: 0,
      budgetExhausted: 0,
      delayMs: null,
    });
    await m.close();
    const off = mesh(undefined);
    expect(off.snapshot().services[0]!.backupRequests).toBeNull();
    await off.close();
  });
});

describe('RetryBudgetParam: the logical service budget as a typed param', () => {
  const env = (params: Params, clock: FakeClock) => ({
    level: 'logical' as const,
    target: { service: 'svc' },
    params,
    clock,
    rng: seededRng(1),
    logger: silentLogger,
  });

  it('retries and backup requests both read the budget the param holds; retries deposit, backups do not', async () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ttlMs: 10_000, minRetriesPerSec: 0, percentCanRetry: 1 }, clock);
    const params = Params.empty
      .with(BackupRequestParam, BACKUP_REQUEST_DEFAULTS)
      .with(RetryBudgetParam, budget);
    const next = scripted();
    const built = Stack.of('logical', [retryModule, backupRequestsModule]).build(
      next.service,
      env(params, clock),
    );
    const retry = built as RetryFilter;
    const backup = (retry as unknown as { next: BackupRequestFilter }).next;
    expect(retry.budget).toBe(budget);
    expect(backup.retryBudget).toBe(budget);
    const p = retry.call(request(), context(clock));
    next.calls.at(-1)!.ok();
    await (await p).body.toArray();
    expect(budget.balance).toBe(1); // one deposit (the retry filter's), 100 % of it
  });

  it('a module of ones own reads the same budget, and backups alone deposit into it', async () => {
    const clock = new FakeClock();
    const params = withRetryBudget(
      Params.empty.with(BackupRequestParam, BACKUP_REQUEST_DEFAULTS).with(RetryParam, false),
      clock,
    );
    let seen: RetryBudget | undefined;
    const reader: StackModule = {
      role: 'reader',
      description: 'reads the budget',
      make: (n, e) => {
        seen = e.params.get(RetryBudgetParam);
        return n;
      },
    };
    const next = scripted();
    const built = Stack.of('logical', [reader, retryModule, backupRequestsModule]).build(
      next.service,
      env(params, clock),
    );
    const backup = built as BackupRequestFilter;
    expect(seen).toBeDefined();
    expect(backup.retryBudget).toBe(seen);
    expect(seen!.balance).toBe(100); // the defaults with retries off: 10/s x 10 s
    for (let i = 0; i < 10; i++) {
      const p = backup.call(request(), context(clock));
      next.calls.at(-1)!.ok();
      await (await p).body.toArray();
    }
    expect(seen!.balance).toBe(102);
  });

  it('withRetryBudget keeps a budget already set, and takes the service retries.budget options', () => {
    const clock = new FakeClock();
    const mine = new RetryBudget(RETRY_BUDGET_DEFAULTS, clock);
    const set = Params.empty.with(RetryBudgetParam, mine);
    expect(withRetryBudget(set, clock)).toBe(set);
    const options = { ...RETRY_DEFAULTS, budget: { ttlMs: 10_000, minRetriesPerSec: 1, percentCanRetry: 0 } };
    const made = withRetryBudget(Params.empty.with(RetryParam, options), clock).get(RetryBudgetParam);
    expect(made!.balance).toBe(10);
  });

  it('the mesh sets one per logical service: its retries and backups spend the same budget', async () => {
    const m = createMesh({
      services: {
        users: { endpoints: ['127.0.0.1:1'], backupRequests: { percentile: 0.9 } },
        orders: { endpoints: ['127.0.0.1:1'], backupRequests: { percentile: 0.9 } },
      },
      stack: (d) => ({ ...d, logical: d.logical.append(capture) }),
    });
    try {
      expect(captured).toHaveLength(2);
      expect(captured[0]).not.toBe(captured[1]);
      expect(m.snapshot().services.map((s) => s.retryBudget)).toEqual([100, 100]);
    } finally {
      await m.close();
    }
  });
});

const captured: RetryBudget[] = [];
const capture: StackModule = {
  role: 'capture-budget',
  description: 'notes the budget each logical stack is built with',
  make: (next, env) => {
    captured.push(env.params.get(RetryBudgetParam)!);
    return next;
  },
};
