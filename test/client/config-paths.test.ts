// One path format for every ConfigError (docs/client.md, "Config"): the path is the JavaScript accessor of
// the bad value in what the caller passed, from the config's root: a top-level key is its name
// (`unknownHosts`, never `config.unknownHosts`), nested keys join with dots, array items are indices, and a
// key that is not a plain word is quoted (`services["users.internal"]`). Each case below walks the config
// along the reported path and must land on the reported value.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, consulDiscovery, createMesh, dnsDiscovery, type MeshConfig } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s.close();
});

const ok = '127.0.0.1:8080';
const SEGMENT = /\.?([A-Za-z0-9_$-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;

/** Splits a path into its keys; throws when the path does not follow the format. */
function keys(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  SEGMENT.lastIndex = 0;
  while (SEGMENT.lastIndex < path.length) {
    const at = SEGMENT.lastIndex;
    const m = SEGMENT.exec(path);
    if (!m || (at === 0 && path.startsWith('.'))) throw new Error(`"${path}" is not a config path`);
    out.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : (JSON.parse(m[3]!) as string)));
  }
  return out;
}

/** The value at `path` in `root`. */
function at(root: unknown, path: string): unknown {
  let v = root;
  for (const k of keys(path)) v = (v as Record<string | number, unknown>)[k];
  return v;
}

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('ConfigError paths: one format everywhere', () => {
  const cases: Array<[string, MeshConfig, string]> = [
    ['an unknown top-level key', { unknownHost: 'reject' } as MeshConfig, 'unknownHost'],
    ['a wrong top-level value', { unknownHosts: 'drop' } as unknown as MeshConfig, 'unknownHosts'],
    ['an unknown key in defaults', { defaults: { endpoints: [ok] } } as MeshConfig, 'defaults.endpoints'],
    [
      'a wrong default',
      { defaults: { timeoutMs: -1 }, services: { users: { endpoints: [ok] } } },
      'defaults.timeoutMs',
    ],
    [
      'an unknown key in a default resilience option',
      { defaults: { retries: { budgett: {} } }, services: { users: { endpoints: [ok] } } } as MeshConfig,
      'defaults.retries.budgett',
    ],
    [
      'a nested service option',
      { services: { users: { endpoints: [ok], transport: { connections: 0 } } } },
      'services.users.transport.connections',
    ],
    [
      'an unknown service option',
      { services: { users: { endpiont: [ok] } } } as unknown as MeshConfig,
      'services.users.endpiont',
    ],
    [
      'a service whose name has dots',
      { services: { 'users.internal': { endpoints: [ok], timeoutMs: 0 } } },
      'services["users.internal"].timeoutMs',
    ],
    [
      'an endpoint of a service whose name has dots',
      { services: { 'users.internal': { endpoints: [ok, { host: 'h', port: 0 }] } } },
      'services["users.internal"].endpoints[1].port',
    ],
    [
      'a header match whose name has a dot',
      {
        services: {
          users: {
            endpoints: [ok],
            routes: [{ match: { headers: { 'x.trace': 5 as unknown as string } }, to: 'primary' }],
          },
        },
      },
      'services.users.routes[0].match.headers["x.trace"]',
    ],
    [
      'a subset meta key with a space',
      {
        services: {
          users: {
            endpoints: [ok],
            destinations: { v2: { subset: { meta: { 'build id': 7 as unknown as string } } } },
          },
        },
      },
      'services.users.destinations.v2.subset.meta["build id"]',
    ],
    [
      'an unknown destination option',
      { services: { users: { endpoints: [ok], destinations: { v2: { subsett: {} } as never } } } },
      'services.users.destinations.v2.subsett',
    ],
    [
      'a split weight',
      {
        services: {
          users: {
            endpoints: [ok],
            destinations: { v2: {} },
            routes: [{ to: [{ destination: 'v2', weight: -1 }] }],
          },
        },
      },
      'services.users.routes[0].to[0].weight',
    ],
    [
      'a retry option of a service with dots in its name',
      { services: { 'a.b': { endpoints: [ok], retries: { budget: 'x' as never } } } },
      'services["a.b"].retries.budget',
    ],
  ];

  it.each(cases.map(([label, config, path]) => [label, path, config] as const))(
    '%s: %s, which leads to the value',
    (_label, path, config) => {
      const e = configError(() => createMesh(config));
      expect(e.path).toBe(path);
      expect(e.message).toContain(`Invalid option ${path}:`);
      expect(at(config, e.path)).toBe(e.value);
    },
  );

  it('a service name that is not a host name is named by the same format', () => {
    expect(configError(() => createMesh({ services: { Users: { endpoints: [ok] } } })).path).toBe(
      'services.Users',
    );
    expect(configError(() => createMesh({ services: { 'a/b': { endpoints: [ok] } } })).path).toBe(
      'services["a/b"]',
    );
  });

  it('the config itself, when it is not an object, is the empty path', () => {
    const e = configError(() => createMesh(42 as MeshConfig));
    expect(e.path).toBe('');
    expect(e.message).toBe('Invalid config: expected an object, got 42');
  });

  it('run-time calls name a service the same way', async () => {
    const mesh = createMesh({ services: { 'users.internal': { endpoints: [s.address] } } });
    try {
      expect(configError(() => mesh.addService('users.internal', { endpoints: [ok] })).path).toBe(
        'services["users.internal"]',
      );
      expect(configError(() => mesh.routes('billing.internal')).path).toBe('services["billing.internal"]');
      expect(configError(() => mesh.setRoutes('users.internal', [{ to: 'nowhere' }])).path).toBe(
        'services["users.internal"].routes[0].to',
      );
      await expect(mesh.removeService('x.y')).rejects.toMatchObject({ path: 'services["x.y"]' });
    } finally {
      await mesh.close();
    }
  });

  it('a discovery source names its own options from its function, in the same format', () => {
    expect(configError(() => consulDiscovery({ nodeMeta: { 'rack.id': 1 as unknown as string } })).path).toBe(
      'consulDiscovery.nodeMeta["rack.id"]',
    );
    expect(configError(() => consulDiscovery({ waitMs: 0 })).path).toBe('consulDiscovery.waitMs');
  });

  it('every options object rejects an unknown key the same way, naming the known ones', () => {
    const cases: Array<[() => unknown, string]> = [
      [() => createMesh({ unknownHost: 'reject' } as MeshConfig), 'unknownHost'],
      [
        () =>
          createMesh({
            services: { users: { endpoints: [{ host: '127.0.0.1', port: 80, wieght: 2 }] } },
          } as never),
        'services.users.endpoints[0].wieght',
      ],
      [
        () => createMesh({ services: { users: { endpoints: [ok], retries: { maxAttempt: 2 } } } } as never),
        'services.users.retries.maxAttempt',
      ],
      [() => consulDiscovery({ waitMS: 5 } as never), 'consulDiscovery.waitMS'],
      [
        () => dnsDiscovery({ name: 'users.test', port: 80, backoff: { base: 1 } } as never),
        'dnsDiscovery.backoff.base',
      ],
    ];
    for (const [f, path] of cases) {
      const e = configError(f);
      expect(e.path).toBe(path);
      expect(e.message).toMatch(/: expected no such option \(a known option is one of: [A-Za-z, ]+\), got /);
    }
  });

  it('an endpoint given back as discovery reports it (with its id) is accepted', () => {
    const mesh = createMesh({
      services: { users: { endpoints: [{ id: '127.0.0.1:80', host: '127.0.0.1', port: 80, weight: 1 }] } },
    } as never);
    return mesh.close();
  });
});
