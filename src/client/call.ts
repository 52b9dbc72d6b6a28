/**
 * What the mesh does for every logical call, apart from the stacks: the call's context, made from the per-call
 * headers and the incoming request, and the mesh's end of the call (its in-flight count, which `close()`
 * waits for, the process hold while the caller waits for an answer, and the call-end hooks telemetry
 * registered). The end of the call is an inline filter at the top of each logical stack ({@link CallEntry}),
 * so the stack build composes it with the inline modules below it and a call costs the entry point no promise
 * hop of its own (src/core/inline.ts).
 */
import type { Dispatcher } from 'undici';
import { whenBodyDone } from '../core/body-done.js';
import { IDEMPOTENT_HEADER } from '../core/call-options.js';
import { ProcessHold, type Clock } from '../core/clock.js';
import { CallContext } from '../core/context.js';
import { InvalidRequestError } from '../core/errors.js';
import { incomingContext } from '../core/incoming.js';
import type { Logger } from '../core/logger.js';
import { responseHeaders, type MeshRequest, type MeshResponse, type RequestBody } from '../core/message.js';
import { InlineFilter, type Service } from '../core/service.js';
import type { CancelSignal } from '../core/signal.js';
import type { StackModule } from '../core/stack.js';
import { callDeadline, propagatesDeadline, takeDeadlineHeader } from '../resilience/deadline.js';
import { publishRequestStart, requestEventsWanted } from '../telemetry/events.js';
import { otelRegistered } from '../telemetry/otel.js';
import type { HeadersInput } from './headers.js';

/**
 * Options of {@link Mesh.request}, in undici's style.
 *
 * @example
 * ```ts
 * await mesh.request('http://users/v1/users', { method: 'POST', body: JSON.stringify(user), headers: { 'content-type': 'application/json' } });
 * ```
 */
export interface MeshRequestOptions {
  method?: string;
  headers?: HeadersInput;
  body?: RequestBody;
  signal?: AbortSignal;
}

/**
 * What {@link Mesh.request} resolves to: undici's `ResponseData` shape (the body has `.json()`, `.text()`,
 * `.arrayBuffer()` and is a Node Readable).
 */
export interface MeshResponseData {
  statusCode: number;
  statusText: string;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

/** A response as `mesh.request` gives it. */
export function toResponseData(res: MeshResponse): MeshResponseData {
  return {
    statusCode: res.statusCode,
    statusText: res.statusText,
    headers: responseHeaders(res),
    body: res.body as Dispatcher.ResponseData['body'],
  };
}

/** What a service's config says about the deadline of its calls. */
export interface CallDefaults {
  readonly name: string;
  readonly timeoutMs: number;
  readonly timeoutConfigured: boolean;
}

/**
 * Reads the per-call headers (the deadline, through the deadline module, and idempotency; both are removed)
 * and the incoming request being served into a new {@link CallContext}. Inside a handler served with the
 * server helper, the call inherits the incoming request's deadline and, when the caller gave no signal of its
 * own, its abort signal. A malformed header is an {@link InvalidRequestError}.
 *
 * @example
 * ```ts
 * const ctx = newCallContext(config, req, signal, clock, logger);
 * ```
 */
export function newCallContext(
  service: CallDefaults,
  req: MeshRequest,
  signal: CancelSignal | undefined,
  clock: Clock,
  logger: Logger,
): CallContext {
  const headers = req.headers;
  const own = takeDeadlineHeader(headers);
  let idempotent: boolean | undefined;
  const ih = headers[IDEMPOTENT_HEADER];
  if (ih !== undefined) {
    if (ih === 'true' || ih === '1') idempotent = true;
    else if (ih === 'false' || ih === '0') idempotent = false;
    else throw new InvalidRequestError(`headers.${IDEMPOTENT_HEADER}`, ih, "'true' or 'false'");
    delete headers[IDEMPOTENT_HEADER];
  }
  const now = clock.now();
  const incoming = incomingContext.getStore();
  let incomingDeadline = Infinity;
  if (incoming !== undefined) {
    incomingDeadline = incoming.deadline;
    if (signal === undefined) signal = incoming.signal;
  }
  const ctx = new CallContext(
    service.name,
    signal,
    callDeadline(now, service.timeoutMs, own, incomingDeadline),
    idempotent,
    now,
    logger,
  );
  if (propagatesDeadline(service.timeoutConfigured, own, incomingDeadline)) ctx.propagateDeadline = true;
  if (!otelRegistered()) ctx.otel = false;
  return ctx;
}

/**
 * The calls in flight through a mesh (until their response bodies end), and the process hold that keeps Node
 * running while a caller waits for an answer (src/core/clock.ts).
 *
 * @example
 * ```ts
 * await calls.idle(); // no call in flight
 * ```
 */
export class MeshCalls {
  /** Keeps the process alive while a call waits for its answer; `close()` holds it too. */
  readonly hold = new ProcessHold();
  private count = 0;
  private idleWaiters: Array<() => void> = [];

  /** Calls in flight. */
  get inflight(): number {
    return this.count;
  }

  /** Settles when no call is in flight. */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** A call started. */
  started(): void {
    this.count++;
  }

  /** A call is over (its body is done, or it failed before a response). */
  onBodyDone(): void {
    if (--this.count === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }
}

/**
 * The mesh's end of a logical call, first of every logical stack (added when the mesh builds a service, not a
 * role of the user's stack): counts the call in flight until its body ends, holds the process until it
 * answers, publishes the request-start event, and runs the call-end hooks (spans, request events) when the
 * body is done or the call fails.
 *
 * @example
 * ```ts
 * const stack = stacks.logical.prepend(callEntryModule(calls, clock)).build(router, env);
 * ```
 */
export class CallEntry extends InlineFilter {
  constructor(
    next: Service,
    private readonly calls: MeshCalls,
    private readonly clock: Clock,
  ) {
    super(next);
  }

  enter(req: MeshRequest, ctx: CallContext): undefined {
    this.calls.started();
    // Until the call settles (headers or error), the process stays up whatever the call waits on; the body
    // then streams on undici's socket, which undici keeps ref'ed while it is read.
    this.calls.hold.acquire();
    if (requestEventsWanted()) publishRequestStart(req, ctx, this.clock);
    return undefined;
  }

  exit(res: MeshResponse, _req: MeshRequest, ctx: CallContext): MeshResponse {
    this.calls.hold.release();
    const body = res.body;
    whenBodyDone(body, this.calls);
    // Telemetry (spans, request events) waits for the end of the body: the one place that runs ctx.end. A
    // closure per call only then; with no SDK and no event subscriber there is no end hook.
    if (ctx.hasEndHooks) whenBodyDone(body, () => ctx.end(res, body.errored ?? undefined));
    return res;
  }

  fail(err: unknown, _req: MeshRequest, ctx: CallContext): never {
    this.calls.hold.release();
    this.calls.onBodyDone();
    ctx.end(undefined, err);
    throw err;
  }
}

/**
 * The stack module of {@link CallEntry} for one mesh. Its role is the mesh's own, so it cannot clash with a
 * user's module.
 *
 * @example
 * ```ts
 * const module = callEntryModule(calls, clock);
 * ```
 */
export function callEntryModule(calls: MeshCalls, clock: Clock): StackModule {
  return {
    role: 'meshfetch:entry',
    description: "The mesh's end of a call: in-flight count, process hold, call-end hooks",
    make: (next) => new CallEntry(next, calls, clock),
  };
}
