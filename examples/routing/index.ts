/**
 * A canary rollout, step by step, with a live table of which version answered.
 *
 * Why this exists: it is the smallest complete program that shows gray release with meshfetch's routing. Two
 * versions of a `users` service run as real HTTP servers (two v1 instances, one v2), told apart by endpoint
 * meta (`version`). A mesh routes them with one sticky weighted rule; the program raises v2's weight
 * 0 -> 5 -> 25 -> 50 -> 100 % with `mesh.setRoutes` while a steady load of calls from 200 users keeps flowing, and
 * prints per step how many calls each version answered, how many users moved, and (the monotone property of
 * the sticky split) that no user ever went back from v2 to v1. No call fails across the swaps.
 *
 * Run:
 *   npx tsx --conditions=meshfetch-source examples/routing/index.ts
 *
 * With Consul instead of static endpoints, register the instances with `Meta: { version }` and use
 * `discovery: consulDiscovery()`: the destinations and rules stay the same.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMesh, staticDiscovery, type RouteRule } from 'meshfetch';

const USERS = 200;
const CALLS_PER_STEP = 1_000;
const STEPS = [0, 5, 25, 50, 100];

async function backend(version: string): Promise<{ server: Server; address: string }> {
  const server = createServer((_req, res) => {
    res.setHeader('x-version', version);
    res.end(version);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The one rule of the rollout: a sticky split by user id, stable version listed first. */
function canary(percent: number): RouteRule[] {
  return [
    {
      name: 'canary',
      to: [
        { destination: 'v1', weight: 100 - percent },
        { destination: 'v2', weight: percent },
      ],
      sticky: { header: 'x-user-id' },
    },
  ];
}

async function main(): Promise<void> {
  const backends = await Promise.all([backend('v1'), backend('v1'), backend('v2')]);
  const [a, b, c] = backends;
  const mesh = createMesh({
    services: {
      users: {
        discovery: staticDiscovery([
          { address: a!.address, meta: { version: 'v1' } },
          { address: b!.address, meta: { version: 'v1' } },
          { address: c!.address, meta: { version: 'v2' } },
        ]),
        destinations: {
          v1: { subset: { meta: { version: 'v1' } } },
          v2: { subset: { meta: { version: 'v2' } }, fallbacks: ['v1'] },
        },
        routes: canary(STEPS[0]!),
      },
    },
  });

  const lastVersion = new Map<number, string>();
  const rows: Array<Record<string, string | number>> = [];
  let wentBack = 0;
  let failed = 0;
  for (const percent of STEPS) {
    mesh.setRoutes('users', canary(percent)); // atomic; calls in flight keep their table
    const answered = { v1: 0, v2: 0 };
    let moved = 0;
    // A steady load: CALLS_PER_STEP calls, 20 at a time, from USERS users.
    for (let i = 0; i < CALLS_PER_STEP; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, k) => {
          const user = (i + k) % USERS;
          try {
            const res = await mesh.request('http://users/profile', {
              headers: { 'x-user-id': `user-${user}` },
            });
            const version = (await res.body.text()) as 'v1' | 'v2';
            answered[version]++;
            const before = lastVersion.get(user);
            if (before !== undefined && before !== version) {
              if (before === 'v2') wentBack++;
              else moved++;
            }
            lastVersion.set(user, version);
          } catch {
            failed++;
          }
        }),
      );
    }
    const usersOnV2 = [...lastVersion.values()].filter((v) => v === 'v2').length;
    rows.push({
      'v2 weight': `${percent} %`,
      'v1 answered': answered.v1,
      'v2 answered': answered.v2,
      'v2 share': `${((100 * answered.v2) / CALLS_PER_STEP).toFixed(1)} %`,
      'users on v2': usersOnV2,
      'users moved v1->v2': moved,
    });
    console.clear();
    console.log('Canary rollout of users v2 (sticky by x-user-id, 200 users, 1000 calls per step)\n');
    console.table(rows);
  }
  const routing = mesh.snapshot().services[0]?.routing;
  console.log(`\nusers that went back from v2 to v1: ${wentBack} (monotone split: always 0)`);
  console.log(`failed calls across ${STEPS.length} weight changes: ${failed}`);
  console.log(`routing table version ${routing?.version}; destinations:`);
  console.table(
    routing?.destinations.map((d) => ({
      name: d.name,
      subset: d.subset,
      endpoints: d.endpoints,
      availability: d.availability,
      breaker: d.breaker,
    })),
  );
  await mesh.close();
  await Promise.all(backends.map((x) => new Promise<void>((r) => x.server.close(() => r()))));
}

await main();
