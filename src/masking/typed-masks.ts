// What each mask makes of a value of a type typed-values.ts knows (dates, timestamps, integers, numeric, floats,
// bool, uuid, bytea, json, jsonb): a value of the same type, in the column's own format, so drivers that parse the
// type still can; or NULL where the mask has no meaning for the type (a redaction is no integer, a ZIP is no date).
// Text and binary give the same masked value: both are read into one value, masked, and written back.
//
//   year_only / month_year   date, timestamp, timestamptz: the first day of the year (month) at 00:00:00, in UTC
//                            for timestamptz; infinity and -infinity become NULL (they have no year)
//   fixed('...')             every type here: the text read as the type once per plan (as PostgreSQL prints it;
//                            json and jsonb: any JSON text); text that is no such value gives NULL
//   hash                     keyed HMAC-SHA-256 of the value's text as PostgreSQL prints it (the same in both
//                            formats): int2 / int4 / int8 / numeric a non-negative integer of 15 / 31 / 63 / 63 bits,
//                            uuid a version-4-shaped uuid, bytea the 32 bytes of the HMAC
//   json (json_masks)        json, jsonb: the document with its paths masked
//   any other mask           json, jsonb: the redaction text as a JSON string; every other type: NULL

import crypto from 'node:crypto';
import { containsPhi } from './kernel.js';
import { maskJsonText } from './json-paths.js';
import type { MaskRule } from './mask-spec.js';
import { truncateDate, truncateTimestamp } from './pg-calendar.js';
import {
  CODECS,
  decodeValue,
  encodeValue,
  type Codec,
  type ValueOf,
  type ValueType,
} from './typed-values.js';

/** One non-NULL value in, its masked form out (null: NULL). */
export type ValueRewrite = (value: Buffer) => Buffer | null;

/** What a column gets: the same bytes for every value, a rewrite of each value, or NULL (and why). */
export type TypedColumnMask =
  | { readonly kind: 'constant'; readonly value: Buffer }
  | { readonly kind: 'rewrite'; readonly rewrite: ValueRewrite }
  | { readonly kind: 'null'; readonly reason: string };

/** A mask's meaning for values of one type, before any format is chosen. */
type Meaning<V> =
  | { readonly constant: V }
  | { readonly map: (value: V) => V | null }
  | { readonly keyed: (key: Buffer) => (value: V) => V };

const JSON_TYPES: ReadonlySet<ValueType> = new Set(['json', 'jsonb']);

/** Hash tokens of integer types: as many bits as the type holds without its sign. */
const TOKEN_BITS: Partial<Record<ValueType, number>> = { int2: 15, int4: 31, int8: 63, numeric: 63 };

/** Plan time: why `rule` has no masked value of `type`, or null when it has one. */
export function typedMaskUnavailable(rule: MaskRule, type: ValueType): string | null {
  const meaning = meaningOf(rule, type, '');
  return typeof meaning === 'string' ? meaning : null;
}

/** The mask of one column of `type` in `format` (0 text, 1 binary). */
export function typedColumnMask(
  rule: MaskRule,
  type: ValueType,
  format: number,
  options: { readonly hashKey: Buffer | null; readonly redaction: string },
): TypedColumnMask {
  const meaning = meaningOf(rule, type, options.redaction);
  if (typeof meaning === 'string') return { kind: 'null', reason: meaning };
  const encode = (value: unknown): Buffer => encodeValue(type, format, value as ValueOf[ValueType]);
  if ('constant' in meaning) return { kind: 'constant', value: encode(meaning.constant) };
  let map: (value: unknown) => unknown;
  if ('keyed' in meaning) {
    if (options.hashKey === null) return { kind: 'null', reason: 'hash without masking.hash_key_file' };
    map = meaning.keyed(options.hashKey);
  } else {
    map = meaning.map;
  }
  return {
    kind: 'rewrite',
    rewrite: (bytes) => {
      // A value that does not read (another DateStyle, say) cannot be masked by meaning: NULL, never the value.
      const value = decodeValue(type, format, bytes);
      const masked = value === null ? null : map(value);
      return masked === null ? null : encode(masked);
    },
  };
}

/**
 * The content detectors (Safe Harbor, expressions) on a value of `type`: they read the value's text as PostgreSQL
 * prints it, in either format; a finding makes the value NULL (json, jsonb: the redaction as a JSON string), the
 * same as a mask with no meaning for the type. `onDetected` counts findings.
 */
export function typedDetector(
  type: ValueType,
  format: number,
  options: {
    readonly redaction: string;
    /** Identifier formats (masking.mrn_formats, identifier_formats) the detectors also recognise. */
    readonly formats: readonly Uint8Array[];
    readonly onDetected: () => void;
  },
): ValueRewrite {
  const codec = CODECS[type] as Codec<unknown>;
  const found = JSON_TYPES.has(type) ? encodeValue(type, format, JSON.stringify(options.redaction)) : null;
  const { formats, onDetected } = options;
  return (bytes) => {
    const value = decodeValue(type, format, bytes);
    if (value === null) return found; // unreadable: judged as PHI
    const text = format === 0 ? bytes : Buffer.from(codec.toText(value), 'utf8');
    if (!containsPhi(text, 0, text.length, formats)) return bytes;
    onDetected();
    return found;
  };
}

function meaningOf(rule: MaskRule, type: ValueType, redaction: string): Meaning<unknown> | string {
  if (rule.fn === 'fixed') return fixedValue(rule.fixed, type);
  if (JSON_TYPES.has(type)) {
    if (rule.fn === 'null') return 'the null mask';
    const paths = rule.jsonPaths ?? [];
    if (rule.fn === 'json') return { map: (text) => maskJsonText(text as string, paths, redaction) };
    return { constant: JSON.stringify(redaction) };
  }
  switch (rule.fn) {
    case 'year_only':
    case 'month_year':
      return truncation(type, rule.fn === 'month_year') ?? `${rule.fn} has no ${type} value`;
    case 'hash':
      return hashToken(type) ?? `hash has no ${type} value`;
    default:
      return `${rule.fn} has no ${type} value`;
  }
}

function fixedValue(text: string, type: ValueType): Meaning<unknown> | string {
  if (JSON_TYPES.has(type)) {
    try {
      JSON.parse(text);
      return { constant: text };
    } catch {
      return `fixed('${text}') is not JSON`;
    }
  }
  const value = (CODECS[type] as Codec<unknown>).fromText(text);
  return value === null
    ? `fixed('${text}') is not a ${type} value as PostgreSQL prints it`
    : { constant: value };
}

function truncation(type: ValueType, keepMonth: boolean): Meaning<unknown> | null {
  if (type === 'date') return { map: (days) => truncateDate(days as number, keepMonth) };
  if (type === 'timestamp' || type === 'timestamptz')
    return { map: (usecs) => truncateTimestamp(usecs as bigint, keepMonth) };
  return null;
}

/** HMAC-SHA-256 under the masking key of a value's text (its bytes as PostgreSQL sent them, or as it prints it). */
export function hmacOfText(key: Buffer, text: string | Uint8Array): Buffer {
  return crypto.createHmac('sha256', key).update(text).digest();
}

function hashToken(type: ValueType): Meaning<unknown> | null {
  const codec = CODECS[type] as Codec<unknown>;
  const bits = TOKEN_BITS[type];
  if (bits !== undefined) {
    const mask = (1n << BigInt(bits)) - 1n;
    return {
      keyed: (key) => (value) => {
        const token = hmacOfText(key, codec.toText(value)).readBigUInt64BE(0) & mask;
        return type === 'numeric' ? token.toString() : token;
      },
    };
  }
  if (type === 'uuid')
    return {
      keyed: (key) => (value) => {
        const token = hmacOfText(key, codec.toText(value)).subarray(0, 16);
        token[6] = (token[6] & 0x0f) | 0x40; // version 4: validating drivers accept it; 122 bits stay keyed
        token[8] = (token[8] & 0x3f) | 0x80; // RFC 4122 variant
        return token;
      },
    };
  if (type === 'bytea') return { keyed: (key) => (value) => hmacOfText(key, codec.toText(value)) };
  return null;
}
