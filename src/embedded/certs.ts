// A throwaway PKI for the demo, tests and benchmarks: one CA, a server certificate for localhost/127.0.0.1 and client
// certificates on demand, made with the openssl CLI (EC P-256: fast to generate on a busy 2-core machine).
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSync } from './exec.js';

export interface TestCerts {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** Paths of a client certificate with subject CN=`cn` signed by the CA; made on first use, reused after. */
  clientCert(cn: string): { cert: string; key: string };
}

const KEY_ARGS = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out'];

function openssl(args: string[], cwd: string): void {
  runSync('openssl', args, { cwd });
}

function newKey(path: string, cwd: string): void {
  openssl([...KEY_ARGS, path], cwd);
  // libpq and PostgreSQL refuse private keys readable by group or others.
  chmodSync(path, 0o600);
}

/** Signs a fresh key's CSR with the CA; `extensions` are openssl extension lines (SAN, key usage). */
function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: string[],
  certPath: string,
  keyPath: string,
): void {
  const tmp = `${name}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const tmpKey = join(dir, `${tmp}.key`);
  const csr = join(dir, `${tmp}.csr`);
  const ext = join(dir, `${tmp}.ext`);
  const tmpCert = join(dir, `${tmp}.crt`);
  newKey(tmpKey, dir);
  openssl(['req', '-new', '-key', tmpKey, '-subj', subject, '-out', csr], dir);
  writeFileSync(ext, extensions.join('\n') + '\n');
  openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(dir, 'ca.crt'),
      '-CAkey',
      join(dir, 'ca.key'),
      '-sha256',
      '-days',
      '825',
    ].concat(['-set_serial', `0x${randomBytes(12).toString('hex')}`, '-extfile', ext, '-out', tmpCert]),
    dir,
  );
  // Renamed into place last, so a reader never sees a key without its certificate.
  renameSync(tmpKey, keyPath);
  renameSync(tmpCert, certPath);
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
}

/**
 * Creates (or reopens) the test PKI in `dir`. Reopening an existing directory keeps its CA, so a test process
 * can mint client certificates trusted by a server the global setup started with the same directory.
 */
export function makeTestCerts(dir: string): TestCerts {
  mkdirSync(join(dir, 'clients'), { recursive: true });
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  if (!existsSync(caCert) || !existsSync(caKey)) {
    newKey(caKey, dir);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        caKey,
        '-sha256',
        '-days',
        '3650',
        '-subj',
        '/CN=pgwarden test CA',
      ].concat([
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        caCert,
      ]),
      dir,
    );
  }
  const serverCert = join(dir, 'server.crt');
  const serverKey = join(dir, 'server.key');
  if (!existsSync(serverCert) || !existsSync(serverKey)) {
    issue(
      dir,
      'server',
      '/CN=localhost',
      [
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
      ],
      serverCert,
      serverKey,
    );
  }
  return {
    dir,
    caCert,
    caKey,
    serverCert,
    serverKey,
    clientCert(cn: string) {
      // The CN becomes a file name and an openssl -subj value: keep it to characters safe in both.
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(cn))
        throw new Error(`client certificate CN must match [A-Za-z0-9._@-]{1,64}`);
      const cert = join(dir, 'clients', `${cn}.crt`);
      const key = join(dir, 'clients', `${cn}.key`);
      if (!existsSync(cert) || !existsSync(key)) {
        issue(
          dir,
          `client-${cn}`,
          `/CN=${cn}`,
          ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'],
          cert,
          key,
        );
      }
      return { cert, key };
    },
  };
}
