// audit verify: an intact trail verifies; every kind of tampering (edit, delete, insert, reorder, truncate, wrong
// key) is caught at the right record; rotation files in any order; several streams; the CLI's output and codes.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditChain } from '../../src/audit/chain.js';
import { checkpointEvent, loadSigningKey } from '../../src/audit/checkpoint.js';
import { recordBody, sealRecord, type AuditEvent, type AuditRecord } from '../../src/audit/record.js';
import { AuditVerifyUsageError, verifyAuditFiles, type VerifyResult } from '../../src/audit/verify.js';
import { runAudit } from '../../src/cli/audit.js';

const ROOT = join(import.meta.dirname, '../..');
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const PUB = publicKey.export({ type: 'spki', format: 'pem' });
const other = generateKeyPairSync('ed25519');

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgwarden-audit-verify-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A fresh directory per case, so that a directory argument sees only that case's files. */
const caseDir = () => {
  const d = join(dir, `case-${++n}`);
  mkdirSync(d);
  return d;
};

interface StreamSpec {
  records?: number;
  checkpointEvery?: number;
  stream?: string;
  worker?: number;
  key?: KeyObject;
  end?: boolean;
}

/** The events of a scripted session mix; every 25th statement is 20 KB, so that lines cross the 1 MiB read chunks. */
function events(count: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let i = 0; i < count; i++) {
    const session = `s${i % 7}`;
    switch (i % 5) {
      case 0:
        out.push({
          event: 'connection_open',
          session,
          data: { client_addr: '10.0.0.1', client_port: 40000 + i },
        });
        break;
      case 1:
        out.push({
          event: 'login_success',
          session,
          identity: 'alice',
          database: 'ehr',
          data: { tls_version: 'TLSv1.3' },
        });
        break;
      case 2: {
        const text =
          i % 25 === 2 ? `select '${'x'.repeat(20_000)}'` : `select * from patients where id = ${i}`;
        out.push({
          event: 'statement',
          session,
          identity: 'alice',
          database: 'ehr',
          data: { protocol: 'simple', id: i, text },
        });
        break;
      }
      case 3:
        out.push({
          event: 'statement_end',
          session,
          identity: 'alice',
          database: 'ehr',
          data: { tags: ['SELECT 1'], rows: 1, sqlstate: null, duration_ms: 0.25 },
        });
        break;
      default:
        out.push({
          event: 'connection_close',
          session,
          identity: 'alice',
          database: 'ehr',
          data: { reason: 'client terminate ü' },
        });
    }
  }
  return out;
}

/** Lines of one stream: stream_start, `records` events with a checkpoint after every `checkpointEvery`, the end. */
function buildStream(spec: StreamSpec = {}): string[] {
  const {
    records = 200,
    checkpointEvery = 50,
    stream = 'node1-w0-1700000000000',
    worker = 0,
    end = true,
  } = spec;
  const key = spec.key ?? privateKey;
  const chain = new AuditChain({ node: 'node1', worker, stream });
  let ts = 1_700_000_000_000_000;
  const lines = [chain.append({ event: 'stream_start', ts: ts++, data: { pid: 4242, version: '0.1.0' } })];
  events(records).forEach((e, i) => {
    lines.push(chain.append({ ...e, ts: ts++ }));
    if ((i + 1) % checkpointEvery === 0) lines.push(chain.appendCheckpoint(key, ts++));
  });
  if (end) lines.push(...chain.end(key, { reason: 'shutdown' }));
  return lines;
}

const text = (lines: string[]) => lines.map((l) => l + '\n').join('');
function write(lines: string[], d = caseDir(), name = 'audit.jsonl'): string {
  const file = join(d, name);
  writeFileSync(file, text(lines));
  return file;
}
const verify = (paths: string[], options = {}) => verifyAuditFiles(paths, PUB, options);

/** Re-seals a changed record as a forger who knows the format (but not the key) would. */
function reseal(r: Omit<AuditRecord, 'hash'>): { line: string; hash: string } {
  return sealRecord(recordBody(r));
}
const parse = (line: string) => JSON.parse(line) as AuditRecord;
const indexOfSeq = (lines: string[], seq: number) => lines.findIndex((l) => parse(l).seq === seq);

function expectBad(r: VerifyResult, file: string, line: number, reason: RegExp): void {
  expect(r.ok).toBe(false);
  expect(r.firstBad).toMatchObject({ file, line });
  expect(r.firstBad!.reason).toMatch(reason);
}

describe('an intact trail', () => {
  it('verifies a 200-record stream with checkpoints every 50 and counts what it saw', () => {
    const lines = buildStream();
    // stream_start + 200 + 4 checkpoints + stream_end + final checkpoint
    expect(lines).toHaveLength(207);
    const r = verify([write(lines)]);
    expect(r).toEqual({
      ok: true,
      streams: 1,
      files: 1,
      records: 207,
      checkpoints: 5,
      unsignedTail: 0,
      openStreams: 0,
    });
  });

  it('verifies with a key generated by openssl and read back from its PEM files', () => {
    const d = caseDir();
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(d, 'audit.key')]);
    execFileSync('openssl', ['pkey', '-in', join(d, 'audit.key'), '-pubout', '-out', join(d, 'audit.pub')]);
    const file = write(buildStream({ records: 60, key: loadSigningKey(join(d, 'audit.key')) }), d);
    expect(verifyAuditFiles([file], readFileSync(join(d, 'audit.pub'))).ok).toBe(true);
    expect(verify([file]).firstBad?.reason).toMatch(/another key/);
  });
});

describe('tampering is detected at the first bad record', () => {
  const lines = buildStream();

  it('an edited byte in the data of a record', () => {
    const d = caseDir();
    const i = 100;
    const changed = [...lines];
    changed[i] = changed[i].replace('"alice"', '"alicf"');
    expect(changed[i]).not.toBe(lines[i]);
    expectBad(verify([write(changed, d)]), join(d, 'audit.jsonl'), i + 1, /hash mismatch/);
  });

  it('a deleted line', () => {
    const d = caseDir();
    const changed = lines.filter((_, i) => i !== 120);
    expectBad(
      verify([write(changed, d)]),
      join(d, 'audit.jsonl'),
      121,
      /seq 122 where 121 was expected: record 121 is missing/,
    );
  });

  it('two lines swapped', () => {
    const d = caseDir();
    const changed = [...lines];
    [changed[60], changed[61]] = [changed[61], changed[60]];
    expectBad(verify([write(changed, d)]), join(d, 'audit.jsonl'), 61, /seq 62 where 61 was expected/);
  });

  it('the final checkpoint dropped', () => {
    const d = caseDir();
    expectBad(
      verify([write(lines.slice(0, -1), d)]),
      join(d, 'audit.jsonl'),
      lines.length,
      /with stream_end but without its checkpoint: truncated/,
    );
  });

  it('the last lines dropped', () => {
    const d = caseDir();
    expectBad(
      verify([write(lines.slice(0, -5), d)]),
      join(d, 'audit.jsonl'),
      lines.length - 4,
      /without stream_end/,
    );
  });

  it('the file cut in the middle of a line', () => {
    const d = caseDir();
    const file = join(d, 'audit.jsonl');
    const full = text(lines);
    writeFileSync(file, full.slice(0, full.length - 40));
    expectBad(verify([file]), file, lines.length, /incomplete/);
  });

  it('a forged line inserted with a correctly computed hash', () => {
    const d = caseDir();
    const at = 90; // the forged record takes seq 91 and links to record 90
    const before = parse(lines[at - 1]);
    const forged = reseal({
      ...parse(lines[at]),
      data: { protocol: 'simple', id: 1, text: 'select 1' },
      seq: before.seq + 1,
      prev: before.hash,
    });
    const changed = [...lines.slice(0, at), forged.line, ...lines.slice(at)];
    expectBad(
      verify([write(changed, d)]),
      join(d, 'audit.jsonl'),
      at + 2,
      /seq 91 where 92 was expected: a record was inserted/,
    );
  });

  it('a forged line inserted and every later record renumbered and re-hashed: the next checkpoint refuses', () => {
    const d = caseDir();
    const at = 90;
    const changed = lines.slice(0, at);
    let prev = parse(changed[at - 1]);
    const forge = (r: AuditRecord) => {
      // A careful forger also points each checkpoint at its new predecessor; only the signature is out of reach.
      const data =
        r.event === 'checkpoint' ? { ...r.data, upto_seq: prev.seq, upto_hash: prev.hash } : r.data;
      const { line, hash } = reseal({ ...r, data, seq: prev.seq + 1, prev: prev.hash });
      changed.push(line);
      prev = { ...r, seq: prev.seq + 1, hash };
    };
    forge({ ...parse(lines[at]), data: { protocol: 'simple', id: 1, text: 'select 1' } });
    for (const l of lines.slice(at)) forge(parse(l));
    const checkpointLine = changed.findIndex((l, i) => i > at && parse(l).event === 'checkpoint') + 1;
    expectBad(
      verify([write(changed, d)]),
      join(d, 'audit.jsonl'),
      checkpointLine,
      /checkpoint signature does not verify: records after the checkpoint at seq 52 \(.*:52\) were forged/,
    );
  });

  it('all checkpoints re-signed with another key', () => {
    const d = caseDir();
    const forged = buildStream({ key: other.privateKey });
    expectBad(
      verify([write(forged, d)]),
      join(d, 'audit.jsonl'),
      52,
      /checkpoint signed by another key \(key_id [0-9a-f]{64}/,
    );
  });

  it('a checkpoint re-signed with another key that claims the right key_id', () => {
    const d = caseDir();
    const i = indexOfSeq(lines, 52);
    const r = parse(lines[i]);
    const fake = checkpointEvent(r.stream, r.seq - 1, r.prev, other.privateKey);
    const data = { ...fake.data, key_id: r.data.key_id };
    const changed = [...lines];
    changed[i] = reseal({ ...r, data }).line;
    // The re-sealed checkpoint changes its hash, so chain the rest on as a forger would have to.
    let prevHash = reseal({ ...r, data }).hash;
    for (let j = i + 1; j < changed.length; j++) {
      const s = reseal({ ...parse(changed[j]), prev: prevHash });
      changed[j] = s.line;
      prevHash = s.hash;
    }
    expectBad(
      verify([write(changed, d)]),
      join(d, 'audit.jsonl'),
      52,
      /checkpoint signature does not verify: records since the start/,
    );
  });

  it('a stream whose first records were deleted', () => {
    const d = caseDir();
    expectBad(
      verify([write(lines.slice(3), d)]),
      join(d, 'audit.jsonl'),
      1,
      /begins at seq 4: records 1 to 3 are missing/,
    );
  });

  it('a record that is valid JSON but rewritten with extra whitespace and a recomputed hash', () => {
    const d = caseDir();
    const changed = [...lines];
    const r = parse(changed[10]);
    const body = recordBody(r).replace('"event":', '"event": ');
    changed[10] = sealRecord(body).line;
    expectBad(verify([write(changed, d)]), join(d, 'audit.jsonl'), 11, /canonical form/);
  });

  it('records after the end of the stream', () => {
    const d = caseDir();
    const changed = [...lines];
    const last = parse(changed[changed.length - 1]);
    changed.push(reseal({ ...parse(changed[5]), seq: last.seq + 1, prev: last.hash }).line);
    expectBad(
      verify([write(changed, d)]),
      join(d, 'audit.jsonl'),
      changed.length,
      /after the final checkpoint/,
    );
  });
});

describe('live streams (--allow-open)', () => {
  const lines = buildStream({ end: false, records: 120 });

  it('fails an open stream by default and accepts it with allowOpen, counting the unsigned tail', () => {
    const file = write(lines);
    expect(verify([file]).firstBad?.reason).toMatch(/without stream_end: truncated, or still being written/);
    const r = verify([file], { allowOpen: true });
    expect(r).toMatchObject({ ok: true, records: 123, checkpoints: 2, openStreams: 1, unsignedTail: 20 });
  });

  it('counts a half-written last line as unsigned but still fails a cut inside a record before it', () => {
    const d = caseDir();
    const file = join(d, 'audit.jsonl');
    writeFileSync(file, text(lines) + lines[5].slice(0, 30));
    expect(verify([file], { allowOpen: true })).toMatchObject({ ok: true, unsignedTail: 21 });
    const cut = [...lines];
    cut[50] = cut[50].slice(0, 100);
    expectBad(
      verify([write(cut, d, 'b.jsonl')], { allowOpen: true }),
      join(d, 'b.jsonl'),
      51,
      /not an audit record/,
    );
  });
});

describe('rotation and several streams', () => {
  const lines = buildStream({ records: 300 });
  const parts = [lines.slice(0, 100), lines.slice(100, 210), lines.slice(210)];

  function rotated(d = caseDir()): string[] {
    return parts.map((p, i) => write(p, d, `node1-w0-1700000000000.${i + 1}.jsonl`));
  }

  it('verifies a stream rotated across 3 files, given in order, shuffled, or as their directory', () => {
    const files = rotated();
    const expected = { ok: true, streams: 1, files: 3, records: lines.length, checkpoints: 7 };
    expect(verify(files)).toMatchObject(expected);
    expect(verify([files[2], files[0], files[1]])).toMatchObject(expected);
    expect(verify([files[1], join(files[0], '..'), files[2]])).toMatchObject(expected);
  });

  it('fails when a rotation file is missing, and names where the gap shows', () => {
    const files = rotated();
    expectBad(
      verify([files[0], files[2]]),
      files[2],
      1,
      /seq 211 where 101 was expected: records 101 to 210 are missing/,
    );
  });

  it('accepts a stream whose oldest file was removed by retention only with allowPruned', () => {
    const files = rotated();
    expectBad(verify(files.slice(1)), files[1], 1, /begins at seq 101.*--allow-pruned/);
    expect(verify(files.slice(1), { allowPruned: true })).toMatchObject({
      ok: true,
      records: lines.length - 100,
    });
  });

  it('fails a record of another stream inside a rotation file', () => {
    const d = caseDir();
    const otherStream = buildStream({ stream: 'node1-w1-1700000000000', worker: 1, records: 10 });
    const file = write([...parts[0].slice(0, 50), otherStream[3], ...parts[0].slice(50)], d);
    expectBad(
      verify([file]),
      file,
      51,
      /record of stream node1-w1-1700000000000 in a file of stream node1-w0/,
    );
  });

  it('verifies two streams (two workers) in one directory independently', () => {
    const d = caseDir();
    write(buildStream({ records: 80 }), d, 'node1-w0.jsonl');
    const w1 = buildStream({ stream: 'node1-w1-1700000000000', worker: 1, records: 70 });
    write(w1, d, 'node1-w1.jsonl');
    expect(verify([d])).toMatchObject({
      ok: true,
      streams: 2,
      files: 2,
      records: 80 + 4 + 70 + 4,
      checkpoints: 2 + 2,
    });
    const changed = [...w1];
    changed[30] = changed[30].replace('"alice"', '"alicf"');
    expect(changed[30]).not.toBe(w1[30]);
    write(changed, d, 'node1-w1.jsonl');
    expectBad(verify([d]), join(d, 'node1-w1.jsonl'), 31, /hash mismatch/);
  });

  it('fails an empty file unless allowOpen', () => {
    const d = caseDir();
    write(buildStream({ records: 10 }), d, 'a.jsonl');
    writeFileSync(join(d, 'b.jsonl'), '');
    expectBad(verify([d]), join(d, 'b.jsonl'), 1, /empty file/);
    expect(verify([d], { allowOpen: true })).toMatchObject({ ok: true, files: 2, streams: 1 });
  });

  it('stops at a line longer than 16 MiB instead of buffering it', () => {
    const d = caseDir();
    const file = join(d, 'huge.jsonl');
    writeFileSync(file, Buffer.alloc(16 * 1024 * 1024 + 10, 0x61));
    expectBad(verify([file]), file, 1, /longer than 16 MiB/);
  });

  it('reports bad arguments as usage errors', () => {
    const d = caseDir();
    expect(() => verify([d])).toThrow(AuditVerifyUsageError);
    expect(() => verify([join(d, 'nope.jsonl')])).toThrow(/ENOENT/);
    const file = write(buildStream({ records: 5 }), d);
    expect(() => verifyAuditFiles([file], 'not a key')).toThrow(/not a PEM public key/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    expect(() => verifyAuditFiles([file], rsa)).toThrow(
      /holds an rsa key; audit checkpoints need an Ed25519 key/,
    );
  });
});

describe('any single changed byte fails verification (property)', () => {
  const simpleEvents = [
    'connection_open',
    'login_failure',
    'statement',
    'statement_end',
    'refusal',
    'masking',
  ] as const;
  const event = fc.record({
    event: fc.constantFrom(...simpleEvents),
    session: fc.option(fc.string({ unit: 'binary', maxLength: 12 }), { nil: null }),
    identity: fc.option(fc.string({ unit: 'grapheme', maxLength: 8 }), { nil: null }),
    database: fc.option(fc.constantFrom('ehr', 'billing'), { nil: null }),
    data: fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), {
      maxKeys: 4,
    }),
    ts: fc.integer({ min: 0, max: 2 ** 52 }),
    checkpoint: fc.boolean(),
  });

  it('round-trips random records, and fails after any one byte is changed', () => {
    const d = caseDir();
    const file = join(d, 'p.jsonl');
    fc.assert(
      fc.property(
        fc.array(event, { minLength: 1, maxLength: 12 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (evs, where, delta) => {
          const chain = new AuditChain({ node: 'n', worker: 3, stream: 'n-w3-1' });
          const lines = [chain.append({ event: 'stream_start', data: {} })];
          for (const { checkpoint, ...e } of evs) {
            lines.push(chain.append(e));
            if (checkpoint) lines.push(chain.appendCheckpoint(privateKey));
          }
          lines.push(...chain.end(privateKey));
          const bytes = Buffer.from(text(lines));
          writeFileSync(file, bytes);
          expect(verify([file]).ok).toBe(true);
          const i = where % bytes.length;
          bytes[i] = (bytes[i] + delta) % 256;
          writeFileSync(file, bytes);
          const r = verify([file]);
          expect(r.ok).toBe(false);
          expect(r.firstBad!.line).toBeGreaterThan(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('pgwarden audit verify (runAudit)', () => {
  let out: string[];
  let err: string[];
  let keyFile: string;
  beforeAll(() => {
    keyFile = join(dir, 'audit.pub');
    writeFileSync(keyFile, PUB);
  });
  const capture = () => {
    out = [];
    err = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  };
  afterEach(() => vi.restoreAllMocks());

  it('exits 0 with a summary for an intact trail', async () => {
    const d = caseDir();
    write(buildStream({ records: 100 }), d, 'a.jsonl');
    write(buildStream({ records: 50, stream: 'node1-w1-1', worker: 1 }), d, 'b.jsonl');
    capture();
    expect(await runAudit(['verify', '--key', keyFile, d])).toBe(0);
    expect(out.join('')).toBe('ok: 2 streams, 2 files, 159 records, 5 checkpoints\n');
  });

  it('exits 1 and names the first bad record', async () => {
    const lines = buildStream({ records: 20 });
    const file = write(lines.filter((_, i) => i !== 7));
    capture();
    expect(await runAudit(['verify', '--key', keyFile, file])).toBe(1);
    expect(out.join('')).toBe(`FAILED: ${file}:8: seq 9 where 8 was expected: record 8 is missing\n`);
  });

  it('reports an open stream as failed, and as ok with --allow-open', async () => {
    const file = write(buildStream({ records: 60, end: false }));
    capture();
    expect(await runAudit(['verify', '-k', keyFile, file])).toBe(1);
    expect(await runAudit(['verify', '--key', keyFile, '--allow-open', file])).toBe(0);
    expect(out[1]).toBe(
      'ok: 1 stream, 1 file, 62 records, 1 checkpoint; 1 stream still open; 10 records after the last checkpoint not yet signed\n',
    );
  });

  it('exits 2 on usage errors', async () => {
    const file = write(buildStream({ records: 5 }));
    capture();
    expect(await runAudit([])).toBe(2);
    expect(await runAudit(['check'])).toBe(2);
    expect(await runAudit(['verify', file])).toBe(2);
    expect(await runAudit(['verify', '--key', keyFile])).toBe(2);
    expect(await runAudit(['verify', '--key', join(dir, 'missing.pub'), file])).toBe(2);
    expect(await runAudit(['verify', '--key', file, file])).toBe(2);
    expect(await runAudit(['verify', '--key', keyFile, '--bogus', file])).toBe(2);
    expect(await runAudit(['verify', '--key', keyFile, join(dir, 'nowhere')])).toBe(2);
    expect(out).toEqual([]);
    expect(err.join('')).toMatch(
      /missing --key[\s\S]*cannot read --key .*missing\.pub: ENOENT[\s\S]*not a PEM public key/,
    );
    expect(err.join('')).toContain('usage: pgwarden audit verify --key PUBLIC.pem');
  });
});

describe('docs/audit.md', () => {
  it('carries a sample trail that verifies with the public key printed next to it', () => {
    const doc = readFileSync(join(ROOT, 'docs/audit.md'), 'utf8');
    const block = (name: string) => {
      const m = new RegExp(`<!-- ${name} -->\\n+\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(doc);
      expect(m, `docs/audit.md has no <!-- ${name} --> block`).not.toBeNull();
      return m![1];
    };
    const d = caseDir();
    writeFileSync(join(d, 'sample.jsonl'), block('sample trail'));
    const r = verifyAuditFiles([join(d, 'sample.jsonl')], block('sample public key'));
    expect(r).toMatchObject({ ok: true, streams: 1 });
    expect(r.records).toBeGreaterThanOrEqual(8);
  });
});
