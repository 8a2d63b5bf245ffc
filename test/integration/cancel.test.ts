// Query cancellation through pgwarden: CancelRequests reach the upstream backend whichever worker they land on,
// work in plaintext even when TLS is required (libpq < 17 sends them that way), and a stale or wrong key never
// cancels anything (the key a client holds is pgwarden's, never the upstream's, so a reused server connection is safe).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import type postgres from 'postgres';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { superuserSql } from '../../src/embedded/postgres.js';
import { baseConfig, metric, pgClient, postgresJs, startProxy } from './support.js';
import { cancelRequest, closedWithin, rawConnect } from './raw-client.js';

type PgError = Error & { code?: string };

function keyOf(client: pg.Client): { processId: number; secret: number } {
  const c = client as unknown as { processID: number; secretKey: number };
  return { processId: c.processID, secret: c.secretKey };
}

/** Upstream backends running `select pg_sleep(<seconds>)` right now (seen by the superuser). */
function sleepingBackends(seconds: number): number {
  const pgInfo = inject('pg');
  const out = superuserSql(
    pgInfo,
    `select count(*) from pg_stat_activity where state = 'active' and query = 'select pg_sleep(${seconds})'`,
  );
  return Number(out.trim());
}

async function waitForSleepers(seconds: number, n: number): Promise<void> {
  await expect
    .poll(() => sleepingBackends(seconds), { timeout: 10_000, interval: 50 })
    .toBeGreaterThanOrEqual(n);
}

/** Sends a CancelRequest in plaintext (no SSLRequest), as libpq before 17 does, and waits for pgwarden to close. */
async function plaintextCancel(port: number, processId: number, secret: number): Promise<Buffer> {
  const c = await rawConnect(port);
  c.write(cancelRequest(processId, secret));
  return (await closedWithin(c, 5000)).reply;
}

describe('cancel across workers', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    // Room for every session on either worker, however SO_REUSEPORT spreads them.
    proxy = await startProxy({ workers: 2, ...withPoolSize(40) });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('cancels running queries with postgres.js .cancel(), same-worker and cross-worker alike (57014)', async () => {
    const n = 12;
    // Each cancel is a fresh TCP connection that SO_REUSEPORT hashes to either worker: with 12 of them both the
    // local route and the route through the main thread are taken (all 12 on one route: p = 2^-11).
    const sqls = Array.from({ length: n }, () => postgresJs(proxy, { max: 1 }));
    try {
      await Promise.all(sqls.map((sql) => sql`select 1`));
      const forwardedBefore = await metric(proxy, 'pgwarden_cancel_forwarded_total');
      const queries = sqls.map((sql) => sql`select pg_sleep(30)`);
      const outcomes = queries.map((q) =>
        q.then(
          () => null,
          (e: PgError) => e,
        ),
      );
      await waitForSleepers(30, n);
      const started = Date.now();
      await Promise.all(queries.map((q) => q.cancel()));
      const errors = await Promise.all(outcomes);
      expect(errors.map((e) => e?.code)).toEqual(Array(n).fill('57014'));
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await metric(proxy, 'pgwarden_cancel_forwarded_total')).toBe(forwardedBefore + n);
      // The sessions survive their cancelled statement.
      for (const sql of sqls) expect(await sql`select 5 as five`).toEqual([{ five: 5 }]);
    } finally {
      await Promise.all(sqls.map((sql: postgres.Sql) => sql.end({ timeout: 1 })));
    }
  });

  it('honours a CancelRequest sent in plaintext although TLS is required for sessions', async () => {
    const client = await pgClient(proxy);
    try {
      const running = client.query('select pg_sleep(30)').then(
        () => null,
        (e: PgError) => e,
      );
      await waitForSleepers(30, 1);
      const { processId, secret } = keyOf(client);
      expect(await plaintextCancel(proxy.port, processId, secret)).toHaveLength(0); // like PostgreSQL: no reply
      expect((await running)?.code).toBe('57014');
    } finally {
      await client.end();
    }
  });
});

describe('stale and wrong cancel keys', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    // One worker with one server connection: every client gets the same upstream backend, reset between them.
    proxy = await startProxy({ workers: 1, ...withPoolSize(1) });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("never cancels a later client's query with the key of a client that left", async () => {
    const first = await pgClient(proxy);
    const firstBackend = (await first.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const staleKey = keyOf(first);
    await first.end();

    const second = await pgClient(proxy);
    try {
      // The same upstream backend serves the new client: a proxy that handed out upstream keys would cancel it.
      expect((await second.query('select pg_backend_pid() as pid')).rows[0].pid).toBe(firstBackend);
      const forwarded = await metric(proxy, 'pgwarden_cancel_forwarded_total');
      const received = await metric(proxy, 'pgwarden_cancel_requests_total');
      const started = Date.now();
      const running = second.query('select pg_sleep(2)');
      await waitForSleepers(2, 1);
      await plaintextCancel(proxy.port, staleKey.processId, staleKey.secret);
      await expect(running).resolves.toBeDefined();
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      expect(await metric(proxy, 'pgwarden_cancel_requests_total')).toBe(received + 1);
      expect(await metric(proxy, 'pgwarden_cancel_forwarded_total')).toBe(forwarded);
    } finally {
      await second.end();
    }
  });

  it('ignores a CancelRequest with the right process id and a wrong secret', async () => {
    const client = await pgClient(proxy);
    try {
      const { processId, secret } = keyOf(client);
      const forwarded = await metric(proxy, 'pgwarden_cancel_forwarded_total');
      const started = Date.now();
      const running = client.query('select pg_sleep(2)');
      await waitForSleepers(2, 1);
      await plaintextCancel(proxy.port, processId, secret ^ 1);
      await plaintextCancel(proxy.port, processId + 1, secret);
      await expect(running).resolves.toBeDefined();
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      expect(await metric(proxy, 'pgwarden_cancel_forwarded_total')).toBe(forwarded);
      // The right key still works afterwards: the wrong ones were ignored, not counted against the session.
      const again = client.query('select pg_sleep(30)').then(
        () => null,
        (e: PgError) => e,
      );
      await waitForSleepers(30, 1);
      await plaintextCancel(proxy.port, processId, secret);
      expect((await again)?.code).toBe('57014');
    } finally {
      await client.end();
    }
  });
});

/** Config overrides giving the ehr database a pool of `size` (node-wide; each worker gets ceil(size / workers)). */
function withPoolSize(size: number): Record<string, unknown> {
  const databases = baseConfig().databases as Record<string, Record<string, unknown>>;
  return { databases: { ...databases, ehr: { ...databases.ehr, pool: { size } } } };
}
