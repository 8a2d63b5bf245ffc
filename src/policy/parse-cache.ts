// A worker's cache of analysed statements, keyed by the exact query text: applications repeat the same texts, and
// parsing is the costly part of judging one. Texts that differ only in numeric literals share an entry by their
// literal shape. Bounded: at most `capacity` entries by text and `capacity` by shape (least recently used out
// first), and texts over 64 KiB are analysed every time rather than held.

import type { ParseResult } from './facts.js';
import { literalShape } from './literal-shape.js';
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

  /** Entries held: by exact text plus by literal shape. */
  get size(): number {
    return this.entries.size + this.shapes.size;
  }

  /**
   * Facts by literal shape (see literal-shape.ts): texts that differ only in numeric literals. Only successful
   * parses without a SET are kept here — a SET's value is a fact (`SET standard_conforming_strings = 0`), and a
   * failure is not known to fail the same way with other digits.
   */
  private readonly shapes = new Map<string, ParseResult>();

  /** analyzeSql(text), from the cache when the same text (or shape) was analysed recently. Failures are cached too. */
  analyze(text: string): ParseResult {
    const cached = touch(this.entries, text);
    if (cached !== undefined) {
      this.hits++;
      return cached;
    }
    if (!fitsCache(text)) {
      this.misses++;
      return analyzeSql(text);
    }
    const shape = literalShape(text);
    if (shape !== null) {
      const sameShape = touch(this.shapes, shape);
      if (sameShape !== undefined) {
        this.hits++;
        return sameShape;
      }
    }
    this.misses++;
    const result = analyzeSql(text);
    if (this.capacity > 0 && !isTransientFailure(result)) {
      if (shape !== null && result.ok && result.statements.every((f) => f.setting === null)) {
        insert(this.shapes, shape, result, this.capacity);
      } else {
        insert(this.entries, text, result, this.capacity);
      }
    }
    return result;
  }
}

/** The entry, moved to the most recently used end. */
function touch(map: Map<string, ParseResult>, key: string): ParseResult | undefined {
  const value = map.get(key);
  if (value !== undefined) {
    map.delete(key);
    map.set(key, value);
  }
  return value;
}

function insert(map: Map<string, ParseResult>, key: string, value: ParseResult, capacity: number): void {
  map.set(key, value);
  if (map.size > capacity) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}

function fitsCache(text: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes, and at least 1: only the middle range needs counting.
  if (text.length > MAX_CACHED_TEXT_BYTES) return false;
  if (text.length * 3 <= MAX_CACHED_TEXT_BYTES) return true;
  return Buffer.byteLength(text, 'utf8') <= MAX_CACHED_TEXT_BYTES;
}
