// Entry points handed around as functions: a stranger passes `mesh.fetch` to a library's `fetch` option and
// destructures `const { request } = mesh` as undici's free `request`. Both are bound (arrow properties), so
// either works called as a plain function.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let server: TestServer | undefined;
let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await server?.close();
});

describe('entry points called unbound', () => {
  it('mesh.fetch works when passed as a plain function', async () => {
    server = await startServer();
    mesh = createMesh({ services: { users: { endpoints: [server.address] } } });
    const f: typeof fetch = mesh.fetch;
    const res = await f('http://users/x');
    expect(res.status).toBe(200);
    await res.text();
  });

  it('mesh.request works when destructured, as undici.request does', async () => {
    server = await startServer();
    mesh = createMesh({ services: { users: { endpoints: [server.address] } } });
    const { request } = mesh;
    const res = await request('http://users/x');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});
