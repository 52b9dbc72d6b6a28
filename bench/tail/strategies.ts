/**
 * The strategies the tail benchmark compares (bench/tail/index.ts), each a `send()` that makes one GET and
 * resolves with the index of the backend that answered (its `x-backend` header), plus how to tell whether a
 * strategy can run at all (HAProxy installed; the `backupRequests` service option present in this build).
 *
 * Mesh strategies use `createMesh` with a static endpoint list and the default stacks (deadline, retries,
 * admission, circuit breaker, failure accrual, per-attempt timeout), changing only the balancer and, where
 * named, the per-attempt timeout, retries and backup requests. HAProxy strategies send through a bare undici
 * `Pool` to HAProxy on 127.0.0.1 (bench/tail/haproxy.cfg).
 */
import { Pool } from 'undici';
import { ConfigError, createMesh, type Mesh, type ServiceConfig, type ServiceSnapshot } from 'meshfetch';

/** A strategy's static description. */
export interface StrategySpec {
  id: string;
  label: string;
  kind: 'mesh' | 'haproxy';
  /** Mesh: the service config besides `endpoints`. HAProxy: unused. */
  service?: Record<string, unknown>;
  /** HAProxy: the `balance` algorithm. */
  balance?: 'roundrobin' | 'leastconn';
  /** False for the healthy baseline: no backend is degraded. */
  degraded: boolean;
}

/** The service name the mesh strategies call (`http://tail/`). */
export const SERVICE = 'tail';

/** Per-attempt timeout of the retrying variant (ms). */
export const ATTEMPT_TIMEOUT_MS = 100;

/** The backup-requests variant's option, as issue 8 names it. */
export const BACKUP_OPTION = { percentile: 0.95 };

/** In run order: the baseline first (the one the targets use), and again last as a drift check. */
export const STRATEGIES: readonly StrategySpec[] = [
  {
    id: 'baseline',
    label: 'baseline: Peak-EWMA, all healthy',
    kind: 'mesh',
    service: { balancer: 'p2c-peak-ewma' },
    degraded: false,
  },
  {
    id: 'round-robin',
    label: 'mesh round robin',
    kind: 'mesh',
    service: { balancer: 'round-robin' },
    degraded: true,
  },
  {
    id: 'least-loaded',
    label: 'mesh least-loaded (P2C)',
    kind: 'mesh',
    service: { balancer: 'p2c-least-loaded' },
    degraded: true,
  },
  {
    id: 'peak-ewma',
    label: 'mesh Peak-EWMA (P2C)',
    kind: 'mesh',
    service: { balancer: 'p2c-peak-ewma' },
    degraded: true,
  },
  {
    id: 'peak-ewma-retries',
    label: `Peak-EWMA + retry after ${ATTEMPT_TIMEOUT_MS} ms`,
    kind: 'mesh',
    service: {
      balancer: 'p2c-peak-ewma',
      attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
      retries: { retryTimeouts: true },
    },
    degraded: true,
  },
  {
    id: 'peak-ewma-backup',
    label: 'Peak-EWMA + backup requests (p95)',
    kind: 'mesh',
    service: { balancer: 'p2c-peak-ewma', backupRequests: BACKUP_OPTION },
    degraded: true,
  },
  { id: 'haproxy-rr', label: 'HAProxy roundrobin', kind: 'haproxy', balance: 'roundrobin', degraded: true },
  { id: 'haproxy-lc', label: 'HAProxy leastconn', kind: 'haproxy', balance: 'leastconn', degraded: true },
  {
    // The baseline again, last: how much the shared machine drifted during the run (not used by the targets).
    id: 'baseline-end',
    label: 'baseline again, at the end',
    kind: 'mesh',
    service: { balancer: 'p2c-peak-ewma' },
    degraded: false,
  },
];

/**
 * Why a mesh strategy's service config cannot be used in this build (undefined: it can). `createMesh`
 * validates the config; a `ConfigError` saying there is no such option (e.g. `backupRequests` before that
 * option existed) means the option has not landed; any other error is a real problem and is thrown. The
 * probe mesh sends nothing and is closed at once.
 */
export async function unavailableReason(spec: StrategySpec): Promise<string | undefined> {
  if (spec.kind !== 'mesh') return undefined;
  let mesh: Mesh;
  try {
    mesh = createMesh({
      services: { probe: { endpoints: ['127.0.0.1:1'], ...spec.service } as ServiceConfig },
    });
  } catch (err) {
    if (err instanceof ConfigError && /no such option/.test(err.message)) {
      return `not available (${err.path.replace(/^services\.probe\./, '')} option missing)`;
    }
    throw err;
  }
  await mesh.close();
  return undefined;
}

/** A ready client. */
export interface TailClient {
  /** One GET; resolves with the answering backend's index. */
  send(): Promise<number>;
  /** Mesh strategies: the mesh's snapshot of the service (its endpoints' latency estimates, backups). */
  snapshot?(): ServiceSnapshot | undefined;
  close(): Promise<void>;
}

function backendOf(status: number, header: string | string[] | undefined): number {
  if (status !== 200) throw new Error(`unexpected status ${status}`);
  const b = Number(Array.isArray(header) ? header[0] : header);
  if (!Number.isInteger(b)) throw new Error('response without x-backend');
  return b;
}

/** A mesh over the backends' ports. */
export function meshClient(spec: StrategySpec, ports: readonly number[]): TailClient {
  const mesh: Mesh = createMesh({
    services: {
      [SERVICE]: { endpoints: ports.map((p) => `127.0.0.1:${p}`), ...spec.service } as ServiceConfig,
    },
  });
  const url = `http://${SERVICE}/`;
  return {
    async send() {
      const r = await mesh.request(url);
      const b = backendOf(r.statusCode, r.headers['x-backend']);
      await r.body.text();
      return b;
    },
    snapshot: () => mesh.snapshot().services.find((x) => x.name === SERVICE),
    close: () => mesh.close({ gracePeriodMs: 500 }),
  };
}

/** A bare undici Pool to HAProxy's frontend (enough connections that the client never queues). */
export function haproxyClient(port: number): TailClient {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1024 });
  return {
    async send() {
      const r = await pool.request({ method: 'GET', path: '/' });
      const b = backendOf(r.statusCode, r.headers['x-backend']);
      await r.body.text();
      return b;
    },
    close: () => pool.destroy(),
  };
}
