// Two datacenters (two dev agents joined over the WAN by the harness): discovery through the local agent
// reads another datacenter with the `datacenter` option, and a datacenter Consul does not know is a clear
// error, not a hang. This also checks the harness's `joinWan`, which the routing/failover tests build on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerInstance, startConsul, waitFor, type ConsulAgent } from '../support/consul.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

let dc1: ConsulAgent;
let dc2: ConsulAgent;

beforeAll(async () => {
  dc1 = await startConsul({ datacenter: 'dc1' });
  dc2 = await startConsul({ datacenter: 'dc2', joinWan: dc1.serfWanAddr });
  await waitFor(
    async () => (await dc1.api<string[]>('GET', '/v1/catalog/datacenters')).includes('dc2'),
    'dc1 sees dc2 over the WAN',
    15_000,
  );
});
afterAll(async () => {
  await Promise.all([dc1?.stop(), dc2?.stop()]);
});

describe('datacenters', () => {
  it('resolves a service in another datacenter through the local agent', async () => {
    await registerInstance(dc1, { name: 'geo', id: 'geo-1', address: '127.0.0.1', port: 9091 });
    await registerInstance(dc2, { name: 'geo', id: 'geo-2', address: '127.0.0.1', port: 9092 });
    const local = resolveOn(dc1, 'geo');
    const remote = resolveOn(dc1, 'geo', { datacenter: 'dc2' });
    try {
      await waitForAddr(local, boundTo(9091), 'local datacenter');
      await waitForAddr(remote, boundTo(9092), 'dc2 through the dc1 agent');
      // The remote watch is live: a change in dc2 arrives through dc1.
      await registerInstance(dc2, { name: 'geo', id: 'geo-3', address: '127.0.0.1', port: 9093 });
      await waitForAddr(remote, boundTo(9092, 9093), 'dc2 change seen', 5_000);
    } finally {
      await Promise.all([local.close(), remote.close()]);
    }
  });

  it('an unknown datacenter is a clear failure', async () => {
    const r = resolveOn(dc1, 'geo', { datacenter: 'mars' });
    try {
      const failed = await waitForAddr(r, (a) => a.state === 'failed', 'failed');
      if (failed.state !== 'failed') throw new Error('unreachable');
      expect(failed.error.message).toMatch(/HTTP 500.*(No path to datacenter|datacenter)/i);
    } finally {
      await r.close();
    }
  });
});
