/**
 * A service's TLS material (CA, client certificate and key) given as PEM or as files: validated at config
 * time (a missing, unreadable, half-written or mismatched file is a {@link ConfigError} naming the option)
 * and, while an endpoint uses it, watched (`fs.watch` on the files' directories, not persistent: it never
 * keeps the process alive). On a change everything is re-read and re-validated after a short settle delay
 * on the mesh clock; accepted material goes to the pools (new connections use it, existing ones drain),
 * refused material is logged, published on `meshfetch:tls:reload` and shown in the snapshot, and the old
 * material stays in use.
 */
import { channel } from 'node:diagnostics_channel';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve as resolvePath } from 'node:path';
import type { Clock, TimerHandle } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { boolean, custom, object, optional, string, type Spec } from '../core/validate.js';
import type { Logger } from '../core/logger.js';
import type { TlsOptions } from './tls.js';

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
export const TLS_RELOAD_CHANNEL = 'meshfetch:tls:reload'; // CHANNELS.tlsReload
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

/** PEM text given inline; a key is never echoed back in a message. */
function pem(expected: string, accept: (v: unknown) => boolean, redact = false): Spec<unknown> {
  return optional(
    custom((v, path) => {
      if (!accept(v)) throw new ConfigError(path, redact ? '<redacted>' : v, expected);
      return v;
    }),
  );
}

const file = optional(string({ nonEmpty: true, expected: 'a file path (a non-empty string)' }));

/**
 * The TLS options of a service and what each must be, declared once: PEM inline or a file, never both.
 * Reading and checking the material itself is {@link TlsMaterial}'s.
 *
 * @example
 * ```ts
 * tlsOptions.resolve({ caFile: '/etc/ca.pem' }, 'services.users.transport.tls');
 * ```
 */
export const tlsOptions: Spec<Readonly<TlsOptions>> = object(
  {
    servername: optional(string({ nonEmpty: true })),
    ca: pem(
      'PEM (a string or Buffer, or an array of them)',
      (v) => isPem(v) || (Array.isArray(v) && v.every(isPem)),
    ),
    caFile: file,
    cert: pem('PEM (a string or Buffer)', isPem),
    certFile: file,
    key: pem('PEM (a string or Buffer)', isPem, true),
    keyFile: file,
    rejectUnauthorized: optional(boolean()),
  },
  {
    check(o, path) {
      for (const [inline, f] of [
        ['ca', 'caFile'],
        ['cert', 'certFile'],
        ['key', 'keyFile'],
      ] as const) {
        if (o[inline] !== undefined && o[f] !== undefined)
          throw new ConfigError(optionPath(path, f), o[f], `either ${inline} or ${f}, not both`);
      }
    },
  },
) as Spec<Readonly<TlsOptions>>;

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
    tlsOptions.resolve(options, path);
    const files: Partial<Record<'caFile' | 'certFile' | 'keyFile', string>> = {};
    for (const file of ['caFile', 'certFile', 'keyFile'] as const) {
      const f = options[file];
      if (f !== undefined) files[file] = resolvePath(f);
    }
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
