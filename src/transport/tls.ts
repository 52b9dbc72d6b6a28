/**
 * TLS to upstreams: the material (CA, client certificate and key, as PEM or as files that are watched and
 * re-read when they change), its validation, the typed errors a failed handshake becomes, and the connector
 * that records what each connection negotiated (protocol, TLS version, the server's certificate).
 *
 * Rotation: a {@link TlsMaterial} reads its files once at config time (a missing, unreadable, half-written or
 * mismatched file is a {@link ConfigError} naming the option) and, while an endpoint uses it, watches their
 * directories (`fs.watch`, not persistent: it never keeps the process alive). On a change it re-reads and
 * re-validates everything; new material is handed to the pools, which open new connections with it while
 * the existing ones drain (they finish their requests and close). Material that fails validation is refused
 * (the error is logged, published on `meshfetch:tls:reload` and shown in the snapshot) and the old material
 * stays in use.
 */
import { channel } from 'node:diagnostics_channel';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve as resolvePath } from 'node:path';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ConfigError, MeshError, type MeshErrorDetails } from '../core/errors.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Logger } from '../core/logger.js';

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
 * `MESH_TLS`, `causeCode` the underlying one (`CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...). Not
 * retryable: sending the same request to the same endpoint again cannot fix a certificate; the failure counts
 * against the endpoint (failure accrual).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof TlsError) console.log(e.reason, e.endpoint, e.causeCode); }
 * ```
 */
export class TlsError extends MeshError {
  readonly reason: TlsFailure;
  readonly causeCode: string | undefined;
  /** The server name the certificate was checked against (SNI), when known. */
  readonly servername: string | undefined;
  constructor(
    reason: TlsFailure,
    message: string,
    details: MeshErrorDetails & { causeCode?: string | undefined; servername?: string | undefined },
  ) {
    super('MESH_TLS', message, { phase: 'connect', retryable: false, ...details });
    this.reason = reason;
    this.causeCode = details.causeCode;
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
    if (
      /^ERR_SSL_.*ALERT/.test(code) ||
      code.startsWith('ERR_TLS_') ||
      code === 'ERR_SSL_WRONG_VERSION_NUMBER'
    )
      reason = 'handshake-failed';
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

/** The material in use: PEM buffers, and a description of the client certificate for snapshots. */
export interface TlsMaterialState {
  readonly ca: Array<string | Buffer> | string | Buffer | undefined;
  readonly cert: string | Buffer | undefined;
  readonly key: string | Buffer | undefined;
  /** Increments on every accepted change. */
  readonly version: number;
  /** The client certificate, when one is configured. */
  readonly clientCertificate: CertificateInfo | undefined;
}

/** A certificate as shown in snapshots (no key material). */
export interface CertificateInfo {
  subject: string;
  issuer: string;
  serialNumber: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
}

/** Published on `meshfetch:tls:reload` after each re-read of a service's certificate files. */
export interface TlsReloadEvent {
  /** The option path of the TLS settings (`services.users.transport.tls`). */
  readonly path: string;
  /** The version of the material in use after the reload. */
  readonly version: number;
  /** Set when the new files were refused (the old material stays in use). */
  readonly error?: ConfigError;
}

/** The channel of {@link TlsReloadEvent}s. */
export const TLS_RELOAD_CHANNEL = 'meshfetch:tls:reload';
const reloadChannel = channel(TLS_RELOAD_CHANNEL);

/** Describes a certificate for a snapshot. */
export function certificateInfo(x: X509Certificate): CertificateInfo {
  return {
    subject: x.subject.replace(/\n/g, ', '),
    issuer: x.issuer.replace(/\n/g, ', '),
    serialNumber: x.serialNumber,
    validFrom: x.validFrom,
    validTo: x.validTo,
    fingerprint256: x.fingerprint256,
  };
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

function parseCerts(pem: string | Buffer, path: string, value: unknown): X509Certificate[] {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  const blocks = text.match(PEM_CERT_RE);
  if (blocks === null) throw new ConfigError(path, value, 'PEM certificate(s) (-----BEGIN CERTIFICATE-----)');
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (e) {
    throw new ConfigError(path, value, `PEM certificate(s) that parse (${(e as Error).message})`);
  }
}

function parseKey(pem: string | Buffer, path: string, value: unknown): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new ConfigError(path, value, `an unencrypted PEM private key (${(e as Error).message})`);
  }
}

function isPem(v: unknown): v is string | Buffer {
  return typeof v === 'string' || Buffer.isBuffer(v);
}

/**
 * A service's TLS material: PEM given inline or read from files, validated, and (for files) watched.
 *
 * @example
 * ```ts
 * const m = new TlsMaterial({ caFile: '/etc/ca.pem' }, 'services.users.transport.tls');
 * const release = m.acquire(() => console.log('rotated'), logger);
 * ```
 */
export class TlsMaterial {
  private state: TlsMaterialState;
  private readonly listeners = new Set<() => void>();
  private watchers: FSWatcher[] = [];
  private logger: Logger | undefined;
  private clock: Clock | undefined;
  private timer: TimerHandle | true | undefined;
  /** The last refused reload, cleared by the next accepted one. */
  lastError: ConfigError | undefined;
  /** Files this material re-reads, by option name. */
  readonly files: Readonly<Partial<Record<'caFile' | 'certFile' | 'keyFile', string>>>;

  constructor(
    private readonly options: Readonly<TlsOptions>,
    /** The option path (`services.users.transport.tls`), for error messages. */
    readonly path: string,
  ) {
    const o = options;
    const files: Partial<Record<'caFile' | 'certFile' | 'keyFile', string>> = {};
    for (const [inline, file] of [
      ['ca', 'caFile'],
      ['cert', 'certFile'],
      ['key', 'keyFile'],
    ] as const) {
      if (o[inline] !== undefined && o[file] !== undefined)
        throw new ConfigError(`${path}.${file}`, o[file], `either ${inline} or ${file}, not both`);
      const f = o[file];
      if (f !== undefined) {
        if (typeof f !== 'string' || f.length === 0)
          throw new ConfigError(`${path}.${file}`, f, 'a file path (a non-empty string)');
        files[file] = resolvePath(f);
      }
    }
    if (o.ca !== undefined && !isPem(o.ca) && !(Array.isArray(o.ca) && o.ca.every(isPem)))
      throw new ConfigError(`${path}.ca`, o.ca, 'PEM (a string or Buffer, or an array of them)');
    if (o.cert !== undefined && !isPem(o.cert))
      throw new ConfigError(`${path}.cert`, o.cert, 'PEM (a string or Buffer)');
    if (o.key !== undefined && !isPem(o.key))
      throw new ConfigError(`${path}.key`, '<redacted>', 'PEM (a string or Buffer)');
    this.files = files;
    this.state = this.load(0);
  }

  /** The material in use. */
  get current(): TlsMaterialState {
    return this.state;
  }

  /** Whether any of the material comes from files. */
  get watched(): boolean {
    return Object.keys(this.files).length > 0;
  }

  /** Reads (files) and validates everything; throws a {@link ConfigError} naming the option. */
  private load(version: number): TlsMaterialState {
    const o = this.options;
    const p = this.path;
    const read = (opt: 'caFile' | 'certFile' | 'keyFile'): Buffer | undefined => {
      const f = this.files[opt];
      if (f === undefined) return undefined;
      try {
        return readFileSync(f);
      } catch (e) {
        throw new ConfigError(
          `${p}.${opt}`,
          f,
          `a readable file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        );
      }
    };
    const caFile = read('caFile');
    const certFile = read('certFile');
    const keyFile = read('keyFile');
    const ca = caFile ?? o.ca;
    const cert = certFile ?? o.cert;
    const key = keyFile ?? o.key;
    const certOpt = certFile !== undefined ? 'certFile' : 'cert';
    const keyOpt = keyFile !== undefined ? 'keyFile' : 'key';
    const caOpt = caFile !== undefined ? 'caFile' : 'ca';
    if (ca !== undefined) {
      for (const [i, one] of (Array.isArray(ca) ? ca : [ca]).entries()) {
        const at = Array.isArray(ca) && caFile === undefined ? `${p}.${caOpt}[${i}]` : `${p}.${caOpt}`;
        const x = parseCerts(one, at, caOpt === 'caFile' ? this.files.caFile : '<PEM>');
        if (x.length === 0) throw new ConfigError(at, '<PEM>', 'at least one CA certificate');
      }
    }
    if (cert !== undefined && key === undefined)
      throw new ConfigError(
        `${p}.key`,
        undefined,
        'the private key of tls.cert (give key or keyFile with cert or certFile)',
      );
    if (key !== undefined && cert === undefined)
      throw new ConfigError(
        `${p}.cert`,
        undefined,
        'the client certificate of tls.key (give cert or certFile with key or keyFile)',
      );
    let clientCertificate: CertificateInfo | undefined;
    if (cert !== undefined && key !== undefined) {
      const chain = parseCerts(
        cert,
        `${p}.${certOpt}`,
        certOpt === 'certFile' ? this.files.certFile : '<PEM>',
      );
      const k = parseKey(key, `${p}.${keyOpt}`, keyOpt === 'keyFile' ? this.files.keyFile : '<redacted>');
      if (!chain[0]!.checkPrivateKey(k)) {
        throw new ConfigError(
          `${p}.${keyOpt}`,
          keyOpt === 'keyFile' ? this.files.keyFile : '<redacted>',
          `the private key of the certificate in ${p}.${certOpt} (they do not match)`,
        );
      }
      clientCertificate = certificateInfo(chain[0]!);
    }
    return { ca, cert, key, version, clientCertificate };
  }

  /**
   * Re-reads the files now. Returns the error when the new material was refused (the old stays in use).
   * Unchanged files are a no-op.
   */
  reload(): ConfigError | undefined {
    let next: TlsMaterialState;
    try {
      next = this.load(this.state.version + 1);
    } catch (e) {
      const err = e instanceof ConfigError ? e : new ConfigError(this.path, undefined, String(e));
      this.lastError = err;
      this.logger?.error(
        { path: this.path, option: err.path, error: err.message },
        'TLS material refused; the previous certificates stay in use',
      );
      if (reloadChannel.hasSubscribers)
        reloadChannel.publish({
          path: this.path,
          version: this.state.version,
          error: err,
        } satisfies TlsReloadEvent);
      return err;
    }
    const cur = this.state;
    if (same(next.ca, cur.ca) && same(next.cert, cur.cert) && same(next.key, cur.key)) {
      this.lastError = undefined;
      return undefined;
    }
    this.state = next;
    this.lastError = undefined;
    this.logger?.info(
      { path: this.path, version: next.version, clientCertificate: next.clientCertificate?.serialNumber },
      'TLS material reloaded; new connections use it, existing ones drain',
    );
    for (const l of this.listeners) l();
    if (reloadChannel.hasSubscribers)
      reloadChannel.publish({ path: this.path, version: next.version } satisfies TlsReloadEvent);
    return undefined;
  }

  /**
   * Subscribes to changes; the first subscriber re-reads the files (they may have changed since the config
   * was read) and starts watching them, the last release stops it. The watches are not persistent (they
   * never keep the process alive); the re-read after an event waits `settleMs` on `clock` so that one write
   * (truncate, then data) is read once, whole.
   */
  acquire(onChange: () => void, logger?: Logger, clock?: Clock): () => void {
    this.logger ??= logger;
    this.clock ??= clock;
    this.listeners.add(onChange);
    if (this.listeners.size === 1 && this.watched) {
      this.reload();
      this.startWatching();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.listeners.delete(onChange);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  private startWatching(): void {
    const byDir = new Map<string, Set<string>>();
    for (const f of Object.values(this.files)) {
      const d = dirname(f);
      let s = byDir.get(d);
      if (s === undefined) byDir.set(d, (s = new Set()));
      s.add(basename(f));
      // Kubernetes mounts: the files are symlinks into a `..data` directory swapped atomically.
      s.add('..data');
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(String(name))) this.schedule();
        });
        w.on('error', (e) =>
          this.logger?.warn({ path: this.path, dir, error: e.message }, 'TLS file watch failed'),
        );
        this.watchers.push(w);
      } catch (e) {
        this.logger?.warn({ path: this.path, dir, error: (e as Error).message }, 'cannot watch TLS files');
      }
    }
  }

  /** Coalesces the events of one write (several per file) into one re-read. */
  private schedule(): void {
    if (this.timer !== undefined) return;
    const run = (): void => {
      this.timer = undefined;
      if (this.listeners.size > 0) this.reload();
    };
    const clock = this.clock;
    if (clock === undefined) {
      this.timer = true;
      void Promise.resolve().then(run);
    } else this.timer = clock.setTimeout(run, TlsMaterial.settleMs);
  }

  /** How long a re-read waits after a file event, for the rest of the write (ms). */
  static settleMs = 20;

  private stopWatching(): void {
    if (this.timer !== undefined && this.timer !== true) this.clock?.clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if ((typeof a === 'string' || Buffer.isBuffer(a)) && (typeof b === 'string' || Buffer.isBuffer(b)))
    return Buffer.from(a).equals(Buffer.from(b));
  return false;
}

const materials = new WeakMap<object, TlsMaterial>();

/** Attaches the validated material to resolved TLS options (config.ts does this once per options object). */
export function attachTlsMaterial(tls: TlsOptions, material: TlsMaterial): void {
  materials.set(tls, material);
}

/** The material of resolved TLS options (made on demand for options built by hand). */
export function tlsMaterialOf(tls: TlsOptions, path = 'transport.tls'): TlsMaterial {
  let m = materials.get(tls);
  if (m === undefined) materials.set(tls, (m = new TlsMaterial(tls, path)));
  return m;
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
  if (!tls.clientCert || alpn === 'h2') return;
  let sawData = false;
  const onReadable = (): void => {
    if (s.readableLength > 0) {
      sawData = true;
      s.off('readable', onReadable);
    }
  };
  s.on('readable', onReadable);
  s.once('end', () => {
    if (sawData) return;
    const e = new Error(
      'the server closed the connection after the TLS handshake, before any response',
    ) as Error & {
      code: string;
    };
    e.code = PEER_CLOSED_CODE;
    s.destroy(e);
  });
}
