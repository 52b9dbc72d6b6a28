/**
 * Deadlines for pass-through calls (hosts that are not mesh services). The mesh's deadline module only runs
 * in a service's stack, so without this a pass-through call with `callOptions({ deadlineMs })` had no limit
 * at all: the header was stripped (it must never leak to a foreign host) and nothing applied it. DESIGN.md:
 * "pass-through calls get the caller's deadline too, and undici's defaults otherwise".
 *
 * The budget is the caller's `mesh-deadline-ms`, tightened by the incoming request's deadline when the call is
 * made inside a handler served with the server helper; the header is removed here. At the deadline the call
 * is aborted with a {@link DeadlineExceededError} (phase `headers` before the response, `body` after it), as a
 * mesh call is. Without a deadline nothing is added: undici's own headers and body timeouts (300 s each) hold.
 */
import type { Duplex } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { whenBodyDone } from '../core/body-done.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { DeadlineExceededError, InvalidRequestError } from '../core/errors.js';
import { wireHeaders } from '../core/header-case.js';
import { incomingContext } from '../core/incoming.js';
import type { HeaderRecord } from '../core/message.js';
import { DEADLINE_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import type { MeshRequestOptions, MeshResponseData } from './call.js';
import { ForwardingHandler } from './forwarding-handler.js';
import { stripMeshHeaders } from './headers.js';
import type { Target } from './url.js';

/** The deadline a pass-through call must meet. */
export interface PassthroughDeadline {
  /** Absolute, on the mesh clock. */
  readonly at: number;
  /** The budget it was set from (ms), for the error. */
  readonly budgetMs: number;
}

/**
 * Reads (and removes) the caller's deadline header and combines it with the incoming request's deadline.
 * Throws {@link InvalidRequestError} for a malformed header, as a call to a mesh service does.
 *
 * @example
 * ```ts
 * const d = passthroughDeadline(headers, clock); // undefined: no deadline, undici's timeouts hold
 * ```
 */
export function passthroughDeadline(headers: HeaderRecord, clock: Clock): PassthroughDeadline | undefined {
  const raw = headers[DEADLINE_HEADER];
  const incoming = incomingContext.getStore()?.deadline ?? Infinity;
  if (raw === undefined && incoming === Infinity) return undefined;
  const now = clock.now();
  let at = incoming;
  if (raw !== undefined) {
    const ms = parseDeadlineHeader(raw);
    if (ms === undefined || Array.isArray(raw))
      throw new InvalidRequestError(`headers.${DEADLINE_HEADER}`, raw, 'an integer number of milliseconds');
    delete headers[DEADLINE_HEADER];
    if (now + ms < at) at = now + ms;
  }
  return { at, budgetMs: Math.max(0, at - now) };
}

/**
 * A dispatch handler that aborts its request when the deadline passes, and otherwise hands every event to
 * the handler it wraps.
 *
 * @example
 * ```ts
 * agent.dispatch(opts, new DeadlineHandler(handler, deadline, 'example.com', clock));
 * ```
 */
export class DeadlineHandler extends ForwardingHandler {
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private timer: TimerHandle | undefined;
  private expired: Error | undefined = undefined;
  private phase: 'headers' | 'body' = 'headers';

  constructor(
    inner: Dispatcher.DispatchHandler,
    private readonly deadline: PassthroughDeadline,
    private readonly host: string,
    private readonly clock: Clock,
  ) {
    super(inner);
    this.timer = clock.setTimeout(this.onDeadline, Math.max(0, deadline.at - clock.now()));
  }

  private readonly onDeadline = (): void => {
    this.timer = undefined;
    const err = new DeadlineExceededError(this.host, this.deadline.budgetMs, this.phase);
    this.expired = err;
    this.controller?.abort(err);
  };

  private done(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  override onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.controller = controller;
    if (this.expired !== undefined) {
      controller.abort(this.expired);
      return;
    }
    super.onRequestStart(controller, context);
  }

  override onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    socket: Duplex,
  ): void {
    this.done();
    super.onRequestUpgrade(controller, statusCode, headers, socket);
  }

  override onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    if (statusCode >= 200) this.phase = 'body';
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }

  override onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[]>,
  ): void {
    this.done();
    super.onResponseEnd(controller, trailers);
  }

  override onResponseError(controller: Dispatcher.DispatchController | null, err: Error): void {
    this.done();
    super.onResponseError(controller, this.expired ?? err);
  }
}

/**
 * `mesh.request` to a host that is not a service: the plain Agent, without the mesh's headers, within the
 * caller's deadline when there is one ({@link passthroughDeadline}).
 *
 * @example
 * ```ts
 * const res = await passthroughRequest(agent, parseTarget('http://example.com/'), 'GET', {}, {}, clock);
 * ```
 */
export async function passthroughRequest(
  agent: Agent,
  u: Target,
  method: string,
  headers: HeaderRecord,
  options: MeshRequestOptions,
  clock: Clock,
): Promise<MeshResponseData> {
  const deadline = passthroughDeadline(headers, clock);
  if (deadline === undefined) {
    const r = await agent.request({
      origin: u.origin,
      path: u.path,
      method: method as Dispatcher.HttpMethod,
      headers: wireHeaders(stripMeshHeaders(headers)), // names as the caller wrote them
      body: options.body as Dispatcher.RequestOptions['body'],
      signal: options.signal ?? null,
    });
    return { statusCode: r.statusCode, statusText: r.statusText, headers: r.headers, body: r.body };
  }
  // The caller's deadline: one signal that aborts at the deadline (with DeadlineExceededError) or with the
  // caller's own signal, released when the body is done.
  const ac = new AbortController();
  const caller = options.signal;
  const onAbort = (): void => ac.abort(caller!.reason);
  if (caller?.aborted) ac.abort(caller.reason);
  else caller?.addEventListener('abort', onAbort, { once: true });
  let phase: 'headers' | 'body' = 'headers';
  const timer = clock.setTimeout(
    () => ac.abort(new DeadlineExceededError(u.hostname, deadline.budgetMs, phase)),
    Math.max(0, deadline.at - clock.now()),
  );
  const release = (): void => {
    clock.clearTimeout(timer);
    caller?.removeEventListener('abort', onAbort);
  };
  try {
    const r = await agent.request({
      origin: u.origin,
      path: u.path,
      method: method as Dispatcher.HttpMethod,
      headers: wireHeaders(stripMeshHeaders(headers)), // names as the caller wrote them
      body: options.body as Dispatcher.RequestOptions['body'],
      signal: ac.signal,
    });
    phase = 'body';
    whenBodyDone(r.body, release);
    return { statusCode: r.statusCode, statusText: r.statusText, headers: r.headers, body: r.body };
  } catch (err) {
    release();
    throw ac.signal.aborted && !caller?.aborted ? ac.signal.reason : err;
  }
}
