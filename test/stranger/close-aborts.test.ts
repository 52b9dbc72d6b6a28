// What a call still in flight when close()'s grace period ends rejects with: docs/client.md says the rest
// "are aborted"; the error must say so (the pass-through Agent's calls get `MeshClosedError('The mesh was
// closed while the call was in flight')`), and name the service, whatever the method.
//
// A call aborted by close() is not resent (the retry filter treats MESH_CLOSED as the mesh's own state, not a
// failure) and each pool is destroyed with that error, so GET and POST alike reject with it, naming the
// service and the endpoint.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, MeshClosedError, type MeshError } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('close() with a call in flight', () => {
  it.each(['GET', 'POST'])('%s: rejects with MeshClosedError naming the service', async (method) => {
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
