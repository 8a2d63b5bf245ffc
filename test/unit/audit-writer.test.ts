// The audit writer on real files: durable writes resolve only after their fdatasync and share it (group commit),
// buffered writes land within the flush interval, checkpoints and rotation keep one verifiable chain across files,
// retention, stdout, and fail-closed on a real full file system (a 256 KiB tmpfs) with recovery by itself.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realIo, type AuditIo } from '../../src/audit/durability.js';
import type { AuditEvent, AuditRecord } from '../../src/audit/record.js';
import { verifyAuditFiles } from '../../src/audit/verify.js';
import { AuditUnavailableError, AuditWriter, type AuditWriterOptions } from '../../src/audit/writer.js';

const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
const publicPem = publicKey.export({ type: 'spki', format: 'pem' });

let dir: string;
const writers: AuditWriter[] = [];
beforeEach(() => {
  dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgw-audit-writer-')), 'audit');
});
afterEach(async () => {
  await Promise.allSettled(writers.splice(0).map((w) => w.close()));
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

function options(over: Partial<AuditWriterOptions> = {}): AuditWriterOptions {
  return {
    dir,
    mode: 'durable',
    flushIntervalMs: 5,
    node: 'n1',
    worker: 0,
    signingKey: privateKey,
    checkpointEvery: 1000,
    checkpointIntervalMs: 10_000,
    rotateSize: 64 * 1024 * 1024,
    rotateIntervalMs: 24 * 3600 * 1000,
    retainFiles: 30,
    onFailure: 'refuse',
    retryIntervalMs: 100,
    ...over,
  };
}

async function open(over: Partial<AuditWriterOptions> = {}): Promise<AuditWriter> {
  const w = await AuditWriter.open(options(over));
  writers.push(w);
  return w;
}

const statement = (id: number): AuditEvent => ({
  event: 'statement',
  session: 's1',
  identity: 'alice',
  database: 'ehr',
  data: { protocol: 'simple', id, text: `SELECT * FROM patients WHERE id = ${id}` },
});

/** Every record in the audit directory, files in name order (= chain order for one stream). */
function records(d = dir): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const f of fs.readdirSync(d).sort()) {
    for (const l of fs.readFileSync(path.join(d, f), 'utf8').split('\n')) if (l) out.push(JSON.parse(l));
  }
  return out;
}
const statementIds = (rs: AuditRecord[]) =>
  rs.filter((r) => r.event === 'statement').map((r) => (r.data as { id: number }).id);

function verify(d = dir, opts: { allowOpen?: boolean; allowPruned?: boolean } = {}) {
  return verifyAuditFiles([d], publicPem, opts);
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('AuditWriter: durable mode', () => {
  it('resolves a write only after the fdatasync that covers it has returned', async () => {
    // fdatasync is held until released: the write must not resolve before, and the record is in the file after.
    let release: (() => void) | null = null;
    let holding = false;
    const io: AuditIo = {
      ...realIo,
      fdatasync: async (fd) => {
        if (holding) await new Promise<void>((r) => (release = r));
        return realIo.fdatasync(fd);
      },
    };
    const w = await open({ io });
    holding = true;
    let resolved = false;
    const p = w.write(statement(1))!;
    void p.then(() => (resolved = true));
    await until(() => release !== null, 2000, 'the fdatasync to start');
    await new Promise((r) => setTimeout(r, 50));
    expect(resolved).toBe(false);
    holding = false;
    release!();
    await p;
    expect(statementIds(records())).toEqual([1]);
  });

  it('100 concurrent writes share one promise and a handful of fdatasyncs (group commit)', async () => {
    const w = await open();
    const before = w.stats.syncs;
    const ps = Array.from({ length: 100 }, (_, i) => w.write(statement(i + 1)));
    expect(new Set(ps).size).toBe(1);
    await Promise.all(ps);
    expect(w.stats.syncs - before).toBe(1);
    expect(statementIds(records())).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('sessions writing in a loop share fdatasyncs: 64 writers, far fewer syncs than records', async () => {
    const w = await open();
    const before = w.stats.syncs;
    let id = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let k = 0; k < 10; k++) await w.write(statement(++id));
      }),
    );
    const syncs = w.stats.syncs - before;
    expect(syncs).toBeLessThanOrEqual(40); // 640 records; every batch carries the records of the previous sync
    expect(statementIds(records())).toHaveLength(640);
  });

  it('close() appends stream_end and a signed checkpoint, and the stream verifies', async () => {
    const w = await open();
    await w.write(statement(1));
    await w.close('test done');
    const rs = records();
    expect(rs.map((r) => r.event)).toEqual(['stream_start', 'statement', 'stream_end', 'checkpoint']);
    expect(rs[2].data).toEqual({ reason: 'test done' });
    expect(rs[0].data).toMatchObject({ pid: process.pid });
    expect(rs[3].data).toMatchObject({ upto_seq: 3, upto_hash: rs[2].hash });
    expect(verify()).toMatchObject({ ok: true, streams: 1, records: 4, checkpoints: 1 });
    await expect(w.write(statement(2))).rejects.toBeInstanceOf(AuditUnavailableError);
  });

  it('creates the directory 0700 and files 0600', async () => {
    await open();
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of fs.readdirSync(dir)) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
  });

  it('fails to open when the directory cannot be created', async () => {
    const file = path.join(path.dirname(dir), 'a-file');
    fs.writeFileSync(file, '');
    await expect(AuditWriter.open(options({ dir: path.join(file, 'audit') }))).rejects.toThrow(/ENOTDIR/);
  });
});

describe('AuditWriter: buffered mode', () => {
  it('returns nothing from write() and lands records within the flush interval', async () => {
    const w = await open({ mode: 'buffered', flushIntervalMs: 20 });
    const t0 = performance.now();
    for (let i = 1; i <= 50; i++) expect(w.write(statement(i))).toBeUndefined();
    await until(() => statementIds(records()).length === 50, 1000, 'the buffered records');
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeLessThan(500); // 20 ms interval + one write/fdatasync, with room for a busy machine
    expect(w.stats.syncs).toBeLessThanOrEqual(3);
  });

  it('close() writes everything still buffered, then stream_end and its checkpoint', async () => {
    const w = await open({ mode: 'buffered', flushIntervalMs: 60_000 });
    for (let i = 1; i <= 1000; i++) w.write(statement(i));
    expect(statementIds(records())).toEqual([]);
    await w.close();
    expect(statementIds(records())).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    // stream_start, 1000 statements, the checkpoint after the 1000th record, stream_end and its checkpoint.
    expect(verify()).toMatchObject({ ok: true, records: 1004, checkpoints: 2 });
  });

  it('flush() resolves when everything written so far is on disk', async () => {
    const w = await open({ mode: 'buffered', flushIntervalMs: 60_000 });
    for (let i = 1; i <= 10; i++) w.write(statement(i));
    await w.flush();
    expect(statementIds(records())).toHaveLength(10);
  });

  it('returns the batch promise once the backlog passes its bound (backpressure)', async () => {
    const w = await open({ mode: 'buffered', flushIntervalMs: 60_000, maxBacklogBytes: 2000 });
    let p: Promise<void> | void = undefined;
    let i = 0;
    while (p === undefined && i < 100) p = w.write(statement(++i));
    expect(p).toBeInstanceOf(Promise);
    expect(i).toBeGreaterThan(3);
    await p;
    expect(statementIds(records())).toHaveLength(i);
  });
});

describe('AuditWriter: checkpoints and rotation', () => {
  it('signs a checkpoint every checkpointEvery records', async () => {
    const w = await open({ checkpointEvery: 10 });
    for (let i = 1; i <= 25; i++) await w.write(statement(i));
    const rs = records();
    // stream_start + 9 statements, then a checkpoint; 10 statements, a checkpoint; then 6.
    expect(rs.filter((r) => r.event === 'checkpoint').map((r) => r.seq)).toEqual([11, 22]);
    await w.close();
    expect(verify()).toMatchObject({ ok: true, checkpoints: 3 });
  });

  it('signs a checkpoint checkpointIntervalMs after the first record it does not cover yet', async () => {
    const w = await open({ checkpointIntervalMs: 50 });
    await w.write(statement(1));
    await until(() => records().some((r) => r.event === 'checkpoint'), 2000, 'the interval checkpoint');
    expect(verify(dir, { allowOpen: true })).toMatchObject({ ok: true, unsignedTail: 0 });
    // Idle: no further checkpoint without new records.
    const n = records().length;
    await new Promise((r) => setTimeout(r, 150));
    expect(records()).toHaveLength(n);
  });

  it('rotates by size: each file ends with a checkpoint and the chain continues in the next', async () => {
    const w = await open({ rotateSize: 4096 });
    for (let i = 1; i <= 100; i++) await w.write(statement(i));
    await w.close();
    const files = fs.readdirSync(dir).sort();
    expect(files.length).toBeGreaterThan(3);
    let prevLast: AuditRecord | null = null;
    for (const f of files) {
      const rs = fs
        .readFileSync(path.join(dir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditRecord);
      expect(f).toBe(`${w.stream}-${String(rs[0].seq).padStart(16, '0')}.jsonl`);
      expect(rs.at(-1)!.event).toBe('checkpoint');
      if (prevLast) {
        expect(rs[0].prev).toBe(prevLast.hash);
        expect(rs[0].seq).toBe(prevLast.seq + 1);
      }
      // Rotation happens right after a file passes rotateSize: no file is much bigger.
      expect(fs.statSync(path.join(dir, f)).size).toBeLessThan(4096 + 1024);
      prevLast = rs.at(-1)!;
    }
    expect(w.stats.rotations).toBe(files.length - 1);
    expect(verify()).toMatchObject({ ok: true, streams: 1, files: files.length });
  });

  it('rotates by time, and an idle writer makes no empty files', async () => {
    const w = await open({ rotateIntervalMs: 80 });
    await w.write(statement(1));
    await until(() => w.stats.rotations >= 1, 2000, 'a time rotation');
    await w.write(statement(2));
    await new Promise((r) => setTimeout(r, 300)); // idle: the file with statement 2 rotates, nothing after it
    const files = fs.readdirSync(dir).sort();
    expect(files).toHaveLength(2);
    for (const f of files) expect(fs.statSync(path.join(dir, f)).size).toBeGreaterThan(0);
    await w.close();
    expect(verify()).toMatchObject({ ok: true, files: 3 });
  });

  it('keeps retainFiles files and deletes the oldest; what is left verifies as a pruned stream', async () => {
    const w = await open({ rotateSize: 4096, retainFiles: 3 });
    for (let i = 1; i <= 100; i++) await w.write(statement(i));
    await w.close();
    const files = fs.readdirSync(dir).sort();
    expect(files).toHaveLength(3);
    expect(w.stats.rotations).toBeGreaterThan(3);
    expect(verify()).toMatchObject({ ok: false });
    expect(verify(dir, { allowPruned: true })).toMatchObject({ ok: true, files: 3 });
    expect(statementIds(records()).at(-1)).toBe(100);
  });
});

describe('AuditWriter: stdout', () => {
  it('writes the same lines to stdout as to the file, one write per batch', async () => {
    const out = new PassThrough();
    let chunks = 0;
    let text = '';
    out.on('data', (c: Buffer) => {
      chunks++;
      text += c.toString();
    });
    const w = await open({ stdout: true, stdoutStream: out });
    await Promise.all(Array.from({ length: 20 }, (_, i) => w.write(statement(i + 1))));
    await w.close();
    const fileText = fs
      .readdirSync(dir)
      .sort()
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
      .join('');
    expect(text).toBe(fileText);
    expect(chunks).toBeLessThanOrEqual(4);
  });

  it('works as the only sink: durable writes wait for the stream to take the batch', async () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    const w = await AuditWriter.open(options({ dir: undefined, stdout: true, stdoutStream: out }));
    await w.write(statement(7));
    expect(lines.map((l) => (JSON.parse(l) as AuditRecord).event)).toEqual(['stream_start', 'statement']);
    await w.close();
    expect(lines).toHaveLength(4);
  });

  it('a stream that errors makes the writer unavailable', async () => {
    const out = new PassThrough();
    out.resume();
    const changes: Array<[boolean, string | undefined]> = [];
    const w = await open({
      stdout: true,
      stdoutStream: out,
      onAvailabilityChange: (a, r) => changes.push([a, r]),
    });
    out.emit('error', Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
    expect(w.available).toBe(false);
    expect(changes).toEqual([[false, 'EPIPE']]);
    await expect(w.write(statement(1))).rejects.toThrow('audit log unavailable: EPIPE');
  });

  it('with on_failure: continue, a failed stdout does not stop the file; what stdout missed is counted', async () => {
    const out = new PassThrough();
    out.resume();
    const w = await open({ stdout: true, stdoutStream: out, onFailure: 'continue' });
    out.emit('error', Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
    expect(w.available).toBe(false);
    await w.write(statement(1));
    await w.write(statement(2));
    await w.close().catch(() => {});
    expect(statementIds(records())).toEqual([1, 2]);
    expect(w.stats.stdoutDropped).toBe(4); // two statements, stream_end and its checkpoint
    expect(verify()).toMatchObject({ ok: true });
  });
});

describe('AuditWriter: I/O errors (injected)', () => {
  it('EIO: refuses, fires the callback, retries, and resumes by itself', async () => {
    let failing = false;
    const io: AuditIo = {
      ...realIo,
      write: async (fd, b, o, l) => {
        if (failing) throw Object.assign(new Error('injected'), { code: 'EIO' });
        return realIo.write(fd, b, o, l);
      },
    };
    const changes: Array<[boolean, string | undefined]> = [];
    const w = await open({ io, onAvailabilityChange: (a, r) => changes.push([a, r]) });
    await w.write(statement(1));
    failing = true;
    await expect(w.write(statement(2))).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(w.available).toBe(false);
    await expect(w.write(statement(3))).rejects.toThrow('audit log unavailable: EIO');
    expect(w.stats.rejected).toBe(1);
    failing = false;
    await until(() => w.available, 2000, 'recovery');
    expect(changes).toEqual([
      [false, 'EIO'],
      [true, undefined],
    ]);
    await w.write(statement(4));
    await w.close();
    // Statement 2 was chained before the failure: written after it (its session was refused); 3 never chained.
    expect(statementIds(records())).toEqual([1, 2, 4]);
    expect(verify()).toMatchObject({ ok: true });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A real full file system. Mounting needs root; everything else in this file runs without.

const tmpfsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgw-audit-tmpfs-'));
let tmpfsMounted = false;
let tmpfsWhy = 'not running as root';
if (process.getuid?.() === 0) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', tmpfsDir], { stdio: 'pipe' });
    tmpfsMounted = true;
  } catch (e) {
    tmpfsWhy = `mount -t tmpfs failed: ${(e as { stderr?: Buffer }).stderr?.toString().trim() ?? String(e)}`;
  }
}
if (!tmpfsMounted) {
  console.warn(`SKIPPING the full-disk audit tests: ${tmpfsWhy} (they need a 256 KiB tmpfs)`);
}
afterAll(() => {
  if (tmpfsMounted) execFileSync('umount', [tmpfsDir]);
  fs.rmSync(tmpfsDir, { recursive: true, force: true });
});

/** Fills the file system: the filler takes every free byte (the write ends with ENOSPC). */
function fill(file: string): void {
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(4096, 0x78);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

describe.skipIf(!tmpfsMounted)('AuditWriter on a full file system (256 KiB tmpfs)', () => {
  let auditDir: string;
  let filler: string;
  beforeEach(() => {
    for (const f of fs.readdirSync(tmpfsDir))
      fs.rmSync(path.join(tmpfsDir, f), { recursive: true, force: true });
    auditDir = path.join(tmpfsDir, 'audit');
    filler = path.join(tmpfsDir, 'filler');
  });

  it('ENOSPC: refuses statements while full, resumes within ~2 s of space coming back, loses nothing', async () => {
    const changes: Array<[boolean, string | undefined]> = [];
    const w = await open({
      dir: auditDir,
      retryIntervalMs: 200,
      onAvailabilityChange: (a, r) => changes.push([a, r]),
    });
    const acknowledged: number[] = [];
    let id = 0;
    const writeOne = async (): Promise<boolean> => {
      const n = ++id;
      try {
        await w.write(statement(n));
        acknowledged.push(n);
        return true;
      } catch (e) {
        expect(e).toBeInstanceOf(AuditUnavailableError);
        return false;
      }
    };
    for (let k = 0; k < 20; k++) expect(await writeOne()).toBe(true);
    fill(filler);
    // Sessions keep writing (8 at a time) until the disk refuses.
    let refused = false;
    for (let round = 0; round < 200 && !refused; round++) {
      const results = await Promise.all(Array.from({ length: 8 }, writeOne));
      refused = results.includes(false);
    }
    expect(refused).toBe(true);
    expect(w.available).toBe(false);
    expect(changes).toEqual([[false, 'ENOSPC']]);
    const rejectedBefore = w.stats.rejected;
    expect(await writeOne()).toBe(false);
    expect(w.stats.rejected).toBe(rejectedBefore + 1);
    // Still full a few retries later.
    await new Promise((r) => setTimeout(r, 500));
    expect(w.available).toBe(false);

    fs.unlinkSync(filler);
    const freedAt = Date.now();
    await until(() => w.available, 2000, 'the writer to resume');
    expect(Date.now() - freedAt).toBeLessThan(2000);
    expect(changes).toEqual([
      [false, 'ENOSPC'],
      [true, undefined],
    ]);
    for (let k = 0; k < 10; k++) expect(await writeOne()).toBe(true);
    await w.close();

    const rs = records(auditDir);
    const onDisk = new Set(statementIds(rs));
    for (const n of acknowledged) expect(onDisk.has(n)).toBe(true);
    // Every record the chain accepted is on disk (verify: no gap), and only refused ones are missing.
    expect(rs).toHaveLength(w.stats.records);
    expect(verify(auditDir)).toMatchObject({ ok: true, records: w.stats.records });
  });

  it('on_failure: continue keeps serving while full, buffers up to the bound, counts what it drops', async () => {
    const changes: boolean[] = [];
    const w = await open({
      dir: auditDir,
      retryIntervalMs: 200,
      onFailure: 'continue',
      maxBacklogBytes: 64 * 1024,
      onAvailabilityChange: (a) => changes.push(a),
    });
    await w.write(statement(1));
    fill(filler);
    let id = 1;
    // Writes never reject in this mode; some batch fails and the writer says so.
    for (let round = 0; round < 200 && w.available; round++) {
      await Promise.all(Array.from({ length: 8 }, () => w.write(statement(++id))));
    }
    expect(w.available).toBe(false);
    // Past the 64 KiB bound, new records are dropped (never chained), and counted.
    for (let k = 0; k < 1000; k++) await w.write(statement(++id));
    expect(w.stats.dropped).toBeGreaterThan(0);
    expect(w.stats.rejected).toBe(0);
    expect(w.stats.backlogBytes).toBeLessThan(64 * 1024 + 1024);

    fs.unlinkSync(filler);
    await until(() => w.available, 2000, 'the writer to resume');
    expect(changes).toEqual([false, true]);
    await w.write(statement(++id));
    await w.close();
    const rs = records(auditDir);
    expect(rs).toHaveLength(w.stats.records);
    expect(statementIds(rs)).toHaveLength(id - w.stats.dropped);
    expect(verify(auditDir)).toMatchObject({ ok: true });
  });
});
