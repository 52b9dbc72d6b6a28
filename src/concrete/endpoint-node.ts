/**
 * One endpoint of a destination as the balancer sees it: its address, load metric, endpoint stack and pool,
 * stats, and live status, which also reads `busy` while a `Retry-After` from it has not expired (issue 20:
 * the endpoint that asked for time is out of the draw until then; every balancer prefers ready endpoints).
 * Kept apart from the destination (destination.ts) that creates and feeds it.
 */
import type { Clock } from '../core/clock.js';
import type { Service, ServiceStatus } from '../core/service.js';
import type { BalancerNode, LoadMetric } from '../balance/types.js';
import type { Endpoint } from '../discovery/types.js';
import type { PoolService } from '../transport/pool.js';
import { EndpointStats } from '../telemetry/endpoint-stats.js';
import { SnapshotSections } from '../telemetry/snapshot.js';

/** One endpoint of a destination, as the balancer sees it. */
export class EndpointNode implements BalancerNode {
  readonly id: string;
  endpoint: Endpoint;
  readonly load: LoadMetric;
  readonly leaf: PoolService;
  /** The endpoint's built stack: what the destination sends an attempt to, and whose status it reads. */
  readonly service: Service;
  /** Request and failure counts and the recent success rate, for snapshots (every endpoint, any stack). */
  readonly stats = new EndpointStats();
  /** What the modules of its endpoint stack expose to snapshots (failure accrual). */
  readonly sections: SnapshotSections;
  /**
   * Until when (clock ms) the endpoint is out of the draw because it answered with a `Retry-After`; 0 when it
   * is not. While held its status reads `busy`, so every balancer prefers the other endpoints and still
   * picks it when no other is ready.
   */
  heldUntil = 0;
  /** When an attempt here was last sent or settled (clock ms); -Infinity before the first. */
  lastActive = -Infinity;
  private readonly clock: Clock;
  constructor(
    endpoint: Endpoint,
    load: LoadMetric,
    leaf: PoolService,
    service: Service,
    clock: Clock,
    sections: SnapshotSections = new SnapshotSections(),
  ) {
    this.id = endpoint.id;
    this.endpoint = endpoint;
    this.load = load;
    this.leaf = leaf;
    this.service = service;
    this.clock = clock;
    this.sections = sections;
  }
  /** @internal A response body from this endpoint is done: one request fewer in flight. */
  onBodyDone(): void {
    this.load.end(this.clock.now());
  }
  get weight(): number {
    return this.endpoint.weight;
  }
  get priority(): number {
    return this.endpoint.priority ?? 0;
  }
  get status(): ServiceStatus {
    if (this.heldUntil !== 0) {
      if (this.clock.now() < this.heldUntil) return 'busy';
      this.heldUntil = 0;
    }
    return this.service.status;
  }
}

/** The longest a `Retry-After` keeps an endpoint out of the draw (ms): failure accrual's longest backoff. */
export const MAX_RETRY_AFTER_HOLD_MS = 300_000;
