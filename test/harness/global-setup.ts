// Vitest global setup for the integration project: one PostgreSQL (TLS + SCRAM) with the roles and database
// the tests log in with, shared by every test file; each test starts its own pgwarden against it.
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startPostgres } from '../../src/embedded/postgres.js';

/** Logins the setup creates; passwords are test fixtures, not secrets. */
export const TEST_DATABASE = 'ehr';
export const TEST_USERS = {
  /** Owner of `ehr`; SCRAM-SHA-256 verifier, logs in through the default scram hba rule. */
  app: 'app-secret-pw',
  /** md5-stored password, matched by an `md5` hba rule. */
  app_md5: 'app-md5-pw',
  /** SCRAM-stored password, matched by a `password` (cleartext) hba rule. */
  app_plain: 'app-plain-pw',
} as const;

/** What the integration tests get from `inject('pg')`. */
export interface ProvidedPg {
  host: '127.0.0.1';
  port: number;
  dataDir: string;
  socketDir: string;
  /** Test PKI directory: `makeTestCerts(certsDir)` reopens it (same CA) to mint more client certificates. */
  certsDir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Where client certificates live (`<cn>.crt`, `<cn>.key`); `app` is made up front. */
  clientCertDir: string;
  database: typeof TEST_DATABASE;
  users: typeof TEST_USERS;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const pg = await startPostgres({
    tls: true,
    hba: 'scram-sha-256',
    extraHba: ['host all app_md5 127.0.0.1/32 md5', 'host all app_plain 127.0.0.1/32 password'],
  });
  try {
    pg.sql(
      [
        `create role app login password ${literal(TEST_USERS.app)};`,
        `create database ${TEST_DATABASE} owner app;`,
        `create role app_plain login password ${literal(TEST_USERS.app_plain)};`,
        // An md5 hba rule needs an md5-stored password; scram is the server default.
        `set password_encryption = 'md5';`,
        `create role app_md5 login password ${literal(TEST_USERS.app_md5)};`,
      ].join('\n'),
    );
    const certs = pg.certs!;
    certs.clientCert('app');
    const provided: ProvidedPg = {
      host: pg.host,
      port: pg.port,
      dataDir: pg.dataDir,
      socketDir: pg.socketDir,
      certsDir: certs.dir,
      caCert: certs.caCert,
      serverCert: certs.serverCert,
      serverKey: certs.serverKey,
      clientCertDir: join(certs.dir, 'clients'),
      database: TEST_DATABASE,
      users: TEST_USERS,
    };
    project.provide('pg', provided);
  } catch (err) {
    await pg.stop();
    throw err;
  }
  return () => pg.stop();
}
