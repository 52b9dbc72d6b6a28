/**
 * Tracing (and the per-call and per-attempt metrics that ride along) as two stack modules:
 *
 * - `logical-span` (logical stack, below `deadline`, above `retries`): one INTERNAL span per logical call,
 *   named `{method} {service}`, the parent of every attempt. It stays open until the response body ends (a
 *   {@link CallContext.onEnd} hook the entry point runs once), and then carries what the mesh decided: the
 *   balancer, the endpoint that answered, the attempts, why each retry was made, the budget left, the breaker
 *   state, the backup requests. It records `meshfetch.call.duration` and the retry and backup counters.
 * - `attempt-span` (endpoint stack, below the per-attempt timeout, just above the pool): one CLIENT span per
 *   attempt on the wire, following the stable HTTP client semantic conventions (named by method;
 *   `http.request.method`, `server.address`, `server.port`, `url.full`, `http.response.status_code`,
 *   `error.type`, `http.request.resend_count`; `network.peer.*` for the endpoint; `network.protocol.version`,
 *   `1.1` or `2`, what the endpoint's connections negotiated), ended at response headers
 *   (the conventions allow either; the logical span covers the body). It injects the W3C trace context of
 *   that span into the attempt's headers through the registered propagator, and records
 *   `http.client.request.duration`.
 *
 * With no SDK registered (no tracer provider, no meter provider) both modules do one global read each and
 * call down: no span, no attribute object, no `context.with`, no closure. The attempt module still calls
 * `propagation.inject` with the active context, so a registered propagator alone passes an incoming trace
 * on; with none registered that is the API's no-op.
 */
import {
  context,
  isSpanContextValid,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Clock } from '../core/clock.js';
import type { CallContext, CallEndHook } from '../core/context.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { Filter, InlineFilter, type Service } from '../core/service.js';
import type { StackModule } from '../core/stack.js';
import { meshInstruments, type MeshInstruments } from './metrics.js';
import { ATTR, errorType, fullUrl, methodAttribute, splitAuthority, statusClass } from './attributes.js';
import { activeTracer, headerSetter, propagatorRegistered } from './otel.js';

/** One logical call being traced or measured: its span and what its end records. */
class LogicalCall implements CallEndHook {
  constructor(
    private readonly span: Span | undefined,
    private readonly inst: MeshInstruments | undefined,
    private readonly method: string,
    private readonly clock: Clock,
  ) {}

  callEnded(ctx: CallContext, res: MeshResponse | undefined, error: unknown): void {
    const status = res?.statusCode;
    const failed = error !== undefined && error !== null;
    const type = failed
      ? errorType(error)
      : status !== undefined && status >= 400
        ? String(status)
        : undefined;
    const reasons = ctx.retryReasons;
    const span = this.span;
    if (span !== undefined) {
      const last = ctx.attempt; // the attempt whose outcome the call returned
      const a: Attributes = { [ATTR.attempts]: last.number };
      if (last.destination !== undefined) a[ATTR.destination] = last.destination;
      if (last.endpoint !== undefined) a[ATTR.endpoint] = last.endpoint;
      if (last.balancer !== undefined) a[ATTR.balancer] = last.balancer;
      if (last.breakerState !== undefined) a[ATTR.breakerState] = last.breakerState;
      if (reasons !== undefined) {
        a[ATTR.retries] = reasons.length;
        a[ATTR.retryReason] = reasons[reasons.length - 1];
      }
      if (ctx.budgetLeft !== undefined) a[ATTR.budgetLeft] = ctx.budgetLeft;
      if (ctx.budgetExhausted) a[ATTR.budgetExhausted] = true;
      if (ctx.backupsSent > 0) {
        a[ATTR.backupsSent] = ctx.backupsSent;
        a[ATTR.backupWon] = ctx.backupWon;
      }
      if (status !== undefined) a[ATTR.statusCode] = status;
      if (type !== undefined) a[ATTR.errorType] = type;
      span.setAttributes(a);
      if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error) });
      else if (type !== undefined) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
    const inst = this.inst;
    if (inst !== undefined) {
      const service = ctx.service;
      const attrs: Attributes = {
        [ATTR.service]: service,
        [ATTR.method]: methodAttribute(this.method),
        [ATTR.statusClass]: failed ? 'error' : statusClass(status),
      };
      if (type !== undefined) attrs[ATTR.errorType] = type;
      inst.callDuration.record(Math.max(0, this.clock.now() - ctx.startedAt) / 1000, attrs);
      if (reasons !== undefined)
        for (const r of reasons) inst.retries.add(1, { [ATTR.service]: service, [ATTR.retryReason]: r });
      if (ctx.budgetExhausted) inst.budgetExhausted.add(1, { [ATTR.service]: service });
      if (ctx.backupsSent > 0) {
        inst.backupSent.add(ctx.backupsSent, { [ATTR.service]: service });
        if (ctx.backupWon) inst.backupWon.add(1, { [ATTR.service]: service });
      }
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The logical call's span and metrics (see the file comment).
 *
 * @example
 * ```ts
 * const filter = new LogicalSpanFilter(next, 'users', systemClock);
 * ```
 */
export class LogicalSpanFilter extends InlineFilter {
  constructor(
    next: Service,
    private readonly service: string,
    private readonly clock: Clock,
  ) {
    super(next);
  }

  /** Inline: nothing to do after the call (the span ends with the body, through `ctx.onEnd`). */
  override call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.enter(req, ctx) ?? this.next.call(req, ctx);
  }

  enter(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> | undefined {
    if (!ctx.otel) return undefined;
    const tracer = activeTracer();
    const inst = meshInstruments();
    if (tracer === undefined && inst === undefined) return undefined;
    let span: Span | undefined;
    let active: Context | undefined;
    if (tracer !== undefined) {
      const parent = context.active();
      const s = tracer.startSpan(`${req.method} ${this.service}`, this.startOptions(req), parent);
      if (s.isRecording()) span = s;
      // A span sampled out still has a valid context: the attempts become its children and propagate it.
      if (span !== undefined || isSpanContextValid(s.spanContext())) {
        active = trace.setSpan(parent, s);
        ctx.traceContext = active;
      }
    }
    ctx.onEnd(new LogicalCall(span, inst, req.method, this.clock));
    // Everything below runs in the logical span's context (so the spans of custom modules nest under it): the
    // rest of the call is sent from here, not by the run of inline filters this one may be composed into.
    if (span !== undefined) return context.with(active!, this.next.call, this.next, req, ctx);
    return undefined;
  }

  exit(res: MeshResponse): MeshResponse {
    return res;
  }

  fail(err: unknown): never {
    throw err;
  }

  private startOptions(req: MeshRequest): { kind: SpanKind; attributes: Attributes } {
    const [host, port] = splitAuthority(req.authority, req.protocol);
    return {
      kind: SpanKind.INTERNAL,
      attributes: {
        [ATTR.service]: this.service,
        [ATTR.method]: methodAttribute(req.method),
        [ATTR.serverAddress]: host,
        [ATTR.serverPort]: port,
        [ATTR.urlFull]: fullUrl(req.protocol, req.authority, req.path),
      },
    };
  }
}

/**
 * The `logical-span` stack module (logical level). Placement: below `deadline` (the span covers exactly the
 * time the call was allowed, and an already expired call fails before it, as it never went anywhere) and
 * above `retries` and backup requests (one span is the parent of every attempt, and it sees the final
 * outcome after retries).
 *
 * @example
 * ```ts
 * createMesh({ services: {}, stack: (d) => ({ ...d, logical: d.logical.remove('logical-span') }) });
 * ```
 */
export const logicalSpanModule: StackModule = {
  role: 'logical-span',
  description:
    'OpenTelemetry span of the logical call (until the body ends) with the mesh decisions; call duration, retry and backup metrics',
  make: (next, env) => new LogicalSpanFilter(next, env.target.service, env.clock),
};

/**
 * One attempt's CLIENT span, trace context injection and `http.client.request.duration` (see the file
 * comment).
 *
 * @example
 * ```ts
 * const filter = new AttemptSpanFilter(pool, 'users', '10.0.0.1:8080', systemClock);
 * ```
 */
export class AttemptSpanFilter extends Filter {
  private readonly peerHost: string;
  private readonly peerPort: number;

  constructor(
    next: Service,
    private readonly service: string,
    private readonly endpoint: string,
    private readonly clock: Clock,
  ) {
    super(next);
    const [h, p] = splitAuthority(endpoint, 'http:');
    this.peerHost = h;
    this.peerPort = p;
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    if (!ctx.otel) return this.next.call(req, ctx);
    const tracer = activeTracer();
    const inst = meshInstruments();
    if (tracer === undefined) {
      // No tracer: pass on the active context (an incoming trace) if a propagator is registered.
      if (propagatorRegistered())
        propagation.inject(
          (ctx.traceContext as Context | undefined) ?? context.active(),
          req.headers,
          headerSetter,
        );
      if (inst === undefined) return this.next.call(req, ctx);
    }
    return this.measured(req, ctx, tracer, inst);
  }

  private async measured(
    req: MeshRequest,
    ctx: CallContext,
    tracer: Tracer | undefined,
    inst: MeshInstruments | undefined,
  ): Promise<MeshResponse> {
    const method = methodAttribute(req.method);
    const [host, port] = splitAuthority(req.authority, req.protocol);
    let span: Span | undefined;
    if (tracer !== undefined) {
      const parent = (ctx.traceContext as Context | undefined) ?? context.active();
      const s = tracer.startSpan(
        method === '_OTHER' ? 'HTTP' : method,
        { kind: SpanKind.CLIENT, attributes: this.startAttributes(req, ctx, method, host, port) },
        parent,
      );
      propagation.inject(trace.setSpan(parent, s), req.headers, headerSetter);
      if (s.isRecording()) span = s;
    }
    const t0 = inst !== undefined ? this.clock.now() : 0;
    let res: MeshResponse;
    try {
      res = await this.next.call(req, ctx);
    } catch (err) {
      const type = errorType(err);
      if (span !== undefined) {
        const version = this.protocolVersion(req);
        if (version !== undefined) span.setAttribute(ATTR.protocolVersion, version);
        span.setAttribute(ATTR.errorType, type);
        span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(err) });
        span.end();
      }
      if (inst !== undefined) this.record(inst, t0, method, host, port, req.protocol, undefined, type);
      throw err;
    }
    const status = res.statusCode;
    const type = status >= 400 ? String(status) : undefined;
    if (span !== undefined) {
      span.setAttribute(ATTR.statusCode, status);
      const version = this.protocolVersion(req);
      if (version !== undefined) span.setAttribute(ATTR.protocolVersion, version);
      if (type !== undefined) {
        span.setAttribute(ATTR.errorType, type);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    }
    if (inst !== undefined) this.record(inst, t0, method, host, port, req.protocol, status, type);
    return res;
  }

  /**
   * `network.protocol.version` (`1.1` or `2`): what the endpoint's connections negotiated, read from the pool
   * leaf this module sits on (the default placement); undefined elsewhere or before any connection.
   */
  private protocolVersion(req: MeshRequest): string | undefined {
    const leaf = this.next as { protocolVersion?: (p: 'http:' | 'https:') => string | undefined };
    return typeof leaf.protocolVersion === 'function' ? leaf.protocolVersion(req.protocol) : undefined;
  }

  private startAttributes(
    req: MeshRequest,
    ctx: CallContext,
    method: string,
    host: string,
    port: number,
  ): Attributes {
    const attempt = ctx.attempt;
    const a: Attributes = {
      [ATTR.method]: method,
      [ATTR.serverAddress]: host,
      [ATTR.serverPort]: port,
      [ATTR.urlFull]: fullUrl(req.protocol, req.authority, req.path),
      [ATTR.peerAddress]: this.peerHost,
      [ATTR.peerPort]: this.peerPort,
      [ATTR.service]: this.service,
      [ATTR.endpoint]: this.endpoint,
      [ATTR.attempt]: attempt.number,
    };
    if (method === '_OTHER') a[ATTR.methodOriginal] = req.method;
    if (attempt.number > 1) {
      a[ATTR.resendCount] = attempt.number - 1;
      const reasons = ctx.retryReasons;
      if (reasons !== undefined) a[ATTR.retryReason] = reasons[reasons.length - 1];
    }
    if (attempt.backup) a[ATTR.backup] = true;
    if (attempt.balancer !== undefined) a[ATTR.balancer] = attempt.balancer;
    if (attempt.breakerState !== undefined) a[ATTR.breakerState] = attempt.breakerState;
    return a;
  }

  private record(
    inst: MeshInstruments,
    t0: number,
    method: string,
    host: string,
    port: number,
    protocol: string,
    status: number | undefined,
    type: string | undefined,
  ): void {
    const attrs: Attributes = {
      [ATTR.method]: method,
      [ATTR.serverAddress]: host,
      [ATTR.serverPort]: port,
      [ATTR.urlScheme]: protocol === 'https:' ? 'https' : 'http',
      [ATTR.service]: this.service,
      [ATTR.endpoint]: this.endpoint,
    };
    if (status !== undefined) attrs[ATTR.statusCode] = status;
    if (type !== undefined) attrs[ATTR.errorType] = type;
    const version = this.protocolVersion({ protocol } as MeshRequest);
    if (version !== undefined) attrs[ATTR.protocolVersion] = version;
    inst.attemptDuration.record(Math.max(0, this.clock.now() - t0) / 1000, attrs);
  }
}

/**
 * The `attempt-span` stack module (endpoint level). Placement: just above the pool and below the per-attempt
 * timeout and failure accrual, so the span times exactly the attempt on the wire (a per-attempt timeout ends
 * it with `error.type`), and the trace context is written into the headers of the attempt that is sent.
 *
 * @example
 * ```ts
 * createMesh({ services: {}, stack: (d) => ({ ...d, endpoint: d.endpoint.remove('attempt-span') }) });
 * ```
 */
export const attemptSpanModule: StackModule<'endpoint'> = {
  role: 'attempt-span',
  description:
    'OpenTelemetry CLIENT span per attempt (HTTP semantic conventions), W3C trace context injection, http.client.request.duration',
  make: (next, env) => new AttemptSpanFilter(next, env.target.service, env.target.address, env.clock),
};
