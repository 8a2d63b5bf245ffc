// A worker's cache of analysed statements, keyed by the exact query text: applications repeat the same texts, and
// parsing is the costly part of judging one. Bounded twice: at most `capacity` entries (least recently used out
// first), and texts over 64 KiB are analysed every time rather than held.

import type { ParseResult } from './facts.js';
import { analyzeSql, isTransientFailure } from './sql-analyze.js';

/** Longest statement text (UTF-8 bytes) kept in the cache. */
export const MAX_CACHED_TEXT_BYTES = 64 * 1024;

export class SqlParseCache {
  /** Map iteration order is insertion order: the first key is the least recently used. */
  private readonly entries = new Map<string, ParseResult>();
  hits = 0;
  misses = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) {
      throw new RangeError(`parse cache capacity must be an integer >= 0, got ${capacity}`);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** analyzeSql(text), from the cache when the same text was analysed recently. Failures are cached too. */
  analyze(text: string): ParseResult {
    const cached = this.entries.get(text);
    if (cached !== undefined) {
      this.hits++;
      this.entries.delete(text);
      this.entries.set(text, cached);
      return cached;
    }
    this.misses++;
    const result = analyzeSql(text);
    if (this.capacity > 0 && !isTransientFailure(result) && fitsCache(text)) {
      this.entries.set(text, result);
      if (this.entries.size > this.capacity) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
    }
    return result;
  }
}

function fitsCache(text: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes, and at least 1: only the middle range needs counting.
  if (text.length > MAX_CACHED_TEXT_BYTES) return false;
  if (text.length * 3 <= MAX_CACHED_TEXT_BYTES) return true;
  return Buffer.byteLength(text, 'utf8') <= MAX_CACHED_TEXT_BYTES;
}
