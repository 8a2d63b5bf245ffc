// JSON Lines on standard output for log shippers: one write per batch (in a worker thread every write is a message
// to the main thread, which does the real write(2), so a write per record would cost a thread hop per record).
// There is no fsync for a pipe: "durable" here means handed to the stream. A stream that errors (EPIPE: the
// reader went away) stays failed; nothing re-opens a process's stdout.

import {
  AuditUnavailableError,
  deferred,
  errorReason,
  type AuditSink,
  type Deferred,
  type SinkCounters,
  type SinkListener,
} from '../durability.js';

const noop = () => {};

export class StdoutSink implements AuditSink {
  readonly kind = 'stdout';
  failure: string | null = null;
  backlogBytes = 0;
  readonly counters: SinkCounters = { batches: 0, syncs: 0, bytes: 0, errors: 0 };
  /** Lines discarded because the stream had failed (with on_failure: continue). */
  dropped = 0;

  private lines: string[] = [];
  private linesBytes = 0;
  private waiting: Deferred | null = null;
  private scheduled = false;
  private inFlight = 0;
  private drained: Deferred | null = null;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly listener: SinkListener,
  ) {
    out.on('error', this.onStreamError);
  }

  push(line: string, bytes: number): void {
    if (this.failure !== null) {
      this.dropped++;
      return;
    }
    this.lines.push(line);
    this.linesBytes += bytes;
    this.backlogBytes += bytes;
  }

  /** A stream has no files. */
  rotate(): void {}

  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(new AuditUnavailableError(this.failure));
    if (this.waiting === null) {
      this.waiting = deferred();
      this.waiting.promise.catch(noop);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    }
    return this.waiting.promise;
  }

  async close(): Promise<void> {
    if (this.lines.length > 0 && this.failure === null) {
      this.scheduled = false;
      this.flush();
    }
    if (this.inFlight > 0) {
      this.drained ??= deferred();
      await this.drained.promise;
    }
    this.out.off('error', this.onStreamError);
    const lost = this.lines.length + this.dropped;
    if (this.failure !== null && lost > 0) {
      throw new AuditUnavailableError(`${this.failure}: ${lost} records were not written to stdout`);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.waiting;
    this.waiting = null;
    if (this.lines.length === 0) {
      batch?.resolve();
      return;
    }
    const text = this.lines.join('\n') + '\n';
    const bytes = this.linesBytes;
    this.lines = [];
    this.linesBytes = 0;
    this.inFlight++;
    this.out.write(text, (err) => {
      this.inFlight--;
      this.backlogBytes -= bytes;
      if (err) {
        this.fail(err);
        batch?.reject(new AuditUnavailableError(this.failure!));
      } else {
        this.counters.batches++;
        this.counters.bytes += bytes;
        batch?.resolve();
      }
      if (this.inFlight === 0 && this.drained !== null) {
        this.drained.resolve();
        this.drained = null;
      }
    });
  };

  private readonly onStreamError = (err: Error): void => {
    this.fail(err);
  };

  private fail(err: unknown): void {
    this.counters.errors++;
    if (this.failure !== null) return;
    this.failure = errorReason(err);
    this.dropped += this.lines.length;
    this.lines = [];
    this.backlogBytes -= this.linesBytes;
    this.linesBytes = 0;
    if (this.waiting !== null) {
      this.waiting.reject(new AuditUnavailableError(this.failure));
      this.waiting = null;
    }
    this.listener.onFailure(this, this.failure);
  }
}
