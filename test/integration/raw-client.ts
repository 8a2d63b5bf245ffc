// Raw-socket helpers for the robustness tests: hand-built startup-phase packets, a TCP client that records every
// byte it receives and when it was closed, and a small incremental reader of backend messages that can skip the
// bodies of huge result sets. Built here, independently of src/protocol, so a bug there cannot hide itself.

import net from 'node:net';

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const CANCEL_REQUEST_CODE = 80877102;

/** StartupMessage: int32 length, int32 protocol version, name/value C strings, a final NUL. */
export function startupMessage(params: Record<string, string>, version = PROTOCOL_3_0): Buffer {
  const body = Buffer.concat([
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

export function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(SSL_REQUEST_CODE, 4);
  return b;
}

/** CancelRequest (16 bytes, protocol 3.0); `secret` as node-postgres reports it (a signed int32). */
export function cancelRequest(processId: number, secret: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  b.writeInt32BE(processId | 0, 8);
  b.writeInt32BE(secret | 0, 12);
  return b;
}

/** An untagged header only: a length field (written as uint32, so -1 is 0xFFFFFFFF) and a request code. */
export function untaggedHeader(lengthField: number, code = PROTOCOL_3_0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(lengthField >>> 0, 0);
  b.writeInt32BE(code, 4);
  return b;
}

/** A tagged message header (type byte + length field written as uint32) with an optional body. */
export function taggedMessage(code: string, lengthField: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(5);
  b[0] = code.charCodeAt(0);
  b.writeUInt32BE(lengthField >>> 0, 1);
  return Buffer.concat([b, body]);
}

/** Simple Query ('Q'). */
export function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`);
  return taggedMessage('Q', 4 + body.length, body);
}

export interface BackendMessage {
  code: string;
  /** The body after the length field; empty for messages the reader was told to skip. */
  body: Buffer;
}

/**
 * Splits a backend byte stream into messages across arbitrary reads. Bodies of the codes in `skip` (e.g. 'D' for
 * a huge result) are counted, never kept, so a 300 MB result costs no memory in the test process.
 */
export class BackendReader {
  private header = Buffer.alloc(0);
  private code = '';
  private remaining = 0;
  private parts: Buffer[] = [];
  private skipping = false;
  readonly counts = new Map<string, number>();
  bytes = 0;

  constructor(
    private readonly onMessage: (m: BackendMessage) => void,
    private readonly skip: ReadonlySet<string> = new Set(),
  ) {}

  /** True between messages (nothing of a started message is pending). */
  get atBoundary(): boolean {
    return this.code === '' && this.header.length === 0;
  }

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    let pos = 0;
    while (pos < chunk.length) {
      if (this.code === '') {
        const need = 5 - this.header.length;
        this.header = Buffer.concat([this.header, chunk.subarray(pos, pos + need)]);
        pos += Math.min(need, chunk.length - pos);
        if (this.header.length < 5) return;
        this.code = String.fromCharCode(this.header[0]);
        this.remaining = this.header.readUInt32BE(1) - 4;
        this.skipping = this.skip.has(this.code);
        this.header = Buffer.alloc(0);
      }
      const take = Math.min(this.remaining, chunk.length - pos);
      if (!this.skipping && take > 0) this.parts.push(chunk.subarray(pos, pos + take));
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        const body = this.skipping ? Buffer.alloc(0) : Buffer.concat(this.parts);
        const code = this.code;
        this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
        this.code = '';
        this.parts = [];
        this.onMessage({ code, body });
      }
    }
  }
}

/** Every message in a complete buffer; throws if it does not end on a message boundary. */
export function parseBackendMessages(bytes: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  const reader = new BackendReader((m) => out.push(m));
  reader.push(bytes);
  if (!reader.atBoundary)
    throw new Error(`reply does not end on a message boundary: ${bytes.toString('hex').slice(0, 200)}`);
  return out;
}

/** The fields of an ErrorResponse / NoticeResponse body (S, V, C, M, D, H, ...). */
export function errorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const end = body.indexOf(0, pos + 1);
    if (end < 0) throw new Error('unterminated ErrorResponse field');
    fields.set(String.fromCharCode(body[pos]), body.toString('utf8', pos + 1, end));
    pos = end + 1;
  }
  return fields;
}

export interface RawError {
  severity: string;
  sqlstate: string;
  message: string;
  fields: Map<string, string>;
}

/** The reply as exactly one ErrorResponse (what pgwarden sends before closing a refused connection), or null. */
export function singleError(reply: Buffer): RawError | null {
  if (reply.length === 0) return null;
  const messages = parseBackendMessages(reply);
  if (messages.length !== 1 || messages[0].code !== 'E') {
    throw new Error(`expected one ErrorResponse, got ${messages.map((m) => m.code).join(',')}`);
  }
  const fields = errorFields(messages[0].body);
  return {
    severity: fields.get('V') ?? '',
    sqlstate: fields.get('C') ?? '',
    message: fields.get('M') ?? '',
    fields,
  };
}

export interface RawClient {
  socket: net.Socket;
  /** Everything received so far. */
  received(): Buffer;
  /** Resolves when the peer closed the connection (or it errored): what was received, and how long it stayed open. */
  closed: Promise<{ reply: Buffer; openMs: number }>;
  isClosed(): boolean;
  write(bytes: Buffer | string): void;
  /** Resolves once at least `n` bytes have arrived (rejects after `timeoutMs`). */
  waitForBytes(n: number, timeoutMs?: number): Promise<Buffer>;
  destroy(): void;
}

/** Opens a plain TCP connection; write errors after the peer closed (EPIPE, ECONNRESET) are expected and ignored. */
export function rawConnect(port: number, host = '127.0.0.1'): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    const chunks: Buffer[] = [];
    let size = 0;
    let isClosed = false;
    const started = Date.now();
    const waiters = new Set<() => void>();
    let onClosed!: (v: { reply: Buffer; openMs: number }) => void;
    const closed = new Promise<{ reply: Buffer; openMs: number }>((r) => (onClosed = r));
    const received = () => Buffer.concat(chunks, size);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      for (const w of [...waiters]) w();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      isClosed = true;
      onClosed({ reply: received(), openMs: Date.now() - started });
      for (const w of [...waiters]) w();
    });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve({
        socket,
        received,
        closed,
        isClosed: () => isClosed,
        write: (bytes) => {
          if (!socket.destroyed && socket.writable) socket.write(bytes);
        },
        waitForBytes: (n, timeoutMs = 10_000) =>
          new Promise((res, rej) => {
            const check = () => {
              if (size >= n) {
                done();
                res(received());
              } else if (isClosed) {
                done();
                rej(new Error(`connection closed after ${size} of ${n} expected bytes`));
              }
            };
            const timer = setTimeout(() => {
              done();
              rej(new Error(`only ${size} of ${n} expected bytes within ${timeoutMs} ms`));
            }, timeoutMs);
            const done = () => {
              clearTimeout(timer);
              waiters.delete(check);
            };
            waiters.add(check);
            check();
          }),
        destroy: () => socket.destroy(),
      });
    });
    socket.once('error', reject);
  });
}

/** Resolves with the close result, or rejects if the peer has not closed within `timeoutMs` (a hang is a bug). */
export function closedWithin(
  client: RawClient,
  timeoutMs: number,
): Promise<{ reply: Buffer; openMs: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.destroy();
      reject(new Error(`pgwarden kept the connection open for more than ${timeoutMs} ms`));
    }, timeoutMs);
    void client.closed.then((r) => {
      clearTimeout(timer);
      resolve(r);
    });
  });
}
