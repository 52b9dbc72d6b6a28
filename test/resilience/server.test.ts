// The server helper end to end: real node:http servers on loopback wrapped in meshHandler, and a real mesh as
// the outgoing client. A is the service under test (meshHandler); B is a plain server that records what it gets.
import {
  createServer,
  request as httpRequest,
  Agent,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  callOptions,
  createMesh,
  DeadlineExceededError,
  systemClock,
  type Clock,
  type Mesh,
} from 'meshfetch';
import {
  getIncomingDeadline,
  IncomingAbortedError,
  incomingSignal,
  meshHandler,
  remainingMs,
  type MeshHandlerOptions,
} from '../../src/server/server.js';
import { startServer, type TestServer } from '../support/servers.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;

interface Served {
  port: number;
  address: string;
  sockets: Set<Socket>;
  close(): Promise<void>;
}

async function serve(handler: Handler, options?: MeshHandlerOptions): Promise<Served> {
  const sockets = new Set<Socket>();
  const server = createServer(meshHandler(handler, options));
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
}

/** A plain node:http request, so the test (not a mesh) decides exactly which headers A receives. */
function get(
  port: number,
  headers: Record<string, string> = {},
  opts: { agent?: Agent; method?: string; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        method: opts.method ?? 'GET',
        headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const json = (res: ServerResponse, value: unknown): void => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(value));
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What a handler saw of its budget. */
const budget = (req: IncomingMessage) => ({
  header: req.headers['mesh-deadline-ms'] ?? null,
  remaining: remainingMs(),
  deadline: getIncomingDeadline(),
  aborted: incomingSignal()?.aborted,
});

let b: TestServer;
let mesh: Mesh;
const open: Served[] = [];

beforeAll(async () => {
  b = await startServer();
});
afterAll(async () => {
  await b.close();
});
afterEach(async () => {
  b.handler = (_req, res) => void res.end('b');
  b.received.length = 0;
  await mesh?.close();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function serveA(handler: Handler, options?: MeshHandlerOptions): Promise<Served> {
  const a = await serve(handler, options);
  open.push(a);
  mesh = createMesh({ services: { a: { endpoints: [a.address] }, b: { endpoints: [b.address] } } });
  return a;
}

describe('meshHandler: the incoming deadline', () => {
  it('arrives from a mesh caller and the handler sees the remaining budget', async () => {
    await serveA((req, res) => json(res, budget(req)));
    const res = await mesh.fetch('http://a/', { headers: callOptions({ deadlineMs: 2_000 }) });
    const seen = (await res.json()) as ReturnType<typeof budget>;
    // Read once and removed from the incoming headers: the handler sees the budget through remainingMs().
    expect(seen.header).toBeNull();
    expect(seen.remaining).toBeLessThanOrEqual(2_000);
    expect(seen.remaining).toBeGreaterThan(1_500);
    expect(seen.deadline).toBeGreaterThan(0);
    expect(seen.deadline).not.toBe(Infinity);
    expect(seen.aborted).toBe(false);
  });

  it("is inherited by the handler's outgoing mesh calls, minus the time spent", async () => {
    await serveA(async (req, res) => {
      const t0 = systemClock.now();
      await sleep(40);
      const tCall = systemClock.now();
      const out = await mesh.fetch('http://b/next');
      // The header itself was removed from req.headers (read once); 3000 is what the caller sent.
      json(res, { header: req.headers['mesh-deadline-ms'] ?? 3000, spent: tCall - t0, b: await out.text() });
    });
    const answer = await get(open[0]!.port, { 'mesh-deadline-ms': '3000' });
    const seen = JSON.parse(answer.text) as { header: number; spent: number; b: string };
    expect(seen.b).toBe('b');
    expect(seen.spent).toBeGreaterThanOrEqual(35);
    const atB = Number(b.received[0]!.headers['mesh-deadline-ms']);
    expect(Number.isInteger(atB)).toBe(true);
    expect(atB).toBeLessThanOrEqual(seen.header - seen.spent);
    expect(atB).toBeGreaterThan(seen.header - seen.spent - 500);
  });

  it('without an incoming deadline, outgoing calls keep their own, and send only a chosen one', async () => {
    await serveA(async (req, res) => {
      const out = await mesh.fetch('http://b/');
      json(res, { ...budget(req), b: await out.text() });
    });
    const seen = JSON.parse((await get(open[0]!.port)).text) as {
      remaining: number | null;
      deadline: number;
    };
    expect(seen.remaining).toBeNull(); // Infinity in JSON
    expect(seen.deadline).toBeNull();
    // The built-in 30 s (DEFAULT_TIMEOUT_MS) is enforced, not sent: nobody chose it.
    expect(b.received[0]!.headers['mesh-deadline-ms']).toBeUndefined();
    await mesh.close();
    mesh = createMesh({
      services: { a: { endpoints: [open[0]!.address] }, b: { endpoints: [b.address], timeoutMs: 4_000 } },
    });
    await get(open[0]!.port);
    const atB = Number(b.received[1]!.headers['mesh-deadline-ms']);
    expect(atB).toBeGreaterThan(3_000);
    expect(atB).toBeLessThanOrEqual(4_000);
  });

  it('aborts an outgoing call in flight when the incoming deadline passes (B is slow)', async () => {
    let bClosedEarly = false;
    b.handler = (_req, res) => {
      const t = setTimeout(() => res.end('late'), 5_000);
      res.on('close', () => {
        clearTimeout(t);
        bClosedEarly = !res.writableFinished;
      });
    };
    await serveA(
      async (_req, res) => {
        const t0 = systemClock.now();
        try {
          await mesh.fetch('http://b/slow');
          json(res, { ok: true });
        } catch (e) {
          const err = e as DeadlineExceededError;
          json(res, {
            deadlineError: err instanceof DeadlineExceededError,
            code: err.code,
            elapsed: systemClock.now() - t0,
          });
        }
      },
      { service: 'a' },
    );
    const answer = await get(open[0]!.port, { 'mesh-deadline-ms': '150' });
    const seen = JSON.parse(answer.text) as Record<string, unknown>;
    expect(seen).toMatchObject({ deadlineError: true, code: 'MESH_DEADLINE_EXCEEDED' });
    expect(seen.elapsed).toBeGreaterThanOrEqual(140);
    expect(seen.elapsed).toBeLessThan(1_500);
    // B got the call, and saw it cancelled rather than left running.
    expect(b.received).toHaveLength(1);
    await expect.poll(() => bClosedEarly).toBe(true);
  });

  it('aborts the incoming signal itself with DeadlineExceededError at the deadline', async () => {
    const reasons: unknown[] = [];
    await serveA(
      (_req, res) => {
        const signal = incomingSignal()!;
        signal.addEventListener('abort', () => {
          reasons.push(signal.reason);
          res.end('gave up');
        });
      },
      { service: 'a' },
    );
    const t0 = systemClock.now();
    const answer = await get(open[0]!.port, { 'mesh-deadline-ms': '100' });
    expect(answer.text).toBe('gave up');
    expect(systemClock.now() - t0).toBeGreaterThanOrEqual(95);
    expect(reasons).toHaveLength(1);
    const reason = reasons[0] as DeadlineExceededError;
    expect(reason).toBeInstanceOf(DeadlineExceededError);
    expect(reason.service).toBe('a');
    expect(reason.budgetMs).toBe(100);
    expect(reason.phase).toBe('headers');
  });

  it('does not abort the signal when the response finishes normally', async () => {
    const signals: AbortSignal[] = [];
    await serveA((_req, res) => {
      signals.push(incomingSignal()!);
      res.end('ok');
    });
    await get(open[0]!.port, { 'mesh-deadline-ms': '50' });
    await sleep(100);
    expect(signals[0]!.aborted).toBe(false);
  });
});

describe('meshHandler: an expired deadline', () => {
  it('is refused with 504 and a short body, without calling the handler', async () => {
    let calls = 0;
    await serveA((_req, res) => {
      calls++;
      res.end('handled');
    });
    const port = open[0]!.port;
    for (const headers of [
      { 'mesh-deadline-ms': '0' } as Record<string, string>,
      { 'grpc-timeout': '0m' },
      { 'grpc-timeout': '300u' },
    ]) {
      const answer = await get(port, headers);
      expect(answer.status).toBe(504);
      expect(answer.text).toMatch(/deadline exceeded/);
      expect(answer.headers['content-type']).toMatch(/^text\/plain/);
    }
    // A POST whose body is never read is refused too, and the server carries on.
    const posted = await get(
      port,
      { 'mesh-deadline-ms': '0' },
      { method: 'POST', body: 'x'.repeat(100_000) },
    );
    expect(posted.status).toBe(504);
    expect(calls).toBe(0);
    expect((await get(port, { 'mesh-deadline-ms': '1000' })).text).toBe('handled');
    expect(calls).toBe(1);
  });

  it('uses the configured status', async () => {
    await serveA((_req, res) => res.end('handled'), { expiredStatus: 503 });
    expect((await get(open[0]!.port, { 'mesh-deadline-ms': '0' })).status).toBe(503);
  });

  it('is not refused when the caller is not trusted: its headers are ignored', async () => {
    await serveA((req, res) => json(res, budget(req)), {
      trust: (req) => req.headers['x-internal'] === 'yes',
      defaultDeadlineMs: 700,
    });
    const port = open[0]!.port;
    const outsider = await get(port, { 'mesh-deadline-ms': '0' });
    expect(outsider.status).toBe(200);
    const seen = JSON.parse(outsider.text) as { remaining: number };
    expect(seen.remaining).toBeLessThanOrEqual(700);
    expect(seen.remaining).toBeGreaterThan(400);
    expect((await get(port, { 'mesh-deadline-ms': '0', 'x-internal': 'yes' })).status).toBe(504);
    const insider = JSON.parse(
      (await get(port, { 'mesh-deadline-ms': '300', 'x-internal': 'yes' })).text,
    ) as {
      remaining: number;
    };
    expect(insider.remaining).toBeLessThanOrEqual(300);
  });

  it('treats a trust predicate that throws as untrusted', async () => {
    await serveA((req, res) => json(res, budget(req)), {
      trust: () => {
        throw new Error('bug');
      },
    });
    const answer = await get(open[0]!.port, { 'mesh-deadline-ms': '0' });
    expect(answer.status).toBe(200);
    expect((JSON.parse(answer.text) as { remaining: null }).remaining).toBeNull();
  });
});

describe('meshHandler: untrusted values', () => {
  it('clamps huge values, ignores malformed ones and applies the default', async () => {
    await serveA((req, res) => json(res, budget(req)), { maxDeadlineMs: 1_000 });
    const port = open[0]!.port;
    const remaining = async (headers: Record<string, string>): Promise<number | null> =>
      (JSON.parse((await get(port, headers)).text) as { remaining: number | null }).remaining;
    const clamped = await remaining({ 'mesh-deadline-ms': '999999999' });
    expect(clamped).toBeLessThanOrEqual(1_000);
    expect(clamped).toBeGreaterThan(800);
    for (const bad of ['9999999999999', '-1', '1.5', 'abc', '1e9', '12, 13']) {
      expect(await remaining({ 'mesh-deadline-ms': bad }), bad).toBeNull();
    }
    expect(await remaining({ 'grpc-timeout': '999H' })).toBeLessThanOrEqual(1_000);
  });

  it('applies defaultDeadlineMs to a missing or malformed value', async () => {
    await serveA((req, res) => json(res, budget(req)), { defaultDeadlineMs: 400 });
    const port = open[0]!.port;
    for (const headers of [{}, { 'mesh-deadline-ms': 'nope' }] as Record<string, string>[]) {
      const r = (JSON.parse((await get(port, headers)).text) as { remaining: number }).remaining;
      expect(r).toBeLessThanOrEqual(400);
      expect(r).toBeGreaterThan(200);
    }
  });

  it("reads gRPC's grpc-timeout, and the smaller header wins", async () => {
    await serveA((req, res) => json(res, budget(req)));
    const port = open[0]!.port;
    const remaining = async (headers: Record<string, string>): Promise<number> =>
      (JSON.parse((await get(port, headers)).text) as { remaining: number }).remaining;
    const two = await remaining({ 'grpc-timeout': '2S' });
    expect(two).toBeLessThanOrEqual(2_000);
    expect(two).toBeGreaterThan(1_500);
    expect(await remaining({ 'grpc-timeout': '2S', 'mesh-deadline-ms': '300' })).toBeLessThanOrEqual(300);
    expect(await remaining({ 'grpc-timeout': '300m', 'mesh-deadline-ms': '2000' })).toBeLessThanOrEqual(300);
  });
});

describe('meshHandler: the client goes away', () => {
  /** A calls slow B through `call`; the test's client hangs up once B has the request. */
  async function hangUpDuringCall(
    call: () => Promise<unknown>,
    bDelayMs: number,
  ): Promise<{ reason: unknown; outgoing: unknown; bClosedEarly: () => boolean }> {
    let bClosedEarly = false;
    let bGot!: () => void;
    const bStarted = new Promise<void>((r) => (bGot = r));
    b.handler = (_req, res) => {
      bGot();
      const t = setTimeout(() => res.end('late'), bDelayMs);
      res.on('close', () => {
        clearTimeout(t);
        bClosedEarly = !res.writableFinished;
      });
    };
    let done!: (v: { reason: unknown; outgoing: unknown }) => void;
    const result = new Promise<{ reason: unknown; outgoing: unknown }>((r) => (done = r));
    await serveA(
      async () => {
        const signal = incomingSignal()!;
        try {
          await call();
          done({ reason: signal.reason, outgoing: 'no error' });
        } catch (e) {
          done({ reason: signal.reason, outgoing: e });
        }
      },
      { service: 'a' },
    );
    const req = httpRequest({
      host: '127.0.0.1',
      port: open[0]!.port,
      path: '/',
      headers: { 'mesh-deadline-ms': '10000' },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    await bStarted;
    req.destroy();
    return { ...(await result), bClosedEarly: () => bClosedEarly };
  }

  it('aborts the incoming signal and the outgoing call in flight (mesh.request)', async () => {
    const { reason, outgoing, bClosedEarly } = await hangUpDuringCall(
      () => mesh.request('http://b/slow').then((r) => r.body.text()),
      5_000,
    );
    expect(reason).toBeInstanceOf(IncomingAbortedError);
    expect((reason as IncomingAbortedError).code).toBe('MESH_INCOMING_ABORTED');
    expect((reason as IncomingAbortedError).service).toBe('a');
    expect(outgoing).toBe(reason);
    await expect.poll(bClosedEarly).toBe(true);
  });

  // fetch hands the dispatcher no signal; the dispatcher links the incoming request's signal itself.
  it('aborts the outgoing call in flight (mesh.fetch)', async () => {
    const { reason, outgoing } = await hangUpDuringCall(
      () => mesh.fetch('http://b/slow').then((r) => r.text()),
      300,
    );
    expect(reason).toBeInstanceOf(IncomingAbortedError);
    expect(outgoing).toBe(reason);
  });
});

describe('meshHandler: resources', () => {
  /** Real, ref'ed timers (systemClock's are unref'ed, which getActiveResourcesInfo does not list), counted. */
  function countingClock(): Clock & { pending: number } {
    const live = new Set<ReturnType<typeof setTimeout>>();
    return {
      now: () => systemClock.now(),
      wallNow: () => systemClock.wallNow(),
      setTimeout(fn, ms) {
        const t = setTimeout(() => {
          live.delete(t);
          fn();
        }, ms);
        live.add(t);
        return t;
      },
      clearTimeout(h) {
        live.delete(h as ReturnType<typeof setTimeout>);
        clearTimeout(h as ReturnType<typeof setTimeout>);
      },
      get pending() {
        return live.size;
      },
    };
  }

  const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it('leaves no timers or listeners behind after many requests on kept-alive connections', async () => {
    const clock = countingClock();
    let n = 0;
    await serveA(
      async (_req, res) => {
        n++;
        if (remainingMs() <= 30) {
          // Requests without a header get the 30 ms default and end after their deadline has fired.
          await new Promise<void>((r) => incomingSignal()!.addEventListener('abort', () => r()));
          res.end('expired');
          return;
        }
        const out = await mesh.fetch('http://b/');
        res.end(await out.text());
      },
      { clock, defaultDeadlineMs: 30 },
    );
    const port = open[0]!.port;
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const baseline = timeouts();
    const round = async (count: number, headers: Record<string, string>): Promise<void> => {
      const answers = await Promise.all(Array.from({ length: count }, () => get(port, headers, { agent })));
      for (const a of answers) expect(a.status).toBe(200);
    };
    await round(20, { 'mesh-deadline-ms': '5000' });
    const listeners = [...open[0]!.sockets].map((s) =>
      s
        .eventNames()
        .map((e) => `${String(e)}:${s.listenerCount(e)}`)
        .join(','),
    );
    for (let i = 0; i < 10; i++) await round(20, i % 2 ? { 'mesh-deadline-ms': '5000' } : {});
    expect(n).toBe(220);
    // The kept-alive server-side sockets carry the same listeners as after the first round.
    const after = [...open[0]!.sockets].map((s) =>
      s
        .eventNames()
        .map((e) => `${String(e)}:${s.listenerCount(e)}`)
        .join(','),
    );
    expect(after.length).toBeGreaterThan(0);
    expect(new Set(after)).toEqual(new Set(listeners));
    await expect.poll(timeouts).toBeLessThanOrEqual(baseline);
    expect(clock.pending).toBe(0);
    agent.destroy();
  });
});
