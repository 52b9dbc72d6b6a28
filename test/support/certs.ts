// Certificates for the TLS tests, made with the openssl CLI into a temporary directory: a CA, leaves signed by
// it (any names, any validity window, server or client use), a self-signed one. P-256 keys: fast to make.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, PEM. */
export interface Pem {
  cert: string;
  key: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `YYYYMMDDHHMMSSZ` for openssl ca's -startdate / -enddate. */
function asn1Time(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
}

const DAY = 86_400_000;

/**
 * A throw-away certificate authority in a temporary directory.
 *
 * @example
 * ```ts
 * const ca = testCa('test-ca');
 * const server = ca.leaf({ names: ['users.internal'] });
 * ```
 */
export class TestCa {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  private n = 0;

  constructor(readonly name = 'meshfetch-test-ca') {
    this.dir = mkdtempSync(join(tmpdir(), 'meshfetch-certs-'));
    openssl(this.dir, [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=${name}`, '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]); // prettier-ignore
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), '1000\n');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = test',
        '[ test ]',
        `dir = ${this.dir}`,
        'database = $dir/index.txt',
        'serial = $dir/serial',
        'new_certs_dir = $dir',
        'certificate = $dir/ca.crt',
        'private_key = $dir/ca.key',
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        'copy_extensions = none',
        '[ any ]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    this.cert = readFileSync(join(this.dir, 'ca.crt'), 'utf8');
    this.key = readFileSync(join(this.dir, 'ca.key'), 'utf8');
  }

  /**
   * A leaf signed by this CA. `names` become DNS (or IP) subject alternative names; `client` makes a client
   * certificate; `notBefore` / `notAfter` are epoch ms (default: valid from an hour ago for a day).
   */
  leaf(
    o: { names?: string[]; cn?: string; client?: boolean; notBefore?: number; notAfter?: number } = {},
  ): Pem {
    const id = `leaf${++this.n}`;
    const names = o.names ?? ['localhost'];
    const now = Date.now();
    openssl(this.dir, [
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${o.cn ?? names[0] ?? id}`,
    ]); // prettier-ignore
    const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    writeFileSync(
      join(this.dir, `${id}.ext`),
      [
        '[ ext ]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        `extendedKeyUsage = ${o.client ? 'clientAuth' : 'serverAuth'}`,
        ...(san ? [`subjectAltName = ${san}`] : []),
        '',
      ].join('\n'),
    );
    openssl(this.dir, [
      'ca', '-batch', '-config', 'ca.cnf', '-notext', '-in', `${id}.csr`, '-out', `${id}.crt`,
      '-extfile', `${id}.ext`, '-extensions', 'ext',
      '-startdate', asn1Time(o.notBefore ?? now - 3_600_000),
      '-enddate', asn1Time(o.notAfter ?? now + DAY),
    ]); // prettier-ignore
    return {
      cert: readFileSync(join(this.dir, `${id}.crt`), 'utf8'),
      key: readFileSync(join(this.dir, `${id}.key`), 'utf8'),
    };
  }

  /** A self-signed server certificate (signed by no CA) for `names`. */
  selfSigned(names: string[] = ['localhost']): Pem {
    const id = `self${++this.n}`;
    openssl(this.dir, [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${id}.key`, '-out', `${id}.crt`, '-subj', `/CN=${names[0]}`, '-days', '2',
      '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    ]); // prettier-ignore
    return {
      cert: readFileSync(join(this.dir, `${id}.crt`), 'utf8'),
      key: readFileSync(join(this.dir, `${id}.key`), 'utf8'),
    };
  }

  /** Removes the temporary directory. */
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
