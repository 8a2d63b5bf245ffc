// Durations and byte sizes as people write them in the config ("10s", "64MiB"), parsed to milliseconds and bytes.

/** Node timers fire at once for delays above 2^31 - 1 ms, so no configured duration may exceed it. */
export const MAX_DURATION_MS = 2_147_483_647;

/** Sizes are compared with 32-bit protocol length fields, so none may exceed 2^31 - 1 bytes. */
export const MAX_SIZE_BYTES = 2_147_483_647;

/** Strings a duration may be written as: bare digits are milliseconds, like a number. */
export const DURATION_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*(ms|s|m|h|d)?\\s*$';

/** Strings a size may be written as: bare digits are bytes, like a number; units are binary (1 KiB = 1024). */
export const SIZE_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*(B|KiB|MiB|GiB)?\\s*$';

const DURATION_RE = new RegExp(DURATION_PATTERN);
const SIZE_RE = new RegExp(SIZE_PATTERN);

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** Milliseconds for a number (already milliseconds) or a string such as "500ms", "1.5s", "5m"; undefined when malformed. */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const m = DURATION_RE.exec(value);
  if (m === null) return undefined;
  // Round so "1.0005s" still yields a whole number of milliseconds, which is what timers take.
  return Math.round(Number.parseFloat(m[1]) * DURATION_UNITS[m[2] ?? 'ms']);
}

/** Bytes for a number (already bytes) or a string such as "64MiB", "1.5KiB"; undefined when malformed or fractional. */
export function parseSize(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const m = SIZE_RE.exec(value);
  if (m === null) return undefined;
  const bytes = Number.parseFloat(m[1]) * SIZE_UNITS[m[2] ?? 'B'];
  // A fraction of a byte is a typo, not something to round silently.
  return Number.isInteger(bytes) ? bytes : undefined;
}

/** The shortest exact spelling of a duration: 0, 500ms, 10s, 5m, 1h, 2d, or milliseconds when nothing is exact. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = DURATION_UNITS[unit];
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The shortest exact spelling of a size: 64 MiB, 10000 B, or "1 GiB - 1 B" for PostgreSQL's odd limit. */
export function formatSize(bytes: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB'] as const) {
    const size = SIZE_UNITS[unit];
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
    if (bytes + 1 >= size && (bytes + 1) % size === 0) return `${(bytes + 1) / size} ${unit} - 1 B`;
  }
  return `${bytes} B`;
}
