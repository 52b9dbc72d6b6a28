// What a call still in flight when close()'s grace period ends rejects with: docs/client.md says the rest
// "are aborted"; the error must say so (the pass-through Agent's calls get `MeshClosedError('The mesh was
// closed while the call was in flight')`), and name the service, whatever the method.
//
// Known defect, not fixed here (src/client/mesh.ts and src/resilience/* are being restructured): a GET is
// retried after the abort and fails with `MeshClosedError('The mesh is closed and takes no new calls')`,
// `service` undefined, `attempts` 2; a POST fails with `TransportError` (`UND_ERR_DESTROYED`). `it.fails`
// until fixed; then turn `it.fails.each` into `it.each`.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, MeshClosedError, type MeshError } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('close() with a call in flight', () => {
  it.fails.each(['GET', 'POST'])('%s: rejects with MeshClosedError naming the service', async (method) => {
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const s = await startServer(() => arrived()); // never answers
    servers.push(s);
    const mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const call = mesh
      .request('http://svc/', { method, body: method === 'POST' ? 'x' : undefined })
      .catch((e: unknown) => e);
    await inHandler;
    await mesh.close({ gracePeriodMs: 10 });
    const err = (await call) as MeshError;
    expect(err).toBeInstanceOf(MeshClosedError);
    expect(err.service).toBe('svc');
    expect(s.received).toHaveLength(1);
  });
});
