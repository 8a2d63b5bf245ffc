// PgBouncer as the reference proxy for benchmarks (and any test that wants one): config and auth_file in a temp
// dir, run in the foreground as the postgres OS user (it refuses root) on a free port, stopped with SIGTERM.
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { chownToPostgres, cleanEnv, postgresOsUser } from '../../src/embedded/exec.js';
import { pickFreePort } from '../../src/embedded/ports.js';
import { supervise } from './child-process.js';

export interface PgbouncerDatabase {
  host: string;
  port: number;
  dbname: string;
  /** Fixed server login; without it PgBouncer logs in as the client's user. */
  user?: string;
  password?: string;
}

export interface StartPgbouncerOptions {
  /** [databases] entries by the name clients ask for. */
  databases: Record<string, PgbouncerDatabase>;
  /** auth_file entries: user name to plaintext password, md5 hash or SCRAM-SHA-256 verifier. */
  users: Record<string, string>;
  authType?: 'scram-sha-256' | 'md5' | 'plain' | 'trust';
  poolMode?: 'session' | 'transaction' | 'statement';
  maxClientConn?: number;
  defaultPoolSize?: number;
  /** Client-side TLS; `sslmode` defaults to require. */
  clientTls?: {
    cert: string;
    key: string;
    ca?: string;
    sslmode?: 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
  };
  /** server_tls_sslmode (default disable). */
  serverTlsSslmode?: 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
  /** Extra [pgbouncer] settings, overriding the ones above. */
  settings?: Record<string, string>;
}

export interface PgbouncerProcess {
  host: '127.0.0.1';
  port: number;
  pid: number;
  dir: string;
  logs: string[];
  stop(): Promise<void>;
}

/** The pgbouncer binary ($PGBOUNCER, PATH, /usr/sbin), or null when it is not installed. */
export function findPgbouncer(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin'];
  const candidates = [process.env.PGBOUNCER, ...dirs.filter(Boolean).map((d) => join(d, 'pgbouncer'))];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

function quoteAuth(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

function connValue(v: string | number): string {
  const s = String(v);
  return /^[^\s'\\]+$/.test(s) ? s : `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

const MAX_START_ATTEMPTS = 6;

/** Starts PgBouncer; see StartPgbouncerOptions. */
export async function startPgbouncer(options: StartPgbouncerOptions): Promise<PgbouncerProcess> {
  const binary = findPgbouncer();
  if (!binary)
    throw new Error(
      'pgbouncer is not installed (Debian: apt-get install -y pgbouncer, or run bench/setup.sh)',
    );
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-bouncer-'));
  chownToPostgres(dir);
  try {
    // PgBouncer runs as the postgres OS user: give it private, readable copies of everything it opens.
    const ownFile = (name: string, content: string | null, from?: string): string => {
      const path = join(dir, name);
      if (from) copyFileSync(from, path);
      else writeFileSync(path, content ?? '');
      chmodSync(path, 0o600);
      chownToPostgres(path);
      return path;
    };
    const authFile = ownFile(
      'userlist.txt',
      Object.entries(options.users)
        .map(([u, p]) => `${quoteAuth(u)} ${quoteAuth(p)}`)
        .join('\n') + '\n',
    );
    const settings: Record<string, string> = {
      listen_addr: '127.0.0.1',
      unix_socket_dir: '',
      auth_type: options.authType ?? 'scram-sha-256',
      auth_file: authFile,
      pool_mode: options.poolMode ?? 'session',
      max_client_conn: String(options.maxClientConn ?? 200),
      default_pool_size: String(options.defaultPoolSize ?? 20),
      server_tls_sslmode: options.serverTlsSslmode ?? 'disable',
      ignore_startup_parameters: 'extra_float_digits',
      log_connections: '0',
      log_disconnections: '0',
      logfile: '',
      pidfile: '',
    };
    if (options.clientTls) {
      settings.client_tls_sslmode = options.clientTls.sslmode ?? 'require';
      settings.client_tls_cert_file = ownFile('client-tls.crt', null, options.clientTls.cert);
      settings.client_tls_key_file = ownFile('client-tls.key', null, options.clientTls.key);
      if (options.clientTls.ca)
        settings.client_tls_ca_file = ownFile('client-ca.crt', null, options.clientTls.ca);
    }
    Object.assign(settings, options.settings ?? {});
    const databases = Object.entries(options.databases).map(([name, db]) => {
      const parts = [`host=${connValue(db.host)}`, `port=${db.port}`, `dbname=${connValue(db.dbname)}`];
      if (db.user) parts.push(`user=${connValue(db.user)}`);
      if (db.password) parts.push(`password=${connValue(db.password)}`);
      return `${name} = ${parts.join(' ')}`;
    });

    const user = postgresOsUser();
    for (let attempt = 1; ; attempt++) {
      const port = await pickFreePort();
      const ini = [
        '[databases]',
        ...databases,
        '',
        '[pgbouncer]',
        ...Object.entries({ ...settings, listen_port: String(port) }).map(([k, v]) => `${k} = ${v}`),
      ].join('\n');
      const iniFile = ownFile('pgbouncer.ini', ini + '\n');
      const child = spawn(binary, [iniFile], {
        cwd: dir,
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
      const server = supervise(child, () => rmSync(dir, { recursive: true, force: true }));
      const { logs } = server;

      // "process up" is logged once the listeners exist and the event loop is about to run.
      const deadline = Date.now() + 15_000;
      while (!server.exited() && !logs.some((l) => l.includes('process up')) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      if (!server.exited() && logs.some((l) => l.includes('process up'))) {
        return {
          host: '127.0.0.1',
          port,
          pid: child.pid!,
          dir,
          logs,
          async stop(): Promise<void> {
            await server.stop(10_000);
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      if (!server.exited()) child.kill('SIGKILL');
      await server.waitExit();
      const output = logs.slice(-20).join('\n') || '(no output)';
      if (/Address already in use/i.test(output) && attempt < MAX_START_ATTEMPTS) continue;
      throw new Error(`pgbouncer did not start:\n${output}`);
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
