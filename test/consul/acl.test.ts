// An agent with ACLs on (default deny, a management token): a wrong token is a clear error that mentions
// ACLs; the right token works; no token at all is told that ACLs are on and a token with service:read is
// needed; a token that cannot read the service sees it as absent (negative), with an ACL hint; and the token
// never appears in an error message, a log line, a snapshot or JSON.
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { systemRng } from '../../src/core/rng.js';
import { ConsulRequestError, consulDiscovery } from '../../src/discovery/consul.js';
import { createMesh } from '../../src/client/mesh.js';
import { DiscoveryError, ServiceNotFoundError } from '../../src/core/errors.js';
import { registerService } from '../../src/discovery/register.js';
import { registerInstance, startConsul, type ConsulAgent } from '../support/consul.js';
import { memoryLogger } from '../support/memory-logger.js';
import { boundTo, resolveOn, waitForAddr } from './helpers.js';

let consul: ConsulAgent;
let token: string;

beforeAll(async () => {
  consul = await startConsul({ acl: true });
  token = consul.token!;
  await registerInstance(consul, { name: 'payments', id: 'pay-1', address: '127.0.0.1', port: 9901 });
});
afterAll(async () => {
  await consul?.stop();
});

/** Everything a user could see of a resolver or discovery, as text. */
function everything(...things: unknown[]): string {
  return things.map((t) => `${JSON.stringify(t)}\n${inspect(t, { depth: 10, showHidden: true })}`).join('\n');
}

describe('Consul with ACLs', () => {
  it('a wrong token is a clear ACL error that never contains the token', async () => {
    const wrong = '0e3c1a52-9f8b-4d7e-a1b2-c3d4e5f60718';
    const log = memoryLogger();
    const discovery = consulDiscovery({
      address: consul.httpAddr,
      token: wrong,
      backoff: { baseMs: 20, maxMs: 100 },
    });
    const r = discovery.resolve({
      service: 'payments',
      clock: systemClock,
      rng: systemRng,
      logger: log.logger,
    });
    try {
      const failed = await waitForAddr(r, (a) => a.state === 'failed', 'failed');
      if (failed.state !== 'failed') throw new Error('unreachable');
      expect(failed.error).toBeInstanceOf(ConsulRequestError);
      expect(failed.error.message).toMatch(/HTTP 403/);
      expect(failed.error.message).toMatch(/ACL/);
      expect(failed.error.message).toMatch(/token/);
      const seen =
        everything(failed.error, failed.error.cause, r, r.snapshot(), discovery, r.lastError, log.lines) +
        log.text();
      expect(seen).not.toContain(wrong);
      expect(seen).not.toContain(token);
      expect(r.snapshot().token).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('the right token works, and stays out of JSON, inspect() and logs', async () => {
    const log = memoryLogger();
    const r = resolveOn(consul, 'payments', { token }, log.logger);
    try {
      await waitForAddr(r, boundTo(9901), 'bound with the management token');
      expect(everything(r, r.snapshot(), log.lines) + log.text()).not.toContain(token);
      expect(JSON.stringify(consulDiscovery({ address: consul.httpAddr, token }))).not.toContain(token);
    } finally {
      await r.close();
    }
  });

  it('without a token, ACLs on: says ACLs are on and a token with service:read is needed, not "does not exist"', async () => {
    const r = resolveOn(consul, 'payments');
    try {
      const addr = await waitForAddr(r, (a) => a.state === 'failed', 'failed');
      if (addr.state !== 'failed') throw new Error('unreachable');
      expect(addr.error).toBeInstanceOf(ConsulRequestError);
      expect(addr.error).toMatchObject({ kind: 'acl', statusCode: 403 });
      expect(addr.error.message).toMatch(/ACLs are on/);
      expect(addr.error.message).toMatch(/service:read on "payments"/);
      expect(addr.error.message).toMatch(/consulDiscovery\(\{ token \}\)/);
    } finally {
      await r.close();
    }
    // What a caller sees: a DiscoveryError with that explanation, never ServiceNotFoundError.
    const mesh = createMesh({
      services: { payments: { discovery: consulDiscovery({ address: consul.httpAddr }) } },
    });
    try {
      const err = await mesh.request('http://payments/').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DiscoveryError);
      expect(err).not.toBeInstanceOf(ServiceNotFoundError);
      expect((err as Error).message).toMatch(/ACLs are on/);
      expect((err as Error).message).toMatch(/service:read/);
      expect((err as Error).message).not.toMatch(/does not exist/);
    } finally {
      await mesh.close();
    }
  });

  it('a token without service:read sees the service as absent: negative, with an ACL hint', async () => {
    await consul.api('PUT', '/v1/acl/policy', {
      Name: 'read-other',
      Rules: 'service "other" { policy = "read" }\nnode_prefix "" { policy = "read" }',
    });
    const limited = await consul.api<{ SecretID: string }>('PUT', '/v1/acl/token', {
      Description: 'reads only "other"',
      Policies: [{ Name: 'read-other' }],
    });
    const log = memoryLogger();
    const r = resolveOn(consul, 'payments', { token: limited.SecretID }, log.logger);
    try {
      const addr = await waitForAddr(r, (a) => a.state === 'negative', 'negative');
      if (addr.state !== 'negative') throw new Error('unreachable');
      expect(addr.reason).toMatch(/no service "payments"/);
      expect(addr.reason).toMatch(/ACL token cannot see it/);
      expect(everything(addr, r, log.lines) + log.text()).not.toContain(limited.SecretID);
    } finally {
      await r.close();
    }
  });

  it('self-registration with a wrong token fails at once with an ACL error, without retrying', async () => {
    const wrong = '7d1f2e3c-4b5a-6978-8a9b-0c1d2e3f4a5b';
    const log = memoryLogger();
    const t0 = performance.now();
    const err = await registerService({
      name: 'acl-reg',
      port: 9950,
      agent: consul.httpAddr,
      token: wrong,
      logger: log.logger,
      retry: { retries: 5, minTimeoutMs: 1_000 },
    }).catch((e: unknown) => e as Error);
    expect(performance.now() - t0).toBeLessThan(900); // no retry delay was waited
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/HTTP 403/);
    expect(everything(err, log.lines) + log.text()).not.toContain(wrong);
    // With the right token it registers, and is visible to an authorised watcher.
    const reg = await registerService({
      name: 'acl-reg',
      port: 9950,
      address: '127.0.0.1',
      agent: consul.httpAddr,
      token,
    });
    const r = resolveOn(consul, 'acl-reg', { token });
    try {
      await waitForAddr(r, boundTo(9950), 'registered with the right token');
      expect(JSON.stringify(reg)).not.toContain(token);
    } finally {
      await r.close();
      await reg.close();
    }
  });
});
