// Walks the framer's records for one direction of a connection and hands the caller only the messages it cares
// about. Bytes are never copied for messages it ignores; a message of interest is passed as a view of the chunk
// when it lies inside it, and assembled (copied) only when it straddles reads.

import type { Framer } from './framing.js';

/** Interest in a message code: none, the code and its position only, or its whole bytes. */
export const Want = { None: 0, Code: 1, Bytes: 2 } as const;

/** push() result when a message of interest is longer than `maxAssembly` (not a framer error: the framer allows it). */
export const ASSEMBLY_TOO_LARGE = 100;

export type MessageHandler = (code: number, start: number, end: number, bytes: Buffer | null) => void;

export class MessageStream {
  /** Bytes of a message of interest being assembled across reads. */
  private assembling: Buffer | null = null;
  private assembled = 0;
  private assemblingCode = 0;
  /** Up to 8 bytes of a header that the previous chunk ended in the middle of. */
  private headerTail: Buffer | null = null;
  /** Body bytes of the previous chunk's last message still to come at the start of the next chunk. */
  private carried = 0;
  private oversized = false;
  /**
   * Longest message of interest this stream will assemble. Before authentication a client must not make us
   * allocate up to max_message_size for a message it then feeds slowly.
   */
  maxAssembly = Number.POSITIVE_INFINITY;

  constructor(
    readonly framer: Framer,
    public want: Uint8Array,
    private readonly onMessage: MessageHandler,
  ) {}

  get hasHeaderTail(): boolean {
    return this.headerTail !== null || this.assembling !== null;
  }

  /** Scans one chunk; returns the framer's error (0 = none). Handlers run in stream order. */
  push(chunk: Buffer): number {
    const framer = this.framer;
    if (this.oversized) return ASSEMBLY_TOO_LARGE;
    if (this.assembling !== null) this.continueAssembly(chunk);
    const n = framer.scan(chunk);
    const records = framer.records;
    let lastEnd = Math.min(this.carried, chunk.length);
    for (let i = 0; i < n; i++) {
      const code = records[3 * i];
      const start = records[3 * i + 1];
      const end = start + records[3 * i + 2];
      lastEnd = end;
      const want = code < 256 ? this.want[code] : Want.Bytes;
      if (want === Want.None) continue;
      if (want === Want.Code) {
        this.onMessage(code, start, end, null);
      } else if (start >= 0 && end <= chunk.length) {
        this.onMessage(code, start, end, chunk.subarray(start, end));
      } else if (end - start > this.maxAssembly) {
        this.oversized = true;
        return ASSEMBLY_TOO_LARGE;
      } else {
        this.beginAssembly(code, start, end, chunk);
        if (this.assembling === null) continue; // completed within this chunk (header straddle only)
      }
    }
    this.carried = framer.pendingBody;
    if (framer.pendingBody === 0 && lastEnd < chunk.length) {
      // The chunk ended inside a header. With no record in this chunk the header began earlier: keep growing it.
      const tail = chunk.subarray(Math.max(lastEnd, 0));
      this.headerTail =
        n === 0 && this.headerTail ? Buffer.concat([this.headerTail, tail]) : Buffer.from(tail);
    } else {
      this.headerTail = null;
    }
    return framer.error;
  }

  private beginAssembly(code: number, start: number, end: number, chunk: Buffer): void {
    const length = end - start;
    const buf = Buffer.allocUnsafe(length);
    let filled = 0;
    if (start < 0) {
      // The header began in the previous chunk: its first bytes are the saved tail.
      const tail = this.headerTail!;
      tail.copy(buf, 0, tail.length + start);
      filled = -start;
    }
    const from = Math.max(start, 0);
    const to = Math.min(end, chunk.length);
    chunk.copy(buf, filled, from, to);
    filled += to - from;
    if (filled === length) {
      this.onMessage(code, start, end, buf);
      return;
    }
    this.assembling = buf;
    this.assembled = filled;
    this.assemblingCode = code;
  }

  private continueAssembly(chunk: Buffer): void {
    const buf = this.assembling!;
    const need = buf.length - this.assembled;
    const take = Math.min(need, chunk.length);
    chunk.copy(buf, this.assembled, 0, take);
    this.assembled += take;
    if (this.assembled === buf.length) {
      this.assembling = null;
      // Positions are relative to the chunk that completes the message: it ends at `take`.
      this.onMessage(this.assemblingCode, take - buf.length, take, buf);
    }
  }
}

/** A want-table with every code marked `want`. */
export function wantAll(want: number): Uint8Array {
  return new Uint8Array(256).fill(want);
}

/** A want-table with the given codes marked. */
export function wantTable(entries: ReadonlyArray<readonly [number, number]>): Uint8Array {
  const t = new Uint8Array(256);
  for (const [code, w] of entries) t[code] = w;
  return t;
}

/** True when no message is half-read: the stream stopped exactly between two messages. */
export function atMessageBoundary(s: MessageStream): boolean {
  return s.framer.pendingBody === 0 && !s.hasHeaderTail;
}
