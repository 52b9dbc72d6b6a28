/**
 * `meshfetch/testing`: deterministic time and randomness for tests of code that uses the mesh, in-memory
 * discovery, and a mock service for testing filters. Published as a subpath so production bundles do not
 * carry it.
 */
// First: keeps undici from installing a global dispatcher while it loads (src/core/undici-global.ts).
import { releaseUndiciGlobals } from '../core/undici-global.js';
export { FakeClock } from './fake-clock.js';
export { seededRng } from '../core/rng.js';
export { StaticDiscovery, staticDiscovery } from '../discovery/static.js';
export { mockService, mockResponse } from './mock.js';
export type { MockCall, MockHandle } from './mock.js';

releaseUndiciGlobals();
