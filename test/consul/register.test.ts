// Self-registration against a real agent: the service appears in the catalog with a passing TTL check that
// the heartbeat keeps passing, comes back by itself after an agent restart (dev mode forgets everything),
// leaves the catalog on deregister/close, works with an HTTP check too, stops its retries on abort, and
// shutdownGracefully runs in the documented order.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import type { Addr } from '../../src/discovery/types.js';
import { registerService, type RegistrationEvent } from '../../src/discovery/register.js';
import { shutdownGracefully } from '../../src/discovery/register-shutdown.js';
import { startConsul, waitFor, type ConsulAgent } from '../support/consul.js';
import { memoryLogger } from '../support/memory-logger.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

let consul: ConsulAgent;
let health: Server;
let healthUrl: string;

beforeAll(async () => {
  consul = await startConsul();
  health = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => health.listen(0, '127.0.0.1', r));
  healthUrl = `http://127.0.0.1:${(health.address() as AddressInfo).port}/health`;
});
afterAll(async () => {
  health?.closeAllConnections();
  await new Promise((r) => health?.close(r));
  await consul?.stop();
});

const catalogIds = async (name: string): Promise<string[]> =>
  (await consul.api<{ ServiceID: string }[]>('GET', `/v1/catalog/service/${name}`)).map((s) => s.ServiceID);

describe('registerService', () => {
  it('registers with a TTL check kept passing, survives an agent restart, and leaves on close', async () => {
    const log = memoryLogger();
    const events: RegistrationEvent[] = [];
    const reg = await registerService({
      name: 'billing',
      id: 'billing-1',
      address: '127.0.0.1',
      port: 9960,
      tags: ['v3'],
      meta: { version: '3.1' },
      check: { ttlMs: 1_000 },
      agent: consul.httpAddr,
      retry: { minTimeoutMs: 50, maxTimeoutMs: 200 },
      logger: log.logger,
    });
    reg.subscribe((e) => events.push(e));
    const states: Addr[] = [];
    const r = resolveOn(consul, 'billing');
    r.subscribe((a) => states.push(a));
    try {
      expect(reg.state).toBe('registered');
      expect(reg.registrations).toBe(1);
      const bound = await waitForAddr(r, boundTo(9960), 'registered instance visible and passing');
      expect(bound).toMatchObject({ endpoints: [{ tags: ['v3'], meta: { version: '3.1' } }] });

      // Twice the TTL later the check still passes: the heartbeat (every ttl/3) kept it.
      const t0 = performance.now();
      await waitFor(() => performance.now() - t0 > 2_100, 'two TTL periods');
      const checks = await consul.api<Record<string, { Status: string }>>('GET', '/v1/agent/checks');
      expect(checks['service:billing-1']?.Status).toBe('passing');
      expect(states.every((a) => a.state === 'bound' && a.endpoints.length === 1)).toBe(true);

      // The agent restarts with no memory of us: the next heartbeat notices and registers again.
      await consul.restart();
      await waitFor(() => reg.registrations === 2, 're-registration after the agent restart', 5_000);
      expect(events.map((e) => e.type)).toContain('lost');
      expect(events.map((e) => e.type)).toContain('reregistered');
      expect(await catalogIds('billing')).toEqual(['billing-1']);
      await waitForAddr(r, boundTo(9960), 'visible again through discovery', 5_000);

      await reg.close();
      expect(reg.state).toBe('deregistered');
      expect(await catalogIds('billing')).toEqual([]);
      await waitForAddr(r, (a) => a.state === 'negative', 'gone from discovery');
      expect(log.lines.some((l) => l.msg === 'consul lost the registration; registering again')).toBe(true);
    } finally {
      await r.close();
      await reg.close();
    }
  });

  it('registers with an HTTP check that Consul runs, and re-registers after a restart', async () => {
    const reg = await registerService({
      name: 'search',
      address: '127.0.0.1',
      port: 9961,
      check: { http: healthUrl, intervalMs: 200, timeoutMs: 1_000 },
      syncIntervalMs: 100,
      agent: consul.httpAddr,
      retry: { minTimeoutMs: 50, maxTimeoutMs: 200 },
    });
    const r = resolveOn(consul, 'search');
    try {
      expect(reg.id).toMatch(/^search-.+-9961$/);
      await waitForAddr(r, boundTo(9961), 'HTTP check passing', 5_000);
      await consul.restart();
      await waitFor(() => reg.registrations === 2, 're-registration', 5_000);
      await waitForAddr(r, boundTo(9961), 'back after the restart', 5_000);
      await reg.deregister();
      expect(await catalogIds('search')).toEqual([]);
    } finally {
      await r.close();
      await reg.close();
    }
  });

  it('stops retrying when aborted while the agent is down', async () => {
    await consul.kill();
    const controller = new AbortController();
    const t0 = performance.now();
    const pending = registerService({
      name: 'down',
      port: 9962,
      agent: consul.httpAddr,
      retry: { retries: 1_000, minTimeoutMs: 100, maxTimeoutMs: 100 },
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error('shutting down')), 300);
    await expect(pending).rejects.toThrow(/shutting down|closed/);
    expect(performance.now() - t0).toBeLessThan(1_500);
    await consul.restart();
  });

  it('shutdownGracefully deregisters first, waits, then closes in order', async () => {
    const order: string[] = [];
    const reg = await registerService({
      name: 'shut',
      port: 9963,
      address: '127.0.0.1',
      agent: consul.httpAddr,
    });
    reg.subscribe((e) => order.push(e.type));
    expect(await catalogIds('shut')).toHaveLength(1);
    await shutdownGracefully({
      registration: reg,
      propagationDelayMs: 50,
      close: [
        {
          close: async () => {
            order.push('server');
            expect(await catalogIds('shut')).toEqual([]); // already out of the catalog
          },
        },
        { close: async () => void order.push('mesh') },
      ],
    });
    expect(order).toEqual(['deregistered', 'server', 'mesh']);
  });

  it('rejects bad options with a ConfigError', async () => {
    await expect(registerService({ name: 'bad name', port: 1 })).rejects.toThrow(ConfigError);
    await expect(registerService({ name: 'x', port: 70_000 })).rejects.toThrow(/registerService\.port/);
    await expect(
      registerService({ name: 'x', port: 1, check: { ttlMs: 1_000, heartbeatMs: 2_000 } }),
    ).rejects.toThrow(/check\.heartbeatMs/);
  });
});
