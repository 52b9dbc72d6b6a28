/**
 * Consul discovery and self-registration, end to end, against a local dev agent.
 *
 * Why this exists: it is the smallest complete program that shows the Consul pieces together: three HTTP
 * instances register themselves (TTL checks kept passing), a mesh discovers them with blocking queries and
 * balances over them, one instance leaves (deregister first, then drain, then close) and traffic follows.
 *
 * Run:
 *   consul agent -dev                       # or: .consul/usr/bin/consul agent -dev  (npm run consul:install)
 *   npx tsx --conditions=meshfetch-source examples/consul/index.ts
 *
 * Environment: CONSUL_HTTP_ADDR (default http://127.0.0.1:8500) and CONSUL_HTTP_TOKEN (when ACLs are on;
 * the token needs service:write on "hello" and service:read + node:read).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { consulDiscovery, createMesh, registerService, shutdownGracefully } from 'meshfetch';
import { type ServiceRegistration } from 'meshfetch/extend';

const SERVICE = 'hello';

interface Instance {
  name: string;
  server: Server;
  registration: ServiceRegistration;
}

async function startInstance(name: string): Promise<Instance> {
  const server = createServer((_req, res) => res.end(`hello from ${name}\n`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const registration = await registerService({
    name: SERVICE,
    id: `${SERVICE}-${name}`,
    address: '127.0.0.1',
    port,
    tags: ['example'],
    meta: { instance: name },
    check: { ttlMs: 5_000 },
  });
  console.log(`${name}: listening on 127.0.0.1:${port}, registered as ${registration.id}`);
  return { name, server, registration };
}

const closeServer = (server: Server): { close(): Promise<void> } => ({
  close: () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
});

async function tally(mesh: ReturnType<typeof createMesh>, calls: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < calls; i++) {
    const res = await mesh.fetch(`http://${SERVICE}/`);
    const who = (await res.text()).trim().replace('hello from ', '');
    seen[who] = (seen[who] ?? 0) + 1;
  }
  return seen;
}

async function main(): Promise<void> {
  const instances = await Promise.all(['a', 'b', 'c'].map(startInstance));
  const mesh = createMesh({
    services: { [SERVICE]: { discovery: consulDiscovery({ tags: ['example'] }), balancer: 'round-robin' } },
  });

  console.log('9 calls over three instances:', await tally(mesh, 9));

  // Instance c shuts down the right way: deregister, let watchers notice and in-flight calls drain, close.
  const [a, b, c] = instances as [Instance, Instance, Instance];
  await shutdownGracefully({
    registration: c.registration,
    propagationDelayMs: 500,
    close: [closeServer(c.server)],
  });
  console.log('c left; 9 more calls:', await tally(mesh, 9));

  for (const i of [a, b]) {
    await shutdownGracefully({
      registration: i.registration,
      propagationDelayMs: 0,
      close: [closeServer(i.server)],
    });
  }
  await mesh.close({ gracePeriodMs: 1_000 });
  console.log('done: every instance deregistered, the mesh closed');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  console.error(
    'Is a Consul agent running? Start one with `consul agent -dev` (see the comment at the top).',
  );
  process.exitCode = 1;
});
