// meshInterceptor: the mesh composed into a dispatcher the application already has (undici's `compose`).
import { Agent, fetch as undiciFetch, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, meshInterceptor, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
let agent: Agent | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await agent?.close();
  mesh = undefined;
  agent = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(tag: string): Promise<TestServer> {
  const s = await startServer((req, res) => {
    res.end(`${tag} ${req.url}`);
  });
  servers.push(s);
  return s;
}

describe('meshInterceptor(mesh) with undici compose', () => {
  it('sends mesh services through the mesh and every other host through the wrapped dispatcher', async () => {
    const svc = await server('svc');
    const plain = await server('plain');
    mesh = createMesh({ services: { svc: { endpoints: [svc.address], timeoutMs: 2_000 } } });
    agent = new Agent();
    const dispatcher = agent.compose(meshInterceptor(mesh));

    const viaFetch = await undiciFetch('http://svc/a', { dispatcher });
    expect(await viaFetch.text()).toBe('svc /a');
    const viaRequest = await request('http://svc/b', { dispatcher });
    expect(await viaRequest.body.text()).toBe('svc /b');
    const other = await undiciFetch(`http://${plain.address}/c`, { dispatcher });
    expect(await other.text()).toBe('plain /c');

    expect(svc.received.map((r) => r.url)).toEqual(['/a', '/b']);
    expect(plain.received.map((r) => r.url)).toEqual(['/c']);
    // Through the mesh: the mesh added its deadline header to the service's calls only.
    expect(svc.received.every((r) => r.headers['mesh-deadline-ms'] !== undefined)).toBe(true);
    expect(plain.received[0]!.headers['mesh-deadline-ms']).toBeUndefined();
  });

  it('follows services added and removed at run time', async () => {
    const late = await server('late');
    mesh = createMesh({ services: {} });
    agent = new Agent();
    const dispatcher = agent.compose(meshInterceptor(mesh));
    // Not a service yet: the Agent tries the name itself and fails to resolve it.
    await expect(request('http://late.invalid/x', { dispatcher })).rejects.toThrow();
    mesh.addService('late.invalid', { endpoints: [late.address] });
    const res = await request('http://late.invalid/x', { dispatcher });
    expect(await res.body.text()).toBe('late /x');
    await mesh.removeService('late.invalid');
    await expect(request('http://late.invalid/y', { dispatcher })).rejects.toThrow();
    expect(late.received.map((r) => r.url)).toEqual(['/x']);
  });
});
