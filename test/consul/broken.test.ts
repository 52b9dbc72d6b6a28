// Broken answers are survived. A tiny fault-injection proxy sits between the resolver and a REAL agent: it
// forwards by default and, on demand, answers 500, malformed JSON, a body that is not an array, or forwards
// with the blocking parameters stripped (an agent that answers at once every time). The resolver must keep
// its last good set (stale), recover when answers are good again, and never spin.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulRequestError } from '../../src/discovery/consul.js';
import { registerInstance, startConsul, waitFor, type ConsulAgent } from '../support/consul.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

type Mode = 'forward' | '500' | 'malformed-json' | 'not-array' | 'empty-200' | 'no-blocking';

let consul: ConsulAgent;
let proxy: Server;
let proxyAddr: string;
let mode: Mode = 'forward';
let healthRequests = 0;

function forward(req: IncomingMessage, res: ServerResponse, path: string): void {
  const up = request(
    { host: consul.host, port: consul.port, method: req.method, path, headers: req.headers, agent: false },
    (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    },
  );
  up.on('error', () => res.destroy());
  res.on('close', () => up.destroy());
  req.pipe(up);
}

beforeAll(async () => {
  consul = await startConsul();
  proxy = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/v1/health/service/')) healthRequests++;
    const broken = url.startsWith('/v1/health/service/') ? mode : 'forward';
    const json = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-consul-index': '5' });
      res.end(body);
    };
    switch (broken) {
      case '500':
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('rpc error: No cluster leader');
        return;
      case 'malformed-json':
        return json(200, '[{"Node": {"Node": "n1"');
      case 'not-array':
        return json(200, '{"Service": {"ID": "x"}}');
      case 'empty-200':
        res.writeHead(200, { 'x-consul-index': '5' });
        res.end();
        return;
      case 'no-blocking': {
        const u = new URL(url, 'http://proxy');
        u.searchParams.delete('index');
        u.searchParams.delete('wait');
        return forward(req, res, `${u.pathname}${u.search}`);
      }
      default:
        return forward(req, res, url);
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyAddr = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  await registerInstance(consul, { name: 'catalog', id: 'cat-1', address: '127.0.0.1', port: 9011 });
  await registerInstance(consul, { name: 'catalog', id: 'cat-2', address: '127.0.0.1', port: 9012 });
});
afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await consul?.stop();
});

describe('broken Consul answers', () => {
  it('is failed on a broken first answer, then binds once answers are good', async () => {
    mode = '500';
    const r = resolveOn(consul, 'catalog', { address: proxyAddr });
    try {
      const failed = await waitForAddr(r, (a) => a.state === 'failed', 'failed');
      if (failed.state !== 'failed') throw new Error('unreachable');
      expect(failed.error).toBeInstanceOf(ConsulRequestError);
      expect(failed.error.message).toContain('HTTP 500 rpc error: No cluster leader');
      mode = 'forward';
      await waitForAddr(r, boundTo(9011, 9012), 'bound');
    } finally {
      mode = 'forward';
      await r.close();
    }
  });

  it.each([
    ['500', /HTTP 500/],
    ['malformed-json', /malformed answer/],
    ['not-array', /expected a JSON array, got an object/],
    ['empty-200', /expected a JSON array, got an empty body/],
  ] as const)('survives %s: keeps the last set (stale), then recovers', async (broken, message) => {
    mode = 'forward';
    // A short wait so the blocking query in flight ends soon after the fault is switched on.
    const r = resolveOn(consul, 'catalog', { address: proxyAddr, waitMs: 100 });
    try {
      const fresh = await waitForAddr(r, boundTo(9011, 9012), 'bound');
      if (fresh.state !== 'bound') throw new Error('unreachable');
      mode = broken;
      const stale = await waitForAddr(r, (a) => a.state === 'bound' && a.stale, 'stale');
      if (stale.state !== 'bound') throw new Error('unreachable');
      expect(stale.endpoints).toBe(fresh.endpoints);
      expect(r.lastError?.message).toMatch(message);
      mode = 'forward';
      const again = await waitForAddr(r, (a) => a.state === 'bound' && !a.stale, 'fresh again');
      if (again.state !== 'bound') throw new Error('unreachable');
      expect(again.endpoints).toBe(fresh.endpoints); // same set: the same array and Endpoint objects
      expect(r.lastError).toBeUndefined();
    } finally {
      mode = 'forward';
      await r.close();
    }
  });

  it('never spins: an agent that answers at once every time is held to the rate limit', async () => {
    mode = 'no-blocking';
    const r = resolveOn(consul, 'catalog', { address: proxyAddr, minIntervalMs: 100, burst: 3 });
    try {
      await waitForAddr(r, boundTo(9011, 9012), 'bound');
      const before = healthRequests;
      const t0 = performance.now();
      await waitFor(() => performance.now() - t0 >= 1_000, 'one second');
      const sent = healthRequests - before;
      // At most the burst plus one per 100 ms.
      expect(sent).toBeLessThanOrEqual(3 + 11);
      expect(sent).toBeGreaterThanOrEqual(5);
      expect(r.addr).toMatchObject({ state: 'bound', stale: false });
    } finally {
      mode = 'forward';
      await r.close();
    }
  });
});
