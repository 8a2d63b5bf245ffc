// Timeouts and bounded memory: automatic logoff of idle clients (HIPAA 164.312(a)(2)(iii)) and of idle
// transactions, never of a busy one; the upstream connect timeout against a server that never answers; the pool
// acquire timeout; and backpressure, which keeps pgwarden's memory flat while a client does not read its result.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { baseConfig, metric, pgClient, pgOptions, startProxy } from './support.js';
import { BackendReader, errorFields, queryMessage } from './raw-client.js';

type PgError = Error & { code?: string };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The first error a client emits (pgwarden's FATAL arrives while the client is idle), with when it came. */
function nextError(client: pg.Client): Promise<{ error: PgError; at: number }> {
  return new Promise((resolve) =>
    client.once('error', (error: PgError) => resolve({ error, at: Date.now() })),
  );
}

async function connectError(options: pg.ClientConfig): Promise<{ error: PgError | null; ms: number }> {
  const client = new pg.Client(options);
  client.on('error', () => {});
  const started = Date.now();
  try {
    await client.connect();
    await client.end();
    return { error: null, ms: Date.now() - started };
  } catch (e) {
    return { error: e as PgError, ms: Date.now() - started };
  }
}

/** The ehr database entry of the base config with some keys replaced (overrides replace whole top-level keys). */
function ehrEntry(
  upstream: Record<string, unknown> = {},
  pool: Record<string, unknown> = {},
): Record<string, unknown> {
  const ehr = (baseConfig().databases as Record<string, { upstream: object; pool: object }>).ehr;
  return { upstream: { ...ehr.upstream, ...upstream }, pool: { ...ehr.pool, ...pool } };
}

/** Resident memory of a process in bytes (the whole pgwarden process: main thread and every worker). */
function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

describe('idle timeouts', () => {
  let proxy: PgwardenProcess;
  const clients: pg.Client[] = [];
  beforeAll(async () => {
    proxy = await startProxy({ timeouts: { startup: '5s', idle_client: '2s', idle_in_transaction: '1s' } });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})));
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  async function connect(): Promise<pg.Client> {
    const client = await pgClient(proxy);
    clients.push(client);
    return client;
  }

  it('logs off a client idle longer than idle_client with 57P05', async () => {
    const client = await connect();
    await client.query('select 1');
    const idleSince = Date.now();
    const { error, at } = await nextError(client);
    expect(error.code).toBe('57P05');
    expect(error.message).toMatch(/idle-session timeout/);
    // The sweeper runs once a second: between the timeout and the timeout plus a tick (and generous slack).
    expect(at - idleSince).toBeGreaterThanOrEqual(1900);
    expect(at - idleSince).toBeLessThan(6000);
  });

  it('ends a transaction left idle longer than idle_in_transaction with 25P03', async () => {
    const client = await connect();
    await client.query('begin');
    await client.query('select 1');
    const idleSince = Date.now();
    const { error, at } = await nextError(client);
    expect(error.code).toBe('25P03');
    expect(error.message).toMatch(/idle-in-transaction timeout/);
    expect(at - idleSince).toBeGreaterThanOrEqual(900);
    expect(at - idleSince).toBeLessThan(5000);
  });

  it('never cuts a statement that runs longer than idle_client, and counts idleness from its end', async () => {
    const client = await connect();
    const errors: PgError[] = [];
    client.on('error', (e: PgError) => errors.push(e));
    expect((await client.query('select pg_sleep(3), 1 as one')).rows[0].one).toBe(1);
    // 1.2 s idle after a 3 s statement: below the 2 s limit only if idleness starts when the statement ends.
    await sleep(1200);
    expect((await client.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
    expect(errors).toEqual([]);
  });
});

describe('upstream connect timeout', () => {
  let blackhole: net.Server;
  const held: net.Socket[] = [];
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    // Accepts TCP connections and never says a word: a hung server or a half-dead load balancer.
    blackhole = net.createServer((s) => {
      held.push(s);
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const port = (blackhole.address() as net.AddressInfo).port;
    proxy = await startProxy({
      databases: {
        // Stuck waiting for the answer to its SSLRequest.
        ehr: ehrEntry({ port, connect_timeout: '1s' }),
        // Stuck waiting for the answer to its StartupMessage.
        ehr_plain: ehrEntry({ port, connect_timeout: '1s', tls: { mode: 'disable' } }),
      },
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    for (const s of held) s.destroy();
    await new Promise((r) => blackhole?.close(r));
  });

  it.each(['ehr', 'ehr_plain'])(
    'refuses the client with 08001 "timed out" (database %s)',
    async (database) => {
      const { error, ms } = await connectError({ ...pgOptions(proxy), database });
      expect(error?.code).toBe('08001');
      expect(error?.message).toMatch(new RegExp(`database "${database}".*timed out`));
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(5000);
    },
  );
});

describe('pool exhaustion', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    proxy = await startProxy({
      workers: 1,
      timeouts: { startup: '5s', pool_acquire: '1s' },
      databases: { ehr: ehrEntry({}, { size: 1 }) },
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('refuses a client with 53300 when no server connection frees up within pool_acquire', async () => {
    const holder = await pgClient(proxy);
    try {
      await holder.query('select 1');
      const refusedBefore = await metric(proxy, 'pgwarden_clients_refused_total');
      const { error, ms } = await connectError(pgOptions(proxy, 'bob'));
      expect(error?.code).toBe('53300');
      expect(error?.message).toMatch(/no server connection for database "ehr"/);
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(5000);
      expect(await metric(proxy, 'pgwarden_clients_refused_total')).toBe(refusedBefore + 1);
    } finally {
      await holder.end();
    }
    // Once the holder leaves, its connection serves the next client.
    expect((await connectError(pgOptions(proxy, 'bob'))).error).toBeNull();
  });

  it('hands the connection to a waiting client as soon as the holder leaves', async () => {
    const holder = await pgClient(proxy);
    const waiting = pgClient(proxy, 'bob');
    await sleep(300);
    await holder.end();
    const bob = await waiting;
    expect((await bob.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await bob.end();
  });
});

describe('backpressure', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    proxy = await startProxy({ workers: 1 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it(
    'keeps memory flat while a client does not read a 300 MB result, then delivers all of it',
    { timeout: 180_000 },
    async () => {
      const client = await pgClient(proxy);
      client.on('error', () => {});
      // Take the TLS socket from the driver so the rows are counted, never kept (300 MB of strings otherwise).
      const stream = (client as unknown as { connection: { stream: net.Socket } }).connection.stream;
      stream.removeAllListeners('data');
      stream.pause();
      try {
        await sleep(200);
        const before = rssBytes(proxy.pid);
        const sentBefore = await metric(proxy, 'pgwarden_client_sent_bytes_total');
        stream.write(queryMessage("select repeat('x', 1000) from generate_series(1, 300000)"));
        await sleep(3000);
        const grown = rssBytes(proxy.pid) - before;
        const forwarded = (await metric(proxy, 'pgwarden_client_sent_bytes_total')) - sentBefore;
        expect(grown, `pgwarden grew by ${(grown / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(100 * 2 ** 20);
        // The result did start to flow (the statement ran), and only what the kernel buffers hold got through.
        expect(forwarded).toBeGreaterThan(64 * 1024);
        expect(forwarded).toBeLessThan(64 * 2 ** 20);

        let rows = 0;
        const done = new Promise<{ complete: string; error: string | undefined }>((resolve) => {
          let complete = '';
          let error: string | undefined;
          const reader = new BackendReader(
            (m) => {
              if (m.code === 'C') complete = m.body.toString('utf8', 0, m.body.length - 1);
              if (m.code === 'E') error = errorFields(m.body).get('M');
              if (m.code === 'Z') resolve({ complete, error });
            },
            new Set(['D']),
          );
          stream.on('data', (c: Buffer) => {
            reader.push(c);
            rows = reader.counts.get('D') ?? 0;
          });
        });
        stream.resume();
        const result = await done;
        expect(result.error).toBeUndefined();
        expect(result.complete).toBe('SELECT 300000');
        expect(rows).toBe(300000);
      } finally {
        stream.destroy();
      }
    },
  );
});
