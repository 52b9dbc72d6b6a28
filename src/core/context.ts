/**
 * The per-call context: what every filter of a call can read and what the lower levels report back up.
 * One object per logical call (not per attempt), mutated as the call moves down the stack; a class with
 * fixed fields keeps it one hidden class for V8.
 */
import type { Logger } from './logger.js';
import type { CancelSignal } from './signal.js';

/**
 * Per-call state shared by the filters of one logical call.
 *
 * @example
 * ```ts
 * class LogEndpoint extends Filter {
 *   async call(req: MeshRequest, ctx: CallContext) {
 *     const res = await this.next.call(req, ctx);
 *     console.log(ctx.service, 'answered by', ctx.endpoint, 'on attempt', ctx.attempt);
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
  /** Absolute deadline on the mesh clock (ms); `Infinity` when the call has none. */
  deadline: number;
  /** Whether the caller marked the call idempotent (per-call option); `undefined` means "by method". */
  idempotent: boolean | undefined;
  /** The attempt number, starting at 1 for the first attempt. */
  attempt = 0;
  /** The concrete destination chosen by the router. */
  destination: string | undefined = undefined;
  /** The endpoint (host:port) chosen by the balancer for the current attempt. */
  endpoint: string | undefined = undefined;
  /** Endpoints already tried by this call, so retries can prefer others. */
  tried: Set<string> | undefined = undefined;
  /** When the call started (mesh clock, ms). */
  readonly startedAt: number;
  readonly logger: Logger;

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
  }
}
