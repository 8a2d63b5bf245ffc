// A real PostgreSQL for the demo, tests and benchmarks: initdb in a temp dir, TLS and SCRAM (or md5/password/trust) on
// 127.0.0.1 at a free port, superuser access over a private unix socket, stopped and removed afterwards.
import {
  copyFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestCerts, type TestCerts } from './certs.js';
import {
  chownToPostgres,
  cleanEnv,
  HarnessCommandError,
  postgresBinDir,
  registerExitCleanup,
  runSync,
} from './exec.js';
import { pickFreePort } from './ports.js';

export type HbaMethod = 'scram-sha-256' | 'md5' | 'password' | 'trust';

export interface StartPostgresOptions {
  /** ssl=on with the test certificates (default true). */
  tls?: boolean;
  /** Authentication method for TCP connections from 127.0.0.1 (default scram-sha-256). */
  hba?: HbaMethod;
  /** Extra postgresql.conf settings; they override the harness defaults. */
  settings?: Record<string, string>;
  /** Certificates to serve; made in the server's temp dir when omitted and tls is on. */
  certs?: TestCerts;
  /** pg_hba.conf lines placed before the default ones (first match wins), e.g. per-role md5/password rules. */
  extraHba?: string[];
}

export interface PgServer {
  host: '127.0.0.1';
  port: number;
  dataDir: string;
  socketDir: string;
  superuser: 'postgres';
  certs: TestCerts | null;
  /** The server log (pg_ctl -l), useful when a test wants to see what PostgreSQL said. */
  logFile: string;
  /** Runs SQL as the superuser over the unix socket; returns psql -At stdout; throws with stderr on error. */
  sql(query: string, database?: string): string;
  stop(): Promise<void>;
}

/** Settings that keep a throwaway server light on a shared 2-core machine; durability is not the point here. */
const DEFAULT_SETTINGS: Record<string, string> = {
  max_connections: '100',
  shared_buffers: '32MB',
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  logging_collector: 'off',
  log_line_prefix: '%m [%p] %q%u@%d ',
};

const MAX_START_ATTEMPTS = 8;

function quoteConf(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function tail(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Runs SQL as the superuser over a harness server's unix socket (local connections are trust) and returns
 * psql's unaligned, tuples-only stdout. For test files, which get only socketDir and port from the global setup.
 */
export function superuserSql(
  server: { socketDir: string; port: number },
  query: string,
  database = 'postgres',
): string {
  return runSync(
    join(postgresBinDir(), 'psql'),
    [
      '-X',
      '-q',
      '-At',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      server.socketDir,
      '-p',
      String(server.port),
      '-U',
      'postgres',
    ].concat(['-d', database, '-f', '-']),
    { input: query, env: cleanEnv() },
  );
}

/** Starts a fresh PostgreSQL; see StartPostgresOptions for what is configurable. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PgServer> {
  const tls = options.tls ?? true;
  const hba = options.hba ?? 'scram-sha-256';
  const bin = postgresBinDir();
  const base = mkdtempSync(join(tmpdir(), 'pgwarden-pg-'));
  const dataDir = join(base, 'data');
  const socketDir = join(base, 'sock');
  const logFile = join(base, 'postgres.log');
  let started = false;
  const removeBase = (): void => {
    if (!process.env.PGWARDEN_KEEP_TMP) rmSync(base, { recursive: true, force: true });
  };
  const stopNow = (mode: 'fast' | 'immediate'): void => {
    if (started && existsSync(join(dataDir, 'postmaster.pid'))) {
      runSync(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop'], {
        asPostgres: true,
        cwd: base,
      });
    }
    started = false;
  };
  // A crashed test run still takes its postmaster down with it.
  const unregister = registerExitCleanup(() => {
    stopNow('immediate');
    removeBase();
  });

  try {
    mkdirSync(socketDir);
    writeFileSync(logFile, '');
    chownToPostgres(base, socketDir, logFile);
    const certs = options.certs ?? (tls ? makeTestCerts(join(base, 'certs')) : null);

    runSync(
      join(bin, 'initdb'),
      [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      { asPostgres: true, cwd: base },
    );

    const settings: Record<string, string> = {
      ...DEFAULT_SETTINGS,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: socketDir,
      password_encryption: hba === 'md5' ? 'md5' : 'scram-sha-256',
      ssl: tls ? 'on' : 'off',
    };
    if (tls) {
      if (!certs) throw new Error('tls needs certificates');
      // PostgreSQL insists its key is owned by the server's user with mode 0600: give it private copies.
      for (const [from, to] of [
        [certs.serverCert, 'server.crt'],
        [certs.serverKey, 'server.key'],
        [certs.caCert, 'ca.crt'],
      ] as const) {
        copyFileSync(from, join(dataDir, to));
        chmodSync(join(dataDir, to), 0o600);
        chownToPostgres(join(dataDir, to));
      }
      Object.assign(settings, {
        ssl_cert_file: 'server.crt',
        ssl_key_file: 'server.key',
        ssl_ca_file: 'ca.crt',
      });
    }
    Object.assign(settings, options.settings ?? {});

    const hbaLines = [
      '# written by the pgwarden test harness',
      'local all all trust',
      ...(options.extraHba ?? []),
      ...(tls ? [`hostssl all all 127.0.0.1/32 ${hba}`] : []),
      `host all all 127.0.0.1/32 ${hba}`,
    ];
    writeFileSync(join(dataDir, 'pg_hba.conf'), hbaLines.join('\n') + '\n');
    chownToPostgres(join(dataDir, 'pg_hba.conf'));

    const confPath = join(dataDir, 'postgresql.conf');
    const initdbConf = readFileSync(confPath, 'utf8');
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await pickFreePort();
      const ours = Object.entries({ ...settings, port: String(port) })
        .map(([k, v]) => `${k} = ${quoteConf(v)}`)
        .join('\n');
      writeFileSync(confPath, `${initdbConf}\n# pgwarden test harness\n${ours}\n`);
      const logOffset = statSync(logFile).size;
      try {
        started = true;
        runSync(join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-s', 'start'], {
          asPostgres: true,
          cwd: base,
        });
        break;
      } catch (err) {
        started = existsSync(join(dataDir, 'postmaster.pid'));
        const log = readFileSync(logFile, 'utf8').slice(logOffset);
        // Someone took the port between our bind check and the postmaster's bind: pick another one.
        if (
          /Address already in use|could not create any TCP\/IP sockets/.test(log) &&
          attempt < MAX_START_ATTEMPTS
        ) {
          stopNow('immediate');
          continue;
        }
        const reason = err instanceof HarnessCommandError ? err.message : String(err);
        throw new Error(`PostgreSQL did not start: ${reason}\n--- postgres log ---\n${tail(log)}`, {
          cause: err,
        });
      }
    }

    let stopped = false;
    return {
      host: '127.0.0.1',
      port,
      dataDir,
      socketDir,
      superuser: 'postgres',
      certs,
      logFile,
      sql(query: string, database = 'postgres'): string {
        return superuserSql({ socketDir, port }, query, database);
      },
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        try {
          stopNow('fast');
        } finally {
          unregister();
          removeBase();
        }
      },
    };
  } catch (err) {
    try {
      stopNow('immediate');
    } finally {
      unregister();
      removeBase();
    }
    throw err;
  }
}
