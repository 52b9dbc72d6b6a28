// Retries against real servers whose failures the test controls.
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConfigError } from 'meshfetch';
import { callOptions, createMesh, TransportError, type Mesh, type ServiceConfig } from 'meshfetch';
import { RetryAfterExceedsDeadlineError } from '../../src/resilience/retry.js';
import { closedPort, startServer, type TestHandler, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
async function server(handler?: TestHandler, opts?: Parameters<typeof startServer>[1]): Promise<TestServer> {
  const s = await startServer(handler, opts);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Answers 503 (with extra headers) for the first `n` requests, then 200 echoing the body. */
function failFirst(n: number, headers: Record<string, string> = {}): TestHandler {
  let seen = 0;
  return (_req, res, body) => {
    if (seen++ < n) {
      res.writeHead(503, headers);
      res.end('unavailable');
      return;
    }
    res.end(body);
  };
}

function meshFor(config: ServiceConfig): Mesh {
  mesh = createMesh({ services: { svc: config } });
  return mesh;
}

describe('Retry-After', () => {
  it('honours 503 Retry-After in seconds', async () => {
    const s = await server(failFirst(1, { 'retry-after': '1' }));
    const m = meshFor({ endpoints: [s.address] });
    const t0 = performance.now();
    const res = await m.request('http://svc/');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(950);
    expect(s.received).toHaveLength(2);
  });

  it('honours 429 Retry-After as an HTTP date', async () => {
    let n = 0;
    const s = await server((_req, res) => {
      if (n++ === 0) {
        res.writeHead(429, { 'retry-after': new Date(Date.now() + 1_200).toUTCString() });
        res.end();
      } else res.end('ok');
    });
    const m = meshFor({ endpoints: [s.address] });
    const t0 = performance.now();
    const res = await m.request('http://svc/');
    expect(await res.body.text()).toBe('ok');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150); // the date has one-second resolution
    expect(s.received).toHaveLength(2);
  });

  it('fails at once with a typed error when Retry-After is longer than the time left', async () => {
    const s = await server(failFirst(5, { 'retry-after': '30' }));
    const m = meshFor({ endpoints: [s.address] });
    const t0 = performance.now();
    const err = await m
      .request('http://svc/', { headers: callOptions({ deadlineMs: 2_000 }) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryAfterExceedsDeadlineError);
    expect(err).toMatchObject({
      code: 'MESH_RETRY_AFTER_EXCEEDS_DEADLINE',
      statusCode: 503,
      retryAfterMs: 30_000,
      service: 'svc',
    });
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(s.received).toHaveLength(1);
  });

  it('returns the response when Retry-After is above the cap', async () => {
    const s = await server(failFirst(5, { 'retry-after': '5' }));
    const m = meshFor({ endpoints: [s.address], retries: { retryAfterMaxMs: 1_000 } });
    const res = await m.request('http://svc/');
    expect(res.statusCode).toBe(503);
    expect(await res.body.text()).toBe('unavailable');
    expect(s.received).toHaveLength(1);
  });
});

describe('what is retried', () => {
  it('a refused connection is retried elsewhere, even for POST', async () => {
    const good = await server();
    const dead = `127.0.0.1:${await closedPort()}`;
    const m = meshFor({ endpoints: [dead, good.address], balancer: 'round-robin' });
    for (let i = 0; i < 4; i++) {
      const res = await m.request('http://svc/', { method: 'POST', body: `payload-${i}` });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as { body: string }).body).toBe(`payload-${i}`);
    }
    expect(good.received).toHaveLength(4);
  });

  it('a reset before the response is retried for GET, not for POST', async () => {
    let resets = 0;
    const flaky = await server((req) => {
      resets++;
      req.socket.destroy();
    });
    const good = await server();
    const m = meshFor({ endpoints: [flaky.address], retries: { backoff: { baseMs: 1, maxMs: 1 } } });
    await expect(m.request('http://svc/get')).rejects.toMatchObject({ code: 'MESH_TRANSPORT', attempts: 3 });
    expect(resets).toBe(3);
    await expect(m.request('http://svc/post', { method: 'POST', body: 'x' })).rejects.toMatchObject({
      code: 'MESH_TRANSPORT',
      phase: 'headers',
      attempts: 1,
    });
    expect(resets).toBe(4);
    // With a healthy endpoint beside it, every GET succeeds.
    const both = createMesh({ services: { svc: { endpoints: [flaky.address, good.address] } } });
    for (let i = 0; i < 5; i++) {
      const r = await both.request('http://svc/get');
      expect(r.statusCode).toBe(200);
      await r.body.dump();
    }
    await both.close();
  });

  it('the idle-close race is retried once on a fresh connection for a GET, and not for a POST (it may have been read)', async () => {
    // The server closes a kept-alive socket when the second request arrives on it, before answering:
    // what a client sees when the server's idle timeout fires just as the request is sent.
    const served = new WeakMap<object, number>();
    const s = await server((req, res, body) => {
      const n = served.get(req.socket) ?? 0;
      served.set(req.socket, n + 1);
      if (n >= 1) {
        req.socket.destroy();
        return;
      }
      res.end(body);
    });
    const m = meshFor({ endpoints: [s.address], transport: { connections: 1 } });
    expect(await (await m.request('http://svc/warm')).body.text()).toBe('');
    const post = await m
      .request('http://svc/post', { method: 'POST', body: 'once' })
      .catch((e: unknown) => e);
    expect(post).toBeInstanceOf(TransportError);
    expect((post as TransportError).retryable).toBe(false);
    expect(s.received.filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(await (await m.request('http://svc/warm2')).body.text()).toBe('');
    const get = await m.request('http://svc/get');
    expect(get.statusCode).toBe(200);
    await get.body.dump();
  });

  it('a POST is not replayed after it was sent, and a 503 answer is returned as is', async () => {
    const s = await server(failFirst(1));
    const m = meshFor({ endpoints: [s.address] });
    const res = await m.request('http://svc/', { method: 'POST', body: 'x' });
    expect(res.statusCode).toBe(503);
    expect(await res.body.text()).toBe('unavailable');
    expect(s.received).toHaveLength(1);
  });

  it('a POST marked idempotent is retried', async () => {
    const s = await server(failFirst(1));
    const m = meshFor({ endpoints: [s.address] });
    const res = await m.request('http://svc/', {
      method: 'POST',
      body: 'x',
      headers: callOptions({ idempotent: true }),
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('x');
    expect(s.received).toHaveLength(2);
  });

  it('a GET marked not idempotent is not retried', async () => {
    const s = await server(failFirst(1));
    const m = meshFor({ endpoints: [s.address] });
    const res = await m.request('http://svc/', { headers: callOptions({ idempotent: false }) });
    expect(res.statusCode).toBe(503);
    await res.body.dump();
  });

  it('a streamed body over the replay limit is sent once', async () => {
    const s = await server(failFirst(1));
    const m = meshFor({ endpoints: [s.address], retries: { maxReplayBytes: 16 } });
    const chunks = Array.from({ length: 10 }, (_, i) => Buffer.from(`chunk-${i}-xxxxx;`));
    const res = await m.request('http://svc/', { method: 'PUT', body: Readable.from(chunks) });
    expect(res.statusCode).toBe(503);
    await res.body.dump();
    expect(s.received).toHaveLength(1);
    expect(s.received[0]!.body.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('an attempt that hits the per-attempt timeout is retried when retryTimeouts is on', async () => {
    let n = 0;
    const s1 = await server((_req, res) => {
      if (n++ === 0) return; // the first attempt never gets an answer
      res.end('second');
    });
    const m = meshFor({ endpoints: [s1.address], attemptTimeoutMs: 100, retries: { retryTimeouts: true } });
    const t0 = performance.now();
    const res = await m.request('http://svc/');
    expect(await res.body.text()).toBe('second');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(s1.received).toHaveLength(2);
  });

  it('timeouts are not retried by default', async () => {
    const slow = await server(() => {});
    const m = meshFor({ endpoints: [slow.address], attemptTimeoutMs: 100 });
    await expect(m.request('http://svc/')).rejects.toMatchObject({
      code: 'MESH_ATTEMPT_TIMEOUT',
      attempts: 1,
    });
    expect(slow.received).toHaveLength(1);
  });
});

describe('replayed bodies are byte-identical on every entry point', () => {
  const payload = Buffer.from(
    Array.from({ length: 3000 }, (_, i) => String.fromCharCode(32 + (i % 90))).join(''),
  );
  const entry = {
    'mesh.request (string)': (m: Mesh) =>
      m.request('http://svc/', { method: 'PUT', body: payload.toString() }).then((r) => r.body.text()),
    'mesh.request (stream)': (m: Mesh) =>
      m
        .request('http://svc/', {
          method: 'PUT',
          body: Readable.from([payload.subarray(0, 1000), payload.subarray(1000)]),
        })
        .then((r) => r.body.text()),
    'mesh.fetch': (m: Mesh) =>
      m.fetch('http://svc/', { method: 'PUT', body: payload.toString() }).then((r) => r.text()),
    'fetch + dispatcher': (m: Mesh) =>
      fetch('http://svc/', { method: 'PUT', body: payload.toString(), dispatcher: m.dispatcher }).then((r) =>
        r.text(),
      ),
  };
  it.each(Object.entries(entry))('%s', async (_name, send) => {
    const s = await server(failFirst(2));
    const m = meshFor({ endpoints: [s.address], retries: { backoff: { baseMs: 1, maxMs: 5 } } });
    expect(await send(m)).toBe(payload.toString());
    expect(s.received).toHaveLength(3);
    for (const r of s.received) expect(r.body.equals(payload)).toBe(true);
  });
});

describe('the retry budget', () => {
  it('under 100% failures, 1,000 calls make at most 1.2 x 1,000 + the reserve attempts', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    // The breaker and accrual would stop traffic to a destination failing this much; this measures the budget alone.
    const m = meshFor({
      endpoints: [s.address],
      retries: { maxAttempts: 5, backoff: { baseMs: 0, maxMs: 0 } },
      circuitBreaker: false,
      failureAccrual: false,
    });
    let next = 0;
    async function worker() {
      while (next < 1_000) {
        next++;
        const r = await m.request('http://svc/');
        expect(r.statusCode).toBe(503);
        await r.body.dump();
      }
    }
    await Promise.all(Array.from({ length: 20 }, worker));
    const reserve = 10 * 10; // 10 retries/s over the 10 s window
    expect(s.received.length).toBeGreaterThan(1_000); // some retries happened
    expect(s.received.length).toBeLessThanOrEqual(1.2 * 1_000 + reserve);
  });
});

describe('retry config', () => {
  it.each([
    [{ maxAttempts: 0 }, 'services.svc.retries.maxAttempts'],
    [{ maxAttempts: 2.5 }, 'services.svc.retries.maxAttempts'],
    [{ budget: { percentCanRetry: -1 } }, 'services.svc.retries.budget.percentCanRetry'],
    [{ backoff: { baseMs: 'x' } }, 'services.svc.retries.backoff.baseMs'],
    [{ retrys: 1 }, 'services.svc.retries.retrys'],
    ['yes', 'services.svc.retries'],
  ])('%j is a ConfigError at %s', (retries, path) => {
    expect(() =>
      createMesh({ services: { svc: { endpoints: ['127.0.0.1:1'], retries: retries as never } } }),
    ).toThrow(expect.objectContaining({ path }) as ConfigError);
  });

  it('attemptTimeoutMs and classifier are validated', () => {
    expect(() =>
      createMesh({ services: { svc: { endpoints: ['127.0.0.1:1'], attemptTimeoutMs: -1 } } }),
    ).toThrow(/attemptTimeoutMs/);
    expect(() =>
      createMesh({ services: { svc: { endpoints: ['127.0.0.1:1'], classifier: 1 as never } } }),
    ).toThrow(/classifier/);
  });
});
