// The postgres audit sink against the harness PostgreSQL: with a file sink beside it in durable mode every record
// line of the files lands in the audit table (same stream, seq and text) and each stream's rows verify as a chain;
// while the audit database refuses, statements get 58030 and resume by themselves after, with no seq missing or
// doubled; and a retry skips the rows a lost reply had already committed.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { PostgresSink } from '../../src/audit/sinks/postgres-sink.js';
import { auditFileName } from '../../src/audit/sinks/file-sink.js';
import type { AuditSink } from '../../src/audit/durability.js';
import { repoRoot } from '../../src/embedded/exec.js';
import { superuserSql } from '../../src/embedded/postgres.js';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { pgClient, startProxy } from './support.js';

const pgInfo = inject('pg');
const suffix = randomBytes(3).toString('hex');
const ROLE = `pgw_audit_${suffix}`;
const DB = `pgw_auditdb_${suffix}`;
const PASSWORD = `audit-db-pw-${suffix}`;
const su = (sql: string, db = DB) => superuserSql(pgInfo, sql, db).trim();

interface Keys {
  dir: string;
  privateKey: string;
  publicKey: string;
}

function makeKeys(): Keys {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-audit-pg-'));
  const privateKey = join(dir, 'audit.key');
  const publicKey = join(dir, 'audit.pub');
  execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', privateKey]);
  execFileSync('openssl', ['pkey', '-in', privateKey, '-pubout', '-out', publicKey]);
  return { dir, privateKey, publicKey };
}

function auditConfig(keys: Keys, dir: string, table?: string) {
  return {
    audit: {
      mode: 'durable',
      checkpoint_every: 25,
      signing_key_file: keys.privateKey,
      sinks: [
        { type: 'file', path: dir },
        {
          type: 'postgres',
          host: '127.0.0.1',
          port: pgInfo.port,
          database: DB,
          user: ROLE,
          password: '${AUDIT_DB_PASSWORD}',
          tls: { mode: 'verify-full', ca_file: pgInfo.caCert, server_name: 'localhost' },
          ...(table === undefined ? {} : { table }),
        },
      ],
    },
  };
}

/** Every line of the audit files, keyed by stream and seq. */
function fileLines(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue;
      const r = JSON.parse(line) as { stream: string; seq: number };
      out.set(`${r.stream}/${r.seq}`, line);
    }
  }
  return out;
}

/** The audit table's rows, in stream and seq order. */
function tableRows(table: string): Array<{ stream: string; seq: number; line: string }> {
  const json = su(
    `select coalesce(json_agg(json_build_object('stream', stream, 'seq', seq, 'line', line) order by stream, seq), '[]') from ${table}`,
  );
  return JSON.parse(json) as Array<{ stream: string; seq: number; line: string }>;
}

/** Writes each stream's rows to a file of its own and runs `pgwarden audit verify` on them. */
function verifyTable(keys: Keys, rows: Array<{ stream: string; line: string }>) {
  const dir = join(keys.dir, `from-table-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir);
  const streams = new Map<string, string[]>();
  for (const r of rows) streams.set(r.stream, [...(streams.get(r.stream) ?? []), r.line]);
  for (const [stream, lines] of streams)
    writeFileSync(join(dir, auditFileName(stream, 1)), lines.join('\n') + '\n');
  return spawnSync(
    process.execPath,
    [join(repoRoot(), 'bin', 'pgwarden.js'), 'audit', 'verify', '--key', keys.publicKey, dir],
    { encoding: 'utf8', timeout: 60_000 },
  );
}

/** Seqs 1..n of every stream, each once: nothing missing, nothing doubled. */
function expectContiguous(rows: Array<{ stream: string; seq: number }>) {
  const byStream = new Map<string, number[]>();
  for (const r of rows) byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), Number(r.seq)]);
  for (const seqs of byStream.values()) expect(seqs).toEqual(seqs.map((_, i) => i + 1));
}

beforeAll(() => {
  superuserSql(pgInfo, `create role ${ROLE} login password '${PASSWORD}'`);
  superuserSql(pgInfo, `create database ${DB} owner ${ROLE}`);
  su(`create schema audit authorization ${ROLE}`);
});

afterAll(() => {
  superuserSql(pgInfo, `drop database if exists ${DB} with (force)`);
  superuserSql(pgInfo, `drop role if exists ${ROLE}`);
});

describe('postgres audit sink', () => {
  let proxy: PgwardenProcess | null = null;
  afterEach(async () => {
    if (proxy) await proxy.stop();
    proxy = null;
  });

  it('writes every record of the files to the audit table, and each stream of the table verifies', async () => {
    const keys = makeKeys();
    const dir = join(keys.dir, 'audit');
    proxy = await startProxy(
      { workers: 2, ...auditConfig(keys, dir, 'audit.events') },
      { env: { AUDIT_DB_PASSWORD: PASSWORD } },
    );
    const clients = await Promise.all(Array.from({ length: 4 }, () => pgClient(proxy!)));
    await Promise.all(
      clients.map(async (c, i) => {
        for (let n = 0; n < 10; n++) await c.query(`select ${i * 100 + n} as probe`);
        // COPY's escapes: a tab, a newline, a carriage return and backslashes in the statement text.
        await c.query(`select 'tab\there', 'line\nbreak\r', 'back\\slash\\\\n' as text_${i}`);
      }),
    );
    await Promise.all(clients.map((c) => c.end()));
    expect(await proxy.stop()).toBe(0);
    proxy = null;

    const files = fileLines(dir);
    const rows = tableRows('audit.events');
    expect(files.size).toBeGreaterThan(40);
    expect(rows.length).toBe(files.size);
    for (const r of rows) expect(r.line).toBe(files.get(`${r.stream}/${r.seq}`));
    // Two workers and the main thread (configuration reloads), each its own stream.
    expect(new Set(rows.map((r) => r.stream)).size).toBe(3);
    expect(rows.some((r) => r.line.includes('tab\\there'))).toBe(true);
    // The other columns agree with the line they came from.
    expect(
      su(
        `select count(*) from audit.events where record <> line::jsonb or event <> record->>'event' ` +
          `or stream <> record->>'stream' or seq <> (record->>'seq')::bigint ` +
          `or (extract(epoch from ts) * 1000000)::bigint <> (record->>'ts')::bigint`,
      ),
    ).toBe('0');
    expectContiguous(rows);
    const r = verifyTable(keys, rows);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('refuses statements with 58030 while the audit database refuses, then resumes with no seq lost or doubled', async () => {
    const keys = makeKeys();
    const dir = join(keys.dir, 'audit');
    proxy = await startProxy(
      { workers: 1, ...auditConfig(keys, dir) },
      { env: { AUDIT_DB_PASSWORD: PASSWORD } },
    );
    const client = await pgClient(proxy);
    await client.query('select 1');
    try {
      su(`alter role ${ROLE} nologin`);
      su(`select pg_terminate_backend(pid) from pg_stat_activity where usename = '${ROLE}'`);
      let refused: unknown = null;
      for (let i = 0; i < 100 && !refused; i++) {
        await client.query(`select ${i} as while_down`).catch((e: unknown) => (refused = e));
        await new Promise((res) => setTimeout(res, 20));
      }
      expect(refused).toMatchObject({
        code: '58030',
        message: expect.stringMatching(/audit log unavailable/),
      });
      await expect(client.query('select 2')).rejects.toMatchObject({ code: '58030' });
      expect(proxy.logs.some((l) => /audit log unavailable/.test(l))).toBe(true);
      // The reason names the database's answer, never its password.
      expect(proxy.logs.some((l) => l.includes(PASSWORD))).toBe(false);
    } finally {
      su(`alter role ${ROLE} login`);
    }
    let recovered = false;
    for (let i = 0; i < 50 && !recovered; i++) {
      await new Promise((res) => setTimeout(res, 200));
      recovered = await client.query('select 3 as after').then(
        () => true,
        () => false,
      );
    }
    expect(recovered).toBe(true);
    for (let n = 0; n < 5; n++) await client.query(`select ${n} as resumed`);
    await client.end();
    expect(await proxy.stop()).toBe(0);
    proxy = null;

    const files = fileLines(dir);
    const rows = tableRows('pgwarden_audit');
    expect(rows.length).toBe(files.size);
    for (const r of rows) expect(r.line).toBe(files.get(`${r.stream}/${r.seq}`));
    expectContiguous(rows);
    expect(rows.some((r) => r.line.includes('resumed'))).toBe(true);
    const r = verifyTable(keys, rows);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('skips on a new connection the rows of this stream the table already holds (a commit whose reply was lost)', async () => {
    const stream = `dedup-${suffix}`;
    const table = 'audit.dedup';
    const line = (seq: number) =>
      JSON.stringify({
        v: 1,
        seq,
        ts: 1_700_000_000_000_000 + seq,
        stream,
        event: 'statement',
        data: { n: seq },
      });
    const failures: string[] = [];
    const make = () =>
      new PostgresSink({
        settings: {
          name: 'audit',
          host: '127.0.0.1',
          port: pgInfo.port,
          database: DB,
          user: ROLE,
          password: PASSWORD,
          tls: { mode: 'verify-full', ca: readFileSync(pgInfo.caCert), serverName: 'localhost' },
          connectTimeoutMs: 5000,
          maxMessageSize: 1 << 30,
          framing: 'typescript',
        },
        table,
        stream,
        retryIntervalMs: 100,
        listener: {
          onFailure: (_s: AuditSink, reason: string) => failures.push(reason),
          onRecovery: () => {},
        },
      });
    const first = make();
    for (let seq = 1; seq <= 3; seq++) first.push(line(seq), 10);
    await first.sync();
    await first.close();
    // A second sink of the same stream (a new connection) is handed rows 1..5 again, as a retry after a lost
    // reply would be: the primary key would reject the whole COPY if 1..3 were sent.
    const second = make();
    for (let seq = 1; seq <= 5; seq++) second.push(line(seq), 10);
    await second.sync();
    expect(second.backlogBytes).toBe(0);
    await second.close();
    expect(failures).toEqual([]);
    const rows = tableRows(table);
    expect(rows.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4, 5]);
    expect(rows.map((r) => r.line)).toEqual([1, 2, 3, 4, 5].map(line));
  });
});
