// One stream's hash chain: turns events into sealed JSON lines (seq, prev, hash) and keeps the head. The writer owns
// one per stream (one per worker), so appends are serial and no ordering crosses threads. Not thread-safe.

import type { KeyObject } from 'node:crypto';
import { checkpointEvent } from './checkpoint.js';
import {
  AUDIT_SCHEMA_VERSION,
  GENESIS_HASH,
  isAuditEventType,
  nowMicros,
  recordBody,
  sealRecord,
  type AuditEvent,
} from './record.js';

export class AuditChainError extends Error {
  readonly code = 'PGW_AUDIT_CHAIN';
}

export interface AuditChainOptions {
  node: string;
  worker: number;
  stream: string;
  /** Continue an existing stream: the hash of its last record (with `seq`, that record's seq). */
  prev?: string;
  seq?: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

const nullableString = (v: unknown, name: string): string | null => {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new AuditChainError(`audit event ${name} must be a string or null`);
  return v;
};

export class AuditChain {
  readonly node: string;
  readonly worker: number;
  readonly stream: string;
  private seqNo: number;
  private head: string;
  /** stream_end appended: only its checkpoint may follow. */
  private ending = false;
  /** The checkpoint after stream_end appended: the stream is complete. */
  private closed = false;

  constructor(opts: AuditChainOptions) {
    if (typeof opts.node !== 'string' || opts.node === '')
      throw new AuditChainError('node must be a non-empty string');
    if (!Number.isInteger(opts.worker) || opts.worker < -1)
      throw new AuditChainError('worker must be an integer >= -1');
    if (typeof opts.stream !== 'string' || opts.stream === '') {
      throw new AuditChainError('stream must be a non-empty string');
    }
    const seq = opts.seq ?? 0;
    if (!Number.isSafeInteger(seq) || seq < 0) throw new AuditChainError('seq must be an integer >= 0');
    if ((seq === 0) !== (opts.prev === undefined || opts.prev === GENESIS_HASH)) {
      throw new AuditChainError('continuing a stream needs both seq (> 0) and prev (the hash of record seq)');
    }
    if (opts.prev !== undefined && !HEX64.test(opts.prev))
      throw new AuditChainError('prev must be 64 hex digits');
    this.node = opts.node;
    this.worker = opts.worker;
    this.stream = opts.stream;
    this.seqNo = seq;
    this.head = opts.prev ?? GENESIS_HASH;
  }

  /** seq of the last record appended (0 before the first). */
  get seq(): number {
    return this.seqNo;
  }

  /** hash of the last record appended (64 zeros before the first). */
  get lastHash(): string {
    return this.head;
  }

  /** True once stream_end and its checkpoint are appended: nothing more may be. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Seals one event as the next record and returns its line (without '\n'). Throws AuditChainError, leaving the
   * chain unchanged, for an event that would make the stream fail verification (see docs/audit.md, "Rules").
   */
  append(e: AuditEvent): string {
    if (!isAuditEventType(e.event))
      throw new AuditChainError(`unknown audit event type ${JSON.stringify(e.event)}`);
    if (this.closed) throw new AuditChainError(`stream ${this.stream} is closed`);
    if (this.ending && e.event !== 'checkpoint') {
      throw new AuditChainError('after stream_end only its checkpoint may be appended');
    }
    if ((this.seqNo === 0) !== (e.event === 'stream_start')) {
      throw new AuditChainError('a stream begins with stream_start, and only there');
    }
    const ts = e.ts ?? nowMicros();
    if (!Number.isSafeInteger(ts) || ts < 0)
      throw new AuditChainError('audit event ts must be integer microseconds');
    const data = e.data ?? {};
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new AuditChainError('audit event data must be an object');
    }
    if (e.event === 'checkpoint' && (data.upto_seq !== this.seqNo || data.upto_hash !== this.head)) {
      throw new AuditChainError('a checkpoint must name the record just before it (upto_seq, upto_hash)');
    }
    const seq = this.seqNo + 1;
    const body = recordBody({
      v: AUDIT_SCHEMA_VERSION,
      seq,
      ts,
      node: this.node,
      worker: this.worker,
      stream: this.stream,
      session: nullableString(e.session, 'session'),
      identity: nullableString(e.identity, 'identity'),
      database: nullableString(e.database, 'database'),
      event: e.event,
      data,
      prev: this.head,
    });
    const { hash, line } = sealRecord(body);
    this.seqNo = seq;
    this.head = hash;
    if (e.event === 'stream_end') this.ending = true;
    else if (e.event === 'checkpoint' && this.ending) this.closed = true;
    return line;
  }

  /** Signs the current head and appends the checkpoint record; returns its line. */
  appendCheckpoint(key: KeyObject, ts?: number): string {
    const e = checkpointEvent(this.stream, this.seqNo, this.head, key);
    if (ts !== undefined) e.ts = ts;
    return this.append(e);
  }

  /** Ends the stream: stream_end, then the checkpoint that seals it. Returns both lines. */
  end(key: KeyObject, data: Record<string, unknown> = {}): [string, string] {
    const last = this.append({ event: 'stream_end', data });
    return [last, this.appendCheckpoint(key)];
  }
}
