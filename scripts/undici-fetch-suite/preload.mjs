// Loaded into every test process of scripts/undici-fetch-suite/run.mjs (NODE_OPTIONS=--import). undici's
// fetch tests take `fetch` from the undici checkout (`require('../..')`); this hook hands them the entry point
// under test instead, and Node's global Request, Response, Headers and FormData (the built-in fetch recognises
// only its own). Everything else they import is the checkout's own undici, unchanged.
//
// Modes (MESHFETCH_SUITE_MODE):
// - builtin:    Node's built-in fetch, the reference;
// - fetch:      mesh.fetch;
// - dispatcher: the built-in fetch with `dispatcher: mesh.dispatcher` (unless the test passes its own).
//
// In the mesh modes `localhost` and `127.0.0.1` are mesh services, so the URLs the tests build go through
// the mesh unchanged (same URL, same Host header, same resource-timing name). The test servers listen on
// ports picked at run time; one endpoint-level module, appended just above the connection pool, sends each
// call to the pool of its URL's port on 127.0.0.1. Everything above it (entry points, deadline, retries,
// breaker, balancer) is the mesh as configured by default.
import Module from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const mode = process.env.MESHFETCH_SUITE_MODE ?? 'builtin';
const root = process.env.MESHFETCH_SUITE_UNDICI;
const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '../../dist');

if (root !== undefined) {
  const targets = new Set(['index.js', 'index-fetch.js', 'undici-fetch.js'].map((f) => path.join(root, f)));
  const require = Module.createRequire(import.meta.url);
  const patched = new WeakMap();
  let mesh;
  const meshOf = () => {
    if (mesh !== undefined) return mesh;
    const { createMesh } = require(path.join(dist, 'index.js'));
    const { defaultTransportOptions } = require(path.join(dist, 'extend.js'));
    const { PoolService } = require(path.join(dist, 'transport/pool.js'));
    const pools = new Map();
    const byPort = {
      role: 'suite-port',
      description: "Sends each call to 127.0.0.1 at its URL's port (the test servers' ports)",
      make: (next, env) => ({
        get status() {
          return next.status;
        },
        close: () => next.close(),
        call(req, ctx) {
          const port = /:(\d+)$/.exec(req.authority)?.[1] ?? (req.protocol === 'https:' ? '443' : '80');
          let pool = pools.get(port);
          if (pool === undefined) {
            const address = `127.0.0.1:${port}`;
            pool = new PoolService(
              address,
              req.service,
              address,
              defaultTransportOptions,
              'logical',
              env.logger,
              env.clock,
            );
            pools.set(port, pool);
          }
          return pool.call(req, ctx);
        },
      }),
    };
    mesh = createMesh({
      services: { localhost: { endpoints: ['127.0.0.1:9'] }, '127.0.0.1': { endpoints: ['127.0.0.1:9'] } },
      stack: (s) => ({ ...s, endpoint: s.endpoint.append(byPort) }),
    });
    return mesh;
  };
  const entry =
    mode === 'fetch'
      ? (input, init) => meshOf().fetch(input, init)
      : mode === 'dispatcher'
        ? (input, init) =>
            globalThis.fetch(input, { ...init, dispatcher: init?.dispatcher ?? meshOf().dispatcher })
        : (input, init) => globalThis.fetch(input, init);
  const patch = (exp) => {
    let p = patched.get(exp);
    if (p === undefined) {
      p = {
        ...exp,
        fetch: entry,
        Request: globalThis.Request,
        Response: globalThis.Response,
        Headers: globalThis.Headers,
        FormData: globalThis.FormData,
      };
      patched.set(exp, p);
    }
    return p;
  };
  const load = Module._load;
  Module._load = function (request, parent, isMain) {
    const exp = load.apply(this, arguments);
    if (parent && typeof request === 'string' && request.startsWith('../')) {
      let file;
      try {
        file = Module._resolveFilename(request, parent, isMain);
      } catch {
        return exp;
      }
      if (targets.has(file)) return patch(exp);
    }
    return exp;
  };
}
