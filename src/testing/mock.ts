/**
 * A mock service for testing a filter or a module: the filter wraps `service`, and the test drives the other
 * end through `handle`, deciding when each call is answered, with what, and what status the inner service
 * reports. Modelled on tower-test's `mock::pair()` (a `Mock` service and a `Handle` that receives each
 * request with a `SendResponse`), because a filter's interesting behaviour is in the ordering: what it does
 * while a call is outstanding, when an answer comes late, when the inner service turns busy.
 *
 * Two things tower-test's mock does not need and a mesh filter's test does: an `onCall` hook that answers (or
 * annotates) each call as it arrives, for tests that send many calls with a scripted outcome; and following
 * the call's signal, as a transport does, because the mesh's filters cancel what they sent by aborting it.
 *
 * No timer, no I/O: a call stays pending until the test settles it (or its signal aborts), so tests that use a
 * fake clock stay deterministic.
 */
import { Readable } from 'node:stream';
import type { CallContext } from '../core/context.js';
import { ParsedResponse, type MeshRequest, type MeshResponse } from '../core/message.js';
import type { Service, ServiceStatus } from '../core/service.js';
import type { CancelSignal } from '../core/signal.js';

/** One call the mock service received, to be answered by the test. */
export interface MockCall<Req, Res> {
  readonly request: Req;
  readonly ctx: CallContext;
  /** Resolves the call with `res`. */
  respond(res: Res): void;
  /** Rejects the call with `err`. */
  fail(err: unknown): void;
  /** True once the call was answered, failed, or aborted. */
  readonly settled: boolean;
  /** True if the call's signal aborted it (it was rejected with the signal's reason). */
  readonly aborted: boolean;
}

/** The test's end of a {@link mockService}. */
export interface MockHandle<Req, Res> {
  /** What the service reports as its status (default `'ready'`); set it to test how a filter reacts. */
  status: ServiceStatus;
  /**
   * Runs as each call arrives, before `call` returns: it may answer the call at once (a call it settles is
   * not handed to `nextCall`), or read and write its request and context. If it throws, `call` throws, as a
   * service that breaks the contract would. Unset (the default), every call waits for the test.
   */
  onCall: ((call: MockCall<Req, Res>) => void) | undefined;
  /** Every call received so far, in order. */
  readonly calls: ReadonlyArray<MockCall<Req, Res>>;
  /** Calls received and not yet settled. */
  readonly pending: number;
  /** True once the service was closed. */
  readonly closed: boolean;
  /**
   * The next call not yet taken with `nextCall` (and not answered by `onCall`): one already received, or the
   * next to arrive.
   */
  nextCall(): Promise<MockCall<Req, Res>>;
}

class Call<Req, Res> implements MockCall<Req, Res> {
  settled = false;
  aborted = false;
  private resolve!: (res: Res) => void;
  private reject!: (err: unknown) => void;
  readonly promise = new Promise<Res>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
  private readonly onAbort = (): void => {
    if (this.settled) return;
    this.aborted = true;
    this.fail(this.signal!.reason);
  };
  /** The signal the call observes, as a transport would: the attempt's own, or the call's. */
  private readonly signal: CancelSignal | undefined;

  constructor(
    readonly request: Req,
    readonly ctx: CallContext,
    private readonly onSettle: () => void,
  ) {
    this.signal = ctx.attemptSignal;
  }

  respond(res: Res): void {
    this.settle();
    this.resolve(res);
  }
  fail(err: unknown): void {
    this.settle();
    this.reject(err);
  }
  /** Rejects the call if its signal is aborted, and otherwise when it aborts. */
  follow(): void {
    const signal = this.signal;
    if (this.settled || signal === undefined) return;
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort);
  }
  /** Marks the call settled; nobody holds its promise (`onCall` threw), so a rejection of it is not reported. */
  drop(): void {
    if (!this.settled) this.settle();
    this.promise.catch(() => {});
  }
  private settle(): void {
    if (this.settled) throw new Error('mockService: this call was already settled');
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.onSettle();
  }
}

class Mock<Req, Res> implements Service<Req, Res>, MockHandle<Req, Res> {
  status: ServiceStatus = 'ready';
  onCall: ((call: MockCall<Req, Res>) => void) | undefined = undefined;
  closed = false;
  readonly calls: Array<Call<Req, Res>> = [];
  pending = 0;
  private readonly untaken: Array<Call<Req, Res>> = [];
  private readonly waiting: Array<(call: MockCall<Req, Res>) => void> = [];
  private readonly onSettle = (): void => {
    this.pending--;
  };

  call(req: Req, ctx: CallContext): Promise<Res> {
    if (this.closed) return Promise.reject(new Error('mockService: called after close()'));
    const call = new Call<Req, Res>(req, ctx, this.onSettle);
    this.calls.push(call);
    this.pending++;
    if (this.onCall !== undefined) {
      try {
        this.onCall(call);
      } catch (err) {
        call.drop();
        throw err;
      }
      if (call.settled) return call.promise;
    }
    call.follow();
    const waiter = this.waiting.shift();
    if (waiter !== undefined) waiter(call);
    else this.untaken.push(call);
    return call.promise;
  }

  nextCall(): Promise<MockCall<Req, Res>> {
    const call = this.untaken.shift();
    if (call !== undefined) return Promise.resolve(call);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A service whose calls the test answers: by hand through `handle.nextCall()`, or as they arrive with
 * `handle.onCall`. A call whose signal aborts rejects with the signal's reason, as a transport does.
 *
 * @example
 * ```ts
 * const { service, handle } = mockService();
 * const filter = new MyFilter(service);
 * const pending = filter.call(req, ctx);
 * const call = await handle.nextCall();
 * call.respond(mockResponse(503, { 'retry-after': '1' }));
 *
 * handle.onCall = (c) => c.respond(mockResponse(200)); // from now on, answer every call at once
 * ```
 */
export function mockService<Req = MeshRequest, Res = MeshResponse>(): {
  service: Service<Req, Res>;
  handle: MockHandle<Req, Res>;
} {
  const mock = new Mock<Req, Res>();
  return { service: mock, handle: mock };
}

/**
 * A response for a mock service to answer with: a status, headers (lower-case names) and a body that streams
 * the given text or bytes, or is the given stream (a `PassThrough` the test ends when it likes).
 *
 * @example
 * ```ts
 * mockResponse(200, { 'content-type': 'application/json' }, '{"ok":true}');
 * const body = new PassThrough();
 * mockResponse(200, {}, body); // the body ends when the test calls body.end()
 * ```
 */
export function mockResponse(
  statusCode: number,
  headers: Record<string, string | string[]> = {},
  body: string | Uint8Array | Readable = '',
): MeshResponse {
  const stream =
    body instanceof Readable
      ? body
      : Readable.from(body.length === 0 ? [] : [typeof body === 'string' ? Buffer.from(body) : body]);
  return new ParsedResponse(statusCode, '', { ...headers }, stream);
}
