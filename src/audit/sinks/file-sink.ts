// Rotating JSON Lines files with group commit: lines queued by the writer go out as one write(2) and one fdatasync
// per batch on libuv's thread pool; a batch that fails stays in memory and is retried (file truncated back to what
// is known synced, then rewritten) until it lands, so no accepted record is lost or torn by a disk that fills up.

import fs from 'node:fs';
import { join } from 'node:path';
import { describeError, log } from '../../core/log.js';
import {
  AuditUnavailableError,
  errorReason,
  realIo,
  type AuditIo,
  type SinkListener,
} from '../durability.js';
import { GroupCommitSink } from './group-commit.js';

export interface FileSinkOptions {
  dir: string;
  /** The stream id: files are `<stream>-<seq of their first record, 16 digits>.jsonl`. */
  stream: string;
  /**
   * Files whose names are this prefix + `<digits>-<16 digits>.jsonl` are earlier runs of the same node and worker:
   * retention counts them together with this stream's files.
   */
  retentionPrefix: string;
  /** Files kept (this one included); the oldest beyond it are deleted after each new file is created. */
  retainFiles: number;
  /** How often a failing sink tries again. */
  retryIntervalMs: number;
  listener: SinkListener;
  io?: AuditIo;
}

/** The lines queued before it end a file; the next file begins with record `firstSeq`. */
class Rotation {
  constructor(readonly firstSeq: number) {}
}
type Entry = string | Rotation;

// O_APPEND: every write lands at the end whatever the offset; O_EXCL: never adopt a file someone else created.
const FILE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_EXCL;
const FILE_MODE = 0o600;
/** One write(2) carries at most about this many characters; a batch of more is several writes, one fdatasync. */
const WRITE_CHUNK_CHARS = 1 << 20;
const SEQ_DIGITS = 16; // Number.MAX_SAFE_INTEGER has 16 digits: names sort in seq order
const noop = () => {};

export function auditFileName(stream: string, firstSeq: number): string {
  return `${stream}-${String(firstSeq).padStart(SEQ_DIGITS, '0')}.jsonl`;
}

const RUN_FILE = new RegExp(`^(\\d+)-(\\d{${SEQ_DIGITS}})\\.jsonl$`);

export class FileSink extends GroupCommitSink<Entry> {
  readonly kind = 'file';
  /** Files this sink created. */
  filesCreated = 0;

  private readonly io: AuditIo;

  private fd: number | null = null;
  private path: string | null = null;
  private nextFirstSeq = 1;
  /** seq of the first record of the open file (its name). */
  private fileFirstSeq = 1;
  /** Bytes of the current file known to be on disk (fdatasync returned). */
  private syncedBytes = 0;
  /** Something was written after syncedBytes and not synced: after a failure it is cut off and rewritten. */
  private tailUnsure = false;
  /** The file was created but its directory entry is not synced yet. */
  private dirSyncPending = false;

  constructor(private readonly o: FileSinkOptions) {
    super(o.retryIntervalMs, o.listener);
    this.io = o.io ?? realIo;
  }

  /** The file being written (null before the first line and between a rotation and the next line). */
  get currentPath(): string | null {
    return this.path;
  }

  push(line: string, bytes: number): void {
    this.queue.push(line);
    this.backlogBytes += bytes;
  }

  rotate(firstSeq: number): void {
    this.queue.push(new Rotation(firstSeq));
  }

  async close(): Promise<void> {
    await this.drain();
    const unwritten = this.queue.filter((e) => typeof e === 'string').length;
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      await this.io.close(fd).catch(noop);
    }
    if (unwritten > 0) {
      throw new AuditUnavailableError(
        `${this.failure ?? 'write failed'}: ${unwritten} records were not written`,
      );
    }
  }

  protected batchFailed(e: unknown): string {
    return errorReason(e);
  }

  /** Writes entries in order; on failure puts back what is not yet synced, in front of anything queued since. */
  protected async writeBatch(entries: Entry[]): Promise<void> {
    let i = 0;
    try {
      while (i < entries.length) {
        const e = entries[i];
        if (e instanceof Rotation) {
          await this.endFile(e.firstSeq);
          i++;
          continue;
        }
        let j = i + 1;
        while (j < entries.length && typeof entries[j] === 'string') j++;
        await this.commit(entries as string[], i, j);
        i = j;
      }
    } catch (e) {
      this.queue = (i === 0 ? entries : entries.slice(i)).concat(this.queue);
      throw e;
    }
  }

  /** Appends lines [from, to) to the current file (creating it first if needed) and fdatasyncs once. */
  private async commit(lines: string[], from: number, to: number): Promise<void> {
    if (this.fd === null) await this.openNext();
    const fd = this.fd!;
    if (this.dirSyncPending) {
      // Without this a power loss can take the whole new file (its directory entry), records and all.
      await this.syncDir();
      this.dirSyncPending = false;
      await this.applyRetention();
    }
    if (this.tailUnsure) {
      // A failed write may have left part of a line, and after a failed fdatasync the kernel may have dropped
      // pages it reported written: cut back to what is known on disk and write it all again.
      await this.io.ftruncate(fd, this.syncedBytes);
      this.tailUnsure = false;
    }
    let bytes = 0;
    for (let k = from; k < to;) {
      let text = '';
      do text += lines[k++] + '\n';
      while (k < to && text.length < WRITE_CHUNK_CHARS);
      const buf = Buffer.from(text, 'utf8');
      this.tailUnsure = true;
      await this.writeAll(fd, buf);
      bytes += buf.length;
    }
    await this.io.fdatasync(fd);
    this.tailUnsure = false;
    this.syncedBytes += bytes;
    this.backlogBytes -= bytes;
    this.counters.batches++;
    this.counters.syncs++;
    this.counters.bytes += bytes;
  }

  private async writeAll(fd: number, buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      // A full disk first writes what fits (a short count), then fails: the loop sees both.
      off += await this.io.write(fd, buf, off, buf.length - off);
    }
  }

  private async openNext(): Promise<void> {
    const path = join(this.o.dir, auditFileName(this.o.stream, this.nextFirstSeq));
    this.fd = await this.io.open(path, FILE_FLAGS, FILE_MODE);
    this.path = path;
    this.fileFirstSeq = this.nextFirstSeq;
    this.syncedBytes = 0;
    this.tailUnsure = false;
    this.dirSyncPending = true;
    this.filesCreated++;
  }

  /** The file is complete (its lines are synced): close it; the next line opens the next file. */
  private async endFile(firstSeq: number): Promise<void> {
    this.nextFirstSeq = firstSeq;
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    this.path = null;
    // Its content is already on disk; a failing close(2) loses nothing.
    await this.io.close(fd).catch(noop);
  }

  private async syncDir(): Promise<void> {
    const fd = await this.io.open(this.o.dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, 0);
    try {
      await this.io.fsync(fd);
    } finally {
      await this.io.close(fd).catch(noop);
    }
  }

  /** Deletes the oldest files of this node and worker beyond retainFiles. Never fails the sink: logged only. */
  private async applyRetention(): Promise<void> {
    let names: string[];
    try {
      names = await fs.promises.readdir(this.o.dir);
    } catch (e) {
      log.warn('audit retention: cannot list the audit directory', { error: describeError(e) });
      return;
    }
    const prefix = this.o.retentionPrefix;
    const files: Array<{ name: string; run: number; seq: number }> = [];
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const m = RUN_FILE.exec(name.slice(prefix.length));
      if (m) files.push({ name, run: Number(m[1]), seq: Number(m[2]) });
    }
    if (files.length <= this.o.retainFiles) return;
    files.sort((a, b) => a.run - b.run || a.seq - b.seq);
    const current = this.path === null ? null : auditFileName(this.o.stream, this.fileFirstSeq);
    for (const f of files.slice(0, files.length - this.o.retainFiles)) {
      if (f.name === current) continue; // a clock that went backwards must not delete the live file
      try {
        await fs.promises.unlink(join(this.o.dir, f.name));
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOENT') {
          log.warn('audit retention: cannot delete an old audit file', {
            file: f.name,
            error: describeError(e),
          });
        }
      }
    }
  }
}
