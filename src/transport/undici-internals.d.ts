// Types for the one undici module the pool leaf imports by path: the response body class that undici's
// `request()` returns (undici 7, lib/api/readable.js), so the mesh's bodies are the same class.
declare module 'undici/lib/api/readable.js' {
  import type { Dispatcher } from 'undici';

  type Body = Dispatcher.ResponseData['body'];
  export const Readable: new (opts: {
    resume: () => void;
    abort: (err?: Error) => void;
    contentType?: string | undefined;
    contentLength?: number | undefined;
    highWaterMark?: number;
  }) => Body;
  export type Readable = Body;
}
