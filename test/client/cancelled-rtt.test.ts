// A cancelled attempt must not teach the balancer that a slow endpoint is fast: the time until the
// cancellation is a lower bound of the endpoint's RTT (bench/tail found backups hiding a 1 s endpoint from
// Peak-EWMA because the aborted originals were recorded as ~20 ms answers). The mesh runs on a fake clock so
// the test controls how much time each attempt takes and how far the EWMA decays between samples.
import { afterEach, describe, expect, it } from 'vitest';
import { PeakEwmaLoad } from '../../src/balance/index.js';
import { createMesh, type Mesh } from '../../src/index.js';
import { FakeClock } from '../../src/testing/index.js';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
let server: TestServer | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await server?.close();
  mesh = undefined;
  server = undefined;
});

function estimateOf(m: Mesh): number | undefined {
  const load = m.lookup('slow')!.destination.endpoints()[0]!.load;
  expect(load).toBeInstanceOf(PeakEwmaLoad);
  return (load as PeakEwmaLoad).rttEstimate;
}

describe('cancelled attempts and the latency estimate', () => {
  it('keeps a slow endpoint slow when its calls are aborted early, spread over time', async () => {
    const clock = new FakeClock(0);
    const arrived: Array<() => void> = [];
    let onArrival: (() => void) | undefined;
    server = await startServer((_req, res) => {
      arrived.push(() => res.end('ok'));
      onArrival?.();
    });
    const arrival = (): Promise<void> =>
      new Promise<void>((r) => {
        onArrival = r;
      });
    mesh = createMesh({
      clock,
      services: { slow: { endpoints: [`127.0.0.1:${server.port}`], retries: false, timeoutMs: Infinity } },
    });

    // One answer that took 1 s on the mesh clock.
    const got = arrival();
    const first = mesh.request('http://slow/');
    await got;
    clock.advance(1_000);
    arrived.shift()!();
    await (await first).body.text();
    expect(estimateOf(mesh)).toBe(1_000);

    // Ten calls, 5 s apart, each aborted by its caller 10 ms after it reached the server (as a backup request
    // that won would abort the original). Recorded as answers, they would pull the estimate down to ~10 ms.
    for (let i = 0; i < 10; i++) {
      clock.advance(5_000);
      const ac = new AbortController();
      const reached = arrival();
      const settled = mesh.request('http://slow/', { signal: ac.signal }).then(
        () => 'answered',
        (err: unknown) => (err as Error).name,
      );
      await reached;
      clock.advance(10);
      ac.abort();
      expect(await settled).toBe('AbortError');
    }
    expect(estimateOf(mesh)).toBe(1_000);
  });
});
