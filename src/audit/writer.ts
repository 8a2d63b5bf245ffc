// The per-worker audit writer sessions call: chains and seals each event on the worker's own thread (a few µs,
// measured in bench/micro/audit-writer.ts: cheaper than handing the event to another thread), checkpoints and
// rotates, and hands lines to the sinks, which write them off the event loop with group commit. It also owns the
// fail-closed rule: while a sink cannot write, records are refused (or, with on_failure: continue, held in memory
// up to a bound and then counted as dropped) until a retry succeeds.

import { mkdir } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { AuditChain } from './chain.js';
import { keyId } from './checkpoint.js';
import { makeStreamId, type AuditEvent } from './record.js';
import { AuditUnavailableError, type AuditIo, type AuditSink, type SinkListener } from './durability.js';
import { FileSink } from './sinks/file-sink.js';
import { StdoutSink } from './sinks/stdout-sink.js';
import { PostgresSink, type PostgresSinkOptions } from './sinks/postgres-sink.js';

export { AuditUnavailableError } from './durability.js';

export type AuditMode = 'durable' | 'buffered';

export interface AuditWriterOptions {
  /** Directory of the file sink (created 0700 when missing); omitted: no file sink. */
  dir?: string;
  /** Also write every record to standard output (JSON Lines for a log shipper). */
  stdout?: boolean;
  /** Also write every record to a table of a separate audit database (one COPY per batch). */
  postgres?: Pick<PostgresSinkOptions, 'settings' | 'table'>;
  mode: AuditMode;
  /**
   * buffered: how often queued records are written and fdatasynced. On power loss (or kill -9 of the process) at
   * most the records of the last flushIntervalMs plus one write+fdatasync (typically under 1 ms) are lost; a
   * graceful close() or rotation loses nothing. While a sink fails with on_failure: continue, what is held in
   * memory (up to maxBacklogBytes) is lost too if the process dies before the sink recovers.
   */
  flushIntervalMs: number;
  node: string;
  worker: number;
  signingKey: KeyObject;
  /** A signed checkpoint after this many records... */
  checkpointEvery: number;
  /** ...or this long after the first record not yet covered by one. */
  checkpointIntervalMs: number;
  rotateSize: number;
  rotateIntervalMs: number;
  retainFiles: number;
  onFailure: 'refuse' | 'continue';
  onAvailabilityChange?: (available: boolean, reason?: string) => void;
  /** How often a failing sink tries again (default 1000 ms). */
  retryIntervalMs?: number;
  /**
   * Memory bound for records not yet written (default 64 MiB). Past it, buffered mode makes write() return a
   * promise (the session waits: backpressure), and a failing sink with on_failure: continue drops new records.
   */
  maxBacklogBytes?: number;
  /** The stream standard-output records go to (default process.stdout). */
  stdoutStream?: NodeJS.WritableStream;
  /** The file-system seam (fault injection in tests). */
  io?: AuditIo;
  /** pgwarden version for the stream_start record. */
  version?: string;
}

export interface AuditWriterStats {
  available: boolean;
  /** Records sealed into the chain (checkpoints and stream records included). */
  records: number;
  checkpoints: number;
  rotations: number;
  /** Records refused because a sink was failing (on_failure: refuse) or the writer was closed. */
  rejected: number;
  /** Records dropped, never chained, because a failing sink's backlog was full (on_failure: continue). */
  dropped: number;
  /** Records chained (and written to the file) but not to stdout, because stdout had failed. */
  stdoutDropped: number;
  /** Write batches and fdatasyncs of the file sink: group commit makes syncs far fewer than records. */
  batches: number;
  syncs: number;
  bytes: number;
  /** Failed I/O attempts, retries included. */
  ioErrors: number;
  backlogBytes: number;
}

const DEFAULT_RETRY_MS = 1000;
const DEFAULT_MAX_BACKLOG = 64 * 1024 * 1024;
/** setTimeout's longest delay; longer intervals (rotate_interval can be days) are waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const noop = () => {};

export class AuditWriter implements SinkListener {
  readonly stream: string;
  private readonly chain: AuditChain;
  private readonly sinks: AuditSink[];
  /** The sink whose batches durable writes wait for: the file when there is one, else the postgres table. */
  private readonly primary: AuditSink;
  private readonly fileSink: FileSink | null;
  private readonly durable: boolean;
  private readonly refuse: boolean;
  private readonly maxBacklog: number;

  private healthy = true;
  private failureReason: string | undefined;
  private closed = false;
  private closing: Promise<void> | null = null;

  private sinceCheckpoint = 0;
  /** Bytes of the current file, queued ones included: rotation by size is decided as records are appended. */
  private fileBytes = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private rotateTimer: NodeJS.Timeout | null = null;
  private rotateDueAt = 0;
  /** on_failure: continue: the batch promise handed out, wrapped once so that it never rejects. */
  private rawBatch: Promise<void> | null = null;
  private safeBatch: Promise<void> | null = null;

  private readonly counts = { records: 0, checkpoints: 0, rotations: 0, rejected: 0, dropped: 0 };

  private constructor(private readonly o: AuditWriterOptions) {
    if (!o.dir && !o.stdout && !o.postgres)
      throw new Error('audit: no sink configured (a file directory, stdout or a postgres table)');
    const startedAt = Date.now();
    this.stream = makeStreamId(o.node, o.worker, startedAt);
    this.chain = new AuditChain({ node: o.node, worker: o.worker, stream: this.stream });
    this.durable = o.mode === 'durable';
    this.refuse = o.onFailure === 'refuse';
    this.maxBacklog = o.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG;
    this.sinks = [];
    this.fileSink = null;
    if (o.dir) {
      const runSuffix = String(startedAt);
      // Retention finds earlier runs by the stream id minus its start time; a changed id format must not quietly
      // keep every file forever.
      if (!this.stream.endsWith(`-${runSuffix}`))
        throw new Error('audit: stream ids no longer end with the start time');
      this.fileSink = new FileSink({
        dir: o.dir,
        stream: this.stream,
        // Earlier runs of this node and worker differ only in the start time that ends the stream id.
        retentionPrefix: this.stream.slice(0, this.stream.length - runSuffix.length),
        retainFiles: o.retainFiles,
        retryIntervalMs: o.retryIntervalMs ?? DEFAULT_RETRY_MS,
        listener: this,
        io: o.io,
      });
      this.sinks.push(this.fileSink);
    }
    // Before stdout: with no file, durable writes wait for the table's commit rather than a pipe write.
    if (o.postgres) {
      this.sinks.push(
        new PostgresSink({
          ...o.postgres,
          stream: this.stream,
          retryIntervalMs: o.retryIntervalMs ?? DEFAULT_RETRY_MS,
          listener: this,
        }),
      );
    }
    if (o.stdout) this.sinks.push(new StdoutSink(o.stdoutStream ?? process.stdout, this));
    this.primary = this.sinks[0];
  }

  /**
   * Creates the directory, begins the stream (stream_start, written and synced before this resolves, so that an
   * unwritable sink fails the worker's start rather than its first statement) and arms the timers.
   */
  static async open(o: AuditWriterOptions): Promise<AuditWriter> {
    if (o.dir) await mkdir(o.dir, { recursive: true, mode: 0o700 });
    const w = new AuditWriter(o);
    const start: Record<string, unknown> = { pid: process.pid, key_id: keyId(o.signingKey) };
    if (o.version !== undefined) start.version = o.version;
    w.append({ event: 'stream_start', data: start });
    w.afterAppend();
    try {
      await w.flush();
    } catch (e) {
      w.closed = true;
      w.stopTimers();
      await Promise.allSettled(w.sinks.map((s) => s.close()));
      throw e;
    }
    w.armRotateTimer();
    return w;
  }

  /** False while a sink cannot write. With on_failure: refuse, write() then rejects. */
  get available(): boolean {
    return this.healthy;
  }

  /** seq of the last record sealed. */
  get seq(): number {
    return this.chain.seq;
  }

  /**
   * Appends a record. Durable mode: the promise resolves once the record is fdatasynced (one sync shared by every
   * record of the batch, and one promise). Buffered mode: returns nothing (no promise on the hot path) unless the
   * backlog is over its bound, then the batch's promise (backpressure). Refused (rejected promise, in both modes)
   * while a sink fails with on_failure: refuse, and after close().
   */
  write(e: AuditEvent): Promise<void> | void {
    if (this.closed) return this.reject('the audit writer is closed');
    if (!this.healthy) {
      if (this.refuse) return this.reject(this.failureReason ?? 'write failed');
      if (this.backlog() >= this.maxBacklog) {
        this.counts.dropped++;
        return;
      }
      this.append(e);
      this.afterAppend();
      this.scheduleFlush();
      return;
    }
    this.append(e);
    this.afterAppend();
    if (this.durable) return this.batchPromise();
    this.scheduleFlush();
    if (this.backlog() >= this.maxBacklog) return this.batchPromise();
  }

  /** A refusal, already handled once so that a caller that drops it cannot end the worker (unhandled rejection). */
  private reject(reason: string): Promise<void> {
    this.counts.rejected++;
    const p = Promise.reject(new AuditUnavailableError(reason));
    p.catch(noop);
    return p;
  }

  /** Resolves when every record appended so far is written (and synced) by every sink. */
  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.sync()));
  }

  /**
   * Ends the stream: stream_end and its signed checkpoint, written and synced, then the sinks are released.
   * Rejects (after releasing them) when records could not be written.
   */
  close(reason = 'shutdown'): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  get stats(): AuditWriterStats {
    const s: AuditWriterStats = {
      available: this.healthy,
      ...this.counts,
      batches: 0,
      syncs: 0,
      bytes: 0,
      ioErrors: 0,
      backlogBytes: this.backlog(),
      stdoutDropped: 0,
    };
    for (const sink of this.sinks) {
      const c = (sink as FileSink | StdoutSink | PostgresSink).counters;
      s.ioErrors += c.errors;
      if (sink instanceof StdoutSink) s.stdoutDropped += sink.dropped;
      if (sink === this.fileSink || this.fileSink === null) {
        s.batches += c.batches;
        s.syncs += c.syncs;
        s.bytes += c.bytes;
      }
    }
    return s;
  }

  // SinkListener: availability is every sink working.
  onFailure(_sink: AuditSink, reason: string): void {
    this.failureReason = reason;
    this.updateHealth();
  }

  onRecovery(): void {
    this.updateHealth();
  }

  private updateHealth(): void {
    const failing = this.sinks.find((s) => s.failure !== null);
    const healthy = failing === undefined;
    if (failing) this.failureReason = failing.failure!;
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    this.o.onAvailabilityChange?.(healthy, healthy ? undefined : this.failureReason);
  }

  private backlog(): number {
    let max = 0;
    for (const s of this.sinks) if (s.backlogBytes > max) max = s.backlogBytes;
    return max;
  }

  private append(e: AuditEvent): void {
    const line = this.chain.append(e);
    // UTF-8 length (plus the newline): rotation by size counts bytes, not UTF-16 units.
    const bytes = Buffer.byteLength(line, 'utf8') + 1;
    for (const s of this.sinks) s.push(line, bytes);
    this.fileBytes += bytes;
    this.counts.records++;
  }

  /** Checkpoint by count, rotation by size, and the checkpoint timer for the first uncovered record. */
  private afterAppend(): void {
    if (++this.sinceCheckpoint >= this.o.checkpointEvery) this.checkpoint();
    else if (this.sinceCheckpoint === 1 && this.checkpointTimer === null) {
      this.checkpointTimer = setTimeout(
        this.onCheckpointTimer,
        Math.min(this.o.checkpointIntervalMs, MAX_TIMER_MS),
      );
      this.checkpointTimer.unref();
    }
    if (this.fileSink !== null && this.fileBytes >= this.o.rotateSize) this.rotate();
  }

  private checkpoint(): void {
    this.sinceCheckpoint = 0;
    if (this.checkpointTimer !== null) {
      clearTimeout(this.checkpointTimer);
      this.checkpointTimer = null;
    }
    const line = this.chain.appendCheckpoint(this.o.signingKey);
    const bytes = Buffer.byteLength(line, 'utf8') + 1;
    for (const s of this.sinks) s.push(line, bytes);
    this.fileBytes += bytes;
    this.counts.records++;
    this.counts.checkpoints++;
  }

  /** A checkpoint closes the file; the chain goes on in the next one (its first prev = that checkpoint's hash). */
  private rotate(): void {
    if (this.sinceCheckpoint > 0) this.checkpoint();
    this.fileSink!.rotate(this.chain.seq + 1);
    this.fileBytes = 0;
    this.counts.rotations++;
    this.armRotateTimer();
  }

  /** The batch promise for a durable write; every other sink is asked to write the same batch. */
  private batchPromise(): Promise<void> {
    for (const s of this.sinks) if (s !== this.primary && s.failure === null) void s.sync();
    const p = this.primary.sync();
    if (this.refuse) return p;
    // on_failure: continue: a batch that fails must not refuse the statements waiting for it.
    if (p !== this.rawBatch) {
      this.rawBatch = p;
      this.safeBatch = p.catch(noop);
    }
    return this.safeBatch!;
  }

  /** Records not waited for (buffered mode, checkpoints from timers) are written within flushIntervalMs. */
  private scheduleFlush(): void {
    if (this.flushTimer !== null) return;
    this.flushTimer = setTimeout(this.onFlushTimer, this.durable ? 0 : this.o.flushIntervalMs);
  }

  private readonly onFlushTimer = (): void => {
    this.flushTimer = null;
    for (const s of this.sinks) if (s.failure === null) void s.sync();
  };

  private readonly onCheckpointTimer = (): void => {
    this.checkpointTimer = null;
    if (this.closed || this.sinceCheckpoint === 0) return;
    this.checkpoint();
    this.scheduleFlush();
  };

  private armRotateTimer(): void {
    if (this.fileSink === null) return;
    if (this.rotateTimer !== null) clearTimeout(this.rotateTimer);
    this.rotateDueAt = Date.now() + this.o.rotateIntervalMs;
    this.rotateTimer = setTimeout(this.onRotateTimer, Math.min(this.o.rotateIntervalMs, MAX_TIMER_MS));
    this.rotateTimer.unref();
  }

  private readonly onRotateTimer = (): void => {
    this.rotateTimer = null;
    if (this.closed) return;
    const left = this.rotateDueAt - Date.now();
    if (left > 0) {
      this.rotateTimer = setTimeout(this.onRotateTimer, Math.min(left, MAX_TIMER_MS));
      this.rotateTimer.unref();
      return;
    }
    // An idle writer does not make empty files: the file rotates only if something was written to it.
    if (this.fileBytes > 0) {
      this.rotate();
      this.scheduleFlush();
    } else {
      this.armRotateTimer();
    }
  };

  private stopTimers(): void {
    for (const t of [this.flushTimer, this.checkpointTimer, this.rotateTimer])
      if (t !== null) clearTimeout(t);
    this.flushTimer = this.checkpointTimer = this.rotateTimer = null;
  }

  private async doClose(reason: string): Promise<void> {
    this.closed = true;
    this.stopTimers();
    // stream_end and the checkpoint that seals the stream, whatever the sinks' state: if they cannot be written,
    // the file ends without them and `audit verify` reports the stream as not closed.
    const lines = this.chain.end(this.o.signingKey, { reason });
    for (const line of lines) {
      const bytes = Buffer.byteLength(line, 'utf8') + 1;
      for (const s of this.sinks) s.push(line, bytes);
      this.counts.records++;
    }
    this.counts.checkpoints++;
    this.sinceCheckpoint = 0;
    const results = await Promise.allSettled(this.sinks.map((s) => s.close()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
