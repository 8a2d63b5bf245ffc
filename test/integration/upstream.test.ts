// pgwarden's own login to PostgreSQL (brokered credentials): SCRAM, md5 and cleartext accounts, TLS verification,
// password_file, and every failure reaching the client as 08001 naming the database and never the password.
// Also `pgwarden check` on the upstream credentials: missing ${ENV} exits 2 naming the key; secrets never printed.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { repoRoot } from '../../src/embedded/exec.js';
import { pickFreePort } from '../../src/embedded/ports.js';
import { baseConfig, metric, pgOptions, startProxy, UPSTREAM_ENV } from './support.js';

type PgError = Error & { code?: string; detail?: string; hint?: string };

/** Upstream passwords handed to pgwarden through the environment; none may ever reach a client or a log line. */
const SECRETS = {
  WRONG_PW: 'wrong-upstream-pw-4417',
  MD5_PW: 'app-md5-pw',
  PLAIN_PW: 'app-plain-pw',
};

async function login(
  proxy: PgwardenProcess,
  database: string,
): Promise<{ user?: string; error?: PgError; ms: number }> {
  const client = new pg.Client({ ...pgOptions(proxy), database });
  client.on('error', () => {});
  const started = Date.now();
  try {
    await client.connect();
    const user = (await client.query('select current_user as u')).rows[0].u as string;
    await client.end();
    return { user, ms: Date.now() - started };
  } catch (e) {
    return { error: e as PgError, ms: Date.now() - started };
  }
}

/** Everything a client sees of an error: message, detail, hint and the rest of its fields. */
function visible(e: PgError): string {
  return JSON.stringify({ ...e, message: e.message });
}

describe('upstream logins', () => {
  let proxy: PgwardenProcess;
  let dir: string;
  beforeAll(async () => {
    const pgInfo = inject('pg');
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-upstream-'));
    const passwordFile = join(dir, 'app.password');
    writeFileSync(passwordFile, `${pgInfo.users.app}\n`, { mode: 0o600 }); // the trailing newline is ignored
    const closedPort = await pickFreePort();
    const verified = { mode: 'verify-full', ca_file: pgInfo.caCert, server_name: 'localhost' };
    const entry = (upstream: Record<string, unknown>) => ({
      upstream: {
        host: '127.0.0.1',
        port: pgInfo.port,
        database: pgInfo.database,
        tls: verified,
        ...upstream,
      },
    });
    proxy = await startProxy(
      {
        databases: {
          ehr: entry({ user: 'app', password: '${EHR_DB_PASSWORD}' }),
          wrong_password: entry({ user: 'app', password: '${WRONG_PW}' }),
          closed_port: entry({ user: 'app', password: '${EHR_DB_PASSWORD}', port: closedPort }),
          md5: entry({ user: 'app_md5', password: '${MD5_PW}' }),
          cleartext_tls: entry({ user: 'app_plain', password: '${PLAIN_PW}' }),
          cleartext_plain: entry({ user: 'app_plain', password: '${PLAIN_PW}', tls: { mode: 'disable' } }),
          wrong_name: entry({
            user: 'app',
            password: '${EHR_DB_PASSWORD}',
            tls: { ...verified, server_name: 'not-this-server.example' },
          }),
          from_file: entry({ user: 'app', password_file: passwordFile }),
        },
      },
      { env: SECRETS },
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses the client with 08001 naming the database, never the password, when the upstream password is wrong', async () => {
    const errorsBefore = await metric(proxy, 'pgwarden_upstream_errors_total');
    const { error } = await login(proxy, 'wrong_password');
    expect(error?.code).toBe('08001');
    expect(error?.message).toMatch(/database "wrong_password"/);
    expect(error?.message).toMatch(/refused pgwarden's login/);
    expect(visible(error!)).not.toContain(SECRETS.WRONG_PW);
    expect(await metric(proxy, 'pgwarden_upstream_errors_total')).toBe(errorsBefore + 1);
    expect(proxy.logs.some((l) => l.includes(SECRETS.WRONG_PW))).toBe(false);
  });

  it('refuses the client with 08001 at once when the upstream port is closed', async () => {
    const { error, ms } = await login(proxy, 'closed_port');
    expect(error?.code).toBe('08001');
    expect(error?.message).toMatch(
      /could not connect to the upstream server for database "closed_port".*ECONNREFUSED/,
    );
    expect(ms).toBeLessThan(3000);
  });

  it('logs in with an md5 upstream account', async () => {
    expect(await login(proxy, 'md5')).toMatchObject({ user: 'app_md5' });
  });

  it('sends a cleartext upstream password over verified TLS', async () => {
    expect(await login(proxy, 'cleartext_tls')).toMatchObject({ user: 'app_plain' });
  });

  it('refuses to send a cleartext upstream password without TLS (08001 says why)', async () => {
    const { error } = await login(proxy, 'cleartext_plain');
    expect(error?.code).toBe('08001');
    expect(error?.message).toMatch(/database "cleartext_plain"/);
    expect(error?.message).toMatch(/cleartext password over an unencrypted connection; refusing to send it/);
    expect(visible(error!)).not.toContain(SECRETS.PLAIN_PW);
  });

  it('refuses with an 08001 TLS error when verify-full meets a certificate for another name', async () => {
    const { error } = await login(proxy, 'wrong_name');
    expect(error?.code).toBe('08001');
    expect(error?.message).toMatch(/database "wrong_name".*TLS: ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('reads the upstream password from password_file', async () => {
    expect(await login(proxy, 'from_file')).toMatchObject({ user: 'app' });
  });

  it('still serves the databases whose upstream is healthy', async () => {
    expect(await login(proxy, 'ehr')).toMatchObject({ user: 'app' });
    expect(proxy.logs.some((l) => Object.values(SECRETS).some((s) => l.includes(s)))).toBe(false);
  });
});

describe('pgwarden check on upstream credentials', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-check-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function check(config: object, env: Record<string, string>) {
    const file = join(dir, 'pgwarden.yaml');
    writeFileSync(file, stringify(config), { mode: 0o600 });
    const base = { ...process.env };
    delete base.EHR_DB_PASSWORD;
    const r = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'pgwarden.js'), 'check', '-c', file], {
      env: { ...base, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('exits 2 naming the key and the variable when ${ENV} is not set', () => {
    const r = check(baseConfig(), {});
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/databases\.ehr\.upstream\.password/);
    expect(r.stderr).toMatch(/EHR_DB_PASSWORD is not set/);
    expect(r.stdout).toBe('');
  });

  it('explains a valid config and shows where passwords come from, never the passwords', () => {
    const pgInfo = inject('pg');
    const passwordFile = join(dir, 'secret.password');
    const fileSecret = 'file-held-secret-9261';
    writeFileSync(passwordFile, `${fileSecret}\n`, { mode: 0o600 });
    const config = baseConfig();
    const databases = config.databases as Record<string, { upstream: Record<string, unknown> }>;
    const upstream: Record<string, unknown> = { ...databases.ehr.upstream, password_file: passwordFile };
    delete upstream.password;
    const fromFile = { upstream };
    const envSecret = 'env-held-secret-5518';
    const r = check(
      { ...config, databases: { ...databases, other: fromFile } },
      { EHR_DB_PASSWORD: envSecret },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/configuration is valid/);
    expect(r.stdout).toMatch(
      new RegExp(`ehr: 127\\.0\\.0\\.1:${pgInfo.port}/ehr as app, password <from env>`),
    );
    expect(r.stdout).toMatch(/other: .* password <from file>/);
    expect(r.stdout).not.toContain(envSecret);
    expect(r.stdout).not.toContain(fileSecret);
    expect(r.stdout).not.toContain(UPSTREAM_ENV.EHR_DB_PASSWORD);
  });
});
