/**
 * diagnostics_channel events, so any tool (a logger, an APM agent, a test) can follow what the mesh does
 * without OpenTelemetry: calls starting and ending, endpoints added, removed, marked busy and back, breaker
 * transitions, discovery updates and errors. Node's `diagnostics_channel` costs one property read per event
 * when nobody listens (`channel.hasSubscribers`), so every publisher checks it first and builds no payload
 * otherwise; the channel objects are made once, here.
 *
 * Names share the prefix `meshfetch:` (undici's style: `undici:request:create`). Payloads are plain objects
 * documented below (and in docs/observability.md); none holds a secret (no ACL token, no request header).
 */
import { channel } from 'node:diagnostics_channel';
import type { Clock } from '../core/clock.js';
import type { CallContext, CallEndHook } from '../core/context.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';

/**
 * The channel names.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe(CHANNELS.breakerState, (m) => console.log('breaker', m));
 * ```
 */
export const CHANNELS = Object.freeze({
  /** A logical call entered the mesh. Payload: {@link RequestEvent}. */
  requestStart: 'meshfetch:request:start',
  /** A logical call ended: its body closed, or it failed. Payload: the same {@link RequestEvent} object. */
  requestEnd: 'meshfetch:request:end',
  /** Discovery named a new endpoint. Payload: {@link EndpointEvent}. */
  endpointAdded: 'meshfetch:endpoint:added',
  /** Discovery dropped an endpoint (it drains, then closes). Payload: {@link EndpointEvent}. */
  endpointRemoved: 'meshfetch:endpoint:removed',
  /** Failure accrual marked an endpoint busy. Payload: {@link EndpointStateEvent}. */
  endpointBusy: 'meshfetch:endpoint:busy',
  /** A busy endpoint is ready again (its probes succeeded). Payload: {@link EndpointStateEvent}. */
  endpointReady: 'meshfetch:endpoint:ready',
  /** A circuit breaker changed state. Payload: {@link BreakerEvent}. */
  breakerState: 'meshfetch:breaker:state',
  /** A destination applied a new discovery answer. Payload: {@link DiscoveryUpdateEvent}. */
  discoveryUpdate: 'meshfetch:discovery:update',
  /** A discovery source failed to answer (Consul query error). Payload: {@link DiscoveryErrorEvent}. */
  discoveryError: 'meshfetch:discovery:error',
  /**
   * A service's certificate files were re-read: the new material was taken, or refused (`error`, the old
   * material stays in use). Payload: `TlsReloadEvent` (transport/tls-material.ts).
   */
  tlsReload: 'meshfetch:tls:reload',
});

/**
 * The prefix every meshfetch channel name starts with.
 *
 * @example
 * ```ts
 * Object.values(CHANNELS).every((n) => n.startsWith(CHANNEL_PREFIX)); // true
 * ```
 */
export const CHANNEL_PREFIX = 'meshfetch:';

/**
 * One logical call, published on `meshfetch:request:start` and again, the same object with the outcome
 * filled in, on `meshfetch:request:end` (so a subscriber can pair them by identity, as with undici's events).
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.requestEnd, (m) => {
 *   const e = m as RequestEvent;
 *   console.log(e.service, e.method, e.path, e.statusCode ?? e.error, e.durationMs);
 * });
 * ```
 */
export interface RequestEvent {
  readonly service: string;
  readonly method: string;
  /** The logical authority as written in the URL (`users`, `users:8080`). */
  readonly authority: string;
  /** Path and query, as the caller gave them. */
  readonly path: string;
  /** The call's context (read it, do not change it): deadline, attempts, endpoint, retry reasons... */
  readonly context: CallContext;
  /** Mesh clock (ms) when the call started. */
  readonly startedAt: number;
  /** End only: the final status code, when there was a response. */
  statusCode?: number | undefined;
  /** End only: why the call failed (before a response, or while its body was read). */
  error?: unknown;
  /** End only: from start to the end of the body (ms, mesh clock). */
  durationMs?: number | undefined;
  /** End only: attempts made (the first one included). */
  attempts?: number | undefined;
  /** End only: the endpoint that answered (host:port), when one did. */
  endpoint?: string | undefined;
}

/**
 * An endpoint added to or removed from a destination.
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.endpointAdded, (m) => console.log('+', (m as EndpointEvent).endpoint));
 * ```
 */
export interface EndpointEvent {
  readonly service: string;
  readonly destination: string | undefined;
  /** host:port */
  readonly endpoint: string;
  /** Mesh clock (ms). */
  readonly at: number;
}

/**
 * An endpoint marked busy by failure accrual, or ready again.
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.endpointBusy, (m) => {
 *   const e = m as EndpointStateEvent;
 *   console.warn(e.endpoint, 'busy for', e.busyForMs, 'ms:', e.reason);
 * });
 * ```
 */
export interface EndpointStateEvent {
  readonly service: string;
  readonly endpoint: string | undefined;
  readonly from: 'ready' | 'busy' | 'probing';
  readonly to: 'ready' | 'busy' | 'probing';
  /** `consecutive-failures`, `success-rate`, `probe-failed` (to busy) or `probe-succeeded` (to ready). */
  readonly reason: string;
  readonly at: number;
  /** To busy: how long it stays busy (ms). */
  readonly busyForMs?: number | undefined;
}

/**
 * A circuit breaker transition.
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.breakerState, (m) => {
 *   const e = m as BreakerEvent;
 *   console.warn(`${e.service}/${e.destination}: ${e.from} -> ${e.to}`);
 * });
 * ```
 */
export interface BreakerEvent {
  readonly service: string;
  readonly destination: string;
  readonly from: 'closed' | 'open' | 'half-open';
  readonly to: 'closed' | 'open' | 'half-open';
  readonly at: number;
}

/**
 * A destination applied a discovery answer (also published once when the destination is built).
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.discoveryUpdate, (m) => {
 *   const e = m as DiscoveryUpdateEvent;
 *   console.log(e.service, e.state, e.endpoints, 'endpoints; +', e.added, '-', e.removed);
 * });
 * ```
 */
export interface DiscoveryUpdateEvent {
  readonly service: string;
  readonly destination: string | undefined;
  readonly state: 'pending' | 'bound' | 'negative' | 'failed';
  /** Endpoints now known (bound), else 0. */
  readonly endpoints: number;
  /** The source is failing and the last good set keeps serving. */
  readonly stale: boolean;
  /** Addresses added by this update. */
  readonly added: readonly string[];
  /** Addresses removed by this update. */
  readonly removed: readonly string[];
  readonly at: number;
}

/**
 * A discovery source failed to answer. `message` is safe to log (a Consul ACL token never appears in it).
 *
 * @example
 * ```ts
 * subscribe(CHANNELS.discoveryError, (m) => console.warn('discovery', (m as DiscoveryErrorEvent).message));
 * ```
 */
export interface DiscoveryErrorEvent {
  readonly service: string;
  /** The source kind: `consul`, `dns`, or what a custom source says. */
  readonly kind: string;
  /** A short, bounded error class (`connect`, `timeout`, `acl`, `http`, `malformed`, ...). */
  readonly errorKind: string;
  readonly message: string;
  /** Failures in a row, this one included. */
  readonly consecutiveErrors: number;
  /** Whether a last good endpoint set keeps serving. */
  readonly stale: boolean;
  readonly at: number;
}

/** The channel objects, made once. */
export const requestStartChannel = channel(CHANNELS.requestStart);
/** @see CHANNELS.requestEnd */
export const requestEndChannel = channel(CHANNELS.requestEnd);
/** @see CHANNELS.endpointAdded */
export const endpointAddedChannel = channel(CHANNELS.endpointAdded);
/** @see CHANNELS.endpointRemoved */
export const endpointRemovedChannel = channel(CHANNELS.endpointRemoved);
/** @see CHANNELS.endpointBusy */
export const endpointBusyChannel = channel(CHANNELS.endpointBusy);
/** @see CHANNELS.endpointReady */
export const endpointReadyChannel = channel(CHANNELS.endpointReady);
/** @see CHANNELS.breakerState */
export const breakerStateChannel = channel(CHANNELS.breakerState);
/** @see CHANNELS.discoveryUpdate */
export const discoveryUpdateChannel = channel(CHANNELS.discoveryUpdate);
/** @see CHANNELS.discoveryError */
export const discoveryErrorChannel = channel(CHANNELS.discoveryError);

/** The request event of one call; its end is published by the call's end hook. */
class RequestEventRecord implements RequestEvent, CallEndHook {
  statusCode: number | undefined = undefined;
  error: unknown = undefined;
  durationMs: number | undefined = undefined;
  attempts: number | undefined = undefined;
  endpoint: string | undefined = undefined;
  readonly service: string;
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly startedAt: number;
  constructor(
    req: MeshRequest,
    readonly context: CallContext,
    private readonly clock: Clock,
  ) {
    this.service = context.service;
    this.method = req.method;
    this.authority = req.authority;
    this.path = req.path;
    this.startedAt = context.startedAt;
  }
  callEnded(ctx: CallContext, res: MeshResponse | undefined, error: unknown): void {
    if (!requestEndChannel.hasSubscribers) return;
    this.statusCode = res?.statusCode;
    this.error = error ?? undefined;
    this.durationMs = this.clock.now() - this.startedAt;
    this.attempts = ctx.attempt.number;
    this.endpoint = ctx.attempt.endpoint;
    requestEndChannel.publish(this);
  }
}

/**
 * Whether anyone listens to the request channels (checked by the entry point before
 * {@link publishRequestStart}, so a call with no listener builds nothing).
 *
 * @example
 * ```ts
 * if (requestEventsWanted()) publishRequestStart(req, ctx, clock);
 * ```
 */
export function requestEventsWanted(): boolean {
  return requestStartChannel.hasSubscribers || requestEndChannel.hasSubscribers;
}

/**
 * Publishes `meshfetch:request:start` and arranges `meshfetch:request:end` for when the call ends (a
 * {@link CallContext.onEnd} hook). Called by the entry point.
 *
 * @example
 * ```ts
 * if (requestEventsWanted()) publishRequestStart(req, ctx, clock);
 * ```
 */
export function publishRequestStart(req: MeshRequest, ctx: CallContext, clock: Clock): void {
  const record = new RequestEventRecord(req, ctx, clock);
  if (requestStartChannel.hasSubscribers) requestStartChannel.publish(record);
  if (requestEndChannel.hasSubscribers) ctx.onEnd(record);
}

/**
 * Publishes a discovery error for a custom discovery source (Consul's resolver does it itself).
 *
 * @example
 * ```ts
 * publishDiscoveryError({ service: 'users', kind: 'dns', errorKind: 'timeout', message: 'no answer',
 *   consecutiveErrors: 1, stale: true, at: clock.now() });
 * ```
 */
export function publishDiscoveryError(event: DiscoveryErrorEvent): void {
  if (discoveryErrorChannel.hasSubscribers) discoveryErrorChannel.publish(event);
}
