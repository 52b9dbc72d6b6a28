import type { MeshRequest } from '../../src/core/message.js';

/**
 * A fresh `GET http://users/` as the mesh builds it (a new object and headers record each time), for unit tests
 * that call a filter or a service directly.
 *
 * @example
 * ```ts
 * const res = await filter.call(meshRequest(), ctx);
 * ```
 */
export function meshRequest(): MeshRequest {
  return {
    method: 'GET',
    protocol: 'http:',
    authority: 'users',
    service: 'users',
    path: '/',
    headers: {},
    body: null,
  };
}
