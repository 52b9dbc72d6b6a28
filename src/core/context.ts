/**
 * The per-call context: what every module of a call reads (the service, the deadline and its signal, the
 * idempotency the caller declared), the record of the call kept by the logical level (retries, backup
 * requests), and the current attempt's record, {@link Attempt}, which is where the levels below the logical
 * one report what they learn. One object per logical call; a class with fixed fields keeps it one hidden
 * class for V8.
 */
import { Attempt } from './attempt.js';
import type { Logger } from './logger.js';
import type { MeshResponse } from './message.js';
import { CallSignal, type CancelSignal } from './signal.js';

/**
 * The signal of a forked context: it aborts when its parent does (linked by hand with one listener, never
 * `AbortSignal.any`, which leaks with long-lived signals, nodejs/node#55351) or on its own, without touching
 * the parent. {@link ChildSignal.unlink} removes the listener from the parent; aborting the child unlinks it too.
 *
 * @example
 * ```ts
 * const child = new ChildSignal(ctx.signal);
 * const attempt = ctx.fork(child, new Attempt(ctx.attempt.number, true));
 * // ... this attempt lost a race: cancel it alone.
 * child.abort(new Error('superseded'));
 * ```
 */
export class ChildSignal extends CallSignal {
  private parent: CancelSignal | undefined;
  private readonly onParentAbort = (): void => {
    const p = this.parent;
    this.parent = undefined; // a parent removes its listeners as it aborts
    super.abort(p?.reason);
  };

  constructor(parent: CancelSignal | undefined) {
    super();
    if (parent?.aborted) super.abort(parent.reason);
    else if (parent !== undefined) {
      this.parent = parent;
      parent.addEventListener('abort', this.onParentAbort, { once: true });
    }
  }

  /** Stops following the parent (idempotent). Call it when the attempt, body included, is over. */
  unlink(): void {
    const p = this.parent;
    if (p === undefined) return;
    this.parent = undefined;
    p.removeEventListener('abort', this.onParentAbort);
  }

  /** Aborts this signal alone (the parent is not touched) and unlinks it. */
  override abort(reason?: unknown): void {
    this.unlink();
    super.abort(reason);
  }
}

/**
 * The context of one logical call, in three parts:
 *
 * - the call: what the caller asked for (service, signal, deadline, idempotency, start time), set by the entry
 *   point and, for the signal and the deadline, by the deadline module; read by every level;
 * - the call's record, written by the logical level only (retries and backup requests) and read by the
 *   logical span and metrics: the endpoints tried, why each retry was sent, the budget, the backups;
 * - `attempt`, the record of the current attempt: the module that starts an attempt hands it down, the levels
 *   below write what they learn into it, and it comes back up with the outcome ({@link Attempt}).
 *
 * @example
 * ```ts
 * class LogEndpoint extends Filter {
 *   async call(req: MeshRequest, ctx: CallContext) {
 *     const res = await this.next.call(req, ctx);
 *     console.log(ctx.service, 'answered by', ctx.attempt.endpoint, 'on attempt', ctx.attempt.number);
 *     return res;
 *   }
 * }
 * ```
 */
export class CallContext {
  /** The logical service (the URL host). */
  readonly service: string;
  /** The signal every attempt observes: the caller's, or one the deadline module links to it. */
  signal: CancelSignal | undefined;
  /** The caller's own signal, as given. */
  readonly callerSignal: CancelSignal | undefined;
  /**
   * The signal the current attempt observes, which a transport links to: the attempt's own (a per-attempt
   * timeout's, {@link Attempt.signal}) or else the call's.
   */
  get attemptSignal(): CancelSignal | undefined {
    return this.attempt.signal ?? this.signal;
  }
  /** Absolute deadline on the mesh clock (ms); `Infinity` when the call has none. */
  deadline: number;
  /**
   * Whether the next hop is told the deadline (`mesh-deadline-ms`, the time left): true when someone chose
   * it (a per-call `deadlineMs`, a configured `timeoutMs`, an incoming request's deadline), false for the
   * built-in default, which is enforced here but not sent, as gRPC and Finagle send no deadline unless one
   * was set (set by the entry point).
   */
  propagateDeadline = false;
  /** Whether the caller marked the call idempotent (per-call option); `undefined` means "by method". */
  readonly idempotent: boolean | undefined;
  /** When the call started (mesh clock, ms). */
  readonly startedAt: number;
  readonly logger: Logger;
  /**
   * The OpenTelemetry `Context` holding the logical call's span: the parent of the attempt spans. Opaque here
   * (core does not depend on OpenTelemetry); set by the `logical-span` module, undefined when not tracing.
   */
  traceContext: unknown = undefined;
  /**
   * @internal False when nothing is registered with the OpenTelemetry API in this process (no SDK, no
   * propagator): the entry point reads that once per call, and the span modules then skip their own lookups.
   * True (look it up) on a context the entry point did not make.
   */
  otel = true;

  /**
   * The current attempt. A module that starts attempts (retries, backup requests) replaces it with a new
   * record for each attempt it sends; every other module only writes into it.
   */
  attempt: Attempt;

  // The call's record: written by the logical level (retries, backup requests), read by telemetry.
  /** Endpoints already tried by this call, so that a new attempt can prefer others (read by the balancer). */
  tried: Set<string> | undefined = undefined;
  /**
   * Why each retry of this call was scheduled, oldest first (set by retries): the status code of the retried
   * response (`'503'`) or the error type of the failed attempt (`'ECONNREFUSED'`, `'MESH_CIRCUIT_OPEN'`).
   * Undefined until the first retry, so a call that is not retried allocates nothing.
   */
  retryReasons: string[] | undefined = undefined;
  /** Retries the service's budget allowed after this call's last retry decision (set by retries). */
  budgetLeft: number | undefined = undefined;
  /** True when the budget refused a retry this call wanted (set by retries). */
  budgetExhausted = false;
  /** Backup requests this call sent (set by backup requests). */
  backupsSent = 0;
  /** True when a backup request's answer won the race (set by backup requests). */
  backupWon = false;
  private endHook: CallEndHook | undefined = undefined;
  private moreEndHooks: CallEndHook[] | undefined = undefined;

  constructor(
    service: string,
    signal: CancelSignal | undefined,
    deadline: number,
    idempotent: boolean | undefined,
    startedAt: number,
    logger: Logger,
  ) {
    this.service = service;
    this.signal = signal;
    this.callerSignal = signal;
    this.deadline = deadline;
    this.idempotent = idempotent;
    this.startedAt = startedAt;
    this.logger = logger;
    this.attempt = new Attempt(1);
  }

  /**
   * A child context for one of several attempts of this call in flight at once (a backup request): each
   * attempt has its own record and its own signal, so concurrent attempts share nothing the levels below
   * write. The child copies the call (service, deadline, idempotency, start time, logger, trace context),
   * gets its own copy of `tried`, the given `attempt` record, and observes `signal` (normally a
   * {@link ChildSignal} of this context's signal, so it can be cancelled alone). Nothing is copied back: the
   * caller decides what the parent keeps.
   *
   * @example
   * ```ts
   * const signal = new ChildSignal(ctx.signal);
   * const child = ctx.fork(signal, new Attempt(ctx.attempt.number, true));
   * const res = await next.call(reqCopy, child);
   * ctx.attempt.learnFrom(child.attempt);
   * ```
   */
  fork(signal: CancelSignal | undefined, attempt: Attempt): CallContext {
    const child = new CallContext(
      this.service,
      this.callerSignal,
      this.deadline,
      this.idempotent,
      this.startedAt,
      this.logger,
    );
    child.signal = signal;
    child.propagateDeadline = this.propagateDeadline;
    child.attempt = attempt;
    child.traceContext = this.traceContext;
    child.otel = this.otel;
    if (this.tried !== undefined) child.tried = new Set(this.tried);
    return child;
  }

  /**
   * Runs `hook` once when the logical call ends: when its response body closes (read to the end, destroyed,
   * aborted or failed), or when the call fails before a response. The entry point runs the hooks (one place
   * watches the body, not one listener per filter). A hook is an object, so a filter registers itself or one
   * small per-call record, never a closure.
   *
   * @example
   * ```ts
   * class CountCalls extends Filter implements CallEndHook {
   *   ended = 0;
   *   call(req: MeshRequest, ctx: CallContext) {
   *     ctx.onEnd(this);
   *     return this.next.call(req, ctx);
   *   }
   *   callEnded() {
   *     this.ended++;
   *   }
   * }
   * ```
   */
  onEnd(hook: CallEndHook): void {
    if (this.endHook === undefined) this.endHook = hook;
    else (this.moreEndHooks ??= []).push(hook);
  }

  /** Whether any {@link CallContext.onEnd} hook waits for the end of this call. */
  get hasEndHooks(): boolean {
    return this.endHook !== undefined;
  }

  /**
   * @internal Run by the entry point, once, when the call ends: `res` is the response (undefined when the call
   * failed before one), `error` why it failed (a body error included). Hooks run in registration order; one
   * that throws is logged and the others still run. Later calls do nothing.
   */
  end(res: MeshResponse | undefined, error: unknown): void {
    const first = this.endHook;
    if (first === undefined) return;
    const more = this.moreEndHooks;
    this.endHook = undefined;
    this.moreEndHooks = undefined;
    this.runHook(first, res, error);
    if (more !== undefined) for (const h of more) this.runHook(h, res, error);
  }

  private runHook(hook: CallEndHook, res: MeshResponse | undefined, error: unknown): void {
    try {
      hook.callEnded(this, res, error);
    } catch (err) {
      this.logger.warn({ err, service: this.service }, 'a call-end hook threw');
    }
  }
}

/**
 * Something to run once when a logical call ends (see {@link CallContext.onEnd}).
 *
 * @example
 * ```ts
 * const logEnd: CallEndHook = {
 *   callEnded(ctx, res, error) {
 *     console.log(ctx.service, res?.statusCode ?? error);
 *   },
 * };
 * ```
 */
export interface CallEndHook {
  callEnded(ctx: CallContext, res: MeshResponse | undefined, error: unknown): void;
}
