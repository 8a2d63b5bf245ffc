// The HAProxy harness against a tiny TCP server: a real HAProxy prepends a PROXY v1 or v2 header that our parser
// reads back (client 127.0.0.1 and its port), and the bytes after it arrive intact; without send-proxy, the parser
// rejects the bare PostgreSQL bytes with the operator-facing message.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyHeaderParser, type ProxyHeader } from '../../src/frontend/proxy-protocol.js';
import { startHaproxy, type HaproxyProcess } from '../harness/haproxy.js';

/** What the backend saw on one connection: the parsed header (or the parser's error) and every byte after it. */
interface Received {
  header: ProxyHeader | null;
  error: string | null;
  payload: Buffer;
}

const REPLY = Buffer.from('received');

/**
 * A backend that reads a PROXY header from each connection, then collects `payloadLength` more bytes and replies.
 * A connection whose header is rejected keeps all its bytes as payload, so the test can see what came instead.
 */
async function startBackend(
  payloadLength: number,
): Promise<{ server: Server; port: number; next(): Promise<Received> }> {
  const received: Received[] = [];
  const waiters: ((r: Received) => void)[] = [];
  const deliver = (r: Received): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(r);
    else received.push(r);
  };
  const server = createServer((socket: Socket) => {
    const parser = new ProxyHeaderParser();
    const result: Received = { header: null, error: null, payload: Buffer.alloc(0) };
    const raw: Buffer[] = [];
    const body: Buffer[] = [];
    let bodyLength = 0;
    let parsing = true;
    const take = (bytes: Buffer): void => {
      body.push(bytes);
      bodyLength += bytes.length;
      if (bodyLength >= payloadLength) {
        result.payload = Buffer.concat(body);
        socket.end(REPLY);
        deliver(result);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      if (!parsing) return take(chunk);
      raw.push(chunk);
      const parsed = parser.push(chunk);
      if (parsed.state === 'more') return;
      parsing = false;
      if (parsed.state === 'done') {
        result.header = parsed.header;
        take(parsed.rest);
      } else {
        result.error = parsed.message;
        take(Buffer.concat(raw));
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    next: () => {
      const ready = received.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** Connects through HAProxy, sends `payload`, and waits for the backend's reply; resolves the client's own port. */
function sendThrough(port: number, payload: Buffer): Promise<{ localPort: number; reply: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let localPort = 0;
    socket.once('connect', () => {
      localPort = socket.localPort!;
      socket.write(payload);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => {
      socket.end();
      resolve({ localPort, reply: Buffer.concat(chunks) });
    });
    socket.once('error', reject);
  });
}

describe('HAProxy harness', () => {
  let dir: string | undefined;
  let haproxy: HaproxyProcess | undefined;
  let server: Server | undefined;

  afterEach(async () => {
    await haproxy?.stop();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (dir) rmSync(dir, { recursive: true, force: true });
    haproxy = undefined;
    server = undefined;
    dir = undefined;
  });

  // A startup packet first, as a PostgreSQL client would send, then enough bytes to span many TCP reads.
  const payload = Buffer.concat([
    serialize.startup({ user: 'app', database: 'ehr' }),
    randomBytes(256 * 1024),
  ]);

  for (const version of ['v2', 'v1'] as const) {
    it(`delivers a ${version} header with the client's 127.0.0.1 address, then the payload intact`, async () => {
      dir = mkdtempSync(join(tmpdir(), 'pgwarden-haproxy-'));
      const backend = await startBackend(payload.length);
      server = backend.server;
      haproxy = await startHaproxy({ backendPort: backend.port, sendProxy: version, dir });
      expect(readFileSync(join(dir, 'haproxy.cfg'), 'utf8')).toContain(
        version === 'v2' ? 'send-proxy-v2' : 'send-proxy\n',
      );

      const { localPort, reply } = await sendThrough(haproxy.port, payload);
      const seen = await backend.next();

      expect(seen.error).toBeNull();
      expect(seen.header).toEqual({
        version: version === 'v2' ? 2 : 1,
        command: 'proxy',
        family: 'tcp4',
        source: { address: '127.0.0.1', port: localPort },
        destination: { address: '127.0.0.1', port: haproxy.port },
      });
      expect(seen.payload.length).toBe(payload.length);
      expect(seen.payload.equals(payload)).toBe(true);
      expect(reply).toEqual(REPLY);
    });
  }

  it('relays bare bytes without send-proxy, which the parser rejects as a missing header', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-haproxy-'));
    const backend = await startBackend(payload.length);
    server = backend.server;
    haproxy = await startHaproxy({ backendPort: backend.port, sendProxy: 'none', dir });

    await sendThrough(haproxy.port, payload);
    const seen = await backend.next();

    expect(seen.header).toBeNull();
    expect(seen.error).toMatch(/^expected a PROXY protocol header from the load balancer/);
    expect(seen.payload.equals(payload)).toBe(true);
  });

  it('stops HAProxy and frees its port', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-haproxy-'));
    const backend = await startBackend(1);
    server = backend.server;
    const started = await startHaproxy({ backendPort: backend.port, sendProxy: 'v2', dir });
    await started.stop();
    expect(() => process.kill(started.pid, 0)).toThrow();
    const refused = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: started.port });
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});
