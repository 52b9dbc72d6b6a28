// Every bad input gets a clear typed error naming the option or field, and nothing is lost or left running.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createMesh,
  InvalidRequestError,
  NoHealthyEndpointsError,
  staticDiscovery,
  UnknownServiceError,
  callOptions,
  type MeshConfig,
} from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s.close();
});

describe('config validation', () => {
  const ok = '127.0.0.1:8080';
  const cases: Array<[string, unknown, string]> = [
    ['not an object', 42, ''],
    ['unknown top-level option', { servics: {} }, 'servics'],
    ['services not an object', { services: [] }, 'services'],
    ['upper-case service name', { services: { Users: { endpoints: [ok] } } }, 'services.Users'],
    ['service name with a slash', { services: { 'a/b': { endpoints: [ok] } } }, 'services["a/b"]'],
    ['service config not an object', { services: { users: 'x' } }, 'services.users'],
    ['typo in a service option', { services: { users: { endpiont: [ok] } } }, 'services.users.endpiont'],
    ['neither endpoints nor discovery', { services: { users: {} } }, 'services.users.endpoints'],
    [
      'both endpoints and discovery',
      { services: { users: { endpoints: [ok], discovery: staticDiscovery([ok]) } } },
      'services.users.discovery',
    ],
    ['endpoints not an array', { services: { users: { endpoints: 'x' } } }, 'services.users.endpoints'],
    [
      'address without a port',
      { services: { users: { endpoints: [ok, '127.0.0.1'] } } },
      'services.users.endpoints[1]',
    ],
    [
      'port out of range',
      { services: { users: { endpoints: ['127.0.0.1:70000'] } } },
      'services.users.endpoints[0]',
    ],
    ['port zero', { services: { users: { endpoints: ['h:0'] } } }, 'services.users.endpoints[0]'],
    ['host with a space', { services: { users: { endpoints: ['a b:80'] } } }, 'services.users.endpoints[0]'],
    [
      'object endpoint bad port',
      { services: { users: { endpoints: [{ host: 'h', port: 1.5 }] } } },
      'services.users.endpoints[0].port',
    ],
    [
      'object endpoint bad host',
      { services: { users: { endpoints: [{ host: '', port: 80 }] } } },
      'services.users.endpoints[0].host',
    ],
    [
      'negative weight',
      { services: { users: { endpoints: [{ host: 'h', port: 80, weight: -1 }] } } },
      'services.users.endpoints[0].weight',
    ],
    [
      'NaN weight',
      { services: { users: { endpoints: [{ address: 'h:80', weight: NaN }] } } },
      'services.users.endpoints[0].weight',
    ],
    [
      'tags not strings',
      { services: { users: { endpoints: [{ address: 'h:80', tags: [1] }] } } },
      'services.users.endpoints[0].tags',
    ],
    ['duplicate endpoint', { services: { users: { endpoints: [ok, ok] } } }, 'services.users.endpoints[1]'],
    ['discovery not a discovery', { services: { users: { discovery: {} } } }, 'services.users.discovery'],
    [
      'unknown balancer',
      { services: { users: { endpoints: [ok], balancer: 'random' } } },
      'services.users.balancer',
    ],
    ['timeout zero', { services: { users: { endpoints: [ok], timeoutMs: 0 } } }, 'services.users.timeoutMs'],
    [
      'timeout a string',
      { services: { users: { endpoints: [ok], timeoutMs: '5s' } } },
      'services.users.timeoutMs',
    ],
    [
      'empty host header',
      { services: { users: { endpoints: [ok], hostHeader: '' } } },
      'services.users.hostHeader',
    ],
    [
      'transport typo',
      { services: { users: { endpoints: [ok], transport: { conections: 2 } } } },
      'services.users.transport.conections',
    ],
    [
      'zero connections',
      { services: { users: { endpoints: [ok], transport: { connections: 0 } } } },
      'services.users.transport.connections',
    ],
    [
      'http2 not boolean',
      { services: { users: { endpoints: [ok], transport: { http2: 'yes' } } } },
      'services.users.transport.http2',
    ],
    [
      'tls typo',
      { services: { users: { endpoints: [ok], transport: { tls: { sni: 'x' } } } } },
      'services.users.transport.tls.sni',
    ],
    [
      'keep-alive above its max',
      {
        services: {
          users: { endpoints: [ok], transport: { keepAliveTimeoutMs: 10, keepAliveMaxTimeoutMs: 5 } },
        },
      },
      'services.users.transport.keepAliveTimeoutMs',
    ],
    [
      'bad default timeout',
      { defaults: { timeoutMs: -1 }, services: { users: { endpoints: [ok] } } },
      'defaults.timeoutMs',
    ],
    ['unknown default', { defaults: { endpoints: [] } }, 'defaults.endpoints'],
    ['unknownHosts value', { unknownHosts: 'drop' }, 'unknownHosts'],
    ['logger missing a method', { logger: { info() {} } }, 'logger.debug'],
    ['clock not a clock', { clock: {} }, 'clock'],
    ['rng not an rng', { rng: 1 }, 'rng'],
    ['stack not a function', { stack: [] }, 'stack'],
  ];
  it.each(cases)('%s: ConfigError at %s', (_label, config, path) => {
    let err: unknown;
    try {
      createMesh(config as MeshConfig);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
    expect((err as ConfigError).code).toBe('MESH_CONFIG');
    expect((err as ConfigError).message).toContain(path);
  });

  it('a bad service leaves nothing running (validated before anything is built)', () => {
    const before = process.getActiveResourcesInfo().length;
    expect(() =>
      createMesh({ services: { good: { endpoints: [s.address] }, bad: { endpoints: ['nope'] } } }),
    ).toThrow(ConfigError);
    expect(process.getActiveResourcesInfo().length).toBe(before);
  });

  it('a runtime endpoint update with a bad address throws and keeps the previous list', async () => {
    const d = staticDiscovery([s.address]);
    const mesh = createMesh({ services: { users: { discovery: d } } });
    expect(() => d.set(['127.0.0.1:1', 'broken'])).toThrow(/endpoints\[1\]/);
    expect(d.current.map((e) => e.id)).toEqual([s.address]);
    const res = await mesh.request('http://users/');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await mesh.close();
  });

  it('callOptions rejects a bad deadline', () => {
    expect(() => callOptions({ deadlineMs: -5 })).toThrow(ConfigError);
    expect(() => callOptions({ deadlineMs: NaN })).toThrow(/callOptions.deadlineMs/);
  });
});

describe('bad calls', () => {
  it("a malformed URL is an InvalidRequestError on mesh.request and fetch's TypeError on mesh.fetch", async () => {
    const mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    await expect(mesh.request('not a url')).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(mesh.request('ftp://users/x')).rejects.toMatchObject({ field: 'url' });
    await expect(mesh.fetch('not a url')).rejects.toBeInstanceOf(TypeError);
    await expect(mesh.request('http://users/', { method: 'GE T' })).rejects.toMatchObject({
      field: 'method',
    });
    await expect(
      mesh.request('http://users/', { headers: { 'mesh-deadline-ms': 'soon' } }),
    ).rejects.toMatchObject({
      field: 'headers.mesh-deadline-ms',
    });
    await expect(
      mesh.request('http://users/', { headers: { 'mesh-idempotent': 'maybe' } }),
    ).rejects.toMatchObject({
      field: 'headers.mesh-idempotent',
    });
    await mesh.close();
  });

  it('an unknown host with unknownHosts: reject fails on every entry point with UnknownServiceError', async () => {
    const mesh = createMesh({ services: { users: { endpoints: [s.address] } }, unknownHosts: 'reject' });
    await expect(mesh.request(`http://${s.address}/`)).rejects.toBeInstanceOf(UnknownServiceError);
    await expect(mesh.fetch('http://billing/')).rejects.toBeInstanceOf(UnknownServiceError);
    const viaDispatcher = await fetch('http://billing/', { dispatcher: mesh.dispatcher }).catch(
      (e: unknown) => e,
    );
    expect(viaDispatcher).toBeInstanceOf(TypeError);
    expect((viaDispatcher as TypeError).cause).toBeInstanceOf(UnknownServiceError);
    expect(((viaDispatcher as TypeError).cause as UnknownServiceError).message).toContain('billing');
    await mesh.close();
  });

  it('a service with no endpoints fails at once with NoHealthyEndpointsError naming the service and discovery state', async () => {
    const mesh = createMesh({ services: { empty: { discovery: staticDiscovery([]) } } });
    const t0 = performance.now();
    const err = (await mesh.request('http://empty/x').catch((e: unknown) => e)) as NoHealthyEndpointsError;
    expect(performance.now() - t0).toBeLessThan(500);
    expect(err).toBeInstanceOf(NoHealthyEndpointsError);
    expect(err.service).toBe('empty');
    expect(err.discovery).toContain('0 endpoint');
    expect(err.message).toContain('"empty"');
    expect(err.retryable).toBe(true);
    await expect(mesh.fetch('http://empty/x')).rejects.toBeInstanceOf(NoHealthyEndpointsError);
    await mesh.close();
  });

  it('connection refused is a TransportError in the connect phase naming the endpoint', async () => {
    const { closedPort } = await import('../support/servers.js');
    const port = await closedPort();
    const mesh = createMesh({ services: { dead: { endpoints: [`127.0.0.1:${port}`] } } });
    const err = await mesh.request('http://dead/').catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'MESH_TRANSPORT',
      phase: 'connect',
      retryable: true,
      endpoint: `127.0.0.1:${port}`,
      service: 'dead',
    });
    expect((err as { causeCode: string }).causeCode).toBe('ECONNREFUSED');
    await mesh.close();
  });
});
