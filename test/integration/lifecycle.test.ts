// The life of a node around its sessions: a worker that dies is replaced while the other keeps its clients,
// SIGTERM drains (idle sessions end, transactions finish, the drain timeout bounds the rest), SIGHUP reloads (a bad
// file keeps the running config), and the admin endpoints report health, readiness and metrics.
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { generateScramVerifier } from '../../src/auth/scram-verifier.js';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { baseConfig, CLIENTS, metric, pgClient, pgOptions, startProxy, UPSTREAM_ENV } from './support.js';
import { startPgwarden } from '../harness/pgwarden.js';

type PgError = Error & { code?: string };

/** The worker that owns a session: pgwarden's BackendKeyData process id carries it (bits 22-29). */
function workerOf(client: pg.Client): number {
  const pid = (client as unknown as { processID: number }).processID;
  return (pid >>> 22) & 0xff;
}

/** Errors a client emits while idle (a FATAL from pgwarden, a dropped connection), recorded for assertions. */
function watchErrors(client: pg.Client): { errors: PgError[]; next: Promise<PgError> } {
  const errors: PgError[] = [];
  const next = new Promise<PgError>((resolve) =>
    client.on('error', (e: PgError) => {
      errors.push(e);
      resolve(e);
    }),
  );
  return { errors, next };
}

async function status(proxy: PgwardenProcess, path: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`)).status;
}

/** Rejects if `p` has not settled within `ms`: a client must never hang. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms),
    ),
  ]);
}

async function tryConnect(options: pg.ClientConfig): Promise<PgError | null> {
  const client = new pg.Client(options);
  client.on('error', () => {});
  try {
    await client.connect();
    await client.end();
    return null;
  } catch (e) {
    await client.end().catch(() => {});
    return e as PgError;
  }
}

describe('lifecycle', () => {
  let proxy: PgwardenProcess | undefined;
  const clients: pg.Client[] = [];
  afterEach(async () => {
    // A client whose connection was cut may never see its end() complete; do not wait on it for long.
    await Promise.all(clients.splice(0).map((c) => within(c.end(), 3000, 'client end').catch(() => {})));
    await proxy?.stop('SIGKILL');
    proxy = undefined;
  });

  async function connect(p: PgwardenProcess, options: pg.ClientConfig = pgOptions(p)): Promise<pg.Client> {
    const client = new pg.Client(options);
    clients.push(client);
    await client.connect();
    return client;
  }

  it('replaces a worker that dies while the other worker keeps its clients', async () => {
    // SO_REUSEPORT may hash most of the (up to 60) connections below to one worker: each worker's share of the
    // pool must hold them all, or a client waits for a server connection past the startup timeout.
    const config = baseConfig({ workers: 2 }) as { databases: { ehr: { pool: { size: number } } } };
    config.databases.ehr.pool.size = 120;
    proxy = await startPgwarden(config as Record<string, unknown>, {
      env: { ...UPSTREAM_ENV, PGWARDEN_DEBUG_ENDPOINTS: '1' },
    });
    const p = proxy;
    const byWorker: pg.Client[][] = [[], []];
    const failures = new Map<pg.Client, PgError[]>();
    // SO_REUSEPORT spreads connections by hash: open until both workers hold at least three sessions.
    while (byWorker[0].length < 3 || byWorker[1].length < 3) {
      expect(byWorker[0].length + byWorker[1].length).toBeLessThan(60);
      const client = await connect(p);
      failures.set(client, watchErrors(client).errors);
      byWorker[workerOf(client)].push(client);
    }
    for (const c of clients) expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    const logFrom = p.logs.length;

    const res = await fetch(`http://127.0.0.1:${p.adminPort}/debug/workers/0/terminate`, { method: 'POST' });
    expect(res.status).toBe(202);
    await p.waitForLog(/"msg":"worker exited; replacing it".*"worker":0/, 10_000, logFrom);

    // Worker 1's sessions never noticed; worker 0's got a connection error, and none of them hangs.
    for (const c of byWorker[1]) {
      expect((await within(c.query('select 2 as two'), 10_000, 'a worker-1 client')).rows).toEqual([
        { two: 2 },
      ]);
    }
    for (const c of byWorker[0]) {
      const outcome = await within(
        c.query('select 3').then(
          () => null,
          (e: PgError) => e,
        ),
        10_000,
        'a worker-0 client',
      );
      expect(outcome ?? failures.get(c)![0], 'a client of the dead worker still answered').toBeInstanceOf(
        Error,
      );
    }

    await expect.poll(() => metric(p, 'pgwarden_workers'), { timeout: 10_000 }).toBe(2);
    expect(await metric(p, 'pgwarden_worker_restarts_total')).toBe(1);
    // pgwarden_workers counts running threads; ready means listening, once the replacement has loaded the SQL
    // parser and opened its audit trail.
    await expect.poll(() => status(p, '/readyz'), { timeout: 10_000 }).toBe(200);
    // New connections are served, including by the replacement worker 0.
    const seen = new Set<number>();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const c = await connect(p);
      expect((await c.query('select 4 as four')).rows).toEqual([{ four: 4 }]);
      seen.add(workerOf(c));
      await c.end();
    }
    expect([...seen].sort()).toEqual([0, 1]);
    expect(p.logs.filter((l) => /"msg":"worker exited/.test(l))).toHaveLength(1);
  });

  it('drains on SIGTERM: idle sessions end with 57P01, an open transaction finishes, then the process exits 0', async () => {
    proxy = await startProxy({ timeouts: { startup: '5s', drain: '20s' } });
    const p = proxy;
    const idle = await connect(p);
    const idleErrors = watchErrors(idle);
    const inTx = await connect(p);
    const txErrors = watchErrors(inTx);
    await inTx.query('begin');
    expect((await inTx.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect(await status(p, '/readyz')).toBe(200);

    const started = Date.now();
    const exited = p.stop('SIGTERM', 30_000);
    await expect.poll(() => status(p, '/readyz'), { timeout: 5000 }).toBe(503);
    expect(await status(p, '/healthz')).toBe(200); // draining is not unhealthy

    expect((await within(idleErrors.next, 5000, 'the idle client')).code).toBe('57P01');
    const refused = await tryConnect(pgOptions(p));
    expect(refused, 'a new connection was accepted while draining').not.toBeNull();
    expect(refused!.code === 'ECONNREFUSED' || refused!.code === '57P01', `got ${refused!.code}`).toBe(true);

    // The transaction is allowed to finish; its session ends right after COMMIT's ReadyForQuery.
    expect((await inTx.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
    await inTx.query('commit');
    expect((await within(txErrors.next, 5000, 'the in-transaction client')).code).toBe('57P01');

    expect(await within(exited, 15_000, 'pgwarden exit')).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000); // well inside the 20 s drain timeout
    expect(p.logs.some((l) => /"msg":"stopped"/.test(l))).toBe(true);
  });

  it('ends a transaction that outlives the drain timeout with 57P01 and exits', async () => {
    proxy = await startProxy({ timeouts: { startup: '5s', drain: '1s' } });
    const p = proxy;
    const stuck = await connect(p);
    const errors = watchErrors(stuck);
    await stuck.query('begin');
    await stuck.query('select 1');
    const started = Date.now();
    const exited = p.stop('SIGTERM', 20_000);
    const error = await within(errors.next, 8000, 'the stuck client');
    expect(error.code).toBe('57P01');
    expect(Date.now() - started).toBeGreaterThan(800); // not before the drain timeout
    expect(await within(exited, 10_000, 'pgwarden exit')).toBe(0);
  });

  it('reloads on SIGHUP: a new user can log in; a bad file is refused and the running config kept', async () => {
    const env = { ...UPSTREAM_ENV };
    const config = baseConfig({ workers: 2 });
    proxy = await startPgwarden(config, { env });
    const p = proxy;
    const carolPassword = 'carol-reload-pw';
    const carol = { ...pgOptions(p), user: 'carol', password: carolPassword };
    expect((await tryConnect(carol))?.code).toBe('28P01');

    const users = {
      ...(config.users as object),
      carol: { password: generateScramVerifier(carolPassword, { iterations: 4096 }), roles: ['admin'] },
    };
    await p.reload({ ...config, users });
    expect(p.logs.some((l) => /"msg":"configuration reloaded"/.test(l))).toBe(true);
    expect(await tryConnect(carol)).toBeNull();

    const from = p.logs.length;
    await p.reload({ ...config, users, listen: { host: '127.0.0.1', port: 'x' } });
    const line = await p.waitForLog(/reload failed/, 5000, from);
    expect(line).toMatch(/keeping the running configuration/);
    expect(line).toMatch(/listen\.port/);
    expect(await tryConnect(carol)).toBeNull();
    expect(await tryConnect(pgOptions(p, 'alice'))).toBeNull();

    const from2 = p.logs.length;
    await p.reload({ ...config, users, no_such_key: true });
    expect(await p.waitForLog(/reload failed/, 5000, from2)).toMatch(/no_such_key/);
    expect(await tryConnect(carol)).toBeNull();

    expect(await metric(p, 'pgwarden_config_reloads_total', 'result="ok"')).toBe(1);
    expect(await metric(p, 'pgwarden_config_reloads_total', 'result="failed"')).toBe(2);
    expect(p.logs.some((l) => l.includes(CLIENTS.alice) || l.includes(carolPassword))).toBe(false);
  });

  it('serves /healthz, /readyz and /metrics with the counters that move', async () => {
    proxy = await startProxy({ workers: 2 });
    const p = proxy;
    expect(await status(p, '/healthz')).toBe(200);
    expect(await status(p, '/readyz')).toBe(200);
    expect(await status(p, '/nope')).toBe(404);

    const client = await pgClient(p);
    clients.push(client);
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
    for (const name of [
      'pgwarden_client_connections_total',
      'pgwarden_statements_total',
      'pgwarden_statement_duration_seconds_bucket{le="+Inf"}',
      'pgwarden_auth_failures_total{reason="bad_password"}',
      'pgwarden_server_connections',
      'pgwarden_workers 2',
    ]) {
      expect(text).toContain(name);
    }
    expect(await metric(p, 'pgwarden_client_connections_total')).toBeGreaterThanOrEqual(1);
    expect(await metric(p, 'pgwarden_server_connections')).toBeGreaterThanOrEqual(1);

    const statements = await metric(p, 'pgwarden_statements_total');
    const observed = await metric(p, 'pgwarden_statement_duration_seconds_count');
    for (let i = 0; i < 5; i++) await client.query('select $1::int as n', [i]);
    await client.query('select 1');
    expect(await metric(p, 'pgwarden_statements_total')).toBeGreaterThanOrEqual(statements + 6);
    expect(await metric(p, 'pgwarden_statement_duration_seconds_count')).toBeGreaterThanOrEqual(observed + 6);
    expect(await metric(p, 'pgwarden_statement_duration_seconds_bucket', 'le="+Inf"')).toBeGreaterThanOrEqual(
      observed + 6,
    );

    const badPasswords = await metric(p, 'pgwarden_auth_failures_total', 'reason="bad_password"');
    const wrong = await tryConnect({ ...pgOptions(p), password: 'not-alices-password' });
    expect(wrong?.code).toBe('28P01');
    expect(await metric(p, 'pgwarden_auth_failures_total', 'reason="bad_password"')).toBe(badPasswords + 1);
  });
});
