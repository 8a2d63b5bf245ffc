// Shared by the integration tests: a pgwarden config in front of the harness PostgreSQL, with users whose SCRAM
// verifiers are made here, and helpers to connect real clients through it.

import { inject } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { readFileSync } from 'node:fs';
import { generateScramVerifier } from '../../src/auth/scram-verifier.js';
import { STATEMENT_KINDS } from '../../src/config/schema.js';
import { startPgwarden, type PgwardenProcess, type StartPgwardenOptions } from '../harness/pgwarden.js';
import { verifiedTls } from './wire.js';

/** Client identities configured in pgwarden (not PostgreSQL roles). */
export const CLIENTS = {
  alice: 'alice-correct-horse',
  bob: 'bob-battery-staple',
} as const;

const verifiers = Object.fromEntries(
  Object.entries(CLIENTS).map(([name, pw]) => [name, generateScramVerifier(pw, { iterations: 4096 })]),
);

export interface ConfigOverrides {
  [key: string]: unknown;
}

/** The base config: TLS with the harness certificate, brokered login as `app`, users alice and bob. */
export function baseConfig(overrides: ConfigOverrides = {}): Record<string, unknown> {
  const pgInfo = inject('pg');
  const config: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    workers: 2,
    tls: { cert: pgInfo.serverCert, key: pgInfo.serverKey },
    log: { level: 'info' },
    timeouts: { startup: '5s' },
    databases: {
      ehr: {
        upstream: {
          host: '127.0.0.1',
          port: pgInfo.port,
          database: pgInfo.database,
          user: 'app',
          password: '${EHR_DB_PASSWORD}',
          tls: { mode: 'verify-full', ca_file: pgInfo.caCert, server_name: 'localhost' },
        },
        pool: { size: 20 },
      },
    },
    users: {
      alice: { password: verifiers.alice, roles: ['admin'] },
      bob: { password: verifiers.bob, roles: ['admin'] },
    },
    // Tests of the core proxy run as an admin role: every statement kind, no guardrails (still parsed and checked).
    roles: { admin: ADMIN_ROLE },
  };
  return { ...config, ...overrides };
}

/** A role that may run anything: what the core tests need from the policy layer. */
export const ADMIN_ROLE = { admin: true, statements: [...STATEMENT_KINDS] };

/** node-postgres straight to the harness PostgreSQL as the upstream account `app`, which owns `ehr`. */
export async function directClient(): Promise<pg.Client> {
  const server = inject('pg');
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    user: 'app',
    password: server.users.app,
    database: server.database,
    ssl: verifiedTls(),
  });
  await client.connect();
  return client;
}

export const UPSTREAM_ENV = { EHR_DB_PASSWORD: 'app-secret-pw' };

export async function startProxy(
  overrides: ConfigOverrides = {},
  options: StartPgwardenOptions = {},
): Promise<PgwardenProcess> {
  return startPgwarden(baseConfig(overrides), { ...options, env: { ...UPSTREAM_ENV, ...options.env } });
}

/** node-postgres client options through pgwarden over verified TLS. */
export function pgOptions(proxy: PgwardenProcess, user: keyof typeof CLIENTS = 'alice'): pg.ClientConfig {
  return {
    host: '127.0.0.1',
    port: proxy.port,
    user,
    password: CLIENTS[user],
    database: 'ehr',
    ssl: { ca: readFileSync(inject('pg').caCert), servername: 'localhost' },
  };
}

export async function pgClient(
  proxy: PgwardenProcess,
  user: keyof typeof CLIENTS = 'alice',
): Promise<pg.Client> {
  const client = new pg.Client(pgOptions(proxy, user));
  await client.connect();
  return client;
}

/** postgres.js through pgwarden (prepared statements on, pipelining as the driver does). */
export function postgresJs(proxy: PgwardenProcess, options: postgres.Options<Record<string, never>> = {}) {
  return postgres({
    host: '127.0.0.1',
    port: proxy.port,
    user: 'alice',
    password: CLIENTS.alice,
    database: 'ehr',
    ssl: { ca: readFileSync(inject('pg').caCert), servername: 'localhost' },
    max: 4,
    onnotice: () => {},
    ...options,
  });
}

/** Environment for libpq tools (psql, pgbench) through pgwarden. */
export function libpqEnv(proxy: PgwardenProcess, user: keyof typeof CLIENTS = 'alice'): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(proxy.port),
    PGUSER: user,
    PGPASSWORD: CLIENTS[user],
    PGDATABASE: 'ehr',
    PGSSLMODE: 'verify-full',
    PGSSLROOTCERT: inject('pg').caCert,
    PGCONNECT_TIMEOUT: '10',
  };
}

/** Reads the admin endpoint's /metrics and returns one sample's value (summing label sets when none is given). */
export async function metric(proxy: PgwardenProcess, name: string, labels?: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels && m[2] !== `{${labels}}`) continue;
    total += Number(m[3]);
  }
  return total;
}
