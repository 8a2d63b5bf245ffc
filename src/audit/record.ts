// The audit record, schema version 1: event types, the fixed key order, the hash that seals a line, the published
// JSON Schema, and the small helpers (µs clock, keyed parameter hash, stream ids) the writer and the proxy share.
// docs/audit.md is the prose version of this file; keep the two in step.

import { createHash, createHmac } from 'node:crypto';
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';

export const AUDIT_SCHEMA_VERSION = 1;
export const AUDIT_RECORD_SCHEMA_ID = 'urn:pgwarden:audit-record:v1';

export const AUDIT_EVENT_TYPES = [
  'connection_open',
  'connection_close',
  'login_success',
  'login_failure',
  'statement',
  'statement_end',
  'refusal',
  'masking',
  'break_glass_start',
  'break_glass_end',
  'actor',
  'config_reload',
  'lockout',
  'checkpoint',
  'stream_start',
  'stream_end',
] as const;
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];
const EVENT_SET: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

/** What the proxy hands the writer: the chain adds v, seq, node, worker, stream, prev and hash. */
export interface AuditEvent {
  event: AuditEventType;
  session?: string | null;
  identity?: string | null;
  database?: string | null;
  data?: Record<string, unknown>;
  /** Microseconds since the epoch; defaults to now when the chain appends the record. */
  ts?: number;
}

/** The `prev` of the first record of a stream. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Longest line (without its newline) the verifier reads; the verifier's memory is bounded by it. The proxy must
 * keep statement text well below (a 1 GB INSERT is legal SQL but not an audit record).
 */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;

/** The keys of a record, in the one order they are written. `hash` is always last. */
export const RECORD_KEYS = [
  'v',
  'seq',
  'ts',
  'node',
  'worker',
  'stream',
  'session',
  'identity',
  'database',
  'event',
  'data',
  'prev',
  'hash',
] as const;

export class AuditRecordError extends Error {
  readonly code = 'PGW_AUDIT_RECORD';
}

// ---------------------------------------------------------------------------------------------------------------
// The schema: one TypeBox definition gives the runtime check (verify) and docs/audit-record.schema.json.

const HEX64 = '^[0-9a-f]{64}$';
const nullableString = (description: string) =>
  Type.Union([Type.String(), Type.Null()], { description: `${description} (null when not known yet).` });

export const AuditRecordSchema = Type.Object(
  {
    v: Type.Literal(AUDIT_SCHEMA_VERSION, { description: 'Schema version of the record.' }),
    seq: Type.Integer({
      minimum: 1,
      description: 'Position in the stream: 1 for its first record, then +1 each.',
    }),
    ts: Type.Integer({
      minimum: 0,
      description: 'When the event happened, microseconds since the Unix epoch.',
    }),
    node: Type.String({ minLength: 1, description: 'node_id of the pgwarden node that wrote the record.' }),
    worker: Type.Integer({ minimum: -1, description: 'Worker thread number; -1 for the main thread.' }),
    stream: Type.String({
      minLength: 1,
      description: 'The hash chain the record belongs to: one per writer (node, worker, start time).',
    }),
    session: nullableString('Client session id'),
    identity: nullableString('Authenticated pgwarden user'),
    database: nullableString('Database entry (databases.NAME) the session is routed to'),
    event: Type.Union(
      AUDIT_EVENT_TYPES.map((e) => Type.Literal(e)),
      { description: 'What happened; `data` carries the event-specific fields.' },
    ),
    data: Type.Object({}, { additionalProperties: true, description: 'Event-specific fields.' }),
    prev: Type.String({
      pattern: HEX64,
      description: '`hash` of the previous record of the stream (64 zeros for the first record).',
    }),
    hash: Type.String({
      pattern: HEX64,
      description: 'SHA-256 (hex) of this line up to `prev` inclusive, closed with `}` (see docs/audit.md).',
    }),
  },
  { additionalProperties: false, description: 'One line of a pgwarden audit file.' },
);
export type AuditRecord = Omit<Static<typeof AuditRecordSchema>, 'event' | 'data'> & {
  event: AuditEventType;
  data: Record<string, unknown>;
};

const str = (description: string) => Type.Optional(Type.String({ description }));
const int = (description: string, minimum = 0) => Type.Optional(Type.Integer({ minimum, description }));
const strOrNull = (description: string) =>
  Type.Optional(Type.Union([Type.String(), Type.Null()], { description }));
const tlsFields = {
  tls_version: strOrNull('TLS protocol version of the client connection, null for plaintext.'),
  tls_cipher: strOrNull('TLS cipher of the client connection, null for plaintext.'),
};
const open = (properties: Record<string, TSchema>, description: string): TObject =>
  Type.Object(properties, { additionalProperties: true, description });

export const CheckpointDataSchema = Type.Object(
  {
    upto_seq: Type.Integer({ minimum: 0, description: 'seq of the record just before this checkpoint.' }),
    upto_hash: Type.String({
      pattern: HEX64,
      description: 'hash of that record (equals the prev of this record).',
    }),
    key_id: Type.String({
      pattern: HEX64,
      description:
        'SHA-256 (hex) of the public half of the signing key in SPKI DER: which key to verify with.',
    }),
    sig: Type.String({
      pattern: '^[A-Za-z0-9+/]{86}==$',
      description: 'Base64 Ed25519 signature over "pgwarden-audit-v1\\n<stream>\\n<upto_seq>\\n<upto_hash>".',
    }),
  },
  {
    additionalProperties: false,
    description: 'A signed checkpoint: vouches for every record up to upto_seq.',
  },
);
export type CheckpointData = Static<typeof CheckpointDataSchema>;

/**
 * The documented `data` of each event. Fields are optional and extra fields are allowed (the proxy grows them),
 * except for checkpoint, whose fields the verifier depends on.
 */
export const EVENT_DATA_SCHEMAS: Readonly<Record<AuditEventType, TObject>> = {
  connection_open: open(
    {
      client_addr: strOrNull('Client IP address (after PROXY protocol, when used).'),
      client_port: Type.Optional(
        Type.Union([Type.Integer(), Type.Null()], { description: 'Client TCP port.' }),
      ),
      ...tlsFields,
      client_cert_subject: strOrNull('Subject of the verified client certificate, null without one.'),
    },
    'A client connected.',
  ),
  connection_close: open(
    {
      reason: str('Why the connection ended (client terminate, idle logoff, shutdown, error...).'),
      duration_ms: Type.Optional(Type.Number({ minimum: 0, description: 'How long the session lasted.' })),
    },
    'A client connection ended.',
  ),
  login_success: open(
    { method: str('How the client authenticated (scram-sha-256, cert, ...).'), ...tlsFields },
    'A client authenticated; identity and database are set from this record on.',
  ),
  login_failure: open(
    {
      user: str('The user name the client claimed (not authenticated, so not the identity).'),
      reason: str('Why the login failed.'),
      ...tlsFields,
    },
    'A client failed to authenticate.',
  ),
  statement: open(
    {
      protocol: Type.Optional(Type.Union([Type.Literal('simple'), Type.Literal('extended')])),
      phase: Type.Optional(
        Type.Union([Type.Literal('parse'), Type.Literal('bind'), Type.Literal('execute')], {
          description: 'Extended protocol message.',
        }),
      ),
      id: int('Statement number within the session.', 1),
      text: str('SQL text (Query, Parse).'),
      name: str('Prepared statement name ("" is the unnamed one).'),
      portal: str('Portal name ("" is the unnamed one).'),
      params: Type.Optional(
        Type.Array(Type.Union([Type.String(), Type.Null()]), {
          description:
            'Bind parameters: absent by default, HMAC-SHA-256 hex with params: hash, values with full.',
        }),
      ),
    },
    'A statement (simple Query, or Parse / Bind / Execute), recorded before it is forwarded.',
  ),
  statement_end: open(
    {
      tags: Type.Optional(Type.Array(Type.String(), { description: 'Command tags returned.' })),
      rows: int('Rows returned or affected.'),
      sqlstate: strOrNull('SQLSTATE of the error, null on success.'),
      duration_ms: Type.Optional(Type.Number({ minimum: 0, description: 'Round trip time.' })),
    },
    'The outcome of a round trip.',
  ),
  refusal: open(
    { sqlstate: str('SQLSTATE sent to the client.'), reason: str('Why pgwarden refused.') },
    'pgwarden refused a connection, login or statement.',
  ),
  masking: open(
    {
      id: int('Statement number within the session.', 1),
      columns: Type.Optional(
        Type.Array(Type.Object({ column: Type.String(), rule: Type.String() }), {
          description: 'Masked columns (schema.table.column) and the rule applied.',
        }),
      ),
    },
    'Masking decisions for a result.',
  ),
  break_glass_start: open(
    { reason: str('The justification given.'), expires_ms: int('When the emergency access ends.') },
    'Emergency access began.',
  ),
  break_glass_end: open(
    { reason: str('Why it ended (expired, ended, revoked).') },
    'Emergency access ended.',
  ),
  actor: open(
    { sub: str('JWT subject: the person acting through the application.'), iss: str('JWT issuer.') },
    'The end user an application session acts for.',
  ),
  config_reload: open(
    { ok: Type.Optional(Type.Boolean()), error: str('Why the reload was rejected.') },
    'A configuration reload (SIGHUP).',
  ),
  lockout: open(
    {
      user: str('The locked-out user name.'),
      client_addr: str('The locked-out address.'),
      until_ms: int('When the lockout ends (ms since the epoch).'),
    },
    'A user or address was locked out.',
  ),
  checkpoint: CheckpointDataSchema,
  stream_start: open(
    {
      pid: int('Process id of the writer.'),
      version: str('pgwarden version.'),
      key_id: str('key_id of the key that signs the checkpoints of this stream.'),
    },
    'First record of a stream.',
  ),
  stream_end: open(
    { reason: str('Why the stream ended (shutdown, ...).') },
    'Last record of a stream but its checkpoint.',
  ),
};

/** The published JSON Schema (docs/audit-record.schema.json): the record plus the `data` of each event. */
export function auditRecordJsonSchema(): Record<string, unknown> {
  // JSON round trip drops TypeBox's symbol keys.
  const body = JSON.parse(JSON.stringify(AuditRecordSchema)) as Record<string, unknown>;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: AUDIT_RECORD_SCHEMA_ID,
    title: 'pgwarden audit record, version 1',
    ...body,
    allOf: AUDIT_EVENT_TYPES.map((event) => ({
      if: { properties: { event: { const: event } }, required: ['event'] },
      then: { properties: { data: JSON.parse(JSON.stringify(EVENT_DATA_SCHEMAS[event])) as unknown } },
    })),
  };
}

let recordCheck: TypeCheck<typeof AuditRecordSchema> | undefined;
let checkpointCheck: TypeCheck<typeof CheckpointDataSchema> | undefined;

// ---------------------------------------------------------------------------------------------------------------
// Sealing a line: hash = SHA-256 over the UTF-8 bytes of the record's JSON text without `hash` (which ends with
// `"prev":"…"}`); the line is that text with `,"hash":"<hex>"` spliced in before the closing brace.

const HASH_PREFIX = ',"hash":"';
/** Length of the `,"hash":"<64 hex>"}` tail of every line. */
export const HASH_SUFFIX_BYTES = HASH_PREFIX.length + 64 + 2;
const HASH_PREFIX_BYTES = Buffer.from(HASH_PREFIX);

/** The record's JSON text without `hash`: keys in RECORD_KEYS order, JSON.stringify's encoding, no whitespace. */
export function recordBody(r: Omit<AuditRecord, 'hash'>): string {
  return JSON.stringify({
    v: r.v,
    seq: r.seq,
    ts: r.ts,
    node: r.node,
    worker: r.worker,
    stream: r.stream,
    session: r.session,
    identity: r.identity,
    database: r.database,
    event: r.event,
    data: r.data,
    prev: r.prev,
  });
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Seals a body: returns its hash and the full line (no newline). */
export function sealRecord(body: string): { hash: string; line: string } {
  const hash = sha256Hex(body);
  return { hash, line: `${body.slice(0, -1)}${HASH_PREFIX}${hash}"}` };
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });
const isHexDigit = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66);

/**
 * Parses one line (its bytes, without the newline) and checks it on its own: the hash over its bytes, UTF-8, the
 * schema, and that it is byte for byte what the writer would have written (so there is exactly one text per
 * record). Chain checks (seq, prev, signatures) are verify.ts's. Throws AuditRecordError with the reason.
 */
export function parseAuditLine(bytes: Buffer): AuditRecord {
  const n = bytes.length;
  if (n < HASH_SUFFIX_BYTES + 2 || bytes[0] !== 0x7b) throw new AuditRecordError('not an audit record');
  const tail = n - HASH_SUFFIX_BYTES;
  if (!bytes.subarray(tail, tail + HASH_PREFIX_BYTES.length).equals(HASH_PREFIX_BYTES)) {
    throw new AuditRecordError('not an audit record (no "hash" at the end of the line)');
  }
  for (let i = tail + HASH_PREFIX_BYTES.length; i < n - 2; i++) {
    if (!isHexDigit(bytes[i])) throw new AuditRecordError('malformed "hash"');
  }
  if (bytes[n - 2] !== 0x22 || bytes[n - 1] !== 0x7d) throw new AuditRecordError('malformed "hash"');
  const written = bytes.toString('latin1', n - 66, n - 2);
  const actual = createHash('sha256').update(bytes.subarray(0, tail)).update('}').digest('hex');
  if (actual !== written) throw new AuditRecordError('hash mismatch: the record was altered');

  let text: string;
  try {
    text = fatalUtf8.decode(bytes);
  } catch {
    throw new AuditRecordError('not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AuditRecordError('not valid JSON');
  }
  recordCheck ??= TypeCompiler.Compile(AuditRecordSchema);
  if (!recordCheck.Check(value)) {
    const e = recordCheck.Errors(value).First();
    throw new AuditRecordError(
      `does not match the record schema: ${e ? `${e.path || '/'} ${e.message}` : ''}`,
    );
  }
  const record = value as AuditRecord;
  // Duplicate keys, key order, whitespace and escapes all show up here as a different text.
  if (recordBody(record) !== text.slice(0, text.length - HASH_SUFFIX_BYTES) + '}') {
    throw new AuditRecordError('not in the canonical form the writer produces');
  }
  if (record.event === 'checkpoint') {
    checkpointCheck ??= TypeCompiler.Compile(CheckpointDataSchema);
    if (!checkpointCheck.Check(record.data)) {
      const e = checkpointCheck.Errors(record.data).First();
      throw new AuditRecordError(`malformed checkpoint data: ${e ? `${e.path || '/'} ${e.message}` : ''}`);
    }
  }
  return record;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers for the writer and the proxy.

export function isAuditEventType(s: string): s is AuditEventType {
  return EVENT_SET.has(s);
}

let clockMs = 0;
let clockPerf = 0;
/**
 * Wall-clock microseconds since the epoch. Date.now() gives the millisecond (audit time must follow the system
 * clock, not a monotonic one that drifts from it); the microseconds are time elapsed since this thread first saw
 * that millisecond, so successive readings never go backwards within it.
 */
export function nowMicros(): number {
  const ms = Date.now();
  const p = performance.now();
  if (ms !== clockMs) {
    clockMs = ms;
    clockPerf = p;
    return ms * 1000;
  }
  return ms * 1000 + Math.min(999, Math.floor((p - clockPerf) * 1000));
}

/** params: hash: HMAC-SHA-256 (hex) of one bind parameter under the configured key; NULL stays null. */
export function hashParam(key: Buffer | string, value: Buffer | string | null): string | null {
  if (value === null) return null;
  return createHmac('sha256', key).update(value).digest('hex');
}

/** `<node>-w<worker>-<start ms>` (`<node>-main-<start ms>` for the main thread): unique per writer run. */
export function makeStreamId(node: string, worker: number, startedAtMs: number = Date.now()): string {
  return `${node}-${worker < 0 ? 'main' : `w${worker}`}-${startedAtMs}`;
}
