// One classification per attempt: failure accrual, the endpoint stats, the circuit breaker and retries all
// count each attempt's outcome, and share the classifier's one answer (classifyAttempt).
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, defaultClassifier, type Classifier, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
let s: TestServer | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await s?.close();
  mesh = s = undefined;
});

describe('classification', () => {
  it('runs the classifier once per attempt, whatever the number of modules that count it', async () => {
    let n = 0;
    s = await startServer((req, res) => {
      n++;
      res.writeHead(n === 1 ? 503 : 200);
      res.end('x');
    });
    let calls = 0;
    const counting: Classifier = (input) => {
      calls++;
      return defaultClassifier(input);
    };
    mesh = createMesh({
      services: {
        svc: { endpoints: [s.address], classifier: counting, retries: { backoff: { baseMs: 1, maxMs: 1 } } },
      },
    });
    const res = await mesh.request('http://svc/');
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(n).toBe(2); // a 503, retried, then a 200
    expect(calls).toBe(2); // one per attempt
    const snap = mesh.snapshot().services[0]!;
    expect(snap.endpoints[0]).toMatchObject({ requests: 2, failures: 1 });
  });
});
