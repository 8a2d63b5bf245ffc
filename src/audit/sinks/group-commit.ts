// Group commit, shared by the sinks that write batches (file, PostgreSQL): sync() promises the next batch, which
// starts after the current event-loop turn so that every record appended in the turn joins it; one batch is out
// at a time; a batch that fails rejects its waiters at once (the sessions refuse their statements), keeps its
// records queued, and is retried every retryIntervalMs until it lands. A subclass says how a batch is written.

import {
  AuditUnavailableError,
  deferred,
  type AuditSink,
  type Deferred,
  type SinkCounters,
  type SinkListener,
} from '../durability.js';

const noop = () => {};

export abstract class GroupCommitSink<Entry> implements AuditSink {
  abstract readonly kind: AuditSink['kind'];
  failure: string | null = null;
  backlogBytes = 0;
  readonly counters: SinkCounters = { batches: 0, syncs: 0, bytes: 0, errors: 0 };

  /** Entries pushed and not yet written, in chain order. */
  protected queue: Entry[] = [];
  /** The promise of the next batch: every sync() until that batch starts shares it. */
  private waiting: Deferred | null = null;
  /** The pump loop is active (cleared synchronously when it stops, unlike `pumping`'s settlement). */
  private running = false;
  /** The last pump loop, for close() to wait on. */
  private pumping: Promise<void> = Promise.resolve();
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(
    private readonly retryIntervalMs: number,
    private readonly listener: SinkListener,
  ) {}

  abstract push(line: string, bytes: number): void;
  abstract rotate(firstSeq: number): void;
  abstract close(): Promise<void>;

  /**
   * Writes the entries in order. On failure it puts what was not written back in front of `queue` (entries
   * queued since stay behind them), then throws.
   */
  protected abstract writeBatch(entries: Entry[]): Promise<void>;

  /** The reason reported for a failed batch (an errno code, never a secret); also where a subclass forgets what
   *  the failure leaves unknown. */
  protected abstract batchFailed(e: unknown): string;

  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(new AuditUnavailableError(this.failure));
    if (this.waiting === null) {
      this.waiting = deferred();
      // A rejected batch nobody awaits must not become an unhandled rejection (that would end the worker).
      this.waiting.promise.catch(noop);
      // The batch starts after this event-loop turn: every record appended in the turn joins it.
      if (!this.running && !this.scheduled) {
        this.scheduled = true;
        setImmediate(this.kick);
      }
    }
    return this.waiting.promise;
  }

  /**
   * close()'s first half: no more retries, the batch in flight finished, and one last attempt at what is queued,
   * even while failing (a disk or database that came back since the last retry still takes the records).
   */
  protected async drain(): Promise<void> {
    this.closing = true;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    while (this.running) await this.pumping;
    if (this.queue.length > 0 || this.waiting !== null) await this.run(true);
  }

  private readonly kick = (): void => {
    this.scheduled = false;
    if (!this.running && this.failure === null) void this.run(false);
  };

  private run(force: boolean): Promise<void> {
    this.running = true;
    this.pumping = this.pump(force);
    return this.pumping;
  }

  /** Writes batches until nobody waits. `force`: write what is queued even if nobody waits (a retry, close). */
  private async pump(force: boolean): Promise<void> {
    try {
      // A forced run (a retry, close) writes until the queue is empty: records accepted while a retry was in
      // flight are written after it, not left for a sync() that may never come.
      while (this.waiting !== null || (force && this.queue.length > 0)) {
        const batch = this.waiting;
        this.waiting = null;
        const entries = this.queue;
        this.queue = [];
        try {
          await this.writeBatch(entries);
        } catch (e) {
          this.fail(e, batch);
          return;
        }
        // Recovered once what was accepted while failing is written too, not when the first retry lands.
        if (this.failure !== null && !(force && this.queue.length > 0)) {
          this.failure = null;
          this.listener.onRecovery(this);
        }
        batch?.resolve();
      }
    } finally {
      // Cleared in the same turn the loop sees nobody waiting: a sync() right after must start a new pump.
      this.running = false;
    }
  }

  private fail(e: unknown, batch: Deferred | null): void {
    this.counters.errors++;
    const reason = this.batchFailed(e);
    const first = this.failure === null;
    this.failure = reason;
    // Whoever waits is told now (the session refuses the statement) rather than after the outage; their records
    // stay queued and are written once the sink works again.
    const error = new AuditUnavailableError(reason);
    batch?.reject(error);
    if (this.waiting !== null) {
      this.waiting.reject(error);
      this.waiting = null;
    }
    if (first) this.listener.onFailure(this, reason);
    if (!this.closing) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (!this.running) void this.run(true);
      }, this.retryIntervalMs);
      this.retryTimer.unref();
    }
  }
}
