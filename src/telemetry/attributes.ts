/**
 * Attribute names and the helpers that turn requests, responses and errors into bounded attribute values.
 * Apart from otel.ts so that modules which only name an outcome (retries record why they retried) do not
 * load the OpenTelemetry API.
 */
/**
 * Span and metric attribute names: the stable HTTP and network semantic conventions where they speak, and
 * meshfetch's own under the `meshfetch.` prefix.
 *
 * @example
 * ```ts
 * span.attributes[ATTR.service]; // 'users'
 * ```
 */
export const ATTR = Object.freeze({
  // Semantic conventions (stable HTTP client spans and metrics).
  method: 'http.request.method',
  methodOriginal: 'http.request.method_original',
  statusCode: 'http.response.status_code',
  resendCount: 'http.request.resend_count',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  urlFull: 'url.full',
  urlScheme: 'url.scheme',
  errorType: 'error.type',
  peerAddress: 'network.peer.address',
  peerPort: 'network.peer.port',
  protocolVersion: 'network.protocol.version',
  // meshfetch.
  service: 'meshfetch.service',
  destination: 'meshfetch.destination',
  endpoint: 'meshfetch.endpoint',
  balancer: 'meshfetch.balancer',
  attempt: 'meshfetch.attempt',
  attempts: 'meshfetch.attempts',
  backup: 'meshfetch.backup',
  backupsSent: 'meshfetch.backup.sent',
  backupWon: 'meshfetch.backup.won',
  retryReason: 'meshfetch.retry.reason',
  retries: 'meshfetch.retry.count',
  budgetLeft: 'meshfetch.retry.budget_left',
  budgetExhausted: 'meshfetch.retry.budget_exhausted',
  breakerState: 'meshfetch.breaker.state',
  statusClass: 'meshfetch.status_class',
  endpointStatus: 'meshfetch.endpoint.status',
  discoveryKind: 'meshfetch.discovery.kind',
  discoveryState: 'meshfetch.discovery.state',
  discoveryStale: 'meshfetch.discovery.stale',
  discoveryErrorKind: 'meshfetch.discovery.error_kind',
  accrualReason: 'meshfetch.accrual.reason',
});

const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

/**
 * The semantic conventions' `http.request.method`: the method if it is a known one, else `_OTHER`.
 *
 * @example
 * ```ts
 * methodAttribute('PROPFIND'); // '_OTHER'
 * ```
 */
export function methodAttribute(method: string): string {
  return KNOWN_METHODS.has(method) ? method : '_OTHER';
}

/**
 * A bounded `error.type` for an error: the most specific code it carries (a system error code such as
 * `ECONNREFUSED` under a transport error, else the mesh error code such as `MESH_CIRCUIT_OPEN`), else its
 * class name, else `_OTHER`.
 *
 * @example
 * ```ts
 * errorType(new CircuitOpenError('users', 'primary', 'open')); // 'MESH_CIRCUIT_OPEN'
 * ```
 */
export function errorType(error: unknown): string {
  if (typeof error !== 'object' || error === null) return '_OTHER';
  const e = error as { causeCode?: unknown; code?: unknown; name?: unknown };
  if (typeof e.causeCode === 'string' && e.causeCode !== '') return e.causeCode;
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  if (typeof e.name === 'string' && e.name !== '' && e.name !== 'Error') return e.name;
  return '_OTHER';
}

/**
 * The status class of an outcome: `1xx` to `5xx`, or `error` when there was no response.
 *
 * @example
 * ```ts
 * statusClass(503); // '5xx'
 * ```
 */
export function statusClass(statusCode: number | undefined): string {
  if (statusCode === undefined) return 'error';
  if (statusCode >= 100 && statusCode < 600) return `${Math.floor(statusCode / 100)}xx`;
  return 'other';
}

/**
 * Splits a URL authority into host and port (`users` -> `['users', 80]` for http).
 *
 * @example
 * ```ts
 * splitAuthority('users:8080', 'http:'); // ['users', 8080]
 * splitAuthority('[::1]:443', 'https:'); // ['::1', 443]
 * ```
 */
export function splitAuthority(authority: string, protocol: string): [string, number] {
  const fallback = protocol === 'https:' ? 443 : 80;
  let host = authority;
  let port = fallback;
  const close = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  if (colon > close) {
    host = authority.slice(0, colon);
    const n = Number(authority.slice(colon + 1));
    if (Number.isInteger(n) && n > 0) port = n;
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return [host, port];
}

const REDACTED_QUERY_KEYS = ['AWSAccessKeyId', 'Signature', 'sig', 'X-Goog-Signature'];

/**
 * The semantic conventions' `url.full` of a mesh request, with the values of the query parameters the
 * conventions name as sensitive (`AWSAccessKeyId`, `Signature`, `sig`, `X-Goog-Signature`) replaced by
 * `REDACTED`. The URL of a mesh call never holds user info (the entry points take none).
 *
 * @example
 * ```ts
 * fullUrl('http:', 'users', '/v1?sig=abc'); // 'http://users/v1?sig=REDACTED'
 * ```
 */
export function fullUrl(protocol: string, authority: string, path: string): string {
  const q = path.indexOf('?');
  if (q >= 0) {
    let query = path.slice(q + 1);
    for (const k of REDACTED_QUERY_KEYS) {
      if (query.includes(k + '='))
        query = query.replace(new RegExp(`(^|&)${k}=[^&#]*`, 'g'), `$1${k}=REDACTED`);
    }
    path = path.slice(0, q + 1) + query;
  }
  return `${protocol}//${authority}${path}`;
}
