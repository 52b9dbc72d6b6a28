/**
 * The one format of a {@link ConfigError} path: where the bad value sits in what the caller passed, written
 * as a JavaScript accessor from the config's root. Keys that are plain words (letters, digits, `_`, `$`,
 * `-`) are joined with a dot (`services.users.transport.connections`); any other key is quoted in brackets
 * (`services["users.internal"].timeoutMs`, `match.headers["x.trace"]`); array items are indices
 * (`routes[0].to[1].weight`). The root of `createMesh`'s config has no name of its own (`''`), so a
 * top-level key is just its name (`unknownHosts`); a function's own options start with the function
 * (`callOptions.deadlineMs`, `consulDiscovery.waitMs`).
 */

const PLAIN = /^[A-Za-z0-9_$-]+$/;

/**
 * Appends `key` (an object key or an array index) to `path`.
 *
 * @example
 * ```ts
 * optionPath('services', 'users'); // 'services.users'
 * optionPath('services', 'users.internal'); // 'services["users.internal"]'
 * optionPath('', 'unknownHosts'); // 'unknownHosts'
 * optionPath('services.users.endpoints', 1); // 'services.users.endpoints[1]'
 * ```
 */
export function optionPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (!PLAIN.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}
