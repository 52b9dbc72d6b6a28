/**
 * Turns Consul's `/v1/health/service/:name` answer into endpoints, and reconciles it with the previous set.
 * Parsing is proportional to the number of instances (Consul always sends the whole list); reconciling
 * (`reconcileEndpoints`, from ../reconcile.ts) keeps the previous {@link Endpoint} object for every unchanged
 * instance and lists what changed, so everything downstream (pools, load and failure state keyed by the
 * endpoint) only sees, and only pays for, what actually changed.
 *
 * A malformed instance (unusable address or port, a duplicate address) is skipped and reported, never fatal:
 * one bad registration must not take a whole service away.
 */
import { endpointId, isValidHost, isValidPort } from '../endpoint.js';
import type { Endpoint } from '../types.js';

/**
 * An instance Consul returned that could not be used, with the reason.
 *
 * @example
 * ```ts
 * resolver.skipped; // [{ serviceId: 'users-7', node: 'n1', address: '', port: 0, reason: 'invalid port 0' }]
 * ```
 */
export interface SkippedInstance {
  readonly serviceId: string;
  readonly node: string;
  readonly address: string;
  readonly port: unknown;
  readonly reason: string;
}

/**
 * The outcome of parsing one answer.
 *
 * @example
 * ```ts
 * const { endpoints, skipped, excluded }: ParsedEntries = parseHealthEntries(body, { passingOnly: false });
 * ```
 */
export interface ParsedEntries {
  readonly endpoints: Endpoint[];
  readonly skipped: SkippedInstance[];
  /** Instances left out on purpose (critical, or warning with weight 0): not errors. */
  readonly excluded: number;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** The worst status among an instance's checks (maintenance mode shows as critical). */
function aggregateStatus(checks: unknown): 'passing' | 'warning' | 'critical' {
  let status: 'passing' | 'warning' | 'critical' = 'passing';
  if (!Array.isArray(checks)) return status;
  for (const c of checks) {
    const s = isObject(c) ? c.Status : undefined;
    if (s === 'critical') return 'critical';
    if (s === 'warning') status = 'warning';
    else if (s !== 'passing') return 'critical';
  }
  return status;
}

function weightOf(weights: unknown, key: 'Passing' | 'Warning'): number | undefined {
  if (!isObject(weights)) return 1;
  const w = weights[key];
  if (w === undefined || w === null) return 1;
  if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) return 1;
  return w === 0 ? undefined : w;
}

/**
 * Parses the entries of a health answer. With `passingOnly` Consul has already filtered (`?passing=true`);
 * otherwise critical instances are left out here and warning ones get `Weights.Warning`.
 *
 * @example
 * ```ts
 * const { endpoints, skipped } = parseHealthEntries(body, { passingOnly: true });
 * ```
 */
export function parseHealthEntries(
  entries: readonly unknown[],
  options: { passingOnly: boolean },
): ParsedEntries {
  const endpoints: Endpoint[] = [];
  const skipped: SkippedInstance[] = [];
  const seen = new Set<string>();
  let excluded = 0;
  for (const entry of entries) {
    if (!isObject(entry) || !isObject(entry.Service)) {
      skipped.push({
        serviceId: '',
        node: '',
        address: '',
        port: undefined,
        reason: 'malformed entry (no Service)',
      });
      continue;
    }
    const svc = entry.Service;
    const node = isObject(entry.Node) ? entry.Node : {};
    const serviceId = str(svc.ID);
    const nodeName = str(node.Node);
    const address = str(svc.Address) || str(node.Address);
    const port = svc.Port;
    const skip = (reason: string): void => {
      skipped.push({ serviceId, node: nodeName, address, port, reason });
    };
    if (!isValidHost(address)) {
      skip(
        address === ''
          ? 'no address (neither Service.Address nor Node.Address)'
          : `invalid address "${address}"`,
      );
      continue;
    }
    if (!isValidPort(port)) {
      skip(`invalid port ${JSON.stringify(port) ?? 'undefined'}`);
      continue;
    }
    let weight: number | undefined;
    if (options.passingOnly) {
      weight = weightOf(svc.Weights, 'Passing');
    } else {
      const status = aggregateStatus(entry.Checks);
      if (status === 'critical') {
        excluded++;
        continue;
      }
      weight = weightOf(svc.Weights, status === 'warning' ? 'Warning' : 'Passing');
    }
    if (weight === undefined) {
      excluded++;
      continue;
    }
    const id = endpointId(address, port);
    if (seen.has(id)) {
      skip(`duplicate address ${id} (another instance already uses it)`);
      continue;
    }
    seen.add(id);
    const tags = Array.isArray(svc.Tags) ? svc.Tags.filter((t): t is string => typeof t === 'string') : [];
    const meta: Record<string, string> = {};
    if (isObject(svc.Meta)) {
      for (const [k, v] of Object.entries(svc.Meta)) if (typeof v === 'string') meta[k] = v;
    }
    endpoints.push(
      Object.freeze({
        id,
        host: address,
        port,
        weight,
        tags: Object.freeze(tags),
        meta: Object.freeze(meta),
      }),
    );
  }
  return { endpoints, skipped, excluded };
}

// Reconciling a new set with the previous one is not Consul-specific (static discovery does it too).
export { reconcileEndpoints, type Reconciled } from '../reconcile.js';
