// A dispatch handler of undici's controller API driven by `mesh.dispatcher` directly: what a handler that
// throws, aborts or pauses at the headers gets. The response body goes to the handler straight from the
// connection (src/core/body-sink.ts); each of these must still end the call exactly once.
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import type { Dispatcher } from 'undici';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
let server: TestServer | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await server?.close();
  server = undefined;
});

async function meshOverBody(body: Buffer | string): Promise<Mesh> {
  server = await startServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(body);
  });
  mesh = createMesh({ services: { svc: { endpoints: [server.address] } } });
  return mesh;
}

interface Outcome {
  events: string[];
  body: string;
  error: Error | undefined;
}

/** Dispatches GET http://svc/ with a handler built from `hooks`; settles at the handler's end or error. */
function dispatch(
  m: Mesh,
  hooks: {
    onResponseStart?: (controller: Dispatcher.DispatchController) => void;
    onResponseData?: (controller: Dispatcher.DispatchController) => void;
  } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { events: [], body: '', error: undefined };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: () => void out.events.push('start'),
      onResponseStart(controller, statusCode) {
        out.events.push(`headers ${statusCode}`);
        hooks.onResponseStart?.(controller);
      },
      onResponseData(controller, chunk) {
        out.body += chunk.toString();
        hooks.onResponseData?.(controller);
      },
      onResponseEnd() {
        out.events.push('end');
        resolve(out);
      },
      onResponseError(_controller, err) {
        out.events.push('error');
        out.error = err;
        resolve(out);
      },
    };
    (m.dispatcher as unknown as Dispatcher).dispatch(
      { origin: 'http://svc', path: '/', method: 'GET' },
      handler,
    );
  });
}

describe('mesh.dispatcher and a dispatch handler at the headers', () => {
  it('a handler whose onResponseStart throws gets that error once, and the call ends', async () => {
    const m = await meshOverBody('hello');
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const out = await dispatch(m, {
        onResponseStart: () => {
          throw new Error('handler broke');
        },
      });
      await new Promise<void>((r) => setImmediate(r));
      expect(out.events).toEqual(['start', 'headers 200', 'error']);
      expect(out.error?.message).toBe('handler broke');
      expect(uncaught).toEqual([]);
      expect(m.snapshot().inflightCalls).toBe(0);
      // The mesh goes on: the next call is answered.
      expect((await dispatch(m)).body).toBe('hello');
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('a handler that aborts at the headers gets its reason once, and no body', async () => {
    const m = await meshOverBody('hello');
    const out = await dispatch(m, { onResponseStart: (c) => c.abort(new Error('not wanted')) });
    await new Promise<void>((r) => setImmediate(r));
    expect(out.events).toEqual(['start', 'headers 200', 'error']);
    expect(out.error?.message).toBe('not wanted');
    expect(out.body).toBe('');
    expect(m.snapshot().inflightCalls).toBe(0);
  });

  it('a handler that pauses at the headers gets the whole body once it resumes, then the end, once', async () => {
    const body = 'x'.repeat(200_000);
    const m = await meshOverBody(body);
    let paused: Dispatcher.DispatchController | undefined;
    const result = dispatch(m, {
      onResponseStart: (c) => {
        c.pause();
        paused = c;
      },
    });
    // Nothing is handed over while paused, however long the pause.
    await new Promise<void>((r) => setTimeout(r, 50));
    expect(paused?.paused).toBe(true);
    paused!.resume();
    const out = await result;
    expect(out.body).toBe(body);
    expect(out.events).toEqual(['start', 'headers 200', 'end']);
    expect(m.snapshot().inflightCalls).toBe(0);
  });

  it('a handler that pauses after each chunk and resumes later gets every byte in order', async () => {
    const parts = Array.from({ length: 16 }, (_, i) => String.fromCharCode(97 + i).repeat(64 * 1024));
    server = await startServer(async (_req, res) => {
      for (const p of parts) if (!res.write(p)) await once(res, 'drain');
      res.end();
    });
    mesh = createMesh({ services: { svc: { endpoints: [server.address] } } });
    let chunks = 0;
    const out = await dispatch(mesh, {
      onResponseData: (c) => {
        chunks++;
        c.pause();
        setImmediate(() => c.resume());
      },
    });
    expect(out.body).toBe(parts.join(''));
    expect(out.events.at(-1)).toBe('end');
    expect(chunks).toBeGreaterThan(1);
    expect(mesh.snapshot().inflightCalls).toBe(0);
  });
});
