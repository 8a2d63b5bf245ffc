// Who a client is and what it may do, through real clients against the harness PostgreSQL: client certificates
// (mTLS) as a login factor, actor tokens (SET pgwarden.actor) that never reach PostgreSQL, break-glass emergency
// access that ends on its own, brute-force lockout counted node-wide, address rules, the PROXY protocol behind a
// real HAProxy, automatic logoff per role, and policy reloads that reach sessions already open.
import { execFileSync } from 'node:child_process';
import {
  createHmac,
  generateKeyPairSync,
  randomBytes,
  sign as signEd25519,
  type KeyObject,
} from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateScramVerifier } from '../../src/auth/scram-verifier.js';
import { makeTestCerts } from '../../src/embedded/certs.js';
import { startHaproxy, type HaproxyProcess } from '../harness/haproxy.js';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { closedWithin, rawConnect, singleError, sslRequest } from './raw-client.js';
import { ADMIN_ROLE, baseConfig, directClient, pgOptions, startProxy } from './support.js';
import { verifiedTls } from './wire.js';

type PgError = Error & { code?: string; severity?: string };

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: tables, users, roles.

/** Tables made directly as `app`: each readable by exactly one role below. */
const TABLE_A = 'public.h5_identity_a';
const TABLE_B = 'public.h5_identity_b';
const TABLE_C = 'public.h5_identity_c';

/** Passwords of the pgwarden users of this file (fixtures, not secrets). */
const PASSWORDS = {
  svc: 'svc-pw-ehr-backend',
  plainsvc: 'plainsvc-pw',
  clinician: 'clinician-pw',
  doc: 'doc-pw-er',
  sleepy: 'sleepy-pw',
  awake: 'awake-pw',
  remote: 'remote-pw',
  roamer: 'roamer-pw',
  homebody: 'homebody-pw',
  pwonly: 'pwonly-pw',
  twofactor: 'twofactor-pw',
} as const;
type User = keyof typeof PASSWORDS;

const verifiers = Object.fromEntries(
  Object.entries(PASSWORDS).map(([name, pw]) => [name, generateScramVerifier(pw, { iterations: 4096 })]),
) as Record<User, string>;

const READER = ['select', 'set', 'transaction'];

/** Roles of the policy configs: A for the service, B for clinicians, C only in an emergency. */
function policyRoles(): Record<string, unknown> {
  return {
    admin: ADMIN_ROLE,
    svc_role: { statements: READER, tables: { allow: [TABLE_A] } },
    clinician_role: { statements: READER, tables: { allow: [TABLE_B] } },
    limited: { statements: READER, tables: { allow: [TABLE_A] } },
    emergency: { statements: READER, tables: { allow: [TABLE_C] } },
    plain_role: { statements: ['select'] },
    sleepy_role: { statements: ['select'], idle_timeout: '1500ms' },
    remote_only: { statements: ['select'], cidrs: ['10.0.0.0/8'] },
    local_only: { statements: ['select'], cidrs: ['127.0.0.1/32'] },
  };
}

function policyUsers(): Record<string, unknown> {
  return {
    svc: { password: verifiers.svc, roles: ['svc_role'], actor: { roles: ['clinician_role'] } },
    plainsvc: { password: verifiers.plainsvc, roles: ['svc_role'] },
    clinician: { password: verifiers.clinician, roles: ['clinician_role'] },
    doc: {
      password: verifiers.doc,
      roles: ['limited'],
      break_glass: { role: 'emergency', max_duration: '2s' },
    },
    sleepy: { password: verifiers.sleepy, roles: ['sleepy_role'] },
    awake: { password: verifiers.awake, roles: ['plain_role'] },
    remote: { password: verifiers.remote, roles: ['plain_role'], cidrs: ['10.0.0.0/8'] },
    roamer: { password: verifiers.roamer, roles: ['remote_only'] },
    homebody: { password: verifiers.homebody, roles: ['local_only'] },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Keys: actor tokens (HS256 and EdDSA) and audit signing, in one temporary directory for the whole file.

interface Keys {
  dir: string;
  hsSecret: string;
  hsSecretFile: string;
  edPrivate: KeyObject;
  edPublicFile: string;
  auditSigningKey: string;
}

function makeKeys(): Keys {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-identity-'));
  // 48 hex characters: a 48-byte HS256 secret (pgwarden reads the file as text and trims the end).
  const hsSecret = randomBytes(24).toString('hex');
  const hsSecretFile = join(dir, 'jwt-hs256.secret');
  writeFileSync(hsSecretFile, `${hsSecret}\n`, { mode: 0o600 });
  const ed = generateKeyPairSync('ed25519');
  const edPublicFile = join(dir, 'jwt-ed25519.pub');
  writeFileSync(edPublicFile, ed.publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o600 });
  const audit = generateKeyPairSync('ed25519');
  const auditSigningKey = join(dir, 'audit.key');
  writeFileSync(auditSigningKey, audit.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { dir, hsSecret, hsSecretFile, edPrivate: ed.privateKey, edPublicFile, auditSigningKey };
}

let keys: Keys;

function jwtConfig(): Record<string, unknown> {
  return {
    issuer: ['https://idp.test'],
    audience: ['pgwarden'],
    keys: [
      { alg: 'HS256', secret_file: keys.hsSecretFile },
      { alg: 'EdDSA', public_key_file: keys.edPublicFile },
    ],
  };
}

/** A durable audit file sink in a fresh directory: a statement's record is on disk before it is forwarded. */
function auditSection(dir: string): Record<string, unknown> {
  return { mode: 'durable', sinks: [{ type: 'file', path: dir }], signing_key_file: keys.auditSigningKey };
}

type AuditRecord = Record<string, unknown> & {
  event: string;
  session: string;
  identity: string | null;
  data: Record<string, unknown>;
};

/** Every complete record in the audit directory, file by file (a file is one worker's stream, in order). */
function auditRecords(dir: string): AuditRecord[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) => {
      const lines = readFileSync(join(dir, f), 'utf8').split('\n');
      lines.pop(); // what follows the last newline is not a whole record yet
      return lines.filter((l) => l.length > 0).map((l) => JSON.parse(l) as AuditRecord);
    });
}

/** The policy config: base TLS and upstream, this file's users and roles, actor tokens, and `overrides` on top. */
function policyConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const { access, ...rest } = overrides;
  return baseConfig({
    users: policyUsers(),
    roles: policyRoles(),
    ...rest,
    access: { jwt: jwtConfig(), ...(access as Record<string, unknown> | undefined) },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Clients.

function caCert(): Buffer {
  return readFileSync(inject('pg').caCert);
}

interface ClientCertFiles {
  cert: string;
  key: string;
}

function clientOptions(
  port: number,
  user: string,
  password: string | undefined,
  extra: { cert?: ClientCertFiles; applicationName?: string } = {},
): pg.ClientConfig {
  const ssl = {
    ca: caCert(),
    servername: 'localhost',
    ...(extra.cert ? { cert: readFileSync(extra.cert.cert), key: readFileSync(extra.cert.key) } : {}),
  };
  return {
    host: '127.0.0.1',
    port,
    user,
    // Without a password, node-postgres cannot answer a SASL challenge and gives up on its own side.
    password,
    database: 'ehr',
    ssl,
    application_name: extra.applicationName,
    connectionTimeoutMillis: 15_000,
  };
}

const openClients = new Set<pg.Client>();

/** Connects; errors pgwarden sends while the client is idle are kept on `errors` instead of crashing the run. */
async function connect(options: pg.ClientConfig): Promise<pg.Client & { errors: PgError[] }> {
  const client = Object.assign(new pg.Client(options), { errors: [] as PgError[] });
  client.on('error', (e: PgError) => client.errors.push(e));
  await client.connect();
  openClients.add(client);
  return client;
}

async function connectAs(
  proxy: PgwardenProcess,
  user: User,
  extra: Parameters<typeof clientOptions>[3] = {},
): Promise<pg.Client & { errors: PgError[] }> {
  return connect(clientOptions(proxy.port, user, PASSWORDS[user], extra));
}

async function closeClient(client: pg.Client): Promise<void> {
  openClients.delete(client);
  await client.end().catch(() => {});
}

/** The error a login fails with; fails the test if the login succeeds. */
async function loginError(options: pg.ClientConfig): Promise<PgError> {
  const client = new pg.Client(options);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (e) {
    return e as PgError;
  }
  await client.end().catch(() => {});
  throw new Error(`login as ${String(options.user)} succeeded but was expected to fail`);
}

/** The error a statement fails with; fails the test if it succeeds. */
async function queryError(client: pg.Client, sql: string): Promise<PgError> {
  try {
    await client.query(sql);
  } catch (e) {
    return e as PgError;
  }
  throw new Error(`statement succeeded but was expected to fail: ${sql.slice(0, 80)}`);
}

async function readsTable(client: pg.Client, table: string): Promise<string[]> {
  const result = await client.query<{ v: string }>(`select v from ${table} order by v`);
  return result.rows.map((r) => r.v);
}

/** A direct connection to the harness PostgreSQL as `app` (the account pgwarden logs in with upstream). */

/** The PostgreSQL error pgwarden refuses a connection with before TLS (a plaintext SSLRequest gets it whole). */
async function refusalBeforeTls(
  port: number,
): Promise<{ sqlstate: string; message: string; severity: string }> {
  const client = await rawConnect(port);
  client.write(sslRequest());
  const { reply } = await closedWithin(client, 15_000);
  const error = singleError(reply);
  if (!error) throw new Error('the connection was closed without an ErrorResponse');
  return { sqlstate: error.sqlstate, message: error.message, severity: error.severity };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Retries `attempt` until it returns a value other than undefined, or fails after `timeoutMs`. */
async function eventually<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Actor tokens, signed here with node:crypto, independently of src/auth/jwt.ts.

const ACTOR_CLAIMS = {
  iss: 'https://idp.test',
  aud: 'pgwarden',
  sub: 'dr-grey',
  roles: ['clinician_role'],
};

function base64url(value: object | Buffer): string {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value));
  return bytes.toString('base64url');
}

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { ...ACTOR_CLAIMS, iat: now, exp: now + 600, ...overrides };
}

function hs256Token(payload: Record<string, unknown>): string {
  const input = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(payload)}`;
  const mac = createHmac('sha256', Buffer.from(keys.hsSecret, 'utf8')).update(input).digest();
  return `${input}.${base64url(mac)}`;
}

function edDsaToken(payload: Record<string, unknown>): string {
  const input = `${base64url({ alg: 'EdDSA', typ: 'JWT' })}.${base64url(payload)}`;
  return `${input}.${base64url(signEd25519(null, Buffer.from(input), keys.edPrivate))}`;
}

/** The same token with one character of its signature changed (mid-signature, so it stays canonical base64url). */
function tamperedSignature(token: string): string {
  const at = token.lastIndexOf('.') + 10;
  const replacement = token[at] === 'A' ? 'B' : 'A';
  return token.slice(0, at) + replacement + token.slice(at + 1);
}

// ---------------------------------------------------------------------------------------------------------------

const proxies: PgwardenProcess[] = [];

/** Starts pgwarden on a whole config (startProxy lays it over the base config, replacing every key). */
async function startTracked(config: Record<string, unknown>): Promise<PgwardenProcess> {
  const proxy = await startProxy(config);
  proxies.push(proxy);
  return proxy;
}

beforeAll(async () => {
  keys = makeKeys();
  const admin = await directClient();
  try {
    for (const [table, rows] of [
      [TABLE_A, ['a1', 'a2']],
      [TABLE_B, ['b1']],
      [TABLE_C, ['c1']],
    ] as const) {
      await admin.query(`drop table if exists ${table}`);
      await admin.query(`create table ${table} (v text not null)`);
      for (const v of rows) await admin.query(`insert into ${table} (v) values ($1)`, [v]);
    }
  } finally {
    await admin.end();
  }
});

afterAll(async () => {
  await Promise.all([...openClients].map((c) => c.end().catch(() => {})));
  openClients.clear();
  await Promise.all(proxies.map((p) => p.stop()));
  const admin = await directClient();
  try {
    for (const table of [TABLE_A, TABLE_B, TABLE_C]) await admin.query(`drop table if exists ${table}`);
  } finally {
    await admin.end();
  }
  if (keys) rmSync(keys.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------

describe('client certificates (mTLS)', () => {
  let proxy: PgwardenProcess;
  let certs: ReturnType<typeof makeTestCerts>;
  let selfSigned: ClientCertFiles;
  const FAILED = (user: string) => ({
    code: '28P01',
    message: `password authentication failed for user "${user}"`,
  });

  beforeAll(async () => {
    certs = makeTestCerts(inject('pg').certsDir);
    // Same CN as a real user, but signed by nobody pgwarden trusts.
    const dir = join(keys.dir, 'self-signed');
    mkdirSync(dir, { recursive: true });
    selfSigned = { cert: join(dir, 'certonly.crt'), key: join(dir, 'certonly.key') };
    execFileSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      selfSigned.key,
      '-out',
      selfSigned.cert,
      '-subj',
      '/CN=certonly',
      '-days',
      '2',
      '-addext',
      'extendedKeyUsage=clientAuth',
    ]);
    chmodSync(selfSigned.key, 0o600);
    proxy = await startTracked(
      baseConfig({
        tls: { cert: inject('pg').serverCert, key: inject('pg').serverKey, client_ca: inject('pg').caCert },
        users: {
          certonly: { certificate: {}, roles: ['plain_role'] },
          pwonly: { password: verifiers.pwonly, roles: ['plain_role'] },
          twofactor: {
            password: verifiers.twofactor,
            certificate: { subject_cn: 'twofactor' },
            auth: 'both',
            roles: ['plain_role'],
          },
        },
        roles: { plain_role: { statements: ['select'] } },
        // Many refusals from 127.0.0.1 on purpose here: lockout is tested on its own below.
        access: { lockout: { max_failures: 0 } },
      }),
    );
  });

  async function loggedInAs(client: pg.Client): Promise<number> {
    const { rows } = await client.query<{ one: number }>('select 1 as one');
    await closeClient(client);
    return rows[0].one;
  }

  it('certificate-only user: its certificate logs it in with no password (node-postgres and psql)', async () => {
    const cert = certs.clientCert('certonly');
    expect(await loggedInAs(await connect(clientOptions(proxy.port, 'certonly', undefined, { cert })))).toBe(
      1,
    );
    const out = execFileSync('psql', ['-X', '-At', '-w', '-c', 'select 40 + 2'], {
      env: {
        ...process.env,
        PGHOST: '127.0.0.1',
        PGPORT: String(proxy.port),
        PGUSER: 'certonly',
        PGDATABASE: 'ehr',
        PGPASSWORD: '',
        PGPASSFILE: '/dev/null',
        PGSSLMODE: 'verify-full',
        PGSSLROOTCERT: inject('pg').caCert,
        PGSSLCERT: cert.cert,
        PGSSLKEY: cert.key,
        PGCONNECT_TIMEOUT: '15',
      },
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('42');
  });

  it('certificate-only user without a certificate: 28P01, as for a wrong password', async () => {
    const missing = await loginError(clientOptions(proxy.port, 'certonly', 'a-guess'));
    expect(missing).toMatchObject(FAILED('certonly'));
    // An unknown name fails the same way: nothing tells the account exists.
    const unknown = await loginError(clientOptions(proxy.port, 'nobody-here', 'a-guess'));
    expect(unknown).toMatchObject(FAILED('nobody-here'));
    expect(missing.severity).toBe(unknown.severity);
  });

  it("certificate-only user with another CN's certificate: 28P01", async () => {
    const cert = certs.clientCert('someone-else');
    const error = await loginError(clientOptions(proxy.port, 'certonly', 'a-guess', { cert }));
    expect(error).toMatchObject(FAILED('certonly'));
  });

  it('certificate-only user with a self-signed certificate for its CN: 28P01', async () => {
    const error = await loginError(clientOptions(proxy.port, 'certonly', 'a-guess', { cert: selfSigned }));
    expect(error).toMatchObject(FAILED('certonly'));
  });

  it('password-only user: its password logs it in; a certificate does not replace a wrong password', async () => {
    expect(await loggedInAs(await connect(clientOptions(proxy.port, 'pwonly', PASSWORDS.pwonly)))).toBe(1);
    const cert = certs.clientCert('pwonly');
    expect(
      await loggedInAs(await connect(clientOptions(proxy.port, 'pwonly', PASSWORDS.pwonly, { cert }))),
    ).toBe(1);
    const error = await loginError(clientOptions(proxy.port, 'pwonly', 'wrong-password', { cert }));
    expect(error).toMatchObject(FAILED('pwonly'));
  });

  it('two-factor user: certificate and password log it in; either one alone is refused with 28P01', async () => {
    const cert = certs.clientCert('twofactor');
    expect(
      await loggedInAs(await connect(clientOptions(proxy.port, 'twofactor', PASSWORDS.twofactor, { cert }))),
    ).toBe(1);
    const wrongPassword = await loginError(
      clientOptions(proxy.port, 'twofactor', 'wrong-password', { cert }),
    );
    expect(wrongPassword).toMatchObject(FAILED('twofactor'));
    // With no password at all the certificate is not enough either: pgwarden asks for one (SCRAM), and the
    // client, having none, gives up before it could send anything.
    const noPassword = await loginError(clientOptions(proxy.port, 'twofactor', undefined, { cert }));
    expect(noPassword.message).toMatch(/^SASL: .*client password must be a string/);
    const noCert = await loginError(clientOptions(proxy.port, 'twofactor', PASSWORDS.twofactor));
    expect(noCert).toMatchObject(FAILED('twofactor'));
    const otherCert = await loginError(
      clientOptions(proxy.port, 'twofactor', PASSWORDS.twofactor, { cert: certs.clientCert('someone-else') }),
    );
    expect(otherCert).toMatchObject(FAILED('twofactor'));
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('actor tokens (SET pgwarden.actor)', () => {
  let proxy: PgwardenProcess;
  let auditDir: string;
  const ACTOR_REFUSED = { code: '28000' };

  beforeAll(async () => {
    auditDir = join(keys.dir, 'audit-actor');
    proxy = await startTracked(policyConfig({ audit: auditSection(auditDir) }));
  });

  it('a valid token (HS256 and EdDSA) replaces the service roles with the actor roles until RESET', async () => {
    for (const token of [hs256Token(claims()), edDsaToken(claims())]) {
      const client = await connectAs(proxy, 'svc');
      expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
      expect(await queryError(client, `select v from ${TABLE_B}`)).toMatchObject({ code: '42501' });

      await client.query(`SET pgwarden.actor = '${token}'`);
      expect(await readsTable(client, TABLE_B)).toEqual(['b1']);
      expect(await queryError(client, `select v from ${TABLE_A}`)).toMatchObject({ code: '42501' });

      await client.query('RESET pgwarden.actor');
      expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
      expect(await queryError(client, `select v from ${TABLE_B}`)).toMatchObject({ code: '42501' });
      await closeClient(client);
    }
  });

  it('SET LOCAL pgwarden.actor lasts until the end of the transaction', async () => {
    const client = await connectAs(proxy, 'svc');
    await client.query('BEGIN');
    await client.query(`SET LOCAL pgwarden.actor = '${hs256Token(claims())}'`);
    expect(await readsTable(client, TABLE_B)).toEqual(['b1']);
    await client.query('COMMIT');
    expect(await queryError(client, `select v from ${TABLE_B}`)).toMatchObject({ code: '42501' });
    expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
    await closeClient(client);
  });

  it('refuses expired, wrong-audience, tampered and over-reaching tokens with 28000; the session keeps its roles', async () => {
    const client = await connectAs(proxy, 'svc');
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, string, RegExp]> = [
      ['expired', hs256Token(claims({ iat: now - 7200, exp: now - 3600 })), /expired/],
      ['wrong audience', edDsaToken(claims({ aud: 'some-other-service' })), /audience/],
      ['bad signature', tamperedSignature(hs256Token(claims())), /signature/],
      ['bad EdDSA signature', tamperedSignature(edDsaToken(claims())), /signature/],
      [
        'role outside actor.roles',
        hs256Token(claims({ roles: ['clinician_role', 'emergency'] })),
        /emergency/,
      ],
    ];
    for (const [what, token, reason] of cases) {
      const error = await queryError(client, `SET pgwarden.actor = '${token}'`);
      expect(error, what).toMatchObject(ACTOR_REFUSED);
      expect(error.message, what).toMatch(/^actor token refused: /);
      expect(error.message, what).toMatch(reason);
      // The refusal is an ERROR, not FATAL: the session goes on with the service's own roles.
      expect(await readsTable(client, TABLE_A), what).toEqual(['a1', 'a2']);
      expect(await queryError(client, `select v from ${TABLE_B}`), what).toMatchObject({ code: '42501' });
    }
    await closeClient(client);
  });

  it('a statement refused by policy is recorded as a refusal with its SQLSTATE and rule', async () => {
    const client = await connectAs(proxy, 'svc');
    expect(await queryError(client, `select v from ${TABLE_B}`)).toMatchObject({ code: '42501' });
    await closeClient(client);
    const refusal = auditRecords(auditDir).find(
      (r) => r.event === 'refusal' && String(r.data.reason).includes(TABLE_B) && r.identity === 'svc',
    );
    expect(refusal?.data).toMatchObject({ sqlstate: '42501' });
    expect(String(refusal?.data.reason)).toMatch(
      /^permission denied by pgwarden policy: relation .* is not allowed/,
    );
  });

  it('a user without `actor` may not assert one (42501)', async () => {
    const client = await connectAs(proxy, 'plainsvc');
    const error = await queryError(client, `SET pgwarden.actor = '${hs256Token(claims())}'`);
    expect(error).toMatchObject({ code: '42501', message: 'user "plainsvc" may not assert an actor' });
    expect(await queryError(client, `select v from ${TABLE_B}`)).toMatchObject({ code: '42501' });
    await closeClient(client);
  });

  it('the token never reaches PostgreSQL: pg_stat_activity shows the neutral SET, current_setting is empty', async () => {
    const applicationName = `h5-actor-probe-${randomBytes(4).toString('hex')}`;
    const token = hs256Token(claims());
    const client = await connectAs(proxy, 'svc', { applicationName });
    await client.query(`SET pgwarden.actor = '${token}'`);
    const direct = await directClient();
    try {
      const { rows } = await direct.query<{ query: string; state: string }>(
        'select query, state from pg_stat_activity where application_name = $1',
        [applicationName],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0].state).toBe('idle');
      expect(rows[0].query).toBe('SET pgwarden.intercepted TO DEFAULT');
      expect(rows[0].query).not.toContain(token.split('.')[2]);
    } finally {
      await direct.end();
    }
    const { rows } = await client.query<{ actor: string | null }>(
      "select current_setting('pgwarden.actor', true) as actor",
    );
    expect(rows[0].actor ?? '').toBe('');
    await closeClient(client);
  });

  it('the token is not written to the audit trail or the log (the actor record carries only sub and roles)', async () => {
    const token = edDsaToken(claims({ sub: 'dr-audit' }));
    const client = await connectAs(proxy, 'svc');
    await client.query(`SET pgwarden.actor = '${token}'`);
    expect(await readsTable(client, TABLE_B)).toEqual(['b1']);
    await closeClient(client);
    const records = auditRecords(auditDir);
    const actor = records.find((r) => r.event === 'actor' && r.data.sub === 'dr-audit');
    expect(actor?.data).toMatchObject({ sub: 'dr-audit', roles: ['clinician_role'] });
    // The statement read as the actor is marked with the actor.
    expect(
      records.some(
        (r) => r.event === 'statement' && r.session === actor?.session && r.data.actor === 'dr-audit',
      ),
    ).toBe(true);
    const signature = token.split('.')[2];
    expect(proxy.logs.join('\n')).not.toContain(signature);
    // A bearer token in the audit trail could be replayed by anyone who reads it, until it expires.
    expect(JSON.stringify(records)).not.toContain(signature);
  });

  it('over the extended protocol (postgres.js): sql.unsafe SET then a prepared query as the actor', async () => {
    const sql = postgres({
      host: '127.0.0.1',
      port: proxy.port,
      user: 'svc',
      password: PASSWORDS.svc,
      database: 'ehr',
      ssl: verifiedTls(),
      // One connection, so the SET and the queries share a session; no type lookup in pg_catalog at connect.
      max: 1,
      fetch_types: false,
      onnotice: () => {},
    });
    try {
      await expect(sql.unsafe(`select v from ${TABLE_B}`)).rejects.toMatchObject({ code: '42501' });
      await sql.unsafe(`set pgwarden.actor = '${edDsaToken(claims())}'`);
      const rows = await sql<{ v: string }[]>`select v from public.h5_identity_b order by v`;
      expect(rows.map((r) => r.v)).toEqual(['b1']);
      await expect(sql`select v from public.h5_identity_a`).rejects.toMatchObject({ code: '42501' });
      await expect(
        sql.unsafe(`set pgwarden.actor = '${hs256Token(claims({ aud: 'x' }))}'`),
      ).rejects.toMatchObject({ code: '28000' });
      await sql.unsafe('reset pgwarden.actor');
      const own = await sql<{ v: string }[]>`select v from public.h5_identity_a order by v`;
      expect(own.map((r) => r.v)).toEqual(['a1', 'a2']);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('break glass (SET pgwarden.break_glass)', () => {
  let proxy: PgwardenProcess;
  let auditDir: string;
  const REASON = 'patient crashing in ER';

  beforeAll(async () => {
    auditDir = join(keys.dir, 'audit-break-glass');
    proxy = await startTracked(policyConfig({ audit: auditSection(auditDir) }));
  });

  it('an empty reason is refused with 22023 and grants nothing', async () => {
    const client = await connectAs(proxy, 'doc');
    for (const reason of ['', '   ']) {
      const error = await queryError(client, `SET pgwarden.break_glass = '${reason}'`);
      expect(error).toMatchObject({ code: '22023' });
    }
    expect(await queryError(client, `select v from ${TABLE_C}`)).toMatchObject({ code: '42501' });
    await closeClient(client);
  });

  it("gives the emergency role's rights, then ends on its own after max_duration, and audits the window", async () => {
    const client = await connectAs(proxy, 'doc');
    expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
    expect(await queryError(client, `select v from ${TABLE_C}`)).toMatchObject({ code: '42501' });

    const started = Date.now();
    await client.query(`SET pgwarden.break_glass = '${REASON}'`);
    expect(await readsTable(client, TABLE_C)).toEqual(['c1']);
    // The emergency role replaces the user's own.
    expect(await queryError(client, `select v from ${TABLE_A}`)).toMatchObject({ code: '42501' });

    const refused = await eventually('break glass to expire', async () => {
      try {
        await readsTable(client, TABLE_C);
        return undefined;
      } catch (e) {
        return { error: e as PgError, at: Date.now() };
      }
    });
    expect(refused.error).toMatchObject({ code: '42501' });
    expect(refused.at - started).toBeGreaterThanOrEqual(1990);
    expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
    await closeClient(client);

    const records = auditRecords(auditDir);
    const start = records.find((r) => r.event === 'break_glass_start' && r.data.reason === REASON);
    expect(start?.data).toMatchObject({ role: 'emergency', reason: REASON });
    const session = records.filter((r) => r.session === start!.session);
    const startAt = session.indexOf(start!);
    const endAt = session.findIndex((r) => r.event === 'break_glass_end');
    expect(endAt).toBeGreaterThan(startAt);
    expect(session[endAt].data).toMatchObject({ reason: 'expired' });
    const inWindow = session
      .slice(startAt + 1, endAt)
      .filter((r) => r.event === 'statement' && String(r.data.text).includes('h5_identity_c'));
    expect(inWindow.length).toBeGreaterThan(0);
    for (const r of inWindow) expect(r.data.break_glass).toBe(true);
    const after = session.slice(endAt + 1).filter((r) => r.event === 'statement');
    expect(after.length).toBeGreaterThan(0);
    for (const r of after) expect(r.data.break_glass).toBeUndefined();
  });

  it('RESET pgwarden.break_glass ends the window early', async () => {
    const client = await connectAs(proxy, 'doc');
    await client.query(`SET pgwarden.break_glass = '${REASON}'`);
    expect(await readsTable(client, TABLE_C)).toEqual(['c1']);
    await client.query('RESET pgwarden.break_glass');
    expect(await queryError(client, `select v from ${TABLE_C}`)).toMatchObject({ code: '42501' });
    expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
    await closeClient(client);
  });

  it('a user without break_glass is refused with 42501', async () => {
    const client = await connectAs(proxy, 'clinician');
    const error = await queryError(client, `SET pgwarden.break_glass = '${REASON}'`);
    expect(error).toMatchObject({
      code: '42501',
      message: 'user "clinician" has no emergency access (break_glass)',
    });
    expect(await queryError(client, `select v from ${TABLE_C}`)).toMatchObject({ code: '42501' });
    await closeClient(client);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('brute-force lockout', () => {
  const LOCKED = {
    code: '28000',
    severity: 'FATAL',
    message: 'too many failed login attempts: try again later',
  };
  const lockout = (cooldown: string) => ({
    access: { lockout: { max_failures: 3, window: '1m', cooldown } },
  });

  it('locks alice after 3 wrong passwords, even for the right one, until the cooldown has passed', async () => {
    // One worker: the counting and the cooldown; sharing between workers is the next test's concern.
    const auditDir = join(keys.dir, 'audit-lockout');
    const proxy = await startTracked(
      baseConfig({ workers: 1, ...lockout('3s'), audit: auditSection(auditDir) }),
    );
    for (let i = 0; i < 3; i++) {
      const error = await loginError({ ...pgOptions(proxy, 'alice'), password: `wrong-${i}` });
      expect(error).toMatchObject({ code: '28P01' });
    }
    const lockedAt = Date.now();
    expect(await loginError(pgOptions(proxy, 'alice'))).toMatchObject(LOCKED);

    const client = await eventually(
      'alice to log in after the cooldown',
      async () => {
        try {
          return await connect(pgOptions(proxy, 'alice'));
        } catch (e) {
          expect(e).toMatchObject(LOCKED);
          return undefined;
        }
      },
      20_000,
      250,
    );
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(2500);
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await closeClient(client);
    // The audit trail has the three failures and the refused attempt as a lockout, with when it ends.
    const records = auditRecords(auditDir);
    expect(records.filter((r) => r.event === 'login_failure' && r.data.user === 'alice')).toHaveLength(3);
    const locked = records.find((r) => r.event === 'lockout');
    expect(locked?.data).toMatchObject({ user: 'alice', client_addr: expect.stringContaining('127.0.0.1') });
    expect(Number(locked?.data.until_ms)).toBeGreaterThan(lockedAt);
  });

  it('treats an unknown user name like a known one, and the lock holds on every worker', async () => {
    // A fresh node with two workers: failures counted on one must lock logins on the other.
    const proxy = await startTracked(baseConfig({ workers: 2, ...lockout('1m') }));
    for (let i = 0; i < 3; i++) {
      const error = await loginError({
        ...pgOptions(proxy, 'alice'),
        user: 'mallory',
        password: `guess-${i}`,
      });
      expect(error).toMatchObject({
        code: '28P01',
        message: 'password authentication failed for user "mallory"',
      });
    }
    // Several connections, so the kernel spreads them over both workers (SO_REUSEPORT).
    for (let i = 0; i < 8; i++) {
      const asMallory = await loginError({ ...pgOptions(proxy, 'alice'), user: 'mallory', password: 'x' });
      expect(asMallory, `attempt ${i} as mallory`).toMatchObject(LOCKED);
      // The client address is locked too: even the right password of another account is refused.
      const asBob = await loginError(pgOptions(proxy, 'bob'));
      expect(asBob, `attempt ${i} as bob`).toMatchObject(LOCKED);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('address rules', () => {
  it('access.deny_cidrs refuses the client address before anything else (28000)', async () => {
    const proxy = await startTracked(policyConfig({ access: { deny_cidrs: ['127.0.0.1/32'] } }));
    expect(await refusalBeforeTls(proxy.port)).toEqual({
      sqlstate: '28000',
      severity: 'FATAL',
      message: 'connections from this client address are not allowed',
    });
    // A TLS client gets no session either.
    await expect(connect(clientOptions(proxy.port, 'awake', PASSWORDS.awake))).rejects.toThrow();
  });

  describe('users and roles with cidrs', () => {
    let proxy: PgwardenProcess;
    beforeAll(async () => {
      proxy = await startTracked(policyConfig());
    });

    it('a user outside its cidrs is refused with 28000 after a correct password (28P01 for a wrong one)', async () => {
      expect(await loginError(clientOptions(proxy.port, 'remote', PASSWORDS.remote))).toMatchObject({
        code: '28000',
        message: 'connections from this client address are not allowed',
      });
      expect(await loginError(clientOptions(proxy.port, 'remote', 'wrong'))).toMatchObject({ code: '28P01' });
    });

    it('a role whose cidrs do not match the client does not apply (42501); one that matches does', async () => {
      const roamer = await connectAs(proxy, 'roamer');
      expect(await queryError(roamer, 'select 1')).toMatchObject({ code: '42501' });
      await closeClient(roamer);
      const homebody = await connectAs(proxy, 'homebody');
      expect((await homebody.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      await closeClient(homebody);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('PROXY protocol behind HAProxy', () => {
  const haproxies: HaproxyProcess[] = [];
  const dirs: string[] = [];

  async function haproxyFor(proxy: PgwardenProcess, sendProxy: 'v1' | 'v2'): Promise<HaproxyProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'pgwarden-identity-haproxy-'));
    dirs.push(dir);
    const haproxy = await startHaproxy({ backendPort: proxy.port, sendProxy, dir });
    haproxies.push(haproxy);
    return haproxy;
  }

  afterAll(async () => {
    await Promise.all(haproxies.map((h) => h.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('from a trusted load balancer', () => {
    let proxy: PgwardenProcess;
    let auditDir: string;
    beforeAll(async () => {
      auditDir = join(keys.dir, 'audit-proxy');
      proxy = await startTracked(
        policyConfig({
          listen: { host: '127.0.0.1', port: 0, proxy_protocol: { trusted: ['127.0.0.1/32'] } },
          audit: auditSection(auditDir),
        }),
      );
    });

    for (const version of ['v2', 'v1'] as const) {
      it(`clients work through HAProxy (${version}); the audit trail has the client's own address and port`, async () => {
        const haproxy = await haproxyFor(proxy, version);
        const client = await connect(clientOptions(haproxy.port, 'awake', PASSWORDS.awake));
        expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
        // The port the client connected from (to HAProxy): only the PROXY header can tell pgwarden this one.
        const localPort = (client as unknown as { connection: { stream: net.Socket } }).connection.stream
          .localPort;
        await closeClient(client);
        const open = auditRecords(auditDir).find(
          (r) => r.event === 'connection_open' && r.data.client_port === localPort,
        );
        expect(open?.data).toEqual({ client_addr: '127.0.0.1', client_port: localPort });

        const out = execFileSync('psql', ['-X', '-At', '-w', '-c', 'select 6 * 7'], {
          env: {
            ...process.env,
            PGHOST: '127.0.0.1',
            PGPORT: String(haproxy.port),
            PGUSER: 'awake',
            PGPASSWORD: PASSWORDS.awake,
            PGDATABASE: 'ehr',
            PGSSLMODE: 'verify-full',
            PGSSLROOTCERT: inject('pg').caCert,
            PGCONNECT_TIMEOUT: '15',
          },
          encoding: 'utf8',
        });
        expect(out.trim()).toBe('42');
      });
    }

    it('a direct connection from the trusted address without a header is refused (08P01)', async () => {
      const refusal = await refusalBeforeTls(proxy.port);
      expect(refusal.sqlstate).toBe('08P01');
      expect(refusal.message).toMatch(/^invalid PROXY protocol header/);
      await expect(connect(clientOptions(proxy.port, 'awake', PASSWORDS.awake))).rejects.toThrow();
    });
  });

  describe('from an address that is not trusted', () => {
    let proxy: PgwardenProcess;
    beforeAll(async () => {
      proxy = await startTracked(
        policyConfig({ listen: { host: '127.0.0.1', port: 0, proxy_protocol: { trusted: ['10.0.0.0/8'] } } }),
      );
    });

    for (const version of ['v2', 'v1'] as const) {
      it(`a ${version} header is refused (08P01)`, async () => {
        const haproxy = await haproxyFor(proxy, version);
        const refusal = await refusalBeforeTls(haproxy.port);
        expect(refusal.sqlstate).toBe('08P01');
        expect(refusal.message).toMatch(
          /^invalid PROXY protocol header: .*not in listen\.proxy_protocol\.trusted/,
        );
        await expect(connect(clientOptions(haproxy.port, 'awake', PASSWORDS.awake))).rejects.toThrow();
      });
    }

    it('a direct client works', async () => {
      const client = await connectAs(proxy, 'awake');
      expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      await closeClient(client);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('automatic logoff per role (idle_timeout)', () => {
  it('logs off a session of a role with idle_timeout (57P05), not a session without it', async () => {
    const proxy = await startTracked(policyConfig());
    const sleepy = await connectAs(proxy, 'sleepy');
    const awake = await connectAs(proxy, 'awake');
    await Promise.all([sleepy.query('select 1'), awake.query('select 1')]);
    const idleSince = Date.now();
    const error = await eventually(
      'the idle session to be logged off',
      async () => sleepy.errors[0],
      15_000,
      100,
    );
    const loggedOffAfter = Date.now() - idleSince;
    expect(error).toMatchObject({ code: '57P05' });
    expect(error.message).toMatch(/idle-session timeout \(1500 ms\)/);
    expect(loggedOffAfter).toBeGreaterThanOrEqual(1400);
    openClients.delete(sleepy);
    // The other session has been idle as long, and longer still: it stays.
    await sleep(Math.max(0, 3500 - (Date.now() - idleSince)));
    expect(awake.errors).toEqual([]);
    expect((await awake.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
    await closeClient(awake);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('reload', () => {
  it('a valid reload reaches an open session at its next statement; an invalid one changes nothing', async () => {
    const proxy = await startTracked(policyConfig());
    const client = await connectAs(proxy, 'clinician');
    expect(await readsTable(client, TABLE_B)).toEqual(['b1']);
    const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;

    // A role that names a database that does not exist: the whole file is refused, the old config stays.
    const invalid = policyConfig({
      roles: { ...policyRoles(), clinician_role: { statements: READER, databases: ['no_such_db'] } },
    });
    const from = proxy.logs.length;
    await proxy.reload(invalid);
    await proxy.waitForLog(/reload failed/, 10_000, from);
    expect(await readsTable(client, TABLE_B)).toEqual(['b1']);

    // The grant on table B removed: the same open session is refused from its next statement on.
    const revoked = policyConfig({
      roles: { ...policyRoles(), clinician_role: { statements: READER, tables: { allow: [TABLE_A] } } },
    });
    await proxy.reload(revoked);
    const error = await eventually('the reload to reach the session', async () => {
      try {
        await readsTable(client, TABLE_B);
        return undefined;
      } catch (e) {
        return e as PgError;
      }
    });
    expect(error).toMatchObject({ code: '42501' });
    expect(await readsTable(client, TABLE_A)).toEqual(['a1', 'a2']);
    // Still the same session and the same server connection.
    expect((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid).toBe(pid);
    expect(client.errors).toEqual([]);
    await closeClient(client);
  });
});
