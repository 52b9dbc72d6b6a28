/**
 * Admission: a bound on the calls in flight at one concrete destination, so that a slow or stuck upstream
 * costs this process a bounded amount of memory and sockets instead of an unbounded queue. Past the bound a
 * call fails at once with {@link OverloadedError}: a fast, typed "no" that the caller can shed or degrade on,
 * rather than a wait that ends in a deadline anyway (Envoy's circuit-breaker thresholds `max_requests` and
 * `max_pending_requests`, both 1024 by default; Finagle's `RequestSemaphoreFilter` with `maxWaiters = 0`).
 *
 * One bound, not two: Envoy splits "pending" (waiting for a connection) from "active". Here a call waiting for
 * a connection waits inside undici's pool queue, below this filter, so one count of "in flight" covers both,
 * and the default is the larger of Envoy's two (1024; "in the thousands"). There is no queue of our own:
 * waiting in-process adds latency to a destination that is already behind, and the call's deadline bounds it
 * anyway.
 *
 * A call counts from the moment it is admitted until its response body ends or is closed (read to the end,
 * destroyed by the caller, aborted, failed), or until the call fails before a response. The count is released
 * exactly once per admitted call, whatever happens, so it cannot drift: a leak would end in a destination that
 * refuses everything.
 *
 * Placement: first of the concrete stack, above the circuit breaker and the balancer, so that its own
 * rejections never count as failures of the destination (the breaker) or of an endpoint (failure accrual), and
 * so that a rejected call touches nothing else: no pick, no pool, no socket.
 */
import type { CallContext } from '../core/context.js';
import { whenBodyDone } from '../core/body-done.js';
import { MeshError, type MeshErrorDetails } from '../core/errors.js';
import { number, object, toggle } from '../core/validate.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { defineParam, type Param } from '../core/params.js';
import { InlineFilter, type Service, type ServiceStatus } from '../core/service.js';
import type { StackModule } from '../core/stack.js';
import { AdmissionSection, exposing } from '../telemetry/snapshot.js';

/**
 * Options of admission, as a service's config gives them.
 *
 * @example
 * ```ts
 * const admission: AdmissionOptions = { maxInFlight: 200 };
 * ```
 */
export interface AdmissionOptions {
  /**
   * Calls in flight (sent or waiting for a connection, until their response bodies end) allowed at once per
   * concrete destination. Default 1024 (Envoy's `max_requests` / `max_pending_requests`). An integer >= 1.
   */
  maxInFlight?: number;
}

/**
 * Admission options after validation.
 *
 * @example
 * ```ts
 * const o = resolveAdmissionOptions({ maxInFlight: 5 }) as ResolvedAdmissionOptions; // { maxInFlight: 5 }
 * ```
 */
export type ResolvedAdmissionOptions = Readonly<Required<AdmissionOptions>>;

/** The options and their defaults, declared once. */
const admissionOptions = toggle<ResolvedAdmissionOptions>(
  object({ maxInFlight: number({ min: 1, integer: true, default: 1024 }) }),
  { whenAbsent: 'on', expected: 'an options object, true or false', path: 'admission' },
);

/**
 * The defaults (Envoy's circuit-breaker thresholds).
 *
 * @example
 * ```ts
 * ADMISSION_DEFAULTS.maxInFlight; // 1024
 * ```
 */
export const ADMISSION_DEFAULTS: ResolvedAdmissionOptions = admissionOptions.defaults;

/**
 * Validates admission options and fills in the defaults. `undefined` and `true` give the defaults; `false`
 * turns admission off (the result is `false`). A bad value throws a {@link ConfigError} naming `path.field`.
 *
 * @example
 * ```ts
 * resolveAdmissionOptions({ maxInFlight: 100 }, 'services.users.admission'); // { maxInFlight: 100 }
 * resolveAdmissionOptions({ maxInFlight: 0 }, 'services.users.admission');
 * // throws ConfigError: Invalid option services.users.admission.maxInFlight: expected an integer >= 1, got 0
 * ```
 */
export function resolveAdmissionOptions(
  input: AdmissionOptions | boolean | undefined,
  path = 'admission',
): ResolvedAdmissionOptions | false {
  return admissionOptions.resolve(input, path);
}

/**
 * The admission options of a service: resolved options, or `false` to leave the module out of its concrete
 * stacks. Defaults to {@link ADMISSION_DEFAULTS}.
 *
 * @example
 * ```ts
 * const params = Params.empty.with(AdmissionParam, resolveAdmissionOptions({ maxInFlight: 100 }));
 * ```
 */
export const AdmissionParam: Param<ResolvedAdmissionOptions | false> = defineParam<
  ResolvedAdmissionOptions | false
>('admission', ADMISSION_DEFAULTS);

/**
 * A concrete destination already has `limit` calls in flight, and this one was refused at once, before any
 * endpoint was picked or any byte sent. `retryable` is false: the request was not processed, but a retry
 * would only add load to a destination that is already full (shed or degrade instead; see
 * docs/resilience.md, "Admission").
 *
 * @example
 * ```ts
 * try { await mesh.request('http://users/v1/me'); }
 * catch (e) { if (e instanceof OverloadedError) return fallback(); }
 * ```
 */
export class OverloadedError extends MeshError {
  /** The bound that was reached. */
  readonly limit: number;
  /** The concrete destination that is full. */
  readonly destination: string | undefined;
  constructor(
    service: string,
    destination: string | undefined,
    limit: number,
    details: MeshErrorDetails = {},
  ) {
    super(
      'MESH_OVERLOADED',
      `Too many calls in flight to service "${service}"${destination !== undefined ? ` (destination ${destination})` : ''}: limit ${limit}`,
      { retryable: false, ...details, phase: 'route', service },
    );
    this.limit = limit;
    this.destination = destination;
  }
}

/**
 * A JSON-serialisable view of one destination's admission.
 *
 * @example
 * ```ts
 * const s: AdmissionSnapshot = filter.snapshot(); // { inFlight: 3, limit: 1024, rejected: 0 }
 * ```
 */
export interface AdmissionSnapshot {
  readonly inFlight: number;
  readonly limit: number;
  /** Calls refused since the destination was built. */
  readonly rejected: number;
}

/**
 * Bounds the calls in flight through it (see the file comment). Its `status` is `busy` while it is full, so a
 * router choosing between destinations can prefer one with room.
 *
 * @example
 * ```ts
 * const filter = new AdmissionFilter(balancer, { maxInFlight: 100 }, 'users', 'primary');
 * filter.inFlight; // 0
 * ```
 */
export class AdmissionFilter extends InlineFilter {
  /** Calls admitted and not yet finished. */
  private count = 0;
  private refused = 0;
  readonly limit: number;

  constructor(
    next: Service,
    options: ResolvedAdmissionOptions,
    private readonly service: string,
    private readonly destination: string | undefined,
  ) {
    super(next);
    this.limit = options.maxInFlight;
  }

  /** Calls admitted and not yet finished (body ended or closed, or the call failed). */
  get inFlight(): number {
    return this.count;
  }

  /** Calls refused so far. */
  get rejected(): number {
    return this.refused;
  }

  /** `busy` while full, otherwise the status below. */
  override get status(): ServiceStatus {
    const below = this.next.status;
    return below === 'ready' && this.inFlight >= this.limit ? 'busy' : below;
  }

  /** Full: refused at once. Otherwise the call is counted and goes on. */
  enter(_req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    if (this.count >= this.limit) {
      this.refused++;
      return Promise.reject(
        new OverloadedError(this.service, this.destination, this.limit, { attempts: ctx.attempt.number }),
      );
    }
    this.count++;
    return undefined;
  }

  /** Released once, when the body closes (ends, is destroyed, aborted or errors): this filter is the hook. */
  exit(res: MeshResponse): MeshResponse {
    whenBodyDone(res.body, this);
    return res;
  }

  /** The call failed before a response (a throw below included): released now. */
  fail(err: unknown): never {
    this.count--;
    throw err;
  }

  /** @internal The body of a call this filter admitted is done. */
  onBodyDone(): void {
    this.count--;
  }

  /**
   * A read-only view now.
   *
   * @example
   * ```ts
   * filter.snapshot().inFlight; // 0 when idle
   * ```
   */
  snapshot(): AdmissionSnapshot {
    return { inFlight: this.inFlight, limit: this.limit, rejected: this.refused };
  }
}

/**
 * The `admission` stack module (concrete level). Reads {@link AdmissionParam} (`false` leaves the module out).
 *
 * Placement: first of the concrete stack (see the file comment).
 *
 * @example
 * ```ts
 * createMesh({
 *   services: { users: { endpoints: ['10.0.0.1:80'] } },
 *   stack: (d) => ({ ...d, concrete: d.concrete.prepend(admissionModule) }),
 * });
 * ```
 */
export const admissionModule: StackModule<'concrete'> = {
  role: 'admission',
  description: 'Bounds the calls in flight per concrete destination; past the bound, OverloadedError at once',
  params: [AdmissionParam],
  make(next, env) {
    const options = env.params.get(AdmissionParam);
    if (options === false) return next;
    const filter = new AdmissionFilter(next, options, env.target.service, env.target.destination);
    return exposing(env, AdmissionSection, filter, (f) => f.snapshot());
  },
};

/**
 * The admission filter of a concrete stack, when it is the outermost service (its default place).
 *
 * @example
 * ```ts
 * admissionOf(concreteService)?.snapshot(); // { inFlight, limit, rejected }
 * ```
 */
export function admissionOf(service: Service): AdmissionFilter | undefined {
  return service instanceof AdmissionFilter ? service : undefined;
}
