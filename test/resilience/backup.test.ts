// Backup requests against real HTTP servers on loopback: one endpoint turns slow, and the backup (sent after
// the service's latency percentile, to the other endpoint) cuts the tail; the loser is cancelled on the wire;
// bodies are intact and byte-identical; POSTs get none; the shared retry budget bounds them; no listener is
// left on a long-lived caller signal.
import { getEventListeners } from 'node:events';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { callOptions, createMesh, type Mesh, type ServiceConfig } from 'meshfetch';
import { startServer, type TestHandler, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

const servers: TestServer[] = [];
const meshes: Mesh[] = [];
afterEach(async () => {
  await Promise.all(meshes.splice(0).map((m) => m.close({ gracePeriodMs: 0 })));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(handler: TestHandler): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}

function meshFor(config: ServiceConfig): Mesh {
  // Round robin, so that the calls of a test alternate between the endpoints whatever their latency.
  const m = createMesh({ services: { svc: { balancer: 'round-robin', ...config } } });
  meshes.push(m);
  return m;
}

/**
 * A server that answers at once, or after `delayMs()` when that is above 0. It counts requests it never
 * finished answering because the client went away (the cancelled loser of a race).
 */
function controlled(delayMs: (method: string, url: string) => number, body: Buffer | string = 'ok') {
  const state = { cancelled: 0, onCancel: (): void => {} };
  const handler: TestHandler = (req, res: ServerResponse) => {
    const ms = delayMs(req.method!, req.url!);
    if (ms <= 0) {
      res.end(body);
      return;
    }
    const t = setTimeout(() => res.end(body), ms);
    res.on('close', () => {
      clearTimeout(t);
      if (!res.writableFinished) {
        state.cancelled++;
        state.onCancel();
      }
    });
  };
  return { state, handler };
}

/** `n` quick calls, so the service's latency window holds enough samples to send backups. */
async function warm(m: Mesh, n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await (await m.request('http://svc/warm')).body.dump();
}

async function timed(m: Mesh, url = 'http://svc/'): Promise<{ ms: number; text: string }> {
  const t0 = performance.now();
  const res = await m.request(url);
  const text = await res.body.text();
  return { ms: performance.now() - t0, text };
}

describe('backup requests', () => {
  it('a backup request cuts the tail when one endpoint is slow', async () => {
    const SLOW_MS = 1_000;
    let slow = false;
    const fast = await server(controlled(() => 0, 'fast').handler);
    const lagging = controlled((_m, url) => (slow && url !== '/warm' ? SLOW_MS : 0), 'slow');
    const laggard = await server(lagging.handler);
    const endpoints = [fast.address, laggard.address];

    const withBackups = meshFor({ endpoints, backupRequests: { percentile: 0.95 } });
    const without = createMesh({ services: { svc: { balancer: 'round-robin', endpoints } } });
    meshes.push(without);
    await warm(withBackups);
    await warm(without);
    // Races during the warm-up (both endpoints quick) count too; what follows counts from here.
    const before = withBackups.snapshot().services[0]!.backupRequests!;
    slow = true;

    const cut: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await timed(withBackups);
      expect(r.text).toBe('fast');
      cut.push(r.ms);
    }
    // Half of the calls went first to the slow endpoint; a backup to the fast one answered for each.
    expect(Math.max(...cut)).toBeLessThan(SLOW_MS / 2);
    const snap = withBackups.snapshot().services[0]!.backupRequests!;
    expect(snap.sent - before.sent).toBeGreaterThanOrEqual(4);
    expect(snap.won - before.won).toBeGreaterThanOrEqual(4);
    expect(snap.delayMs).toBeGreaterThan(0);
    expect(snap.delayMs).toBeLessThan(SLOW_MS / 2);
    // Each race had one leg on the slow endpoint, and that leg was cancelled on the wire.
    await until(() => lagging.state.cancelled === snap.sent - before.sent);

    const plain: number[] = [];
    for (let i = 0; i < 2; i++) plain.push((await timed(without)).ms);
    expect(Math.max(...plain)).toBeGreaterThanOrEqual(SLOW_MS * 0.9);
  });

  it('cancels the loser (the slow server sees the connection close) and returns the winner body intact', async () => {
    const payload = Buffer.alloc(256 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
    let slow = false;
    const fast = await server(controlled(() => 0, payload).handler);
    const lagging = controlled((_m, url) => (slow && url !== '/warm' ? 5_000 : 0), payload);
    const cancelled = new Promise<void>((r) => (lagging.state.onCancel = r));
    const laggard = await server(lagging.handler);
    const m = meshFor({ endpoints: [fast.address, laggard.address], backupRequests: true });
    await warm(m);
    const sent0 = m.snapshot().services[0]!.backupRequests!.sent;
    slow = true;
    for (let i = 0; i < 3; i++) {
      const res = await m.request('http://svc/big');
      expect(res.statusCode).toBe(200);
      expect(Buffer.from(await res.body.arrayBuffer()).equals(payload)).toBe(true);
    }
    await cancelled; // the server side saw the losing request go away before it answered
    expect(lagging.state.cancelled).toBeGreaterThanOrEqual(1);
    const snap = m.snapshot().services[0]!;
    // Every request the slow endpoint got was a race's losing leg, and each was cancelled (a leg cancelled
    // before it reached the server is not seen there at all, so count what the server saw).
    expect(snap.backupRequests!.sent - sent0).toBeGreaterThanOrEqual(1);
    await until(() => lagging.state.cancelled === laggard.received.filter((r) => r.url === '/big').length);
    // The slow endpoint's loss is not held against it (a superseded attempt is an abort, not a failure).
    expect(snap.endpoints.find((e) => e.address === laggard.address)!.accrual!.consecutiveFailures).toBe(0);
  });

  it('sends no backup for a non-idempotent POST, and one for a POST marked idempotent', async () => {
    let slow = false;
    const a = await server(controlled((method) => (slow && method === 'POST' ? 300 : 0)).handler);
    const b = await server(controlled((method) => (slow && method === 'POST' ? 300 : 0)).handler);
    const m = meshFor({ endpoints: [a.address, b.address], backupRequests: { percentile: 0.95 } });
    await warm(m);
    const sent0 = m.snapshot().services[0]!.backupRequests!.sent;
    slow = true;
    const posts = (): number => [...a.received, ...b.received].filter((r) => r.method === 'POST').length;

    const res = await m.request('http://svc/orders', { method: 'POST', body: 'one order' });
    await res.body.dump();
    expect(posts()).toBe(1);
    expect(m.snapshot().services[0]!.backupRequests!.sent).toBe(sent0);

    const marked = await m.request('http://svc/orders', {
      method: 'POST',
      body: 'safe to repeat',
      headers: callOptions({ idempotent: true }),
    });
    await marked.body.dump();
    expect(posts()).toBe(3);
    expect(m.snapshot().services[0]!.backupRequests!.sent).toBe(sent0 + 1);
  });

  it("sends the backup a body byte-identical to the original's, on every entry point", async () => {
    let slow = false;
    const delay = (method: string): number => (slow && method === 'PUT' ? 300 : 0);
    const a = await server(controlled(delay).handler);
    const b = await server(controlled(delay).handler);
    // minDelayMs leaves a streamed body time to be sent in full before the backup is due; enough quick samples
    // that the slow PUTs below stay above the percentile.
    const m = meshFor({
      endpoints: [a.address, b.address],
      backupRequests: { percentile: 0.9, minDelayMs: 50 },
    });
    await warm(m, 60);
    const sent0 = m.snapshot().services[0]!.backupRequests!.sent; // none: no quick call lasts 50 ms
    slow = true;
    const binary = Buffer.from([0, 1, 2, 3, 254, 255, 0x0d, 0x0a, ...Buffer.from('é ü 漢字')]);
    const chunks = [Buffer.from('first-'), Buffer.from([0, 0xff, 0x80]), Buffer.from('-last')];
    const sends: Array<[string, () => Promise<unknown>, Buffer]> = [
      [
        'buffer',
        async () => (await m.request('http://svc/b1', { method: 'PUT', body: binary })).body.dump(),
        binary,
      ],
      [
        'stream',
        async () =>
          (await m.request('http://svc/b2', { method: 'PUT', body: Readable.from(chunks) })).body.dump(),
        Buffer.concat(chunks),
      ],
      [
        'dispatcher',
        async () =>
          (
            await fetch('http://svc/b3', { method: 'PUT', body: 'via fetch ✓', dispatcher: m.dispatcher })
          ).arrayBuffer(),
        Buffer.from('via fetch ✓'),
      ],
    ];
    for (const [name, send, expected] of sends) {
      await send();
      const url = `/b${sends.findIndex((s) => s[0] === name) + 1}`;
      const got = [...a.received, ...b.received].filter((r) => r.url === url);
      expect(got, name).toHaveLength(2);
      expect(got[0]!.body.equals(expected), name).toBe(true);
      expect(got[1]!.body.equals(expected), name).toBe(true);
      // One to each endpoint, each with its own headers.
      expect(a.received.filter((r) => r.url === url)).toHaveLength(1);
      expect(got[0]!.headers.host).toBe('svc');
      expect(got[1]!.headers.host).toBe('svc');
    }
    expect(m.snapshot().services[0]!.backupRequests!.sent).toBe(sent0 + 3);
  });

  it('stops sending backups when the retry budget (shared with retries) is empty', async () => {
    let slow = false;
    const make = (delayed: boolean): TestHandler => {
      const inner = controlled((_m, url) => (slow && delayed && url !== '/warm' ? 1_000 : 0)).handler;
      return (req, res, body) =>
        req.url === '/fail' ? void res.writeHead(503).end('unavailable') : inner(req, res, body);
    };
    const a = await server(make(false));
    const b = await server(make(true));
    // A budget of exactly one retry (0.1/s over 10 s) and nothing from traffic.
    const m = meshFor({
      endpoints: [a.address, b.address],
      // No backup for a quick call spends the one token, even when a loaded machine slows the warm-up calls.
      backupRequests: { percentile: 0.95, minDelayMs: 400 },
      retries: { budget: { ttlMs: 10_000, minRetriesPerSec: 0.1, percentCanRetry: 0 } },
    });
    await warm(m);
    expect(m.snapshot().services[0]!.retryBudget).toBe(1);
    slow = true;
    const times: number[] = [];
    for (let i = 0; i < 6; i++) times.push((await timed(m)).ms);
    const snap = m.snapshot().services[0]!;
    expect(snap.backupRequests!.sent).toBe(1);
    expect(snap.backupRequests!.budgetExhausted).toBeGreaterThanOrEqual(1);
    expect(snap.retryBudget).toBe(0);
    // The calls to the slow endpoint after the budget ran out waited for it (so may a call made once the slow
    // answers have raised the service's percentile past the delay, when no backup is wanted at all).
    expect(times.filter((t) => t >= 900).length).toBeGreaterThanOrEqual(snap.backupRequests!.budgetExhausted);
    // One budget: the backup spent the retry the 503 would have needed.
    const res = await m.request('http://svc/fail');
    expect(res.statusCode).toBe(503);
    await res.body.dump();
    expect([...a.received, ...b.received].filter((r) => r.url === '/fail')).toHaveLength(1);
  });

  it('leaves no listener on a long-lived caller signal after many calls with backups', async () => {
    let slow = false;
    const a = await server(controlled(() => 0).handler);
    const b = await server(controlled((_m, url) => (slow && url !== '/warm' ? 200 : 0)).handler);
    const noDeadline = meshFor({
      endpoints: [a.address, b.address],
      timeoutMs: Infinity, // the caller's signal is then the one every attempt's signal links to
      backupRequests: { percentile: 0.95 },
    });
    await warm(noDeadline);
    slow = true;
    const signal = new AbortController().signal;
    for (let i = 0; i < 30; i++) await (await noDeadline.request('http://svc/', { signal })).body.text();
    expect(noDeadline.snapshot().services[0]!.backupRequests!.sent).toBeGreaterThanOrEqual(10);
    await until(() => getEventListeners(signal, 'abort').length === 0);

    // With a deadline the attempts link to the deadline's signal, which links the caller's once.
    const withDeadline = meshFor({ endpoints: [a.address, b.address], backupRequests: { percentile: 0.95 } });
    slow = false;
    await warm(withDeadline);
    slow = true;
    const other = new AbortController().signal;
    for (let i = 0; i < 30; i++)
      await (await withDeadline.request('http://svc/', { signal: other })).body.text();
    expect(withDeadline.snapshot().services[0]!.backupRequests!.sent).toBeGreaterThanOrEqual(10);
    await until(() => getEventListeners(other, 'abort').length === 0);
  });
});
