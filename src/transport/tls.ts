/**
 * TLS to upstreams: the options, the typed error a failed handshake becomes ({@link TlsError}, saying which
 * check failed), and the socket observer that records what each connection negotiated (protocol, TLS
 * version, the server's certificate) for snapshots and spans. The material itself (PEM or files that rotate)
 * is in tls-material.ts.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { TransportError, type MeshErrorDetails } from '../core/errors.js';

/** TLS options for the connections to a service's endpoints. */
export interface TlsOptions {
  /** SNI server name, also the name the server's certificate is verified against. Default: the URL's host. */
  servername?: string;
  /** Trusted CA certificates (PEM). Default: Node's bundled roots. Give this or `caFile`. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** A PEM file of trusted CA certificates, watched and re-read when it changes. */
  caFile?: string;
  /** The client certificate (PEM) for mutual TLS; needs `key` (or `keyFile`). Give this or `certFile`. */
  cert?: string | Buffer;
  /** A PEM file holding the client certificate (chain), watched and re-read when it changes. */
  certFile?: string;
  /** The client certificate's private key (PEM, unencrypted). Give this or `keyFile`. */
  key?: string | Buffer;
  /** A PEM file holding the client key, watched and re-read when it changes. */
  keyFile?: string;
  /**
   * Verify the server's certificate (chain, validity, name). Default true. `false` accepts any certificate:
   * for a test environment only; the mesh logs a warning once per service that sets it.
   */
  rejectUnauthorized?: boolean;
}

/** The option names {@link TlsOptions} accepts. */
export const TLS_OPTION_KEYS: readonly string[] = [
  'servername',
  'ca',
  'caFile',
  'cert',
  'certFile',
  'key',
  'keyFile',
  'rejectUnauthorized',
];

/** Why a TLS connection failed. */
export type TlsFailure =
  | 'hostname-mismatch'
  | 'untrusted-certificate'
  | 'self-signed-certificate'
  | 'expired-certificate'
  | 'not-yet-valid-certificate'
  | 'client-certificate-required'
  | 'client-certificate-rejected'
  | 'handshake-failed';

/** The code of a connection the server closed right after the handshake, before any byte of a response. */
const PEER_CLOSED_CODE = 'ERR_TLS_PEER_CLOSED_AFTER_HANDSHAKE';

const REASONS: Record<string, TlsFailure> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'hostname-mismatch',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted-certificate',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted-certificate',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted-certificate',
  CERT_UNTRUSTED: 'untrusted-certificate',
  CERT_SIGNATURE_FAILURE: 'untrusted-certificate',
  CERT_REJECTED: 'untrusted-certificate',
  INVALID_CA: 'untrusted-certificate',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed-certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed-certificate',
  CERT_HAS_EXPIRED: 'expired-certificate',
  CERT_NOT_YET_VALID: 'not-yet-valid-certificate',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'client-certificate-required',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'client-certificate-rejected',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'client-certificate-rejected',
  ERR_SSL_TLSV1_ALERT_ACCESS_DENIED: 'client-certificate-rejected',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'client-certificate-rejected',
  ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR: 'client-certificate-rejected',
  [PEER_CLOSED_CODE]: 'client-certificate-rejected',
};

const WHAT: Record<TlsFailure, string> = {
  'hostname-mismatch': "the server's certificate is not valid for the server name",
  'untrusted-certificate': "the server's certificate is not signed by a trusted CA",
  'self-signed-certificate': "the server's certificate is self-signed and not trusted",
  'expired-certificate': "the server's certificate has expired",
  'not-yet-valid-certificate': "the server's certificate is not valid yet",
  'client-certificate-required': 'the server requires a client certificate and none was sent',
  'client-certificate-rejected':
    'the server refused the client certificate (or closed the connection after the handshake)',
  'handshake-failed': 'the TLS handshake failed',
};

/**
 * A TLS connection to an endpoint failed: the server's certificate did not verify (`reason` says why:
 * `hostname-mismatch`, `untrusted-certificate`, `self-signed-certificate`, `expired-certificate`, ...) or the
 * server refused the client's (`client-certificate-required`, `client-certificate-rejected`). `code` is
 * `MESH_TLS` (it is a {@link TransportError}, so code that catches those still does), `causeCode` the underlying one (`CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...). Not
 * retryable: sending the same request to the same endpoint again cannot fix a certificate; the failure counts
 * against the endpoint (failure accrual).
 *
 * @example
 * ```ts
 * catch (e) {
 *   if (e instanceof TransportError && e.code === 'MESH_TLS') console.log((e as TlsError).reason, e.endpoint);
 * }
 * ```
 */
export class TlsError extends TransportError {
  readonly reason: TlsFailure;
  /** The server name the certificate was checked against (SNI), when known. */
  readonly servername: string | undefined;
  constructor(
    reason: TlsFailure,
    message: string,
    details: MeshErrorDetails & { causeCode?: string | undefined; servername?: string | undefined },
  ) {
    super(message, { phase: 'connect', retryable: false, ...details, code: 'MESH_TLS' });
    this.reason = reason;
    this.servername = details.servername;
  }
}

/**
 * Turns a TLS failure from undici or Node into a {@link TlsError}; anything else gives undefined.
 *
 * @example
 * ```ts
 * const tlsErr = toTlsError(err, 'users', '10.0.0.1:443', 'users.internal');
 * ```
 */
export function toTlsError(
  err: unknown,
  service: string,
  endpoint: string,
  servername: string | undefined,
): TlsError | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return undefined;
  let reason: TlsFailure | undefined = REASONS[code];
  if (reason === undefined) {
    // OpenSSL's own failures (alerts, no common version or cipher); not Node's ERR_TLS_HANDSHAKE_TIMEOUT and
    // the like, which are transient and stay transport errors.
    if (code.startsWith('ERR_SSL_')) reason = 'handshake-failed';
    else return undefined;
  }
  const name = servername === undefined ? '' : ` (server name "${servername}")`;
  return new TlsError(
    reason,
    `TLS to ${endpoint} for service "${service}" failed: ${WHAT[reason]}${name}: ${firstLine(err.message)} (${code})`,
    { service, endpoint, cause: err, causeCode: code, servername },
  );
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}

/** One scheme's connections to an endpoint in a snapshot. */
export interface ConnectionSnapshot {
  protocol: 'h2' | 'http/1.1' | null;
  opened: number;
  open: number;
  /** https only: the last connection's TLS version, cipher, server name, server certificate; client material. */
  tls?: {
    version: string | null;
    cipher: string | null;
    servername: string | null;
    authorized: boolean;
    authorizationError: string | null;
    peerCertificate: { subject: string; issuer: string; validTo: string; fingerprint256: string } | null;
    /** Version of the client material (increments on each accepted rotation). */
    materialVersion: number;
    /** The client certificate in use (mTLS), if any. */
    clientCertificate: {
      subject: string;
      serialNumber: string;
      validTo: string;
      fingerprint256: string;
    } | null;
    /** The last refused reload of certificate files (the previous material stays in use). */
    reloadError: string | null;
  };
}

/** An endpoint's connections per scheme used, in a snapshot. */
export interface EndpointTransportSnapshot {
  http?: ConnectionSnapshot;
  https?: ConnectionSnapshot;
}

/** What an endpoint's connections negotiated, for snapshots and spans. */
export interface ConnectionState {
  /** `h2` or `http/1.1`, from ALPN (or h2c); undefined before the first connection. */
  protocol: 'h2' | 'http/1.1' | undefined;
  /** Connections opened so far (handshakes, for TLS). */
  opened: number;
  /** Connections open now. */
  open: number;
  /** The TLS state of the last connection made (https only). */
  tls:
    | {
        version: string | null;
        cipher: string | undefined;
        servername: string | undefined;
        authorized: boolean;
        authorizationError: string | undefined;
        peerCertificate:
          { subject: string; issuer: string; validTo: string; fingerprint256: string } | undefined;
        materialVersion: number;
      }
    | undefined;
}

/**
 * Records a new socket in `state` and, for TLS with a client certificate, turns a close by the server right
 * after the handshake (before any byte of a response: a server refusing the client certificate after a
 * TLS 1.3 handshake, as Node's does) into an error that says so.
 */
export function observeSocket(
  socket: TLSSocket | Socket,
  state: ConnectionState,
  tls: { servername: string | undefined; clientCert: boolean; materialVersion: number } | undefined,
  h2c: boolean,
): void {
  state.opened++;
  state.open++;
  socket.once('close', () => state.open--);
  if (tls === undefined) {
    state.protocol = h2c ? 'h2' : 'http/1.1';
    return;
  }
  const s = socket as TLSSocket;
  const alpn = s.alpnProtocol;
  state.protocol = alpn === 'h2' ? 'h2' : 'http/1.1';
  const peer = s.getPeerCertificate();
  const cipher = s.getCipher();
  state.tls = {
    version: s.getProtocol(),
    cipher: cipher?.name,
    servername: tls.servername,
    authorized: s.authorized,
    authorizationError:
      s.authorizationError === undefined || s.authorizationError === null
        ? undefined
        : String(s.authorizationError),
    peerCertificate:
      peer !== undefined &&
      peer !== null &&
      typeof peer === 'object' &&
      'subject' in peer &&
      peer.subject !== undefined
        ? {
            subject: String(peer.subject.CN ?? ''),
            issuer: String(peer.issuer?.CN ?? ''),
            validTo: peer.valid_to,
            fingerprint256: peer.fingerprint256,
          }
        : undefined,
    materialVersion: tls.materialVersion,
  };
  if (!tls.clientCert) return;
  // A TLS socket's bytesRead counts application bytes only (not the handshake, not session tickets): none
  // at the server's close means it never answered anything on this connection, HTTP/1.1 or HTTP/2 (whose
  // server sends SETTINGS at once). This listener runs before undici's, so the requests fail with this error.
  s.once('end', () => {
    if (s.bytesRead > 0) return;
    const e = new Error(
      'the server closed the connection after the TLS handshake, before any response',
    ) as Error & {
      code: string;
    };
    e.code = PEER_CLOSED_CODE;
    s.destroy(e);
  });
}
