// The audit file sink on real files in temp dirs: group commit, rotation, retention, permissions, and recovery
// from faults injected through the I/O seam (a short write then EIO, a failing fdatasync) without losing,
// tearing or repeating a line.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditUnavailableError,
  realIo,
  type AuditIo,
  type SinkListener,
} from '../../src/audit/durability.js';
import { auditFileName, FileSink } from '../../src/audit/sinks/file-sink.js';

const STREAM = 'n1-w0-1700000000000';
const PREFIX = 'n1-w0-';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgw-file-sink-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Events {
  failures: string[];
  recoveries: number;
}

function makeSink(opts: { io?: AuditIo; retainFiles?: number; retryIntervalMs?: number } = {}) {
  const events: Events = { failures: [], recoveries: 0 };
  const listener: SinkListener = {
    onFailure: (_s, reason) => events.failures.push(reason),
    onRecovery: () => events.recoveries++,
  };
  const sink = new FileSink({
    dir,
    stream: STREAM,
    retentionPrefix: PREFIX,
    retainFiles: opts.retainFiles ?? 30,
    retryIntervalMs: opts.retryIntervalMs ?? 50,
    listener,
    io: opts.io,
  });
  return { sink, events };
}

const line = (i: number) => JSON.stringify({ i, pad: 'x'.repeat(40) });
const bytes = (s: string) => Buffer.byteLength(s) + 1;
const push = (sink: FileSink, from: number, to: number) => {
  for (let i = from; i < to; i++) sink.push(line(i), bytes(line(i)));
};
const readLines = (file: string) =>
  fs
    .readFileSync(path.join(dir, file), 'utf8')
    .split('\n')
    .filter((l) => l !== '');
const expected = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => line(from + k));

/** Real I/O with faults injected on demand. */
function faultyIo() {
  const plan = {
    /** The next write(2) writes only this many bytes (a disk filling up mid-write). */
    shortWrite: null as number | null,
    /** write(2) fails with this code while set. */
    writeError: null as string | null,
    /** fdatasync fails with this code this many times. */
    syncErrors: 0,
    syncCode: 'EIO',
    ops: [] as string[],
  };
  const err = (code: string) => Object.assign(new Error(`injected ${code}`), { code });
  const io: AuditIo = {
    ...realIo,
    write: async (fd, buffer, offset, length) => {
      plan.ops.push('write');
      if (plan.shortWrite !== null) {
        const n = plan.shortWrite;
        plan.shortWrite = null;
        return realIo.write(fd, buffer, offset, Math.min(n, length));
      }
      if (plan.writeError !== null) throw err(plan.writeError);
      return realIo.write(fd, buffer, offset, length);
    },
    fdatasync: async (fd) => {
      plan.ops.push('fdatasync');
      if (plan.syncErrors > 0) {
        plan.syncErrors--;
        // What a failed fdatasync may leave behind: the data written, but reported lost.
        throw err(plan.syncCode);
      }
      return realIo.fdatasync(fd);
    },
    ftruncate: async (fd, length) => {
      plan.ops.push(`ftruncate:${length}`);
      return realIo.ftruncate(fd, length);
    },
  };
  return { io, plan };
}

describe('FileSink', () => {
  it('writes a batch of concurrent syncs with one write and one fdatasync, shared by one promise', async () => {
    const { sink } = makeSink();
    push(sink, 0, 100);
    const promises = Array.from({ length: 100 }, () => sink.sync());
    expect(new Set(promises).size).toBe(1);
    await Promise.all(promises);
    expect(sink.counters.syncs).toBe(1);
    expect(sink.backlogBytes).toBe(0);
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 100));
    await sink.close();
  });

  it('groups the records queued during an fdatasync into the next batch', async () => {
    const { sink } = makeSink();
    push(sink, 0, 1);
    const first = sink.sync();
    // The first batch is now waiting for its turn; these join the batch after it.
    await new Promise((r) => setImmediate(r));
    const later: Array<Promise<void>> = [];
    for (let i = 1; i < 64; i++) {
      push(sink, i, i + 1);
      later.push(sink.sync());
    }
    await Promise.all([first, ...later]);
    expect(sink.counters.syncs).toBe(2);
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 64));
    await sink.close();
  });

  it('creates files 0600 named by the seq of their first record, and rotates only when a line follows', async () => {
    const { sink } = makeSink();
    push(sink, 0, 3);
    sink.rotate(4);
    push(sink, 3, 5);
    sink.rotate(6);
    await sink.sync();
    await sink.close();
    expect(fs.readdirSync(dir).sort()).toEqual([auditFileName(STREAM, 1), auditFileName(STREAM, 4)]);
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 3));
    expect(readLines(auditFileName(STREAM, 4))).toEqual(expected(3, 5));
    for (const f of fs.readdirSync(dir)) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    expect(auditFileName(STREAM, 4)).toBe(`${STREAM}-0000000000000004.jsonl`);
  });

  it('keeps retainFiles files of this node and worker across runs, deleting the oldest, and leaves others alone', async () => {
    const older = ['n1-w0-1600000000000', 'n1-w0-1650000000000'];
    for (const run of older)
      for (const seq of [1, 100]) fs.writeFileSync(path.join(dir, auditFileName(run, seq)), 'x\n');
    const foreign = [
      auditFileName('n1-w1-1600000000000', 1),
      auditFileName('n1-w0x-1600000000000', 1),
      'notes.txt',
    ];
    for (const f of foreign) fs.writeFileSync(path.join(dir, f), 'x\n');
    const { sink } = makeSink({ retainFiles: 3 });
    push(sink, 0, 2);
    sink.rotate(3);
    push(sink, 2, 4);
    await sink.sync();
    await sink.close();
    expect(fs.readdirSync(dir).sort()).toEqual(
      [...foreign, auditFileName(older[1], 100), auditFileName(STREAM, 1), auditFileName(STREAM, 3)].sort(),
    );
  });

  it('refuses while a write fails after a short write, then rewrites the batch whole once writing works', async () => {
    const { io, plan } = faultyIo();
    const { sink, events } = makeSink({ io });
    push(sink, 0, 10);
    await sink.sync();
    push(sink, 10, 20);
    plan.shortWrite = 30; // part of line 10 reaches the file...
    plan.writeError = 'EIO'; // ...then the disk fails
    await expect(sink.sync()).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(events.failures).toEqual(['EIO']);
    expect(sink.failure).toBe('EIO');
    await expect(sink.sync()).rejects.toThrow('audit log unavailable: EIO');
    // Retries keep failing while the fault lasts, and leave the torn bytes where they are until one succeeds.
    await new Promise((r) => setTimeout(r, 200));
    expect(sink.counters.errors).toBeGreaterThan(1);
    push(sink, 20, 25); // accepted while failing (on_failure: continue)
    plan.writeError = null;
    const deadline = Date.now() + 2000;
    while (sink.failure !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(sink.failure).toBeNull();
    expect(events.recoveries).toBe(1);
    const synced = Buffer.byteLength(expected(0, 10).join('\n') + '\n');
    expect(plan.ops).toContain(`ftruncate:${synced}`);
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 25));
    await sink.close();
  });

  it('does not trust data a failed fdatasync reported: it is cut off and written again', async () => {
    const { io, plan } = faultyIo();
    const { sink, events } = makeSink({ io });
    push(sink, 0, 5);
    await sink.sync();
    push(sink, 5, 8);
    plan.syncErrors = 1;
    await expect(sink.sync()).rejects.toBeInstanceOf(AuditUnavailableError);
    // The failed batch's bytes are in the file now; the retry must not leave them twice.
    const deadline = Date.now() + 2000;
    while (sink.failure !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual({ failures: ['EIO'], recoveries: 1 });
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 8));
    await sink.close();
  });

  it('close() makes one last attempt and reports the records it could not write', async () => {
    const { io, plan } = faultyIo();
    const { sink } = makeSink({ io, retryIntervalMs: 60_000 });
    push(sink, 0, 2);
    await sink.sync();
    push(sink, 2, 6);
    plan.writeError = 'ENOSPC';
    await expect(sink.sync()).rejects.toThrow('ENOSPC');
    await expect(sink.close()).rejects.toThrow('ENOSPC: 4 records were not written');
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 2));
  });

  it('close() writes what a failed sink still holds when the disk came back before the next retry', async () => {
    const { io, plan } = faultyIo();
    const { sink } = makeSink({ io, retryIntervalMs: 60_000 });
    push(sink, 0, 3);
    plan.writeError = 'ENOSPC';
    await expect(sink.sync()).rejects.toThrow('ENOSPC');
    plan.writeError = null;
    await sink.close();
    expect(readLines(auditFileName(STREAM, 1))).toEqual(expected(0, 3));
  });

  it('fails (and retries) when the file cannot be created, e.g. an existing file of the same name', async () => {
    fs.writeFileSync(path.join(dir, auditFileName(STREAM, 1)), 'someone else\n');
    const { sink, events } = makeSink({ retryIntervalMs: 60_000 });
    push(sink, 0, 1);
    await expect(sink.sync()).rejects.toThrow('EEXIST');
    expect(events.failures).toEqual(['EEXIST']);
    await expect(sink.close()).rejects.toThrow('1 records were not written');
    expect(fs.readFileSync(path.join(dir, auditFileName(STREAM, 1)), 'utf8')).toBe('someone else\n');
  });
});
