// meshfetch/testing's mock service: the test answers each call by hand, in any order.
import { describe, expect, it } from 'vitest';
import { type MeshRequest, type MeshResponse } from 'meshfetch';
import { CallContext, Filter, silentLogger } from 'meshfetch/extend';
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

function ctx(): CallContext {
  return new CallContext('svc', undefined, Infinity, undefined, 0, silentLogger);
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
});
