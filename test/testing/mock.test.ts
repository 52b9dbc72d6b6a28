// meshfetch/testing's mock service: the test answers each call by hand, in any order.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type MeshRequest, type MeshResponse } from 'meshfetch';
import { CallContext, Filter, silentLogger } from 'meshfetch/extend';
import { CallSignal } from '../../src/core/signal.js';
import { mockResponse, mockService } from 'meshfetch/testing';

const req = (path: string): MeshRequest => ({
  method: 'GET',
  protocol: 'http:',
  authority: 'svc',
  service: 'svc',
  path,
  headers: {},
  body: null,
});

function ctx(signal?: CallSignal): CallContext {
  return new CallContext('svc', signal, Infinity, undefined, 0, silentLogger);
}

/** A filter under test: adds a header, and reports 'busy' whenever its inner service does. */
class Tag extends Filter {
  call(r: MeshRequest, c: CallContext): Promise<MeshResponse> {
    r.headers['x-tag'] = '1';
    return this.next.call(r, c);
  }
}

describe('mockService', () => {
  it('hands each call to the test in order, and the test answers them in any order', async () => {
    const { service, handle } = mockService();
    const filter = new Tag(service);
    const a = filter.call(req('/a'), ctx());
    const b = filter.call(req('/b'), ctx());
    expect(handle.pending).toBe(2);
    const first = await handle.nextCall();
    const second = await handle.nextCall();
    expect([first.request.path, second.request.path]).toEqual(['/a', '/b']);
    expect(first.request.headers['x-tag']).toBe('1');
    second.fail(new Error('boom'));
    first.respond(mockResponse(201, { 'content-type': 'text/plain' }, 'made'));
    await expect(b).rejects.toThrow('boom');
    const res = await a;
    expect(res.statusCode).toBe(201);
    let text = '';
    for await (const chunk of res.body) text += String(chunk);
    expect(text).toBe('made');
    expect(handle.pending).toBe(0);
    expect(() => first.respond(mockResponse(200))).toThrow(/already settled/);
  });

  it('nextCall waits for a call that has not arrived yet', async () => {
    const { service, handle } = mockService();
    const next = handle.nextCall();
    const pending = service.call(req('/later'), ctx());
    const call = await next;
    expect(call.request.path).toBe('/later');
    call.respond(mockResponse(204));
    expect((await pending).statusCode).toBe(204);
  });

  it('reports the status the test sets, through a filter, and records close()', async () => {
    const { service, handle } = mockService();
    const filter = new Tag(service);
    expect(filter.status).toBe('ready');
    handle.status = 'busy';
    expect(filter.status).toBe('busy');
    await filter.close();
    expect(handle.closed).toBe(true);
    await expect(service.call(req('/x'), ctx())).rejects.toThrow(/after close/);
  });

  it('onCall answers calls as they arrive; a call it leaves unsettled waits for nextCall', async () => {
    const { service, handle } = mockService();
    handle.onCall = (call) => {
      call.ctx.attempt.endpoint = 'a:1';
      if (call.request.path !== '/hold') call.respond(mockResponse(503));
    };
    const c = ctx();
    expect((await service.call(req('/now'), c)).statusCode).toBe(503);
    expect(c.attempt.endpoint).toBe('a:1');
    const held = service.call(req('/hold'), ctx());
    const call = await handle.nextCall();
    expect(call.request.path).toBe('/hold'); // the answered call was not handed out
    expect(handle.calls.map((x) => x.request.path)).toEqual(['/now', '/hold']);
    expect(handle.pending).toBe(1);
    call.respond(mockResponse(200));
    expect((await held).statusCode).toBe(200);
    handle.onCall = () => {
      throw new Error('sync');
    };
    expect(() => service.call(req('/throws'), ctx())).toThrow('sync');
    handle.onCall = (c) => {
      c.fail(new Error('failed, then threw')); // a rejection nobody can see: not reported as unhandled
      throw new Error('sync again');
    };
    expect(() => service.call(req('/fails-and-throws'), ctx())).toThrow('sync again');
    expect(handle.pending).toBe(0);
    expect(handle.calls).toHaveLength(4);
  });

  it("rejects a pending call with its signal's reason when the signal aborts, and stops listening when settled", async () => {
    const { service, handle } = mockService();
    const signal = new CallSignal();
    const pending = service.call(req('/a'), ctx(signal)).catch((e: unknown) => e);
    const call = await handle.nextCall();
    const reason = new Error('gave up');
    signal.abort(reason);
    expect(await pending).toBe(reason);
    expect(call.aborted).toBe(true);
    expect(call.settled).toBe(true);
    expect(signal.listenerCount).toBe(0);
    // An already aborted signal rejects at once; an answered call leaves no listener.
    await expect(service.call(req('/b'), ctx(signal))).rejects.toBe(reason);
    const live = new CallSignal();
    const answered = service.call(req('/c'), ctx(live));
    expect(live.listenerCount).toBe(1);
    handle.calls[2]!.respond(mockResponse(200));
    await answered;
    expect(live.listenerCount).toBe(0);
    expect(handle.calls[2]!.aborted).toBe(false);
  });

  it('mockResponse takes a stream as the body, which ends when the test ends it', async () => {
    const body = new PassThrough();
    const res = mockResponse(200, {}, body);
    expect(res.body).toBe(body);
    body.end('late');
    let text = '';
    for await (const chunk of res.body) text += String(chunk);
    expect(text).toBe('late');
  });
});
