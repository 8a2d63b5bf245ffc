// Smoke test of the integration harness itself: the shared PostgreSQL takes TLS + SCRAM, md5 and password
// logins; certificates, ports, a second server with other options and the pgwarden launcher behave as promised.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { makeTestCerts } from '../../src/embedded/certs.js';
import { startPgwarden } from '../harness/pgwarden.js';
import { pickFreePort } from '../../src/embedded/ports.js';
import { startPostgres, superuserSql } from '../../src/embedded/postgres.js';

const server = inject('pg');

async function query(config: pg.ClientConfig, text: string): Promise<unknown[]> {
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    database: server.database,
    ...config,
  });
  await client.connect();
  try {
    return (await client.query({ text, rowMode: 'array' })).rows;
  } finally {
    await client.end();
  }
}

const verifiedTls = (): { ca: Buffer } => ({ ca: readFileSync(server.caCert) });

describe('shared PostgreSQL', () => {
  it('lets app log in over verified TLS with SCRAM and run select 1', async () => {
    const rows = await query(
      { user: 'app', password: server.users.app, ssl: verifiedTls() },
      'select 1, (select ssl from pg_stat_ssl where pid = pg_backend_pid())',
    );
    expect(rows).toEqual([[1, true]]);
    expect(superuserSql(server, "select left(rolpassword, 14) from pg_authid where rolname = 'app'")).toBe(
      'SCRAM-SHA-256$\n',
    );
  });

  it('rejects a wrong password with SQLSTATE 28P01', async () => {
    await expect(
      query({ user: 'app', password: 'wrong', ssl: verifiedTls() }, 'select 1'),
    ).rejects.toMatchObject({
      code: '28P01',
    });
  });

  it('lets app_md5 log in with its md5-stored password', async () => {
    expect(superuserSql(server, "select left(rolpassword, 3) from pg_authid where rolname = 'app_md5'")).toBe(
      'md5\n',
    );
    expect(
      await query(
        { user: 'app_md5', password: server.users.app_md5, ssl: verifiedTls() },
        'select current_user',
      ),
    ).toEqual([['app_md5']]);
  });

  it('lets app_plain log in through the cleartext password rule', async () => {
    expect(
      await query(
        { user: 'app_plain', password: server.users.app_plain, ssl: verifiedTls() },
        'select current_user',
      ),
    ).toEqual([['app_plain']]);
    const hba = superuserSql(
      server,
      "select auth_method from pg_hba_file_rules where 'app_plain' = any(user_name)",
    );
    expect(hba).toBe('password\n');
  });

  it('gives ehr to app', () => {
    expect(
      superuserSql(server, "select pg_get_userbyid(datdba) from pg_database where datname = 'ehr'"),
    ).toBe('app\n');
  });
});

describe('harness helpers', () => {
  it('mints client certificates from the reopened certs dir, signed by the same CA', () => {
    const certs = makeTestCerts(server.certsDir);
    expect(certs.caCert).toBe(server.caCert);
    const ca = new X509Certificate(readFileSync(server.caCert));
    const alice = new X509Certificate(readFileSync(certs.clientCert('alice').cert));
    expect(alice.subject).toBe('CN=alice');
    expect(alice.checkIssued(ca)).toBe(true);
    expect(alice.verify(ca.publicKey)).toBe(true);
    expect(existsSync(`${server.clientCertDir}/app.key`)).toBe(true);
    const serverCert = new X509Certificate(readFileSync(server.serverCert));
    expect(serverCert.checkHost('localhost')).toBe('localhost');
    expect(serverCert.checkIP('127.0.0.1')).toBe('127.0.0.1');
  });

  it('picks a port in range that can be bound', async () => {
    const port = await pickFreePort([20000, 32767]);
    expect(port).toBeGreaterThanOrEqual(20000);
    expect(port).toBeLessThanOrEqual(32767);
    await new Promise<void>((resolve, reject) => {
      const s = createServer().once('error', reject);
      s.listen(port, '127.0.0.1', () => s.close(() => resolve()));
    });
  });

  it('starts a second server without TLS using md5, and removes it on stop', async () => {
    const other = await startPostgres({ tls: false, hba: 'md5' });
    try {
      expect(other.port).not.toBe(server.port);
      expect(other.sql('show ssl; show password_encryption')).toBe('off\nmd5\n');
      other.sql("create role m login password 'm-pw'");
      const client = new pg.Client({
        host: other.host,
        port: other.port,
        user: 'm',
        password: 'm-pw',
        database: 'postgres',
      });
      await client.connect();
      const res = await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      await client.end();
      expect(res.rows).toEqual([{ ssl: false }]);
      expect(() => other.sql('select * from no_such_table')).toThrow(/no_such_table/);
    } finally {
      await other.stop();
    }
    expect(existsSync(other.dataDir)).toBe(false);
  });

  it('reports pgwarden output when it exits before becoming ready', async () => {
    // An unterminated flow sequence is not YAML: pgwarden (or, before a build, node itself) exits early.
    await expect(startPgwarden('listen: [', { timeoutMs: 15_000 })).rejects.toThrow(
      /did not become ready: pgwarden exited/,
    );
  });
});
