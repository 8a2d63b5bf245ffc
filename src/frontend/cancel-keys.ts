// The BackendKeyData pgwarden hands its clients. The process id carries the worker index so that a CancelRequest
// landing on any worker can be routed to the one that owns the session; the secret is random per session, so a
// key stops working when its session ends and can never cancel a later client's query.

import crypto from 'node:crypto';

const WORKER_SHIFT = 22;
const SEQ_MASK = (1 << WORKER_SHIFT) - 1;

export function workerOfProcessId(processId: number): number {
  return (processId >>> WORKER_SHIFT) & 0xff;
}

export class CancelKeyAllocator {
  private seq = 0;
  constructor(private readonly workerIndex: number) {}

  /** A fresh (processId, secret) pair; `inUse` says whether a process id is still held by a live session. */
  next(inUse: (pid: number) => boolean): { processId: number; secret: Buffer } {
    let pid: number;
    do {
      this.seq = (this.seq + 1) & SEQ_MASK;
      pid = ((this.workerIndex & 0xff) << WORKER_SHIFT) | this.seq;
    } while (this.seq === 0 || inUse(pid));
    return { processId: pid, secret: crypto.randomBytes(4) };
  }
}

export function secretsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}
