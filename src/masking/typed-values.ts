// Values of the PostgreSQL types whose masked form can be a value of the same type, read from and written to both
// result formats. The text side reads what PostgreSQL prints with its default output settings (DateStyle ISO,
// bytea_output hex) and writes the same; the binary side follows each type's send/recv function. A value that does
// not read (another DateStyle, a truncated binary value) is null: the caller fails closed.
//
// Binary formats: https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-FORMAT-CODES ("the binary
// representation for each data type is defined by its send function"); the function of each type is named below.

import { readIsoDate, readIsoTimestamp, writeIsoDate, writeIsoTimestamp } from './pg-calendar.js';

export type ValueType =
  | 'bool'
  | 'int2'
  | 'int4'
  | 'int8'
  | 'numeric'
  | 'float4'
  | 'float8'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'uuid'
  | 'bytea'
  | 'json'
  | 'jsonb';

const TYPE_OF_OID: ReadonlyMap<number, ValueType> = new Map([
  [16, 'bool'],
  [21, 'int2'],
  [23, 'int4'],
  [20, 'int8'],
  [1700, 'numeric'],
  [700, 'float4'],
  [701, 'float8'],
  [1082, 'date'],
  [1114, 'timestamp'],
  [1184, 'timestamptz'],
  [2950, 'uuid'],
  [17, 'bytea'],
  [114, 'json'],
  [3802, 'jsonb'],
]);

/** The type of a result column's type OID, undefined for every type this module does not know. */
export function valueTypeOf(typeOid: number): ValueType | undefined {
  return TYPE_OF_OID.get(typeOid);
}

/** How values of one type are held here while masked. */
export interface ValueOf {
  bool: boolean;
  int2: bigint;
  int4: bigint;
  int8: bigint;
  /** Its text as numeric_out prints it (the display scale kept: 1.50 stays 1.50). */
  numeric: string;
  float4: number;
  float8: number;
  /** Days since 2000-01-01; DATE_NOBEGIN / DATE_NOEND for -infinity / infinity (pg-calendar.ts). */
  date: number;
  /** Microseconds since 2000-01-01 00:00:00; TIMESTAMP_NOBEGIN / TIMESTAMP_NOEND for -infinity / infinity. */
  timestamp: bigint;
  /** The same, in UTC. */
  timestamptz: bigint;
  /** The 16 bytes. */
  uuid: Buffer;
  bytea: Buffer;
  /** The document's text. */
  json: string;
  jsonb: string;
}

export interface Codec<V> {
  /** The value as PostgreSQL prints it, or null when `text` is not that. */
  fromText(text: string): V | null;
  /** The value from its binary form, or null when `bytes` is not one. */
  fromBinary(bytes: Buffer): V | null;
  toText(value: V): string;
  toBinary(value: V): Buffer;
}

function fixedLength<V>(bytes: Buffer, length: number, read: (b: Buffer) => V): V | null {
  return bytes.length === length ? read(bytes) : null;
}

// ---- the codecs -------------------------------------------------------------------------------------------------

/** boolin / boolout ('t', 'f'); boolsend: one byte, 1 or 0. */
const bool: Codec<boolean> = {
  fromText: (text) => {
    const t = text.toLowerCase();
    if (t === 't' || t === 'true') return true;
    if (t === 'f' || t === 'false') return false;
    return null;
  },
  fromBinary: (b) => fixedLength(b, 1, () => b[0] !== 0),
  toText: (v) => (v ? 't' : 'f'),
  toBinary: (v) => Buffer.from([v ? 1 : 0]),
};

/** int2send / int4send / int8send: two's complement, big-endian, 2, 4 or 8 bytes. */
function integer(bytes: 2 | 4 | 8): Codec<bigint> {
  const max = 2n ** BigInt(bytes * 8 - 1) - 1n;
  const min = -max - 1n;
  return {
    fromText: (text) => {
      if (!/^-?\d{1,20}$/.test(text)) return null;
      const v = BigInt(text);
      return v >= min && v <= max ? v : null;
    },
    fromBinary: (b) => {
      if (b.length !== bytes) return null;
      if (bytes === 8) return b.readBigInt64BE(0);
      return BigInt(bytes === 4 ? b.readInt32BE(0) : b.readInt16BE(0));
    },
    toText: (v) => v.toString(),
    toBinary: (v) => {
      const out = Buffer.alloc(bytes);
      if (bytes === 8) out.writeBigInt64BE(v);
      else if (bytes === 4) out.writeInt32BE(Number(v));
      else out.writeInt16BE(Number(v));
      return out;
    },
  };
}

const FLOAT_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const FLOAT_SPECIAL: ReadonlyMap<string, number> = new Map([
  ['nan', NaN],
  ['infinity', Infinity],
  ['+infinity', Infinity],
  ['-infinity', -Infinity],
  ['inf', Infinity],
  ['+inf', Infinity],
  ['-inf', -Infinity],
]);

function readFloat(text: string, single: boolean): number | null {
  const special = FLOAT_SPECIAL.get(text.toLowerCase());
  if (special !== undefined) return special;
  if (!FLOAT_TEXT.test(text)) return null;
  const v = single ? Math.fround(Number(text)) : Number(text);
  return Number.isFinite(v) ? v : null; // float4in / float8in refuse what overflows
}

/** The shortest text that reads back as the same float8 (or float4), like float8out and float4out print. */
function floatText(v: number, single: boolean): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
  if (Object.is(v, -0)) return '-0';
  if (!single) return String(v);
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(v.toPrecision(digits));
    if (Math.fround(shorter) === v) return String(shorter);
  }
  return String(Number(v.toPrecision(9)));
}

/** float4send / float8send: IEEE 754, big-endian. */
function float(single: boolean): Codec<number> {
  const size = single ? 4 : 8;
  return {
    fromText: (text) => readFloat(text, single),
    fromBinary: (b) => fixedLength(b, size, () => (single ? b.readFloatBE(0) : b.readDoubleBE(0))),
    toText: (v) => floatText(v, single),
    toBinary: (v) => {
      const out = Buffer.alloc(size);
      if (single) out.writeFloatBE(v);
      else out.writeDoubleBE(v);
      return out;
    },
  };
}

// numeric_send: int16 ndigits, int16 weight, uint16 sign, int16 dscale, then ndigits base-10000 digits, the first
// one worth 10000^weight; no leading or trailing zero digit (make_result strips them), zero has no digit at all.
const NUMERIC_POS = 0x0000;
const NUMERIC_NEG = 0x4000;
const NUMERIC_SPECIAL: ReadonlyMap<number, string> = new Map([
  [0xc000, 'NaN'],
  [0xd000, 'Infinity'],
  [0xf000, '-Infinity'],
]);
const NUMERIC_TEXT = /^(-?)(\d+)(?:\.(\d+))?$/;

/** numeric_out's text of numeric input text: no leading zeros, the scale kept, no sign on zero. */
function readNumeric(text: string): string | null {
  for (const special of NUMERIC_SPECIAL.values()) if (text === special) return text;
  const m = NUMERIC_TEXT.exec(text);
  if (m === null) return null;
  const whole = m[2].replace(/^0+(?=\d)/, '');
  const fraction = m[3] ?? '';
  const zero = /^0*$/.test(whole + fraction);
  return `${m[1] === '-' && !zero ? '-' : ''}${whole}${fraction === '' ? '' : '.' + fraction}`;
}

const numeric: Codec<string> = {
  fromText: readNumeric,
  fromBinary: (b) => {
    if (b.length < 8) return null;
    const [ndigits, weight, sign, dscale] = [
      b.readInt16BE(0),
      b.readInt16BE(2),
      b.readUInt16BE(4),
      b.readInt16BE(6),
    ];
    const special = NUMERIC_SPECIAL.get(sign);
    if (special !== undefined) return special;
    if ((sign !== NUMERIC_POS && sign !== NUMERIC_NEG) || ndigits < 0 || dscale < 0) return null;
    if (b.length !== 8 + 2 * ndigits) return null;
    const digit = (i: number): string => {
      const d = i >= 0 && i < ndigits ? b.readInt16BE(8 + 2 * i) : 0;
      return d >= 0 && d < 10000 ? String(d).padStart(4, '0') : 'x';
    };
    let whole = '';
    for (let i = 0; i <= weight; i++) whole += digit(i);
    let fraction = '';
    for (let i = weight + 1; fraction.length < dscale; i++) fraction += digit(i);
    if (whole.includes('x') || fraction.includes('x')) return null;
    const text = `${sign === NUMERIC_NEG ? '-' : ''}${whole === '' ? '0' : whole}${dscale > 0 ? '.' + fraction.slice(0, dscale) : ''}`;
    return readNumeric(text);
  },
  toText: (v) => v,
  toBinary: (v) => {
    const head = Buffer.alloc(8);
    const special = [...NUMERIC_SPECIAL].find(([, text]) => text === v);
    if (special !== undefined) {
      head.writeUInt16BE(special[0], 4);
      return head;
    }
    const m = NUMERIC_TEXT.exec(v);
    if (m === null) throw new RangeError(`not numeric text: ${v}`);
    const fraction = m[3] ?? '';
    // Base-10000 digits aligned on the decimal point.
    const whole = m[2].padStart(Math.ceil(m[2].length / 4) * 4, '0');
    const all = whole + fraction.padEnd(Math.ceil(fraction.length / 4) * 4, '0');
    const digits: number[] = [];
    for (let i = 0; i < all.length; i += 4) digits.push(Number(all.slice(i, i + 4)));
    let weight = whole.length / 4 - 1;
    while (digits.length > 0 && digits[0] === 0) {
      digits.shift();
      weight--;
    }
    while (digits.length > 0 && digits[digits.length - 1] === 0) digits.pop();
    if (digits.length === 0) weight = 0;
    const out = Buffer.alloc(8 + 2 * digits.length);
    out.writeInt16BE(digits.length, 0);
    out.writeInt16BE(weight, 2);
    out.writeUInt16BE(m[1] === '-' && digits.length > 0 ? NUMERIC_NEG : NUMERIC_POS, 4);
    out.writeInt16BE(fraction.length, 6);
    digits.forEach((d, i) => out.writeInt16BE(d, 8 + 2 * i));
    return out;
  },
};

/** date_out in DateStyle ISO ('1984-07-02', '0044-03-15 BC'); date_send: int32 days since 2000-01-01. */
const date: Codec<number> = {
  fromText: readIsoDate,
  fromBinary: (b) => fixedLength(b, 4, () => b.readInt32BE(0)),
  toText: writeIsoDate,
  toBinary: (v) => {
    const out = Buffer.alloc(4);
    out.writeInt32BE(v);
    return out;
  },
};

/**
 * timestamp_out / timestamptz_out in DateStyle ISO (timestamptz with the session's offset, which is read; written
 * back in UTC, '+00'); timestamp_send / timestamptz_send: int64 microseconds since 2000-01-01 00:00:00 (UTC).
 */
function timestamp(withZone: boolean): Codec<bigint> {
  return {
    fromText: (text) => readIsoTimestamp(text, withZone),
    fromBinary: (b) => fixedLength(b, 8, () => b.readBigInt64BE(0)),
    toText: (v) => writeIsoTimestamp(v, withZone),
    toBinary: (v) => {
      const out = Buffer.alloc(8);
      out.writeBigInt64BE(v);
      return out;
    },
  };
}

/** uuid_out: 8-4-4-4-12 lower-case hex (uuid_in also takes upper case, braces, no hyphens); uuid_send: 16 bytes. */
const uuid: Codec<Buffer> = {
  fromText: (text) => {
    const m = /^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$/i.exec(
      text,
    );
    if (m === null || text.startsWith('{') !== text.endsWith('}')) return null;
    return Buffer.from(m.slice(1).join(''), 'hex');
  },
  fromBinary: (b) => fixedLength(b, 16, () => Buffer.from(b)),
  toText: (v) => {
    const h = v.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  },
  toBinary: (v) => v,
};

/**
 * byteaout: '\x' and lower-case hex (bytea_output hex), or with bytea_output escape the bytes themselves, '\\' for a
 * backslash and '\ooo' for other unprintable bytes; byteain reads both. byteasend: the bytes.
 */
const bytea: Codec<Buffer> = {
  fromText: (text) => {
    if (text.startsWith('\\x')) {
      const hex = text.slice(2);
      return /^(?:[0-9a-fA-F]{2})*$/.test(hex) ? Buffer.from(hex, 'hex') : null;
    }
    const out: number[] = [];
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x7f) return null; // escape output writes every byte >= 0x7f as octal
      if (c !== 0x5c) {
        out.push(c);
      } else if (text[i + 1] === '\\') {
        out.push(0x5c);
        i++;
      } else if (/^[0-3][0-7][0-7]$/.test(text.slice(i + 1, i + 4))) {
        out.push(parseInt(text.slice(i + 1, i + 4), 8));
        i += 3;
      } else {
        return null;
      }
    }
    return Buffer.from(out);
  },
  fromBinary: (b) => Buffer.from(b),
  toText: (v) => '\\x' + v.toString('hex'),
  toBinary: (v) => v,
};

/** json_send: the text. */
const json: Codec<string> = {
  fromText: (text) => text,
  fromBinary: (b) => b.toString('utf8'),
  toText: (v) => v,
  toBinary: (v) => Buffer.from(v, 'utf8'),
};

/** jsonb_send: a version byte (1, the only one jsonb_recv accepts) and the text. */
const JSONB_VERSION = 1;
const jsonb: Codec<string> = {
  fromText: (text) => text,
  fromBinary: (b) => (b.length > 0 && b[0] === JSONB_VERSION ? b.toString('utf8', 1) : null),
  toText: (v) => v,
  toBinary: (v) => Buffer.concat([Buffer.from([JSONB_VERSION]), Buffer.from(v, 'utf8')]),
};

export const CODECS: { readonly [T in ValueType]: Codec<ValueOf[T]> } = {
  bool,
  int2: integer(2),
  int4: integer(4),
  int8: integer(8),
  numeric,
  float4: float(true),
  float8: float(false),
  date,
  timestamp: timestamp(false),
  timestamptz: timestamp(true),
  uuid,
  bytea,
  json,
  jsonb,
};

/** The text result format code (RowDescription, Bind); 1 is binary. */
export const TEXT_FORMAT = 0;

/** One value of `type` in `format` (0 text, 1 binary), or null when the bytes are not one. */
export function decodeValue<T extends ValueType>(type: T, format: number, bytes: Buffer): ValueOf[T] | null {
  const codec: Codec<ValueOf[T]> = CODECS[type];
  return format === TEXT_FORMAT ? codec.fromText(bytes.toString('utf8')) : codec.fromBinary(bytes);
}

/**
 * A value's text as PostgreSQL prints it, whichever format it came in: the bytes themselves in text format (and for
 * types whose binary form is their text), the codec's text for binary values of the types here, null for binary
 * values of other types. What keys a value the same for a text and a binary client (disclosure accounting).
 */
export function canonicalText(typeOid: number, format: number, bytes: Buffer): Buffer | null {
  if (format === TEXT_FORMAT || TEXT_LIKE_TYPES.has(typeOid)) return bytes;
  const type = valueTypeOf(typeOid);
  if (type === undefined) return null;
  const value = decodeValue(type, format, bytes);
  return value === null ? null : Buffer.from((CODECS[type] as Codec<unknown>).toText(value), 'utf8');
}

/**
 * Types whose binary form is their text (the UTF-8 bytes): a masked value is built the same way in either format.
 */
export const TEXT_LIKE_TYPES: ReadonlySet<number> = new Set([
  25, // text
  1043, // varchar
  1042, // bpchar
  19, // name
  18, // "char"
]);

/** One value of `type` written in `format`. */
export function encodeValue<T extends ValueType>(type: T, format: number, value: ValueOf[T]): Buffer {
  const codec: Codec<ValueOf[T]> = CODECS[type];
  return format === TEXT_FORMAT ? Buffer.from(codec.toText(value), 'utf8') : codec.toBinary(value);
}
