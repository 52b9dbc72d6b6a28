/**
 * A mock service for testing a filter or a module: the filter wraps `service`, and the test drives the other
 * end through `handle`, deciding when each call is answered, with what, and what status the inner service
 * reports. Modelled on tower-test's `mock::pair()` (a `Mock` service and a `Handle` that receives each
 * request with a `SendResponse`), because a filter's interesting behaviour is in the ordering: what it does
 * while a call is outstanding, when an answer comes late, when the inner service turns busy.
 *
 * No timer, no I/O: a call stays pending until the test settles it, so tests that use a fake clock stay
 * deterministic.
 */
import { Readable } from 'node:stream';
import type { CallContext } from '../core/context.js';
import { ParsedResponse, type MeshRequest, type MeshResponse } from '../core/message.js';
import type { Service, ServiceStatus } from '../core/service.js';

/** One call the mock service received, to be answered by the test. */
export interface MockCall<Req, Res> {
  readonly request: Req;
  readonly ctx: CallContext;
  /** Resolves the call with `res`. */
  respond(res: Res): void;
  /** Rejects the call with `err`. */
  fail(err: unknown): void;
  /** True once `respond` or `fail` was called. */
  readonly settled: boolean;
}

/** The test's end of a {@link mockService}. */
export interface MockHandle<Req, Res> {
  /** What the service reports as its status (default `'ready'`); set it to test how a filter reacts. */
  status: ServiceStatus;
  /** Every call received so far, in order. */
  readonly calls: ReadonlyArray<MockCall<Req, Res>>;
  /** Calls received and not yet settled. */
  readonly pending: number;
  /** True once the service was closed. */
  readonly closed: boolean;
  /** The next call not yet taken with `nextCall`: one already received, or the next to arrive. */
  nextCall(): Promise<MockCall<Req, Res>>;
}

class Call<Req, Res> implements MockCall<Req, Res> {
  settled = false;
  constructor(
    readonly request: Req,
    readonly ctx: CallContext,
    private readonly resolve: (res: Res) => void,
    private readonly reject: (err: unknown) => void,
    private readonly onSettle: () => void,
  ) {}
  respond(res: Res): void {
    this.settle(() => this.resolve(res));
  }
  fail(err: unknown): void {
    this.settle(() => this.reject(err));
  }
  private settle(run: () => void): void {
    if (this.settled) throw new Error('mockService: this call was already settled');
    this.settled = true;
    this.onSettle();
    run();
  }
}

class Mock<Req, Res> implements Service<Req, Res>, MockHandle<Req, Res> {
  status: ServiceStatus = 'ready';
  closed = false;
  readonly calls: Array<Call<Req, Res>> = [];
  pending = 0;
  private taken = 0;
  private readonly waiting: Array<(call: MockCall<Req, Res>) => void> = [];

  call(req: Req, ctx: CallContext): Promise<Res> {
    if (this.closed) return Promise.reject(new Error('mockService: called after close()'));
    return new Promise<Res>((resolve, reject) => {
      const call = new Call(req, ctx, resolve, reject, () => this.pending--);
      this.calls.push(call);
      this.pending++;
      const waiter = this.waiting.shift();
      if (waiter !== undefined) {
        this.taken++;
        waiter(call);
      }
    });
  }

  nextCall(): Promise<MockCall<Req, Res>> {
    if (this.taken < this.calls.length) return Promise.resolve(this.calls[this.taken++]!);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A service whose calls the test answers by hand.
 *
 * @example
 * ```ts
 * const { service, handle } = mockService();
 * const filter = new MyFilter(service);
 * const pending = filter.call(req, ctx);
 * const call = await handle.nextCall();
 * call.respond(mockResponse(503, { 'retry-after': '1' }));
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
 * the given text or bytes.
 *
 * @example
 * ```ts
 * mockResponse(200, { 'content-type': 'application/json' }, '{"ok":true}');
 * ```
 */
export function mockResponse(
  statusCode: number,
  headers: Record<string, string | string[]> = {},
  body: string | Uint8Array = '',
): MeshResponse {
  const chunks = body.length === 0 ? [] : [typeof body === 'string' ? Buffer.from(body) : body];
  return new ParsedResponse(statusCode, '', { ...headers }, Readable.from(chunks));
}
