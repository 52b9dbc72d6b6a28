/**
 * What `mesh.dispatcher` hands to an undici dispatch handler: the controller (which is also the call's
 * signal), the response's raw header lines, the delivery of a mesh response (headers, then the body with
 * back-pressure), failures, and the adapter for handlers written for undici 6 (Node 22's built-in fetch),
 * which the dispatcher wraps on entry. The dispatcher itself (./dispatcher.ts) routes and calls the mesh.
 */
import type { Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { CallSignal } from '../core/signal.js';
import { DIVERT, PAUSE_SINK, RESUME_SINK, tapOf, type BodySink, type BodyTap } from '../core/body-sink.js';
import { responseHeaders, type MeshResponse, type ResponseHeaderRecord } from '../core/message.js';

type Handler = Dispatcher.DispatchHandler;

function noop(): void {}
/** The callbacks of a handler written for undici 6 (Node 22's built-in fetch). */
interface LegacyCallbacks {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: Buffer[] | null): void;
  onError?(err: Error): void;
  onUpgrade?(statusCode: number, rawHeaders: Buffer[], socket: unknown): void;
  onResponseStarted?(): void;
  onBodySent?(chunk: Buffer): void;
  onRequestSent?(): void;
}

export function isLegacy(handler: object): handler is LegacyCallbacks {
  const h = handler as Handler & LegacyCallbacks;
  return (
    typeof h.onRequestStart !== 'function' &&
    (typeof h.onHeaders === 'function' ||
      typeof h.onConnect === 'function' ||
      typeof h.onError === 'function')
  );
}

/**
 * A legacy handler seen through the controller API: the mesh, the pass-through Agent and undici 8 all speak
 * only the controller API. undici 8 has the same adapter inside `Dispatcher1Wrapper`, but exports no way to
 * wrap a handler alone (the wrapper wraps a whole dispatcher), hence this small one.
 */
export class LegacyHandler implements Handler {
  constructor(private readonly h: LegacyCallbacks) {}
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.h.onConnect?.((reason?: Error) => controller.abort(reason ?? new AbortedByCaller()), context);
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    socket: unknown,
  ): void {
    this.h.onUpgrade?.(statusCode, rawOf(controller, headers), socket);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusText?: string,
  ): void {
    const resume = (): void => controller.resume();
    if (this.h.onHeaders?.(statusCode, rawOf(controller, headers), resume, statusText ?? '') === false) {
      controller.pause();
    }
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.h.onData?.(chunk) === false) controller.pause();
  }
  onResponseEnd(controller: Dispatcher.DispatchController): void {
    const t = controller.rawTrailers;
    this.h.onComplete?.(Array.isArray(t) ? (t as Buffer[]) : NO_RAW_TRAILERS);
  }
  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.h.onError?.(err);
  }
  onResponseStarted(): void {
    this.h.onResponseStarted?.();
  }
  onBodySent(chunk: Buffer): void {
    this.h.onBodySent?.(chunk);
  }
  onRequestSent(): void {
    this.h.onRequestSent?.();
  }
}

function rawOf(controller: Dispatcher.DispatchController, headers: Record<string, unknown>): Buffer[] {
  const raw = controller.rawHeaders;
  // The mesh's own controller holds Buffers already (deliver): handed over as they are, not copied.
  if (controller instanceof Controller && raw !== undefined) return raw as Buffer[];
  if (Array.isArray(raw)) return raw.map((x) => (typeof x === 'string' ? latin1(x) : x));
  return toBuffers((raw ?? headers) as ResponseHeaderRecord);
}

/** The trailers of a mesh response (the mesh does not carry trailers), and their raw lines. */
const NO_TRAILERS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const NO_RAW_TRAILERS: Buffer[] = Object.freeze([]) as unknown as Buffer[];

/** The context handed to `onRequestStart` (undici's is per-dispatch data a dispatcher may fill; the mesh has none). */
export const NO_CONTEXT: object = Object.freeze({});

class AbortedByCaller extends Error {
  override name = 'AbortError';
  constructor() {
    super('The request was aborted');
  }
}

/**
 * The controller handed to a handler for a mesh service's response, and the call's signal (the handler aborts
 * the call through the controller): one object per call. It delivers the response to the handler (headers,
 * then the body with back-pressure), and is the sink of a diverted body (src/core/body-sink.ts).
 */
export class Controller extends CallSignal implements Dispatcher.DispatchController, BodySink {
  /** The body while it streams to the handler as a Readable (a body that could not be diverted). */
  body: Readable | undefined = undefined;
  /** The response's header lines (undici 8's fetch reads these rather than the parsed record). */
  rawHeaders: Buffer[] | undefined = undefined;
  rawTrailers: Buffer[] | undefined = undefined;
  /** A controller's reason is null until it aborts (a signal's is undefined). */
  override reason: any = null;
  private _paused = false;
  /** The body's flow control while it is diverted to this controller. */
  private tap: BodyTap | undefined = undefined;
  /** The handler has had the response's end or an error: nothing more goes to it. */
  private over = false;
  constructor(readonly handler: Handler) {
    super();
  }
  get paused(): boolean {
    return this._paused;
  }
  pause(): void {
    this._paused = true;
    const tap = this.tap;
    if (tap !== undefined) tap[PAUSE_SINK]();
    else this.body?.pause();
  }
  resume(): void {
    this._paused = false;
    const tap = this.tap;
    if (tap !== undefined) tap[RESUME_SINK]();
    else this.body?.resume();
  }
  /**
   * The response is over: the handler keeps this controller (fetch keeps its abort for as long as the
   * fetch lives), so it lets go of the body and the header lines, and the call's objects with them.
   */
  release(): void {
    this.body = undefined;
    this.tap = undefined;
    this.rawHeaders = undefined;
  }

  /** Hands the call's failure to the handler, once. */
  fail(err: Error): void {
    if (this.over) return;
    this.over = true;
    this.release();
    this.handler.onResponseError?.(this, err);
  }

  data(chunk: Buffer): boolean {
    this.handler.onResponseData?.(this, chunk);
    return !this._paused;
  }

  end(): void {
    if (this.over) return;
    this.over = true;
    this.handler.onResponseEnd?.(this, NO_TRAILERS);
    this.release();
  }

  error(err: Error): void {
    this.fail(err);
  }

  /**
   * Delivers a mesh response: the headers, then the body. What has already arrived goes to the handler now,
   * and the end with it when the whole body is here (a small answer arrives with its headers): as undici
   * delivers it, in the same turn. fetch relies on it: after a 421 it drops the connection of the answer it
   * has, and an answer still streaming would then fail the whole fetch (undici's own fetch
   * test/fetch/issue-2898.js).
   */
  deliver(res: MeshResponse): void {
    const handler = this.handler;
    const body = res.body;
    const headers = responseHeaders(res);
    this.rawHeaders = toBuffers(headers);
    try {
      // undici calls it at the first byte of the response; fetch takes its resource-timing response start there.
      handler.onResponseStarted?.();
      handler.onResponseStart?.(this, res.statusCode, headers as never, res.statusText);
    } catch (err) {
      // As undici does when a handler throws at the headers: the request is aborted, the handler told.
      this.discard(body, err as Error);
      return;
    }
    if (this.aborted) {
      // The handler aborted at the headers (the abort has reached the body through the call's signal).
      this.discard(body, this.reason as Error);
      return;
    }
    // The body straight to the handler, without the Readable's buffering, when its class allows it.
    const tap = tapOf(body);
    if (tap !== undefined) {
      this.tap = tap;
      if (this._paused) tap[PAUSE_SINK]();
      if (tap[DIVERT](this)) return;
      this.tap = undefined;
    }
    this.stream(body);
  }

  /** The response is not delivered: its body is destroyed (quietly) and the handler gets `err`. */
  private discard(body: Readable, err: Error): void {
    body.on('error', noop);
    body.destroy(err);
    this.fail(err);
  }

  /** The body read as a Readable. */
  private stream(body: Readable): void {
    const handler = this.handler;
    body.on('error', (err: Error) => this.fail(err));
    this.body = body;
    while (!this._paused && body.readableLength > 0) {
      const chunk = body.read() as Buffer | null;
      if (chunk === null) break;
      handler.onResponseData?.(this, chunk);
    }
    if (!this._paused && body.readableLength === 0 && (body as { complete?: boolean }).complete === true) {
      this.end();
      body.read(); // lets the body end and close (its done hooks run)
      return;
    }
    body.on('data', (chunk: Buffer) => handler.onResponseData?.(this, chunk));
    body.on('end', () => this.end());
    if (this._paused) body.pause();
  }
}

/**
 * Header strings as latin1 Buffers, shared: response header names and most values repeat from one response
 * to the next (`content-type`, `content-length: 32`, `connection`...), and a `Buffer.from` for each of them
 * stood out in the dispatcher path's profile (docs/benchmarks.md). Bounded (it starts over when full) and
 * limited to short strings. The Buffers handed to a handler are read-only by contract, as
 * undici's own are.
 */
const latin1Cache = new Map<string, Buffer>();

function latin1(s: string): Buffer {
  if (s.length > 64) return Buffer.from(s, 'latin1');
  let b = latin1Cache.get(s);
  if (b === undefined) {
    b = Buffer.from(s, 'latin1');
    if (latin1Cache.size >= 512) latin1Cache.clear();
    latin1Cache.set(s, b);
  }
  return b;
}

/**
 * A header name's Buffer and the Buffer of the last value seen with it. Response header values are new
 * strings on every response, so finding their Buffer in {@link latin1Cache} hashes each one; comparing a
 * value with the last one under its name does not, and most names keep their value from one response to the
 * next (`content-length`, `content-type`, `connection`).
 */
interface NameLine {
  readonly name: Buffer;
  value: string;
  valueBuffer: Buffer;
}

const nameLines = new Map<string, NameLine>();

function nameLine(k: string, v: string): NameLine {
  let line = nameLines.get(k);
  if (line === undefined) {
    line = { name: latin1(k), value: v, valueBuffer: latin1(v) };
    if (nameLines.size >= 256) nameLines.clear();
    nameLines.set(k, line);
  } else if (line.value !== v) {
    line.valueBuffer = latin1(v);
    line.value = v;
  }
  return line;
}

/** Raw header lines as Buffers, from the parsed record. */
function toBuffers(headers: ResponseHeaderRecord): Buffer[] {
  const out: Buffer[] = [];
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    if (typeof v === 'string') {
      const line = nameLine(k, v);
      out.push(line.name, line.valueBuffer);
    } else {
      const name = latin1(k);
      for (const x of v) out.push(name, latin1(x));
    }
  }
  return out;
}

/** Fails a dispatch before its call started (the handler gets a controller of its own). */
export function fail(handler: Handler, err: Error): void {
  new Controller(handler).fail(err);
}
