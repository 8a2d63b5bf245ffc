// The audit record format and chain: key order, the documented hash, seq/prev links, the chain's rules,
// Ed25519 checkpoints (openssl-compatible keys), keyed parameter hashes, and the published JSON Schema.
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { format, resolveConfig } from 'prettier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditChain, AuditChainError } from '../../src/audit/chain.js';
import {
  AuditKeyError,
  checkpointEvent,
  checkpointMessage,
  keyId,
  loadSigningKey,
  loadSigningKeyFromPem,
  loadVerifyKeyFromPem,
} from '../../src/audit/checkpoint.js';
import {
  AUDIT_EVENT_TYPES,
  AuditRecordError,
  AuditRecordSchema,
  EVENT_DATA_SCHEMAS,
  GENESIS_HASH,
  RECORD_KEYS,
  auditRecordJsonSchema,
  hashParam,
  makeStreamId,
  nowMicros,
  parseAuditLine,
  recordBody,
  sealRecord,
  type AuditRecord,
} from '../../src/audit/record.js';

const ROOT = join(import.meta.dirname, '../..');
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgwarden-audit-chain-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const newChain = () => {
  const chain = new AuditChain({ node: 'node1', worker: 2, stream: 'node1-w2-1' });
  chain.append({ event: 'stream_start', ts: 1, data: { pid: 1 } });
  return chain;
};

describe('a record line', () => {
  it('has the fixed keys in the fixed order, and its hash is SHA-256 of the line without the hash member', () => {
    const chain = newChain();
    const line = chain.append({
      event: 'statement',
      ts: 1_700_000_000_123_456,
      session: 'sess-1',
      identity: 'alice',
      database: 'ehr',
      data: { protocol: 'simple', id: 1, text: 'select "ssn" from patients -- é\n' },
    });
    expect(line).not.toContain('\n');
    const r = JSON.parse(line) as AuditRecord;
    expect(Object.keys(r)).toEqual([...RECORD_KEYS]);
    expect(r).toMatchObject({
      v: 1,
      seq: 2,
      ts: 1_700_000_000_123_456,
      node: 'node1',
      worker: 2,
      stream: 'node1-w2-1',
    });
    // The documented recipe, done independently: drop `,"hash":"<64 hex>"` before the final brace, hash the rest.
    const m = /^(.*),"hash":"([0-9a-f]{64})"\}$/.exec(line)!;
    expect(createHash('sha256').update(`${m[1]}}`, 'utf8').digest('hex')).toBe(m[2]);
    expect(r.hash).toBe(m[2]);
    expect(chain.lastHash).toBe(r.hash);
    expect(chain.seq).toBe(2);
  });

  it('links each record to the one before: seq + 1 and prev = its hash, from 64 zeros', () => {
    const chain = new AuditChain({ node: 'n', worker: -1, stream: 'n-main-1' });
    const lines = [chain.append({ event: 'stream_start' })];
    for (let i = 0; i < 5; i++) lines.push(chain.append({ event: 'config_reload', data: { ok: true } }));
    const records = lines.map((l) => parseAuditLine(Buffer.from(l)));
    expect(records[0]).toMatchObject({
      seq: 1,
      prev: GENESIS_HASH,
      worker: -1,
      session: null,
      identity: null,
    });
    for (let i = 1; i < records.length; i++) {
      expect(records[i].seq).toBe(i + 1);
      expect(records[i].prev).toBe(records[i - 1].hash);
    }
  });

  it('defaults ts to the current time in microseconds', () => {
    const before = Date.now() * 1000;
    const r = JSON.parse(newChain().append({ event: 'actor', data: { sub: 'dr-who' } })) as AuditRecord;
    expect(r.ts).toBeGreaterThanOrEqual(before);
    expect(r.ts).toBeLessThanOrEqual(Date.now() * 1000 + 999);
  });

  it('is rejected by parseAuditLine when altered, re-hashed into a non-canonical form, or not a record', () => {
    const line = newChain().append({ event: 'refusal', data: { sqlstate: '42501', reason: 'denied' } });
    const reject = (text: string | Buffer, reason: RegExp) => {
      let error: unknown;
      try {
        parseAuditLine(Buffer.from(text));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(AuditRecordError);
      expect((error as Error).message).toMatch(reason);
    };
    expect(parseAuditLine(Buffer.from(line)).event).toBe('refusal');
    reject(line.replace('42501', '42502'), /hash mismatch/);
    reject(
      line.replace(/"hash":"([0-9a-f]+)"/, (_, h: string) => `"hash":"${h.toUpperCase()}"`),
      /malformed "hash"/,
    );
    reject('{"hello":"world"}', /not an audit record/);
    const r = JSON.parse(line) as AuditRecord;
    reject(sealRecord(recordBody(r).replace('"data":', '"data" :')).line, /canonical/);
    reject(sealRecord(recordBody(r).replace('"v":1,', '"v":1,"v":1,')).line, /canonical/);
    const { hash: _hash, v, ...rest } = r;
    reject(sealRecord(JSON.stringify({ ...rest, v })).line, /canonical/); // v moved last: same JSON value, other text
    reject(sealRecord(recordBody({ ...r, event: 'telepathy' as 'actor' })).line, /record schema: \/event/);
    reject(sealRecord(recordBody({ ...r, seq: 0 })).line, /record schema: \/seq/);
    // Invalid UTF-8 with a hash computed over the very bytes.
    const body = Buffer.from(recordBody(r).replace('denied', 'dXnied'));
    body[body.indexOf('dXnied') + 1] = 0xff;
    const h = createHash('sha256').update(body).digest('hex');
    reject(Buffer.concat([body.subarray(0, -1), Buffer.from(`,"hash":"${h}"}`)]), /UTF-8/);
    reject('x', /not an audit record/);
  });
});

describe('the chain keeps the stream valid', () => {
  it('begins with stream_start and only there', () => {
    const chain = new AuditChain({ node: 'n', worker: 0, stream: 's' });
    expect(() => chain.append({ event: 'statement' })).toThrow(/begins with stream_start/);
    chain.append({ event: 'stream_start' });
    expect(() => chain.append({ event: 'stream_start' })).toThrow(AuditChainError);
  });

  it('after stream_end takes only its checkpoint, then nothing', () => {
    const chain = newChain();
    chain.append({ event: 'stream_end', data: { reason: 'shutdown' } });
    expect(() => chain.append({ event: 'statement' })).toThrow(/only its checkpoint/);
    chain.appendCheckpoint(privateKey);
    expect(chain.isClosed).toBe(true);
    expect(() => chain.appendCheckpoint(privateKey)).toThrow(/closed/);
  });

  it('end() appends stream_end and the sealing checkpoint', () => {
    const chain = newChain();
    const [last, cp] = chain.end(privateKey, { reason: 'shutdown' });
    expect(JSON.parse(last)).toMatchObject({ seq: 2, event: 'stream_end', data: { reason: 'shutdown' } });
    expect(JSON.parse(cp)).toMatchObject({ seq: 3, event: 'checkpoint', data: { upto_seq: 2 } });
  });

  it('refuses malformed events and leaves itself unchanged', () => {
    const chain = newChain();
    const [seq, head] = [chain.seq, chain.lastHash];
    const bad: unknown[] = [
      { event: 'telepathy' },
      { event: 'statement', data: [1, 2] },
      { event: 'statement', ts: 1.5 },
      { event: 'statement', ts: -1 },
      { event: 'statement', session: 42 },
      { event: 'checkpoint', data: { upto_seq: 0, upto_hash: GENESIS_HASH, sig: '' } },
    ];
    for (const e of bad) expect(() => chain.append(e as never), JSON.stringify(e)).toThrow(AuditChainError);
    expect([chain.seq, chain.lastHash]).toEqual([seq, head]);
    // A checkpoint computed for a head that has since moved names the wrong record.
    const stale = checkpointEvent(chain.stream, chain.seq, chain.lastHash, privateKey);
    chain.append({ event: 'statement' });
    expect(() => chain.append(stale)).toThrow(/name the record just before it/);
  });

  it('continues an existing stream from its last seq and hash (rotation, or a restarted writer)', () => {
    const first = newChain();
    first.append({ event: 'statement' });
    const next = new AuditChain({
      node: 'node1',
      worker: 2,
      stream: 'node1-w2-1',
      seq: first.seq,
      prev: first.lastHash,
    });
    const r = JSON.parse(next.append({ event: 'statement' })) as AuditRecord;
    expect(r).toMatchObject({ seq: 3, prev: first.lastHash });
    expect(() => new AuditChain({ node: 'n', worker: 0, stream: 's', seq: 4 })).toThrow(/both seq/);
    expect(() => new AuditChain({ node: 'n', worker: 0, stream: 's', prev: 'ab'.repeat(32) })).toThrow(
      /both seq/,
    );
    expect(() => new AuditChain({ node: 'n', worker: 0, stream: 's', seq: 1, prev: 'xyz' })).toThrow(
      /64 hex/,
    );
    expect(() => new AuditChain({ node: '', worker: 0, stream: 's' })).toThrow(/node/);
    expect(() => new AuditChain({ node: 'n', worker: -2, stream: 's' })).toThrow(/worker/);
    expect(() => new AuditChain({ node: 'n', worker: 0, stream: '' })).toThrow(/stream/);
  });
});

describe('checkpoints', () => {
  it('sign "pgwarden-audit-v1\\n<stream>\\n<upto_seq>\\n<upto_hash>" with Ed25519 and name the key', () => {
    const chain = newChain();
    const head = chain.lastHash;
    const r = JSON.parse(chain.appendCheckpoint(privateKey)) as AuditRecord;
    const data = r.data as { upto_seq: number; upto_hash: string; key_id: string; sig: string };
    expect(data.upto_seq).toBe(1);
    expect(data.upto_hash).toBe(head);
    expect(r.prev).toBe(head);
    const message = Buffer.from(`pgwarden-audit-v1\nnode1-w2-1\n1\n${head}`);
    expect(checkpointMessage('node1-w2-1', 1, head)).toEqual(message);
    expect(verify(null, message, publicKey, Buffer.from(data.sig, 'base64'))).toBe(true);
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    expect(data.key_id).toBe(createHash('sha256').update(spki).digest('hex'));
    expect(keyId(publicKey)).toBe(keyId(privateKey));
  });

  it('load the keys openssl writes, and say clearly what is wrong with any other key', () => {
    const key = join(dir, 'audit.key');
    const pub = join(dir, 'audit.pub');
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', key]);
    execFileSync('openssl', ['pkey', '-in', key, '-pubout', '-out', pub]);
    const signing = loadSigningKey(key);
    const verifying = loadVerifyKeyFromPem(readFileSync(pub));
    expect(signing.asymmetricKeyType).toBe('ed25519');
    expect(keyId(verifying)).toBe(keyId(signing));
    const der = execFileSync('openssl', ['pkey', '-pubin', '-in', pub, '-outform', 'DER']);
    expect(keyId(verifying)).toBe(createHash('sha256').update(der).digest('hex'));

    const rsa = join(dir, 'rsa.key');
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'rsa',
      '-pkeyopt',
      'rsa_keygen_bits:1024',
      '-out',
      rsa,
    ]);
    expect(() => loadSigningKey(rsa)).toThrow(
      /audit signing key .*rsa\.key holds an rsa key; audit checkpoints need an Ed25519 key \(openssl genpkey -algorithm ed25519/,
    );
    expect(() => loadSigningKey(join(dir, 'missing.key'))).toThrow(
      /cannot read audit signing key .*: ENOENT/,
    );
    expect(() => loadSigningKey(pub)).toThrow(/is not a PEM private key/);
    const encrypted = join(dir, 'enc.key');
    execFileSync('openssl', ['pkey', '-in', key, '-aes256', '-passout', 'pass:secret', '-out', encrypted]);
    expect(() => loadSigningKey(encrypted)).toThrow(/is encrypted/);
    const pem = readFileSync(key, 'utf8');
    try {
      loadSigningKeyFromPem(pem.replace('PRIVATE KEY-----\n', 'PRIVATE KEY-----\nAA'));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(AuditKeyError);
      // No key material in the message.
      expect((e as Error).message).not.toContain(pem.split('\n')[1].slice(0, 16));
    }
    expect(() => loadVerifyKeyFromPem('nonsense')).toThrow(/not a PEM public key/);
    expect(loadVerifyKeyFromPem(pem).type).toBe('public');
  });
});

describe('helpers', () => {
  it('hashParam is HMAC-SHA-256 hex under the key, NULL stays null', () => {
    const key = Buffer.from('params-key');
    expect(hashParam(key, '123-45-6789')).toBe(createHmac('sha256', key).update('123-45-6789').digest('hex'));
    expect(hashParam(key, Buffer.from([0, 1, 2]))).toBe(
      createHmac('sha256', key)
        .update(Buffer.from([0, 1, 2]))
        .digest('hex'),
    );
    expect(hashParam('other', '123-45-6789')).not.toBe(hashParam(key, '123-45-6789'));
    expect(hashParam(key, null)).toBeNull();
  });

  it('nowMicros follows the wall clock and never goes back', () => {
    let last = 0;
    for (let i = 0; i < 20_000; i++) {
      const t = nowMicros();
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
    expect(Number.isSafeInteger(last)).toBe(true);
    expect(Math.abs(last - Date.now() * 1000)).toBeLessThan(5_000);
  });

  it('makeStreamId names node, worker and start time', () => {
    expect(makeStreamId('node1', 3, 1700000000000)).toBe('node1-w3-1700000000000');
    expect(makeStreamId('node1', -1, 1700000000000)).toBe('node1-main-1700000000000');
  });
});

describe('the published JSON Schema', () => {
  it('validates what the chain writes, event by event', () => {
    const samples: Record<string, Record<string, unknown>> = {
      connection_open: {
        client_addr: '10.1.2.3',
        client_port: 51000,
        tls_version: 'TLSv1.3',
        tls_cipher: 'TLS_AES_256_GCM_SHA384',
      },
      login_failure: { user: 'mallory', reason: 'bad password', tls_version: null, tls_cipher: null },
      statement: { protocol: 'extended', phase: 'bind', portal: '', name: 's1', params: ['ab', null] },
      statement_end: { tags: ['SELECT 3'], rows: 3, sqlstate: null, duration_ms: 0.42 },
      masking: { id: 3, columns: [{ column: 'public.patients.ssn', rule: 'partial_last4' }] },
    };
    const chain = newChain();
    const lines = AUDIT_EVENT_TYPES.filter(
      (e) => !['stream_start', 'stream_end', 'checkpoint'].includes(e),
    ).map((event) => chain.append({ event, data: samples[event] ?? {} }));
    lines.push(chain.appendCheckpoint(privateKey), ...chain.end(privateKey));
    for (const line of lines) {
      const r = JSON.parse(line) as AuditRecord;
      expect(Value.Check(AuditRecordSchema, r), line).toBe(true);
      expect(Value.Check(EVENT_DATA_SCHEMAS[r.event], r.data), line).toBe(true);
    }
    expect(Value.Check(EVENT_DATA_SCHEMAS.statement_end, { rows: 'three' })).toBe(false);
  });

  it('docs/audit-record.schema.json matches the schema', async () => {
    const file = join(ROOT, 'docs/audit-record.schema.json');
    const expected = await format(JSON.stringify(auditRecordJsonSchema(), null, 2), {
      ...(await resolveConfig(file)),
      filepath: file,
    });
    if (process.env.UPDATE_AUDIT_DOCS === '1') writeFileSync(file, expected);
    expect(
      readFileSync(file, 'utf8'),
      'docs/audit-record.schema.json is stale; regenerate with: UPDATE_AUDIT_DOCS=1 sh scripts/node24.sh vitest run --project unit test/unit/audit-chain.test.ts',
    ).toBe(expected);
    const schema = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect((schema.allOf as unknown[]).length).toBe(AUDIT_EVENT_TYPES.length);
  });
});
