// Raw-socket fixtures for protocol tests: builders for frontend messages written independently of src/protocol
// (so a bug there cannot hide in both sides), and a reader that splits the backend's bytes into messages.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { tryTlsServerEndPointHash } from '../../src/auth/channel-binding.js';
import { ScramClientSession } from '../../src/auth/scram-client.js';

// ---- frontend message builders ----------------------------------------------------------------------------------

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0, 0);
  return b;
}

/** Tagged message: type byte, int32 length (counting itself), body. */
export function tagged(code: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(code, 'latin1'), int32(4 + payload.length), payload]);
}

/** Untagged startup-phase packet: int32 length, int32 request code or version, body. */
function untagged(codeOrVersion: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([int32(8 + body.length), int32(codeOrVersion), body]);
}

export const frontend = {
  /** StartupMessage; `version` is (major << 16) | minor, 3.0 by default. */
  startup(params: Record<string, string>, version = 3 << 16): Buffer {
    const pairs = Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]);
    return untagged(version, Buffer.concat([...pairs, Buffer.from([0])]));
  },
  /** Protocol 2.0 StartupPacket: fixed 296 bytes, NUL-padded fields database[64] user[32] options[64] unused[64] tty[64]. */
  startupV2(database: string, user: string): Buffer {
    const body = Buffer.alloc(288);
    body.write(database, 0, 'utf8');
    body.write(user, 64, 'utf8');
    return untagged(2 << 16, body);
  },
  sslRequest: (): Buffer => untagged(80877103),
  gssencRequest: (): Buffer => untagged(80877104),
  cancelRequest: (processId: number, secret: number): Buffer =>
    untagged(80877102, Buffer.concat([int32(processId), int32(secret)])),
  query: (sql: string): Buffer => tagged('Q', cstr(sql)),
  terminate: (): Buffer => tagged('X'),
  saslInitialResponse(mechanism: string, data: Buffer): Buffer {
    return tagged('p', cstr(mechanism), int32(data.length), data);
  },
  saslResponse: (data: Buffer): Buffer => tagged('p', data),
  /** Parse of the unnamed statement, no parameter types declared. */
  parse: (sql: string): Buffer => tagged('P', cstr(''), cstr(sql), Buffer.from([0, 0])),
  /** Bind of the unnamed statement to the unnamed portal: text parameters, every result column in `resultFormat`. */
  bind(params: Array<string | null>, resultFormat: 0 | 1): Buffer {
    const count = Buffer.alloc(2);
    count.writeInt16BE(params.length, 0);
    const values = params.map((p) =>
      p === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(p)), Buffer.from(p)]),
    );
    // no parameter format codes (all text); one result format code for every column
    return tagged(
      'B',
      cstr(''),
      cstr(''),
      Buffer.from([0, 0]),
      count,
      ...values,
      Buffer.from([0, 1, 0, resultFormat]),
    );
  },
  describePortal: (): Buffer => tagged('D', Buffer.from('P'), cstr('')),
  /** Execute of the unnamed portal, every row. */
  execute: (): Buffer => tagged('E', cstr(''), int32(0)),
  sync: (): Buffer => tagged('S'),
  /** FunctionCall: all arguments and the result in text format (format code 0); null is SQL NULL. */
  functionCall(oid: number, args: Array<string | null>): Buffer {
    const argBufs = args.map((a) =>
      a === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(a)), Buffer.from(a)]),
    );
    const formats = Buffer.alloc(4); // int16 count 1, int16 format 0 (text) for every argument
    formats.writeInt16BE(1, 0);
    const nargs = Buffer.alloc(2);
    nargs.writeInt16BE(args.length, 0);
    return tagged('F', int32(oid), formats, nargs, ...argBufs, Buffer.from([0, 0]));
  },
};

// ---- backend message reader -------------------------------------------------------------------------------------

export interface BackendMessage {
  /** The type byte as a character ('R', 'E', 'Z', ...). */
  code: string;
  /** The body after the type byte and the length. */
  body: Buffer;
}

/**
 * Collects everything a socket receives and hands it out as single bytes (replies to SSLRequest / GSSENCRequest)
 * or whole backend messages, with a deadline on every wait so a silent server fails the test instead of hanging it.
 */
export class Wire {
  private buf = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.buf = Buffer.concat([this.buf, chunk]);
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.notify();
  };

  constructor(readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd); // a reset counts as the end of the stream; the test judges what came before
  }

  get isClosed(): boolean {
    return this.ended;
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits until `ready()` holds or the stream ends; false when it ended first. */
  private async waitFor(ready: () => boolean, timeoutMs: number, what: string): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      if (this.ended) return false;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return true;
  }

  /** Exactly `n` raw bytes (e.g. the 'S' / 'N' answer to an SSLRequest). */
  async bytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    if (!(await this.waitFor(() => this.buf.length >= n, timeoutMs, `${n} byte(s)`))) {
      throw new Error(`connection closed after ${this.buf.length} of ${n} byte(s)`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The next whole backend message, or null when the connection ends first (cleanly between messages). */
  async message(timeoutMs = 5000): Promise<BackendMessage | null> {
    const whole = (): boolean => this.buf.length >= 5 && this.buf.length >= 1 + this.buf.readInt32BE(1);
    if (!(await this.waitFor(whole, timeoutMs, 'a backend message'))) {
      if (this.buf.length > 0)
        throw new Error(`connection closed inside a message (${this.buf.length} byte(s) left)`);
      return null;
    }
    const len = this.buf.readInt32BE(1);
    const msg = { code: String.fromCharCode(this.buf[0]), body: this.buf.subarray(5, 1 + len) };
    this.buf = this.buf.subarray(1 + len);
    return msg;
  }

  /** Messages up to and including the first whose code is `code` (throws if the connection ends first). */
  async until(code: string, timeoutMs = 5000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      const m = await this.message(timeoutMs);
      if (!m) throw new Error(`connection closed before '${code}'; got [${codes(out).join(', ')}]`);
      out.push(m);
      if (m.code === code) return out;
    }
  }

  /** Every message until the server closes the connection. */
  async rest(timeoutMs = 5000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      const m = await this.message(timeoutMs);
      if (!m) return out;
      out.push(m);
    }
  }

  /** Stops reading so the socket can be handed to TLS; refuses when unread bytes would be lost. */
  detach(): net.Socket {
    if (this.buf.length > 0) throw new Error(`unexpected ${this.buf.length} unread byte(s) before TLS`);
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onEnd);
    return this.socket;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function codes(messages: readonly BackendMessage[]): string[] {
  return messages.map((m) => m.code);
}

/** ErrorResponse / NoticeResponse fields by their one-letter type (S, V, C, M, D, H, ...). */
export function errorFields(msg: BackendMessage): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < msg.body.length && msg.body[pos] !== 0) {
    const end = msg.body.indexOf(0, pos + 1);
    out[String.fromCharCode(msg.body[pos])] = msg.body.toString('utf8', pos + 1, end);
    pos = end + 1;
  }
  return out;
}

/** RowDescription: each field's type OID and format code. */
export function rowDescriptionTypes(msg: BackendMessage): Array<{ typeOid: number; format: number }> {
  const count = msg.body.readInt16BE(0);
  const fields: Array<{ typeOid: number; format: number }> = [];
  let pos = 2;
  for (let i = 0; i < count; i++) {
    pos = msg.body.indexOf(0, pos) + 1; // name
    fields.push({ typeOid: msg.body.readUInt32BE(pos + 6), format: msg.body.readInt16BE(pos + 16) });
    pos += 18;
  }
  return fields;
}

/** DataRow: every value's bytes as sent, null for NULL. */
export function dataRowValues(msg: BackendMessage): Array<Buffer | null> {
  const count = msg.body.readInt16BE(0);
  const values: Array<Buffer | null> = [];
  let pos = 2;
  for (let i = 0; i < count; i++) {
    const length = msg.body.readInt32BE(pos);
    pos += 4;
    values.push(length < 0 ? null : msg.body.subarray(pos, pos + length));
    pos += Math.max(0, length);
  }
  return values;
}

/** Authentication request: the int32 subtype (0 ok, 10 SASL, 11 continue, 12 final) and what follows. */
export function authRequest(msg: BackendMessage): { kind: number; data: Buffer } {
  if (msg.code !== 'R') throw new Error(`expected an Authentication message, got '${msg.code}'`);
  return { kind: msg.body.readInt32BE(0), data: msg.body.subarray(4) };
}

/** The mechanism list of AuthenticationSASL. */
export function saslMechanisms(msg: BackendMessage): string[] {
  const { kind, data } = authRequest(msg);
  if (kind !== 10) throw new Error(`expected AuthenticationSASL (10), got ${kind}`);
  return data
    .toString('utf8')
    .split('\0')
    .filter((s) => s.length > 0);
}

/** NegotiateProtocolVersion: newest minor version supported and the unrecognised options. */
export function negotiateProtocolVersion(msg: BackendMessage): { newestMinor: number; options: string[] } {
  if (msg.code !== 'v') throw new Error(`expected NegotiateProtocolVersion, got '${msg.code}'`);
  const count = msg.body.readInt32BE(4);
  const options = msg.body.toString('utf8', 8).split('\0').slice(0, count);
  return { newestMinor: msg.body.readInt32BE(0), options };
}

// ---- connections ------------------------------------------------------------------------------------------------

export function connectPlain(port: number): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(new Wire(socket));
    });
  });
}

/** TLS options that verify pgwarden's certificate against the harness CA. */
export function verifiedTls(): tls.ConnectionOptions {
  return { ca: readFileSync(inject('pg').caCert), servername: 'localhost' };
}

/** TLS over an existing connection (after 'S'), verified. */
export function upgradeTls(wire: Wire): Promise<Wire> {
  const raw = wire.detach();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...verifiedTls(), socket: raw });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(new Wire(socket));
    });
  });
}

/** PG17 direct TLS: the handshake is the first thing on the wire. */
export function connectDirectTls(port: number, alpn: string[] | undefined): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...verifiedTls(), host: '127.0.0.1', port, ALPNProtocols: alpn });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(new Wire(socket));
    });
  });
}

/** SSLRequest, 'S', verified TLS: the way libpq connects. */
export async function connectTls(port: number): Promise<Wire> {
  const wire = await connectPlain(port);
  wire.write(frontend.sslRequest());
  const answer = await wire.bytes(1);
  if (answer.toString('latin1') !== 'S')
    throw new Error(`SSLRequest answered '${answer.toString('latin1')}'`);
  return upgradeTls(wire);
}

/**
 * Logs in with SCRAM-SHA-256-PLUS (channel binding to the certificate the TLS socket saw) and returns the messages
 * after AuthenticationOk up to the first ReadyForQuery.
 */
export async function scramLogin(
  wire: Wire,
  user: string,
  password: string,
  database: string,
): Promise<BackendMessage[]> {
  const cert = (wire.socket as tls.TLSSocket).getPeerCertificate(false);
  const scram = new ScramClientSession({
    password,
    channelBinding: tryTlsServerEndPointHash(cert.raw),
    requireChannelBinding: true,
  });
  wire.write(frontend.startup({ user, database }));
  const mechanism = scram.chooseMechanism(saslMechanisms(await expectMessage(wire, 'R')));
  wire.write(frontend.saslInitialResponse(mechanism, scram.clientFirst()));
  wire.write(frontend.saslResponse(scram.serverFirst(authRequest(await expectMessage(wire, 'R')).data)));
  scram.serverFinal(authRequest(await expectMessage(wire, 'R')).data);
  const ok = authRequest(await expectMessage(wire, 'R'));
  if (ok.kind !== 0) throw new Error(`expected AuthenticationOk, got ${ok.kind}`);
  return wire.until('Z');
}

async function expectMessage(wire: Wire, code: string): Promise<BackendMessage> {
  const m = await wire.message();
  if (!m) throw new Error(`connection closed while waiting for '${code}'`);
  if (m.code === 'E') throw new Error(`server error: ${JSON.stringify(errorFields(m))}`);
  if (m.code !== code) throw new Error(`expected '${code}', got '${m.code}'`);
  return m;
}
