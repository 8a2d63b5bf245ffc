// Hostile and broken clients on raw sockets: garbage, impossible length fields, truncated and oversized startup
// packets, plaintext injected after an SSLRequest, slow and half-open clients. After each case the process must be
// alive, no worker may have died, and a normal TLS client must still get an answer.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type pg from 'pg';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { metric, pgClient, startProxy } from './support.js';
import {
  closedWithin,
  parseBackendMessages,
  queryMessage,
  rawConnect,
  singleError,
  sslRequest,
  startupMessage,
  taggedMessage,
  untaggedHeader,
  errorFields,
} from './raw-client.js';

/** Lines that would mean a hostile input took a worker down or hit an unhandled path. */
const CRASH_LOG = /"msg":"(worker exited|worker crashed|internal error)/;

const STARTUP_TIMEOUT_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The socket under node-postgres's Client (the TLS socket once TLS is up); not in its public types. */
function underlyingStream(client: pg.Client): NodeJS.WritableStream {
  return (client as unknown as { connection: { stream: NodeJS.WritableStream } }).connection.stream;
}

describe('hostile clients', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    proxy = await startProxy({ allow_plaintext: true, timeouts: { startup: `${STARTUP_TIMEOUT_MS}ms` } });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  afterEach(async () => {
    // The process is alive (signal 0 only checks), no worker died, and a normal client is served.
    expect(() => process.kill(proxy.pid, 0)).not.toThrow();
    expect(proxy.logs.filter((l) => CRASH_LOG.test(l))).toEqual([]);
    const client = await pgClient(proxy);
    try {
      expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });

  it('closes connections that send random bytes, answering an ErrorResponse unless it looks like TLS', async () => {
    const payloads = fc.sample(
      fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 16 }),
        fc.uint8Array({ minLength: 17, maxLength: 1024 }),
        fc.uint8Array({ minLength: 1025, maxLength: 65536 }),
      ),
      { seed: 20240611, numRuns: 30 },
    );
    // A few that start like a TLS record (direct TLS) and one exactly a TLS record header followed by junk.
    payloads.push(
      Uint8Array.from([0x16, 0x03, 0x01, 0x00, 0x10, ...Array.from({ length: 40 }, (_, i) => i)]),
    );
    payloads.push(
      Uint8Array.from([0x16, ...fc.sample(fc.integer({ min: 0, max: 255 }), { seed: 7, numRuns: 300 })]),
    );
    const results = await Promise.all(
      payloads.map(async (bytes) => {
        const c = await rawConnect(proxy.port);
        c.write(Buffer.from(bytes));
        return { bytes, ...(await closedWithin(c, STARTUP_TIMEOUT_MS + 6000)) };
      }),
    );
    for (const { bytes, reply } of results) {
      if (bytes[0] === 0x16) continue; // a TLS peer cannot read a PostgreSQL error: closing is all there is
      const error = singleError(reply);
      expect(error, `no ErrorResponse for ${Buffer.from(bytes).toString('hex').slice(0, 64)}`).not.toBeNull();
      expect(['08P01', '0A000', '28000']).toContain(error!.sqlstate);
      expect(error!.severity).toBe('FATAL');
    }
  });

  it('answers random bytes sent during SCRAM authentication with an ErrorResponse', async () => {
    const payloads = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 4096 }), { seed: 99, numRuns: 12 });
    const results = await Promise.all(
      payloads.map(async (bytes) => {
        const c = await rawConnect(proxy.port);
        c.write(startupMessage({ user: 'alice', database: 'ehr' }));
        await c.waitForBytes(1);
        c.write(Buffer.from(bytes));
        return closedWithin(c, STARTUP_TIMEOUT_MS + 6000);
      }),
    );
    for (const { reply } of results) {
      const codes = parseBackendMessages(reply).map((m) => m.code);
      expect(codes[0]).toBe('R'); // AuthenticationSASL
      expect(codes[codes.length - 1]).toBe('E');
      const last = parseBackendMessages(reply).at(-1)!;
      expect(['08P01', '28P01', '28000']).toContain(errorFields(last.body).get('C'));
    }
  });

  it.each([
    ['0', 0],
    ['3', 3],
    ['-1 (0xFFFFFFFF)', -1],
    ['2^31-1', 0x7fffffff],
  ])('refuses a startup length field of %s with 08P01', async (_name, length) => {
    const c = await rawConnect(proxy.port);
    c.write(untaggedHeader(length));
    const { reply, openMs } = await closedWithin(c, 5000);
    const error = singleError(reply);
    expect(error?.sqlstate).toBe('08P01');
    expect(error?.message).toMatch(/invalid message length/);
    expect(openMs).toBeLessThan(STARTUP_TIMEOUT_MS); // refused on the header, not by the startup timeout
  });

  it('survives a truncated startup packet whose client hangs up', async () => {
    const c = await rawConnect(proxy.port);
    c.write(Buffer.concat([untaggedHeader(100), Buffer.alloc(12, 0x61)])); // 20 of the 100 announced bytes
    await sleep(100);
    c.socket.end();
    await closedWithin(c, 5000);
    // Its session must be gone, not stuck waiting for the other 80 bytes.
    await expect.poll(() => metric(proxy, 'pgwarden_client_connections'), { timeout: 5000 }).toBe(0);
  });

  it('ends a truncated startup packet whose client stays with the startup timeout (08P01)', async () => {
    const c = await rawConnect(proxy.port);
    c.write(Buffer.concat([untaggedHeader(100), Buffer.alloc(12, 0x61)]));
    const { reply, openMs } = await closedWithin(c, STARTUP_TIMEOUT_MS + 6000);
    const error = singleError(reply);
    expect(error?.sqlstate).toBe('08P01');
    expect(error?.message).toMatch(/canceling startup/);
    expect(openMs).toBeGreaterThan(STARTUP_TIMEOUT_MS - 500);
  });

  it('refuses a startup packet over 10 KB with 08P01 at once', async () => {
    const c = await rawConnect(proxy.port);
    c.write(Buffer.concat([untaggedHeader(20000), Buffer.alloc(4000, 0x61)]));
    const { reply, openMs } = await closedWithin(c, 5000);
    const error = singleError(reply);
    expect(error?.sqlstate).toBe('08P01');
    expect(error?.message).toMatch(/invalid message length/);
    expect(openMs).toBeLessThan(STARTUP_TIMEOUT_MS);
  });

  it.each([
    ['2^31-1', 0x7fffffff],
    ['0xFFFFFFFF', -1],
    ['3 (below the minimum of 4)', 3],
  ])(
    'ends a logged-in session that sends a tagged message with length %s with 08P01',
    async (_name, length) => {
      const client = await pgClient(proxy);
      const failed = new Promise<Error & { code?: string }>((resolve) => client.on('error', resolve));
      const ended = new Promise<void>((resolve) => client.on('end', resolve));
      // Straight onto the TLS socket under the driver, after a real login and one normal statement.
      expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      underlyingStream(client).write(taggedMessage('Q', length, Buffer.from('select 1\0')));
      const error = await failed;
      expect(error.code).toBe('08P01');
      expect(error.message).toMatch(/invalid message length/);
      await ended;
    },
  );

  it('refuses plaintext injected after an SSLRequest with 08P01 and never answers S', async () => {
    const c = await rawConnect(proxy.port);
    c.write(Buffer.concat([sslRequest(), startupMessage({ user: 'alice', database: 'ehr' })]));
    const { reply } = await closedWithin(c, 5000);
    expect(reply[0]).toBe('E'.charCodeAt(0));
    const error = singleError(reply);
    expect(error?.sqlstate).toBe('08P01');
    expect(error?.message).toMatch(/unencrypted data after SSL request/);
  });

  it('closes a connection that answers S with garbage instead of a TLS handshake', async () => {
    const c = await rawConnect(proxy.port);
    c.write(sslRequest());
    expect((await c.waitForBytes(1)).toString()).toBe('S');
    c.write(Buffer.concat([queryMessage('select 1'), Buffer.alloc(3000, 0xee)]));
    await closedWithin(c, STARTUP_TIMEOUT_MS + 6000);
  });

  it('ends a client that sends one byte a second with the startup timeout (08P01 canceling startup)', async () => {
    const c = await rawConnect(proxy.port);
    const packet = startupMessage({ user: 'alice', database: 'ehr' });
    let i = 0;
    c.write(packet.subarray(i, ++i));
    const drip = setInterval(() => c.write(packet.subarray(i, ++i)), 1000);
    try {
      const { reply, openMs } = await closedWithin(c, STARTUP_TIMEOUT_MS + 6000);
      const error = singleError(reply);
      expect(error?.sqlstate).toBe('08P01');
      expect(error?.message).toMatch(/canceling startup/);
      expect(openMs).toBeGreaterThan(STARTUP_TIMEOUT_MS - 500);
      expect(i).toBeLessThan(packet.length); // it was cut off mid-packet, not served
    } finally {
      clearInterval(drip);
    }
  });

  it('closes 50 half-open connections that never send anything with the startup timeout', async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => rawConnect(proxy.port)));
    const results = await Promise.all(clients.map((c) => closedWithin(c, STARTUP_TIMEOUT_MS + 8000)));
    for (const { reply, openMs } of results) {
      expect(singleError(reply)?.sqlstate).toBe('08P01');
      expect(openMs).toBeGreaterThan(STARTUP_TIMEOUT_MS - 500);
    }
    await expect.poll(() => metric(proxy, 'pgwarden_client_connections'), { timeout: 5000 }).toBe(0);
  });
});
