// close({ gracePeriodMs }) and a call whose response has fully arrived but whose body the caller has not read:
// the call is still in flight (the caller holds it), so close waits the grace period for it; read within the
// grace period, the body is whole; never read, close still ends when the grace period does. The built-in fetch
// through mesh.dispatcher takes a small body into its own buffer at once (as it does from undici's Agent): that
// call is over for the mesh, and its body stays readable after close.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import { FakeClock } from 'meshfetch/testing';
import { startServer, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** More than the built-in fetch buffers ahead of its reader (64 KiB): it pauses the dispatcher. */
const LARGE = 'x'.repeat(256 * 1024);

/** A server that answers `text` in one write and tells when the answer has left. */
async function answered(text: string): Promise<{ s: TestServer; sent: () => boolean }> {
  let done = false;
  const s = await startServer((_req, res) => {
    res.on('finish', () => (done = true));
    res.end(text);
  });
  servers.push(s);
  return { s, sent: () => done };
}

/** Lets the event loop turn a few times, so that anything the response's arrival triggers has happened. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

type Read = () => Promise<string>;

/**
 * A mesh on a fake clock whose one call has its whole answer (`text`) but has not read it, closed with a
 * 5 s grace period; checks that close is still waiting once the event loop has turned.
 */
async function closeWithAnswerUnread(
  call: (m: Mesh) => Promise<Read>,
  text: string,
): Promise<{ m: Mesh; read: Read; closed: Promise<unknown>; clock: FakeClock }> {
  const { s, sent } = await answered(text);
  const clock = new FakeClock();
  const m = createMesh({ clock, services: { svc: { endpoints: [s.address] } } });
  mesh = m;
  const read = await call(m);
  await until(sent);
  await settle();
  let closedYet = false;
  const closed = m.close({ gracePeriodMs: 5_000 }).then(() => (closedYet = true));
  await settle();
  expect(closedYet).toBe(false);
  return { m, read, closed, clock };
}
const entryPoints: Array<[string, (m: Mesh) => Promise<Read>]> = [
  [
    'mesh.request',
    async (m) => {
      const r = await m.request('http://svc/');
      return () => r.body.text();
    },
  ],
  [
    'mesh.fetch',
    async (m) => {
      const r = await m.fetch('http://svc/');
      return () => r.text();
    },
  ],
  [
    'fetch with mesh.dispatcher',
    async (m) => {
      const r = await fetch('http://svc/', { dispatcher: m.dispatcher });
      return () => r.text();
    },
  ],
];

describe('close() with a response that has arrived but whose body is unread', () => {
  const cases = entryPoints.flatMap(([name, call]) => [
    [`${name}, small body`, call, 'whole'] as const,
    [`${name}, 256 KiB body`, call, LARGE] as const,
  ]);
  for (const [name, call, text] of cases) {
    if (name.startsWith('fetch with mesh.dispatcher, small')) continue; // below
    it(`${name}: close waits for it; the body read within the grace period is whole`, async () => {
      const { m, read, closed } = await closeWithAnswerUnread(call, text);
      expect(m.inflightCalls).toBe(1);
      expect(await read()).toBe(text);
      await closed;
      expect(m.inflightCalls).toBe(0);
    });

    it(`${name}: never read, close ends with the grace period and the body settles`, async () => {
      const { read, closed, clock } = await closeWithAnswerUnread(call, text);
      clock.advance(5_000);
      await closed;
      // Read after close: it settles (whole, or rejected), it does not hang.
      const outcome = await read().then(
        (t) => t,
        (e: unknown) => e,
      );
      expect(outcome === text || outcome instanceof Error).toBe(true);
    });
  }

  it('fetch with mesh.dispatcher, small body: fetch has taken it whole; after close it is still read whole', async () => {
    const { s, sent } = await answered('whole');
    mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
    const res = await fetch('http://svc/', { dispatcher: mesh.dispatcher });
    await until(sent);
    await settle();
    await mesh.close({ gracePeriodMs: 0 });
    expect(await res.text()).toBe('whole');
  });
});
