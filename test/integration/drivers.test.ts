// Real drivers through pgwarden (TLS + SCRAM to pgwarden, brokered login upstream): node-postgres and postgres.js
// doing what applications do — parameters, errors, transactions, LISTEN/NOTIFY, cancel, pipelining, COPY, notices,
// ParameterStatus and startup parameters — plus the refusals a client sees at login.
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { pgClient, pgOptions, postgresJs, startProxy } from './support.js';
import { connectPlain, frontend } from './wire.js';

/** pg keeps the BackendKeyData it received on the client; the typings do not declare it. */
interface KeyedClient {
  processID: number;
  secretKey: number;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `probe` returns true (a statement visibly running upstream, a notification arrived, ...). */
async function until(probe: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Sends a CancelRequest to pgwarden over a fresh plaintext connection, as libpq's PQcancel does. */
async function sendCancel(port: number, processId: number, secret: number): Promise<void> {
  const wire = await connectPlain(port);
  wire.write(frontend.cancelRequest(processId, secret));
  await wire.rest(); // pgwarden closes after reading the request
}

/** Direct connection to the harness PostgreSQL as the upstream account, for comparisons. */
function directPostgresJs() {
  const server = inject('pg');
  return postgres({
    host: server.host,
    port: server.port,
    user: 'app',
    password: server.users.app,
    database: server.database,
    ssl: { ca: readFileSync(server.caCert), servername: 'localhost' },
    max: 1,
    onnotice: () => {},
  });
}

describe('drivers through pgwarden', () => {
  let proxy: PgwardenProcess;
  /** One connection for sanity probes (is the statement running upstream?). */
  let observer: pg.Client;

  beforeAll(async () => {
    proxy = await startProxy();
    observer = await pgClient(proxy, 'bob');
  });
  afterAll(async () => {
    await observer?.end();
    await proxy?.stop();
  });

  const runningUpstream = async (text: string): Promise<boolean> => {
    const r = await observer.query(
      "select count(*)::int as n from pg_stat_activity where state = 'active' and query = $1",
      [text],
    );
    return r.rows[0].n > 0;
  };

  describe('node-postgres', () => {
    it('binds parameters of several types and returns them typed', async () => {
      const client = await pgClient(proxy);
      try {
        const when = new Date('2024-02-29T13:14:15.123Z');
        const r = await client.query(
          `select $1::text as t, $2::int4 as i, $3::int8 as big, $4::numeric as n, $5::bool as b,
                  $6::bytea as raw, $7::jsonb as j, $8::int4[] as arr, $9::text as nothing, $10::timestamptz as ts`,
          [
            "O'Brien – ünïcode ✓",
            -2147483648,
            '9007199254740993',
            '12345.6789',
            true,
            Buffer.from([0, 1, 254, 255]),
            JSON.stringify({ mrn: 'A-1', tags: [1, 2] }),
            [1, 2, 3],
            null,
            when,
          ],
        );
        expect(r.rows).toEqual([
          {
            t: "O'Brien – ünïcode ✓",
            i: -2147483648,
            big: '9007199254740993',
            n: '12345.6789',
            b: true,
            raw: Buffer.from([0, 1, 254, 255]),
            j: { mrn: 'A-1', tags: [1, 2] },
            arr: [1, 2, 3],
            nothing: null,
            ts: when,
          },
        ]);
        // The same statement again with other values (unnamed statement re-parsed each time).
        const again = await client.query('select $1::int4 * 2 as doubled', [21]);
        expect(again.rows).toEqual([{ doubled: 42 }]);
      } finally {
        await client.end();
      }
    });

    it('reports division by zero as SQLSTATE 22012 and the session stays usable', async () => {
      const client = await pgClient(proxy);
      try {
        await expect(client.query('select 1/0')).rejects.toMatchObject({
          code: '22012',
          severity: 'ERROR',
          message: 'division by zero',
        });
        await expect(client.query('select $1::int / 0', [5])).rejects.toMatchObject({ code: '22012' });
        expect((await client.query('select 2 + 2 as four')).rows).toEqual([{ four: 4 }]);
      } finally {
        await client.end();
      }
    });

    it('rolls back a transaction, and an error inside one aborts it until ROLLBACK', async () => {
      const client = await pgClient(proxy);
      try {
        await client.query('create table if not exists drivers_tx (id int primary key, note text)');
        await client.query('truncate drivers_tx');
        await client.query('begin');
        await client.query("insert into drivers_tx values (1, 'kept?')");
        expect((await client.query('select count(*)::int as n from drivers_tx')).rows).toEqual([{ n: 1 }]);
        await client.query('rollback');
        expect((await client.query('select count(*)::int as n from drivers_tx')).rows).toEqual([{ n: 0 }]);

        await client.query('begin');
        await client.query("insert into drivers_tx values (2, 'first')");
        await expect(client.query("insert into drivers_tx values (2, 'duplicate')")).rejects.toMatchObject({
          code: '23505',
        });
        await expect(client.query('select 1')).rejects.toMatchObject({ code: '25P02' });
        await client.query('rollback');

        await client.query('begin');
        await client.query("insert into drivers_tx values (3, 'committed')");
        await client.query('commit');
        expect((await client.query('select id, note from drivers_tx')).rows).toEqual([
          { id: 3, note: 'committed' },
        ]);
      } finally {
        await client.query('drop table if exists drivers_tx');
        await client.end();
      }
    });

    it('delivers NOTIFY from one client to a LISTENing client', async () => {
      const listener = await pgClient(proxy);
      const notifier = await pgClient(proxy, 'bob');
      try {
        const received: pg.Notification[] = [];
        listener.on('notification', (n) => received.push(n));
        await listener.query('listen ward_events');
        await notifier.query("notify ward_events, 'bed 12 free'");
        await notifier.query("select pg_notify('ward_events', $1)", ['bed 7 taken']);
        await until(() => received.length >= 2);
        expect(received.map((n) => [n.channel, n.payload])).toEqual([
          ['ward_events', 'bed 12 free'],
          ['ward_events', 'bed 7 taken'],
        ]);
        // A notification arriving while the listener is idle must not disturb its next query.
        expect((await listener.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      } finally {
        await listener.end();
        await notifier.end();
      }
    });

    it("cancels a running query with pgwarden's key (57014), which is not the upstream's, and ignores a wrong secret", async () => {
      const client = await pgClient(proxy);
      try {
        const key = client as unknown as KeyedClient;
        const upstreamPid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
        expect(key.processID).not.toBe(upstreamPid);

        const sleeping = client.query('select pg_sleep(30)');
        const outcome = sleeping.then(
          () => null,
          (e: unknown) => e,
        );
        await until(() => runningUpstream('select pg_sleep(30)'));

        // A wrong secret is ignored: the statement keeps running.
        await sendCancel(proxy.port, key.processID, key.secretKey ^ 1);
        await sleep(500);
        expect(await runningUpstream('select pg_sleep(30)')).toBe(true);
        // The upstream's own pid is not a key pgwarden knows.
        await sendCancel(proxy.port, upstreamPid, key.secretKey);
        await sleep(300);
        expect(await runningUpstream('select pg_sleep(30)')).toBe(true);

        const started = Date.now();
        await sendCancel(proxy.port, key.processID, key.secretKey);
        expect(await outcome).toMatchObject({
          code: '57014',
          message: 'canceling statement due to user request',
        });
        expect(Date.now() - started).toBeLessThan(10_000);
        expect((await client.query('select 7 as seven')).rows).toEqual([{ seven: 7 }]);
      } finally {
        await client.end();
      }
    });

    it('refuses plaintext with 28000 and a message about TLS', async () => {
      const client = new pg.Client({ ...pgOptions(proxy), ssl: false });
      client.on('error', () => {});
      await expect(client.connect()).rejects.toMatchObject({
        code: '28000',
        severity: 'FATAL',
        message: expect.stringMatching(/TLS/),
      });
    });

    it('refuses a wrong password with 28P01 naming the user', async () => {
      const client = new pg.Client({ ...pgOptions(proxy), password: 'not-alices-password' });
      client.on('error', () => {});
      await expect(client.connect()).rejects.toMatchObject({
        code: '28P01',
        severity: 'FATAL',
        message: 'password authentication failed for user "alice"',
      });
    });

    it('refuses an unknown user exactly like a wrong password (28P01, same message shape)', async () => {
      const client = new pg.Client({ ...pgOptions(proxy), user: 'mallory', password: 'guess' });
      client.on('error', () => {});
      await expect(client.connect()).rejects.toMatchObject({
        code: '28P01',
        severity: 'FATAL',
        message: 'password authentication failed for user "mallory"',
      });
    });
  });

  describe('postgres.js', () => {
    it('pipelines 200 prepared, parameterised statements on one connection, in order', async () => {
      const sql = postgresJs(proxy, { max: 1 });
      try {
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            i % 2 === 0
              ? sql`select ${i}::int as i, ${'row-' + i}::text as label`
              : sql`select ${i}::int as i, ${'row-' + i}::text as label, ${i * 0.5}::float8 as half`,
          ),
        );
        results.forEach((rows, i) => {
          const expected: Record<string, unknown> = { i, label: `row-${i}` };
          if (i % 2 === 1) expected.half = i * 0.5;
          expect([...rows]).toEqual([expected]);
        });
        // All of it went over a single upstream backend.
        const pids = await Promise.all(Array.from({ length: 5 }, () => sql`select pg_backend_pid() as pid`));
        expect(new Set(pids.map((r) => r[0].pid)).size).toBe(1);
      } finally {
        await sql.end();
      }
    });

    it('cancels a running query with .cancel() (57014)', async () => {
      const sql = postgresJs(proxy, { max: 1 });
      try {
        const q = sql`select pg_sleep(30) as slept`;
        const outcome = q.execute().then(
          () => null,
          (e: unknown) => e,
        );
        await until(() => runningUpstream('select pg_sleep(30) as slept'));
        const started = Date.now();
        await q.cancel();
        expect(await outcome).toMatchObject({ code: '57014' });
        expect(Date.now() - started).toBeLessThan(10_000);
        expect([...(await sql`select 1 as one`)]).toEqual([{ one: 1 }]);
      } finally {
        await sql.end();
      }
    });

    it('round-trips 10,000 rows byte for byte through COPY FROM STDIN and COPY TO STDOUT', async () => {
      const sql = postgresJs(proxy, { max: 1 });
      try {
        await sql`create table if not exists drivers_copy (id int, name text, note text, born date)`;
        await sql`truncate drivers_copy`;
        // Canonical COPY text: what PostgreSQL writes back is exactly what went in (escapes, \N, UTF-8).
        const lines: string[] = [];
        for (let i = 0; i < 10_000; i++) {
          const note = i % 7 === 0 ? '\\N' : `tab\\there\\\\back ✓ ${i}`;
          lines.push(`${i}\tpatient ${i} Zoë\t${note}\t${2000 + (i % 20)}-0${1 + (i % 9)}-1${i % 10}\n`);
        }
        const data = Buffer.from(lines.join(''), 'utf8');

        const writable = await sql`copy drivers_copy from stdin`.writable();
        // Odd-sized pieces, so CopyData boundaries fall inside rows and multi-byte characters.
        const pieces: Buffer[] = [];
        for (let at = 0; at < data.length; at += 8191) pieces.push(data.subarray(at, at + 8191));
        await pipeline(Readable.from(pieces), writable);
        expect([...(await sql`select count(*)::int as n from drivers_copy`)]).toEqual([{ n: 10_000 }]);

        const readable = await sql`copy drivers_copy to stdout`.readable();
        const out: Buffer[] = [];
        for await (const chunk of readable) out.push(chunk as Buffer);
        const copied = Buffer.concat(out);
        expect(copied.length).toBe(data.length);
        expect(copied.equals(data)).toBe(true);
      } finally {
        await sql`drop table if exists drivers_copy`;
        await sql.end();
      }
    });

    it('passes NoticeResponse from a DO block to onnotice', async () => {
      const notices: postgres.Notice[] = [];
      const sql = postgresJs(proxy, { max: 1, onnotice: (n) => notices.push(n) });
      try {
        await sql`do $$ begin raise notice 'ward % has % free beds', 'B', 3; raise warning 'low stock'; end $$`;
        expect(notices.map((n) => [n.severity, n.code, n.message])).toEqual([
          ['NOTICE', '00000', 'ward B has 3 free beds'],
          ['WARNING', '01000', 'low stock'],
        ]);
      } finally {
        await sql.end();
      }
    });

    it("shows the upstream's ParameterStatus values, the same as a direct connection", async () => {
      const viaProxy = postgresJs(proxy, { max: 1 });
      const direct = directPostgresJs();
      try {
        await viaProxy`select 1`;
        await direct`select 1`;
        expect(viaProxy.parameters).toEqual(direct.parameters);
        expect(viaProxy.parameters).toMatchObject({
          session_authorization: 'app',
          client_encoding: 'UTF8',
          server_encoding: 'UTF8',
          integer_datetimes: 'on',
        });
        expect(viaProxy.parameters.server_version).toMatch(/^15\./);
      } finally {
        await viaProxy.end();
        await direct.end();
      }
    });

    it('passes startup parameters upstream: application_name, DateStyle, TimeZone, IntervalStyle, options', async () => {
      const sql = postgresJs(proxy, {
        max: 1,
        connection: {
          application_name: 'ehr-app',
          DateStyle: 'SQL, DMY',
          TimeZone: 'Asia/Tokyo',
          IntervalStyle: 'iso_8601',
          options: '-c statement_timeout=5s',
        },
      });
      try {
        const shown = await sql`select current_setting('application_name') as app,
                                       current_setting('DateStyle') as ds,
                                       current_setting('TimeZone') as tz,
                                       current_setting('IntervalStyle') as iv,
                                       current_setting('statement_timeout') as st`;
        expect([...shown]).toEqual([
          { app: 'ehr-app', ds: 'SQL, DMY', tz: 'Asia/Tokyo', iv: 'iso_8601', st: '5s' },
        ]);
        // ParameterStatus reported them too.
        expect(sql.parameters).toMatchObject({
          application_name: 'ehr-app',
          DateStyle: 'SQL, DMY',
          TimeZone: 'Asia/Tokyo',
          IntervalStyle: 'iso_8601',
        });
        // The upstream session really runs with them.
        const [{ d }] = await sql`select '2024-02-29'::date::text as d`;
        expect(d).toBe('29/02/2024');
        const [{ appSeen }] =
          await sql`select application_name as "appSeen" from pg_stat_activity where pid = pg_backend_pid()`;
        expect(appSeen).toBe('ehr-app');
      } finally {
        await sql.end();
      }
    });
  });

  describe('with allow_plaintext: true', () => {
    let plainProxy: PgwardenProcess;
    beforeAll(async () => {
      plainProxy = await startProxy({ workers: 1, allow_plaintext: true });
    });
    afterAll(async () => {
      await plainProxy?.stop();
    });

    it('accepts a plaintext client', async () => {
      const client = new pg.Client({ ...pgOptions(plainProxy), ssl: false });
      await client.connect();
      try {
        expect((await client.query('select current_user as u')).rows).toEqual([{ u: 'app' }]);
      } finally {
        await client.end();
      }
    });
  });
});
