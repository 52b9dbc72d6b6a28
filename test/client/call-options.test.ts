// callOptions never builds a header that every call then rejects: out-of-range deadlines are clamped as
// documented (docs/client.md, "Per-call options"), everything else it cannot honour is a ConfigError at
// callOptions itself, and a repeated per-call header is rejected instead of silently using its first value.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  callOptions,
  ConfigError,
  createMesh,
  DEADLINE_HEADER,
  InvalidRequestError,
  type CallOptions,
} from 'meshfetch';
import { MAX_DEADLINE_MS } from '../../src/core/call-options.js';
import { startServer, type TestServer } from '../support/servers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s.close();
});

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('callOptions', () => {
  it.each([1e12, 1e308, Number.MAX_SAFE_INTEGER, MAX_DEADLINE_MS + 1])(
    'deadlineMs %d is clamped to MAX_DEADLINE_MS, and the call it is given to succeeds',
    async (deadlineMs) => {
      const headers = callOptions({ deadlineMs });
      expect(headers[DEADLINE_HEADER]).toBe(String(MAX_DEADLINE_MS));
      // A service without a timeout of its own: the caller's deadline is the only one.
      const mesh = createMesh({ services: { users: { endpoints: [s.address], timeoutMs: Infinity } } });
      // A deadline past Node's longest timer would fire after 1 ms, over and over (TimeoutOverflowWarning).
      const warnings: string[] = [];
      const onWarning = (w: Error): void => void warnings.push(w.name);
      process.on('warning', onWarning);
      try {
        const res = await mesh.request('http://users/clamped', { headers });
        expect(res.statusCode).toBe(200);
        await res.body.dump();
        const f = await mesh.fetch('http://users/clamped', { headers });
        expect(f.status).toBe(200);
        await f.arrayBuffer();
        await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
        expect(warnings).toEqual([]);
      } finally {
        process.off('warning', onWarning);
        await mesh.close();
      }
    },
  );

  it('deadlineMs: Infinity adds no deadline of its own (no header)', () => {
    expect(callOptions({ deadlineMs: Infinity })).toEqual({});
  });

  it('a fractional deadline rounds up, so a positive budget never becomes 0', () => {
    expect(callOptions({ deadlineMs: 0.4 })[DEADLINE_HEADER]).toBe('1');
    expect(callOptions({ deadlineMs: 250.2 })[DEADLINE_HEADER]).toBe('251');
    expect(callOptions({ deadlineMs: 0 })[DEADLINE_HEADER]).toBe('0');
  });

  it.each<[string, unknown, string]>([
    ['a negative deadline', { deadlineMs: -1 }, 'callOptions.deadlineMs'],
    ['NaN', { deadlineMs: NaN }, 'callOptions.deadlineMs'],
    ['-Infinity', { deadlineMs: -Infinity }, 'callOptions.deadlineMs'],
    ['a string deadline', { deadlineMs: '100' }, 'callOptions.deadlineMs'],
    ['a non-boolean idempotent', { idempotent: 'yes' }, 'callOptions.idempotent'],
    ['an unknown option (a typo is not a no-op)', { deadline: 100 }, 'callOptions.deadline'],
    ['not an object', null, 'callOptions'],
    ['an array', [100], 'callOptions'],
  ])('%s is a ConfigError naming the option', (_label, input, path) => {
    const e = configError(() => callOptions(input as CallOptions));
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
  });

  it('a repeated mesh-deadline-ms header is an InvalidRequestError, not its first value', async () => {
    const mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    try {
      const before = s.received.length;
      const err = await mesh
        .request('http://users/repeated', { headers: { [DEADLINE_HEADER]: ['1', '60000'] } })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect((err as InvalidRequestError).message).toContain(DEADLINE_HEADER);
      expect(s.received.length).toBe(before); // nothing was sent
      // A single value in an array is just that value.
      const ok = await mesh.request('http://users/single', { headers: { [DEADLINE_HEADER]: ['5000'] } });
      expect(ok.statusCode).toBe(200);
      await ok.body.dump();
    } finally {
      await mesh.close();
    }
  });

  it('a service timeoutMs above MAX_DEADLINE_MS is clamped too, and calls succeed without a timer overflow', async () => {
    const mesh = createMesh({ services: { users: { endpoints: [s.address], timeoutMs: 1e12 } } });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const res = await mesh.request('http://users/long');
      expect(res.statusCode).toBe(200);
      // Forwarded as the time remaining: the clamped budget less what the call took.
      const sent = Number(
        (JSON.parse(await res.body.text()) as { headers: Record<string, string> }).headers[DEADLINE_HEADER],
      );
      expect(sent).toBeLessThanOrEqual(MAX_DEADLINE_MS);
      expect(sent).toBeGreaterThan(MAX_DEADLINE_MS - 60_000);
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await mesh.close();
    }
  });
});
