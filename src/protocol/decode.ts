// Decoders for the few messages pgwarden must look inside. Each takes the whole message (type byte included for
// tagged messages) and validates as it reads: a malformed body raises ProtocolError, never an out-of-range read.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A cursor over one message body that refuses to read past its end. */
export class Reader {
  private pos: number;
  constructor(
    private readonly buf: Buffer,
    start: number,
  ) {
    this.pos = start;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  int32(): number {
    if (this.pos + 4 > this.buf.length) throw new ProtocolError('message too short');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  int16(): number {
    if (this.pos + 2 > this.buf.length) throw new ProtocolError('message too short');
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  byte(): number {
    if (this.pos >= this.buf.length) throw new ProtocolError('message too short');
    return this.buf[this.pos++];
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolError('unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.buf.length) throw new ProtocolError('message too short');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  rest(): Buffer {
    const v = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return v;
  }
}

export interface StartupPacket {
  major: number;
  minor: number;
  /** Parameters in the order the client sent them (duplicates: last wins, as PostgreSQL does). */
  params: Map<string, string>;
}

/** StartupMessage: int32 len, int32 version, then name/value C-string pairs, then a terminating NUL. */
export function decodeStartup(msg: Buffer): StartupPacket {
  const r = new Reader(msg, 4);
  const version = r.int32();
  const params = new Map<string, string>();
  // Another major version has another layout (2.0: fixed-width fields): only the version is ours to judge.
  if (version >>> 16 !== 3) return { major: version >>> 16, minor: version & 0xffff, params };
  while (true) {
    const name = r.cstring();
    if (name === '') break;
    params.set(name, r.cstring());
  }
  if (r.remaining !== 0)
    throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
  return { major: version >>> 16, minor: version & 0xffff, params };
}

/** CancelRequest: int32 len, int32 code, int32 process id, secret key (4 bytes in 3.0, up to 256 in 3.2). */
export function decodeCancel(msg: Buffer): { processId: number; secret: Buffer } {
  const r = new Reader(msg, 8);
  const processId = r.int32();
  const secret = r.rest();
  if (secret.length < 4 || secret.length > 256) throw new ProtocolError('invalid cancel request length');
  return { processId, secret };
}

/** SASLInitialResponse ('p' after AuthenticationSASL): mechanism C-string, int32 length (-1 = none), data. */
export function decodeSASLInitialResponse(msg: Buffer): { mechanism: string; data: Buffer } {
  const r = new Reader(msg, 5);
  const mechanism = r.cstring();
  const n = r.int32();
  const data = n === -1 ? Buffer.alloc(0) : r.bytes(n);
  if (r.remaining !== 0) throw new ProtocolError('trailing bytes in SASLInitialResponse');
  return { mechanism, data };
}

/** ErrorResponse / NoticeResponse: (field type byte, C-string)* then NUL. */
export function decodeErrorFields(msg: Buffer): Map<string, string> {
  const r = new Reader(msg, 5);
  const fields = new Map<string, string>();
  while (true) {
    const t = r.byte();
    if (t === 0) break;
    fields.set(String.fromCharCode(t), r.cstring());
  }
  return fields;
}

export function decodeParameterStatus(msg: Buffer): [string, string] {
  const r = new Reader(msg, 5);
  return [r.cstring(), r.cstring()];
}

/** Authentication request: int32 subtype, then subtype-specific bytes. */
export function decodeAuthentication(msg: Buffer): { kind: number; data: Buffer } {
  const r = new Reader(msg, 5);
  return { kind: r.int32(), data: r.rest() };
}

/** AuthenticationSASL mechanism list. */
export function decodeSASLMechanisms(data: Buffer): string[] {
  const r = new Reader(data, 0);
  const out: string[] = [];
  while (r.remaining > 0) {
    const m = r.cstring();
    if (m === '') break;
    out.push(m);
  }
  return out;
}

export function decodeBackendKeyData(msg: Buffer): { processId: number; secret: Buffer } {
  const r = new Reader(msg, 5);
  const processId = r.int32();
  return { processId, secret: Buffer.from(r.rest()) };
}

/** Query ('Q'): the SQL text. */
export function decodeQuery(msg: Buffer): string {
  return new Reader(msg, 5).cstring();
}

/** Parse ('P'): statement name, SQL text (parameter type OIDs follow and are not needed). */
export function decodeParse(msg: Buffer): { name: string; text: string } {
  const r = new Reader(msg, 5);
  return { name: r.cstring(), text: r.cstring() };
}

/** Bind ('B'): portal, statement, parameter format codes, then the parameter values (-1 length = NULL). */
export function decodeBind(
  msg: Buffer,
  withValues: boolean,
): { portal: string; statement: string; values: Array<Buffer | null> } {
  const r = new Reader(msg, 5);
  const portal = r.cstring();
  const statement = r.cstring();
  const values: Array<Buffer | null> = [];
  if (withValues) {
    const formats = r.int16();
    for (let i = 0; i < formats; i++) r.int16();
    const n = r.int16();
    for (let i = 0; i < n; i++) {
      const len = r.int32();
      values.push(len === -1 ? null : r.bytes(len));
    }
  }
  return { portal, statement, values };
}

/** Execute ('E' from the frontend): portal name (the row limit follows). */
export function decodeExecute(msg: Buffer): string {
  return new Reader(msg, 5).cstring();
}

/** Close ('C' from the frontend): 'S' (statement) or 'P' (portal), and its name. */
export function decodeClose(msg: Buffer): { kind: number; name: string } {
  const r = new Reader(msg, 5);
  const kind = r.byte();
  return { kind, name: r.cstring() };
}

/** DataRow ('D'): the column values, null for NULL; views of the message, not copies. */
export function decodeDataRow(msg: Buffer): Array<Buffer | null> {
  const count = msg.readInt16BE(5);
  const values: Array<Buffer | null> = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const len = msg.readInt32BE(at);
    at += 4;
    values.push(len < 0 ? null : msg.subarray(at, at + len));
    at += Math.max(0, len);
  }
  return values;
}

/** DataRow: one column's value without decoding the others; null for NULL or a column past the end. */
export function dataRowValue(msg: Buffer, index: number): Buffer | null {
  if (index >= msg.readInt16BE(5)) return null;
  let at = 7;
  for (let i = 0; i < index; i++) at += 4 + Math.max(0, msg.readInt32BE(at));
  const len = msg.readInt32BE(at);
  return len < 0 ? null : msg.subarray(at + 4, at + 4 + len);
}

/** CommandComplete ('C'): the command tag, e.g. "SELECT 5", "INSERT 0 1". */
export function decodeCommandComplete(msg: Buffer): string {
  return new Reader(msg, 5).cstring();
}
