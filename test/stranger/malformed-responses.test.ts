// Backends that lie: a response that is not HTTP/1.1 is a TransportError, typed and machine-readable. undici's
// HTTPParserError has no `code` (undici 8 looks the parser's error number up in a name-to-number table, so
// the `HPE_*` code comes out undefined), so `causeCode` falls back to the error's name rather than being
// undefined (src/transport/pool.ts); a Content-Length longer than the body keeps undici's own code.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, TransportError, type Mesh } from 'meshfetch';

let server: Server | undefined;
let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** undici's `HPE_*` code if a later undici fills it in, else the error's name. */
const PARSER_CODE = expect.stringMatching(/^(HPE_[A-Z_]+|HTTPParserError)$/) as unknown;

/** A raw TCP server that answers every request head with `answer`. */
async function liar(answer: string): Promise<string> {
  server = createServer((s: Socket) => {
    s.on('error', () => {});
    s.once('data', () => s.end(answer));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('a backend that answers with something that is not HTTP', () => {
  it('an invalid status line: TransportError (phase headers) with a causeCode', async () => {
    mesh = createMesh({ services: { liar: { endpoints: [await liar('HTTP/1.1 abc what\r\n\r\n')] } } });
    const err = await mesh.request('http://liar/', { method: 'POST', body: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ phase: 'headers', service: 'liar', causeCode: PARSER_CODE });
  });

  it('garbage in a chunked body: TransportError (phase body) with a causeCode', async () => {
    const answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n';
    mesh = createMesh({ services: { liar: { endpoints: [await liar(answer)] } } });
    const res = await mesh.request('http://liar/');
    const err = await res.body.text().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ phase: 'body', service: 'liar', causeCode: PARSER_CODE });
  });

  it('a Content-Length longer than the body: TransportError (phase body) with undici’s code', async () => {
    const answer = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort';
    mesh = createMesh({ services: { liar: { endpoints: [await liar(answer)] } } });
    const res = await mesh.request('http://liar/');
    const err = await res.body.text().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ phase: 'body', causeCode: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' });
  });
});
