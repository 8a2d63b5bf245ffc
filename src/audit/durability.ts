// What the audit writer and its sinks share: the sink contract (group commit: one sync promise per batch, not per
// record), the error a caller gets when a record cannot be made durable, and the file-system seam tests use to
// inject faults that a real file system cannot be made to produce on demand (EIO, a failing fdatasync).

import fs from 'node:fs';

/**
 * A record could not be written (or the writer is closed). The session turns it into SQLSTATE 58030 ("audit log
 * unavailable"). `reason` is an errno code or a short phrase, never record content.
 */
export class AuditUnavailableError extends Error {
  readonly code = 'PGW_AUDIT_UNAVAILABLE';
  constructor(readonly reason: string) {
    super(`audit log unavailable: ${reason}`);
    this.name = 'AuditUnavailableError';
  }
}

/** A sink's health changes; the writer folds every sink's state into `available`. */
export interface SinkListener {
  onFailure(sink: AuditSink, reason: string): void;
  onRecovery(sink: AuditSink): void;
}

/**
 * Where sealed audit lines go. Lines are queued by push() in chain order and written in batches: sync() returns
 * the promise of the batch that will carry everything queued so far, shared by every caller until that batch
 * starts (group commit), so N concurrent sessions cost one write and one fdatasync, and one promise.
 */
export interface AuditSink {
  readonly kind: 'file' | 'stdout' | 'postgres';
  /** Why the sink cannot write right now (errno code), or null when it can. */
  readonly failure: string | null;
  /** Bytes queued and not yet confirmed written: the memory the sink holds. */
  readonly backlogBytes: number;
  /** Queues one line (no newline); `bytes` is its UTF-8 length plus the newline. */
  push(line: string, bytes: number): void;
  /** The lines pushed so far end the current file; the next line begins a file named after `firstSeq`. */
  rotate(firstSeq: number): void;
  /** Resolves once every line pushed before the call is written (and fsynced, for a file); rejects with
   *  AuditUnavailableError while the sink is failing. */
  sync(): Promise<void>;
  /** Writes what is queued (one last attempt even while failing), syncs and releases the sink. */
  close(): Promise<void>;
}

/** Counters a sink keeps (plain fields; the writer sums them into its stats). */
export interface SinkCounters {
  /** Write batches that reached the sink. */
  batches: number;
  /** fdatasync calls that succeeded (file sink). */
  syncs: number;
  bytes: number;
  /** Failed I/O attempts (each retry that fails counts). */
  errors: number;
}

/**
 * The part of node:fs the file sink calls per batch, promise-shaped. The default is the real file system through
 * libuv's thread pool, so the worker's event loop never waits for a disk.
 */
export interface AuditIo {
  open(path: string, flags: number, mode: number): Promise<number>;
  /** One write(2): may write less than asked (a full disk); the caller loops. */
  write(fd: number, buffer: Buffer, offset: number, length: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  close(fd: number): Promise<void>;
}

function done<T>(resolve: (v: T) => void, reject: (e: Error) => void) {
  return (err: NodeJS.ErrnoException | null, value?: T) => (err ? reject(err) : resolve(value as T));
}

export const realIo: AuditIo = {
  open: (path, flags, mode) => new Promise((res, rej) => fs.open(path, flags, mode, done(res, rej))),
  write: (fd, buffer, offset, length) =>
    new Promise((res, rej) => fs.write(fd, buffer, offset, length, null, done(res, rej))),
  fdatasync: (fd) => new Promise((res, rej) => fs.fdatasync(fd, done(res, rej))),
  fsync: (fd) => new Promise((res, rej) => fs.fsync(fd, done(res, rej))),
  ftruncate: (fd, length) => new Promise((res, rej) => fs.ftruncate(fd, length, done(res, rej))),
  close: (fd) => new Promise((res, rej) => fs.close(fd, done(res, rej))),
};

/** A promise with its settle functions: one per batch, shared by every record of the batch. */
export interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The errno code of an I/O error (ENOSPC, EIO, EACCES...), or a generic word: safe for logs and clients. */
export function errorReason(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? code : 'write failed';
}
