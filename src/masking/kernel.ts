// Masks PHI in text-format DataRows according to a column plan: the WASM kernel's driver and its TypeScript twin.
//
// Wire format: https://www.postgresql.org/docs/current/protocol-message-formats.html (DataRow)
//   byte 'D', int32 length (includes itself), int16 column count, per column int32 length (-1 = NULL) + that many bytes.
//
// A plan gives one action per column (MaskAction). The masked row is written in one pass with every length
// recomputed. The twin below is the reference: assembly/mask.ts follows it step for step, and the property tests in
// test/unit/mask-kernel.test.ts hold the two byte-equal, errors included. The caller decides text vs binary format;
// these functions only ever see text-format values.
//
// Actions, for a non-NULL value (a NULL value stays NULL under every action):
//   Pass       the value as is.
//   Null       NULL.
//   Redact     the plan's redaction text.
//   Partial    ASCII letters and digits are numbered from 0; number i is kept when i < keepFirst or
//              i >= count - keepLast, the others become '*'. Other ASCII bytes (punctuation, spaces) are kept. Each
//              non-ASCII character becomes one '*' and is never kept: a byte >= 0x80 starts a character unless it is
//              a continuation byte (10xxxxxx) right after another byte >= 0x80. '123-45-6789' (0, 4) -> '***-**-6789'.
//   YearOnly   'YYYY-MM-DD' (exactly 10 bytes) -> 'YYYY-01-01'; 'YYYY-MM-DD HH:MM:SS' followed by anything (fraction,
//              zone) -> 'YYYY-01-01 00:00:00'; either ending in ' BC' keeps the era; anything else -> the redaction
//              text (fail closed), or NULL for a column with nullOnMismatch (typed). Y, M, D, H, S: digits.
//   MonthYear  the same with the month kept: 'YYYY-MM-01' / 'YYYY-MM-01 00:00:00'.
//   Zip3       five leading digits -> the first three + '**' (whatever follows, e.g. a ZIP+4, dropped); anything
//              else -> the redaction text.
//   Email      '***' + everything from the last '@' on; no '@' -> the redaction text.
//   Fixed      the column's fixed text.
//   Detect     the redaction text when containsPhi() finds something, else the value as is.
import {
  MASK_ACTION_COUNT,
  MASK_FORMAT_ENTRY_BYTES,
  MASK_MAX_COLUMNS,
  MASK_MAX_FORMAT_BYTES,
  MASK_MAX_FORMATS,
  MASK_MAX_TEXT_BYTES,
  MASK_PLAN_ENTRY_BYTES,
  MASK_PLAN_HEADER_BYTES,
  MaskAction,
  MaskFlag,
  MaskStatus,
  maskLayout,
  type PgwardenExports,
} from '../wasm/abi.js';
import { loadPgwardenWasm } from '../wasm/loader.js';

export { MaskAction, MaskStatus } from '../wasm/abi.js';

export interface MaskColumnPlan {
  readonly action: MaskAction;
  /** YearOnly, MonthYear, Zip3, Email: a value of another shape becomes NULL, not the redaction text. */
  readonly nullOnMismatch: boolean;
  /** Partial only (0 otherwise). */
  readonly keepFirst: number;
  /** Partial only (0 otherwise). */
  readonly keepLast: number;
  /** Fixed only: the replacement's UTF-8 bytes. */
  readonly fixed: Buffer | undefined;
}

export interface MaskPlan {
  readonly columns: readonly MaskColumnPlan[];
  /** What Redact writes, and what the other actions fall back to when a value does not have the expected shape. */
  readonly redaction: Buffer;
  /** Every column is Pass: rows are forwarded as they are, with no kernel call and no copy. */
  readonly untouched: boolean;
  /** The most a masked value can be longer than the original: max(3, redaction, longest fixed text). */
  readonly growthPerColumn: number;
  /**
   * Identifier formats the Detect action also recognises (masking.mrn_formats and identifier_formats): `#` a digit,
   * `@` an ASCII letter, any other byte itself (ASCII letters in either case).
   */
  readonly formats: readonly Buffer[];
}

export interface MaskColumnSpec {
  action: MaskAction;
  /** YearOnly, MonthYear, Zip3, Email only: NULL for a value of another shape (typed columns: '***' is no date). */
  nullOnMismatch?: boolean;
  keepFirst?: number;
  keepLast?: number;
  fixed?: string;
}

/** A plan or a call that the kernel cannot use: a programming or configuration error, not a property of the data. */
export class MaskPlanError extends Error {
  readonly code = 'PGW_MASK_PLAN';
  constructor(message: string) {
    super(message);
    this.name = 'MaskPlanError';
  }
}

/** The row could not be masked; it must not be forwarded. `status` is a negative MaskStatus. */
export class DataRowMaskError extends Error {
  readonly code = 'PGW_MASK_ROW';
  readonly status: MaskStatus;
  constructor(status: MaskStatus) {
    super(describeStatus(status));
    this.name = 'DataRowMaskError';
    this.status = status;
  }
}

function describeStatus(status: MaskStatus): string {
  switch (status) {
    case MaskStatus.MalformedRow:
      return 'malformed DataRow: bad header, column length or trailing bytes';
    case MaskStatus.ColumnCount:
      return 'DataRow column count differs from the masking plan';
    case MaskStatus.OutputTooSmall:
      return 'masked DataRow does not fit the output buffer';
    case MaskStatus.BadPlan:
      return 'masking plan rejected by the kernel';
    case MaskStatus.BadCall:
      return 'masking kernel called without a plan or with a row larger than its input area';
    default:
      return `masking failed with status ${String(status)}`;
  }
}

const MAX_KEEP = 0xffff;

/** Actions that expect a shape (a date, a ZIP, an address) and fall back when a value has another. */
const SHAPED_ACTIONS: ReadonlySet<MaskAction> = new Set([
  MaskAction.YearOnly,
  MaskAction.MonthYear,
  MaskAction.Zip3,
  MaskAction.Email,
]);

/** Builds a plan from one spec per result column; throws MaskPlanError on anything the kernel would not accept. */
export function buildMaskPlan(
  columns: readonly MaskColumnSpec[],
  redaction = '***',
  formats: readonly string[] = [],
): MaskPlan {
  if (columns.length > MASK_MAX_COLUMNS) {
    throw new MaskPlanError(`a masking plan has at most ${MASK_MAX_COLUMNS} columns, got ${columns.length}`);
  }
  if (formats.length > MASK_MAX_FORMATS) {
    throw new MaskPlanError(`a masking plan has at most ${MASK_MAX_FORMATS} formats, got ${formats.length}`);
  }
  const formatBytes = formats.map((f, i) => {
    const bytes = textBytes(f, `format ${i}`);
    if (bytes.length === 0 || bytes.length > MASK_MAX_FORMAT_BYTES) {
      throw new MaskPlanError(`format ${i} must be 1 to ${MASK_MAX_FORMAT_BYTES} bytes, got ${bytes.length}`);
    }
    return bytes;
  });
  const redactionBytes = textBytes(redaction, 'redaction text');
  let growth = Math.max(3, redactionBytes.length);
  let untouched = true;
  const planned = columns.map((spec, index): MaskColumnPlan => {
    const { action } = spec;
    if (!Number.isInteger(action) || action < 0 || action >= MASK_ACTION_COUNT) {
      throw new MaskPlanError(`column ${index}: unknown mask action ${String(action)}`);
    }
    if (action !== MaskAction.Partial && (spec.keepFirst !== undefined || spec.keepLast !== undefined)) {
      throw new MaskPlanError(`column ${index}: keepFirst/keepLast apply to the partial action only`);
    }
    if (action !== MaskAction.Fixed && spec.fixed !== undefined) {
      throw new MaskPlanError(`column ${index}: a fixed text applies to the fixed action only`);
    }
    const nullOnMismatch = spec.nullOnMismatch === true;
    if (nullOnMismatch && !SHAPED_ACTIONS.has(action)) {
      throw new MaskPlanError(
        `column ${index}: nullOnMismatch applies to year_only, month_year, zip3 and email only`,
      );
    }
    if (action !== MaskAction.Pass) untouched = false;
    const keepFirst = keepCount(spec.keepFirst, index, 'keepFirst');
    const keepLast = keepCount(spec.keepLast, index, 'keepLast');
    let fixed: Buffer | undefined;
    if (action === MaskAction.Fixed) {
      if (spec.fixed === undefined)
        throw new MaskPlanError(`column ${index}: the fixed action needs a fixed text`);
      fixed = textBytes(spec.fixed, `column ${index} fixed text`);
      growth = Math.max(growth, fixed.length);
    }
    return Object.freeze({ action, nullOnMismatch, keepFirst, keepLast, fixed });
  });
  return Object.freeze({
    columns: Object.freeze(planned),
    redaction: redactionBytes,
    untouched,
    growthPerColumn: growth,
    formats: Object.freeze(formatBytes),
  });
}

function keepCount(value: number | undefined, index: number, name: string): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value > MAX_KEEP) {
    throw new MaskPlanError(`column ${index}: ${name} must be an integer in [0, ${MAX_KEEP}], got ${value}`);
  }
  return value;
}

function textBytes(text: string, what: string): Buffer {
  if (typeof text !== 'string') throw new MaskPlanError(`${what} must be a string`);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MASK_MAX_TEXT_BYTES) {
    throw new MaskPlanError(`${what} is ${bytes.length} bytes; at most ${MASK_MAX_TEXT_BYTES} are allowed`);
  }
  return bytes;
}

/** An upper bound of the masked row's length: no value grows by more than plan.growthPerColumn. */
export function maskedRowBound(rowLength: number, plan: MaskPlan): number {
  return rowLength + plan.columns.length * plan.growthPerColumn;
}

/**
 * The plan in the kernel's layout (src/wasm/abi.ts): header, one entry per column, one per format, then the texts.
 */
export function encodeMaskPlan(plan: MaskPlan): Uint8Array {
  const columns = plan.columns;
  const formatTable = MASK_PLAN_HEADER_BYTES + columns.length * MASK_PLAN_ENTRY_BYTES;
  const tableEnd = formatTable + plan.formats.length * MASK_FORMAT_ENTRY_BYTES;
  let size = tableEnd + plan.redaction.length;
  for (const column of columns) size += column.fixed?.length ?? 0;
  for (const format of plan.formats) size += format.length;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let text = tableEnd;
  view.setUint32(0, columns.length, true);
  view.setUint32(4, text, true);
  view.setUint32(8, plan.redaction.length, true);
  view.setUint32(12, plan.formats.length, true);
  bytes.set(plan.redaction, text);
  text += plan.redaction.length;
  plan.formats.forEach((format, i) => {
    view.setUint32(formatTable + i * MASK_FORMAT_ENTRY_BYTES, text, true);
    view.setUint32(formatTable + i * MASK_FORMAT_ENTRY_BYTES + 4, format.length, true);
    bytes.set(format, text);
    text += format.length;
  });
  let entry = MASK_PLAN_HEADER_BYTES;
  for (const column of columns) {
    view.setUint32(entry, column.action, true);
    if (column.nullOnMismatch) view.setUint32(entry + 12, MaskFlag.NullOnMismatch, true);
    if (column.action === MaskAction.Partial) {
      view.setUint32(entry + 4, column.keepFirst, true);
      view.setUint32(entry + 8, column.keepLast, true);
    } else if (column.action === MaskAction.Fixed) {
      if (column.fixed === undefined) {
        // Only a hand-made plan lacks the text: point at the redaction text, as the twin falls back to it.
        view.setUint32(entry + 4, tableEnd, true);
        view.setUint32(entry + 8, plan.redaction.length, true);
      } else {
        view.setUint32(entry + 4, text, true);
        view.setUint32(entry + 8, column.fixed.length, true);
        bytes.set(column.fixed, text);
        text += column.fixed.length;
      }
    }
    entry += MASK_PLAN_ENTRY_BYTES;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// TypeScript twin: the reference in property tests and the switchable fallback.

const DATA_ROW = 0x44; // 'D'
const ROW_HEADER = 7;
const STAR = 0x2a; // '*'

/** Masks one DataRow; returns the row itself (no copy, no check) when the plan is untouched. Throws DataRowMaskError. */
export function maskDataRowTs(row: Buffer, plan: MaskPlan): Buffer {
  if (plan.untouched) return row;
  const out = Buffer.allocUnsafe(maskedRowBound(row.length, plan));
  const written = maskDataRowInto(row, plan, out);
  if (written < 0) throw new DataRowMaskError(written as MaskStatus);
  return out.subarray(0, written);
}

/**
 * The twin of the kernel's maskRow: masks `row` into `out` and returns the masked length or a negative MaskStatus,
 * checking in the same order (header, column count, then column by column: length MALFORMED before room
 * OUTPUT_TOO_SMALL; trailing bytes last). Runs whatever the plan, untouched or not.
 */
export function maskDataRowInto(row: Uint8Array, plan: MaskPlan, out: Uint8Array): number {
  const end = row.length;
  const outEnd = out.length;
  if (end < ROW_HEADER) return MaskStatus.MalformedRow;
  if (row[0] !== DATA_ROW) return MaskStatus.MalformedRow;
  if (readUint32(row, 1) !== end - 1) return MaskStatus.MalformedRow;
  const count = (row[5] << 8) | row[6];
  if (count > MASK_MAX_COLUMNS) return MaskStatus.MalformedRow; // a negative int16
  const columns = plan.columns;
  if (count !== columns.length) return MaskStatus.ColumnCount;
  if (outEnd < ROW_HEADER) return MaskStatus.OutputTooSmall;

  let p = ROW_HEADER;
  let o = ROW_HEADER;
  for (let c = 0; c < count; c++) {
    if (end - p < 4) return MaskStatus.MalformedRow;
    const length = readUint32(row, p);
    p += 4;
    const isNull = length === 0xffffffff;
    if (!isNull && (length > 0x7fffffff || length > end - p)) return MaskStatus.MalformedRow;
    if (outEnd - o < 4) return MaskStatus.OutputTooSmall;
    const column = columns[c];
    if (isNull || column.action === MaskAction.Null) {
      out[o] = out[o + 1] = out[o + 2] = out[o + 3] = 0xff;
      o += 4;
      if (!isNull) p += length;
      continue;
    }
    const written = maskValue(column, plan, row, p, p + length, out, o + 4);
    if (written === WRITE_NULL) {
      out[o] = out[o + 1] = out[o + 2] = out[o + 3] = 0xff;
      o += 4;
      p += length;
      continue;
    }
    if (written < 0) return MaskStatus.OutputTooSmall;
    writeUint32(out, o, written);
    o += 4 + written;
    p += length;
  }
  if (p !== end) return MaskStatus.MalformedRow;
  out[0] = DATA_ROW;
  writeUint32(out, 1, o - 1);
  out[5] = count >> 8;
  out[6] = count & 0xff;
  return o;
}

function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

function writeUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = (value >>> 16) & 0xff;
  bytes[at + 2] = (value >>> 8) & 0xff;
  bytes[at + 3] = value & 0xff;
}

/** Writes the masked form of v[start, end) at out[dst]; returns its length, or -1 when it does not fit. */
function maskValue(
  column: MaskColumnPlan,
  plan: MaskPlan,
  v: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  dst: number,
): number {
  const redaction = plan.redaction;
  // What a value of the wrong shape gets: the redaction text, or NULL (null here) for typed columns.
  const fallback = column.nullOnMismatch ? null : redaction;
  switch (column.action) {
    case MaskAction.Pass:
      return emit(v, start, end, out, dst);
    case MaskAction.Partial:
      return writePartial(v, start, end, column.keepFirst, column.keepLast, out, dst);
    case MaskAction.YearOnly:
      return writeDate(v, start, end, false, fallback, out, dst);
    case MaskAction.MonthYear:
      return writeDate(v, start, end, true, fallback, out, dst);
    case MaskAction.Zip3:
      return writeZip3(v, start, end, fallback, out, dst);
    case MaskAction.Email:
      return writeEmail(v, start, end, fallback, out, dst);
    case MaskAction.Fixed:
      return column.fixed === undefined
        ? emit(redaction, 0, redaction.length, out, dst)
        : emit(column.fixed, 0, column.fixed.length, out, dst);
    case MaskAction.Detect:
      if (containsPhi(v, start, end, plan.formats)) return emit(redaction, 0, redaction.length, out, dst);
      return emit(v, start, end, out, dst);
    default:
      return emit(redaction, 0, redaction.length, out, dst);
  }
}

/** What a writer returns for a value that goes out as NULL (a shape mismatch under nullOnMismatch). */
const WRITE_NULL = -2;

/** A value of the wrong shape: the redaction text, or NULL when there is none (nullOnMismatch). */
function mismatch(redaction: Buffer | null, out: Uint8Array, dst: number): number {
  return redaction === null ? WRITE_NULL : emit(redaction, 0, redaction.length, out, dst);
}

function emit(src: Uint8Array, start: number, end: number, out: Uint8Array, dst: number): number {
  const length = end - start;
  if (length > out.length - dst) return -1;
  out.set(src.subarray(start, end), dst);
  return length;
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isAsciiAlnum = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
/** Byte at p, or 0 past the end (0 is never a digit, separator or text character). */
const byteAt = (v: Uint8Array, p: number, end: number): number => (p < end ? v[p] : 0);

function digitsAt(v: Uint8Array, p: number, count: number, end: number): boolean {
  if (end - p < count) return false;
  for (let i = 0; i < count; i++) if (!isDigit(v[p + i])) return false;
  return true;
}

const twoDigits = (v: Uint8Array, p: number): number => (v[p] - 0x30) * 10 + (v[p + 1] - 0x30);

function writePartial(
  v: Uint8Array,
  start: number,
  end: number,
  keepFirst: number,
  keepLast: number,
  out: Uint8Array,
  dst: number,
): number {
  // First pass: how many letters/digits (to place the kept tail) and how long the output is (to check room).
  let alnums = 0;
  let outLength = 0;
  let previous = 0;
  for (let p = start; p < end; p++) {
    const c = v[p];
    if (c < 0x80) {
      outLength++;
      if (isAsciiAlnum(c)) alnums++;
    } else if (previous < 0x80 || (c & 0xc0) !== 0x80) {
      outLength++;
    }
    previous = c;
  }
  if (outLength > out.length - dst) return -1;
  const lastFrom = keepLast >= alnums ? 0 : alnums - keepLast;
  let o = dst;
  let index = 0;
  previous = 0;
  for (let p = start; p < end; p++) {
    const c = v[p];
    if (c < 0x80) {
      if (isAsciiAlnum(c)) {
        out[o] = index < keepFirst || index >= lastFrom ? c : STAR;
        index++;
      } else {
        out[o] = c;
      }
      o++;
    } else if (previous < 0x80 || (c & 0xc0) !== 0x80) {
      out[o++] = STAR;
    }
    previous = c;
  }
  return outLength;
}

const MIDNIGHT = Buffer.from(' 00:00:00', 'latin1');
const ERA_BC = Buffer.from(' BC', 'latin1');

function writeDate(
  v: Uint8Array,
  start: number,
  end: number,
  keepMonth: boolean,
  redaction: Buffer | null,
  out: Uint8Array,
  dst: number,
): number {
  const isDate =
    digitsAt(v, start, 4, end) &&
    byteAt(v, start + 4, end) === 0x2d &&
    digitsAt(v, start + 5, 2, end) &&
    byteAt(v, start + 7, end) === 0x2d &&
    digitsAt(v, start + 8, 2, end);
  if (!isDate) return mismatch(redaction, out, dst);
  // PostgreSQL writes an era after the value: ' BC' stays (year 44 BC is not year 44).
  const bc = end - start >= 13 && v[end - 3] === 0x20 && v[end - 2] === 0x42 && v[end - 1] === 0x43;
  let outLength = 10;
  if (end - start - (bc ? 3 : 0) !== 10) {
    const isTimestamp =
      byteAt(v, start + 10, end) === 0x20 &&
      digitsAt(v, start + 11, 2, end) &&
      byteAt(v, start + 13, end) === 0x3a &&
      digitsAt(v, start + 14, 2, end) &&
      byteAt(v, start + 16, end) === 0x3a &&
      digitsAt(v, start + 17, 2, end);
    if (!isTimestamp) return mismatch(redaction, out, dst);
    outLength = 19;
  }
  if (outLength + (bc ? 3 : 0) > out.length - dst) return -1;
  out.set(v.subarray(start, start + 5), dst); // YYYY-
  out[dst + 5] = keepMonth ? v[start + 5] : 0x30;
  out[dst + 6] = keepMonth ? v[start + 6] : 0x31;
  out[dst + 7] = 0x2d;
  out[dst + 8] = 0x30;
  out[dst + 9] = 0x31;
  if (outLength === 19) out.set(MIDNIGHT, dst + 10);
  if (bc) {
    out.set(ERA_BC, dst + outLength);
    outLength += 3;
  }
  return outLength;
}

function writeZip3(
  v: Uint8Array,
  start: number,
  end: number,
  redaction: Buffer | null,
  out: Uint8Array,
  dst: number,
): number {
  if (!digitsAt(v, start, 5, end)) return mismatch(redaction, out, dst);
  if (out.length - dst < 5) return -1;
  out[dst] = v[start];
  out[dst + 1] = v[start + 1];
  out[dst + 2] = v[start + 2];
  out[dst + 3] = STAR;
  out[dst + 4] = STAR;
  return 5;
}

function writeEmail(
  v: Uint8Array,
  start: number,
  end: number,
  redaction: Buffer | null,
  out: Uint8Array,
  dst: number,
): number {
  const at = v.subarray(start, end).lastIndexOf(0x40);
  if (at < 0) return mismatch(redaction, out, dst);
  const domainLength = end - start - at;
  const outLength = 3 + domainLength;
  if (outLength > out.length - dst) return -1;
  out[dst] = out[dst + 1] = out[dst + 2] = STAR;
  out.set(v.subarray(start + at, end), dst + 3);
  return outLength;
}

// ---------------------------------------------------------------------------------------------------------------
// Content detectors (Detect). A false positive masks a value, a false negative leaks one: where a choice was open,
// the detectors match more rather than less. A numeric candidate starts at a byte NOT preceded by an ASCII digit and
// must not be followed by one (so '1234567890' holds no SSN, but 'SSN123456789' does).
//
//   SSN    3 digits, an optional separator ('-', ' ', '.', '/' or '_'), 2 digits, an optional separator, 4 digits; the area (first 3)
//          is not 000, 666 or 900-999, the group (next 2) not 00, the serial (last 4) not 0000. The two separators
//          are independent ('123-45 6789' matches).
//   Phone  an optional country code ('+1' or '1', then an optional separator), then a 10-digit number: 3 digits
//          (optionally in parentheses), an optional separator, 3 digits, an optional separator, 4 digits. Separators
//          are one of ' ', '-', '.'. Any 10 digits qualify (no NANP area-code rule): '5551234567', '(555) 123-4567',
//          '555.123.4567', '+1 555 123 4567', '1-555-123-4567', '+15551234567'. A '+' or '(' also starts a candidate.
//   Card   13 to 19 digits, consecutive digits separated by at most one ' ' or '-', passing the Luhn check. The
//          candidate starts at a digit group and may end at the end of any later group (not inside one), so a card
//          number followed by another digit group ('4111 1111 1111 1111 2024') is still found.
//   E-mail at an '@': the byte before it is an RFC 5322 atext character, '.', or non-ASCII; after it a domain label
//          ([A-Za-z0-9-] or non-ASCII, one or more), a '.', and at least one more label character. 'a@b.co' matches;
//          'user@localhost', '@example.com' and 'a@.com' do not.
//   Date   ISO 'YYYY-MM-DD' with month 01-12 and day 01-31, not followed by a digit (a timestamp's date matches).
//          Numeric 'A/B/Y', 'A.B.Y' or 'A-B-Y' (one separator twice): A and B of 1 or 2 digits, one of them a month
//          (1-12) and the other a day (1-31), Y of exactly 2 or 4 digits ('7/2/1984', '02.07.84', '12-31-1999').
//          With a month name (see MONTH_NAMES; any case, an optional '.' after it): 'July 2, 1984', 'Jul 2nd 1984',
//          'Jul-02-1984', '2 July 1984', '02-Jul-1984', '2nd Jul., 1984': a day of 1 or 2 digits (1-31) with an
//          optional st/nd/rd/th, the parts separated by one ' ' or '-' (an optional ',' before the year), a 4-digit
//          year. The name must stand as a word (not preceded or followed by a letter).
//   ZIP    exactly 5 digits (not followed by a digit); a ZIP+4 matches through its first 5. Note that this makes any
//          standalone 5-digit number (e.g. 12345.67) a match.
//   Street a house number of 1 to 6 digits (an optional single letter right after it, '221B'), one ' ', then up
//          to 5 words separated by one ' ' (each optionally followed by '.'), of which one after the first is a
//          street suffix (STREET_SUFFIXES, any case, standing as a word); the words before it start with an
//          upper-case letter or are ordinals ('5th'). '123 Main St', '1600 Pennsylvania Avenue', '12 W. 5th Ave.'.
//   PO box 'P', an optional '.', an optional ' ', 'O', an optional '.', one ' ', 'BOX', one ' ', an optional '#', a
//          digit (any case; at the start of a word): 'PO Box 12', 'p.o. box #7'.
//   URL    at the start of a word, 'http://', 'https://' or 'ftp://' and a letter or digit, or 'www.' and a letter or
//          digit (any case).
//   IPv4   four decimal parts of 1-3 digits, each at most 255, joined by '.', not followed by a digit or by '.' and a
//          digit.
//   IPv6   groups of 1-4 hex digits joined by ':', eight of them, or one to seven with one '::' among them (leading
//          or trailing too: '::1', 'fe80::1'); it starts at a hex digit or ':' not preceded by a letter, a digit or
//          ':', and is not followed by a letter or digit. '10:30:00' (three groups, no '::') does not match.
//   MAC    six pairs of hex digits joined by one separator, ':' or '-' throughout, at the same starts as IPv6, not
//          followed by a letter or digit ('00:1a:2b:3c:4d:5e'): a device identifier.
//   VIN    17 of [0-9A-HJ-NPR-Z] (upper case; no I, O or Q), at least one letter and one digit, standing as a word
//          (not preceded or followed by an ASCII letter or digit): a vehicle identification number.
//   Format each of the plan's identifier formats (MRN, health plan, account, licence, serial numbers): '#' a digit,
//          '@' an ASCII letter, any other byte itself (ASCII letters in either case), standing as a word.

const NO_FORMATS: readonly Uint8Array[] = [];

/** True when v[start, end) contains an identifier one of the detectors recognises. */
export function containsPhi(
  v: Uint8Array,
  start = 0,
  end = v.length,
  formats: readonly Uint8Array[] = NO_FORMATS,
): boolean {
  return findPhi(v, start, end, formats) !== undefined;
}

export type PhiKind =
  | 'ssn'
  | 'phone'
  | 'card'
  | 'date'
  | 'zip'
  | 'email'
  | 'address'
  | 'url'
  | 'ip'
  | 'mac'
  | 'vin'
  | 'identifier';

/**
 * The first detector that fires, scanning left to right. At one position, in this order: e-mail ('@'); at a digit
 * not preceded by one: SSN, phone, card, dates, street address, IPv4, ZIP; at '+' or '(' not preceded by a digit:
 * phone; at a letter not preceded by one: URL, date, PO box; at any byte not preceded by a letter or digit: VIN and
 * the formats, then (at a hex digit or ':' not preceded by ':') MAC and IPv6.
 */
export function findPhi(
  v: Uint8Array,
  start = 0,
  end = v.length,
  formats: readonly Uint8Array[] = NO_FORMATS,
): PhiKind | undefined {
  let previous = 0;
  for (let p = start; p < end; p++) {
    const c = v[p];
    if (c === 0x40) {
      if (emailAt(v, start, p, end)) return 'email';
    } else if (isDigit(c)) {
      if (!isDigit(previous)) {
        if (ssnAt(v, p, end)) return 'ssn';
        if (phoneAt(v, p, end)) return 'phone';
        if (cardAt(v, p, end)) return 'card';
        if (isoDateAt(v, p, end) || numericDateAt(v, p, end) || dayMonthDateAt(v, p, end)) return 'date';
        if (streetAddressAt(v, p, end)) return 'address';
        if (ipv4At(v, p, end)) return 'ip';
        if (zipAt(v, p, end)) return 'zip';
      }
    } else if (c === 0x2b || c === 0x28) {
      if (!isDigit(previous) && phoneAt(v, p, end)) return 'phone';
    } else if (isAsciiLetter(c)) {
      if (!isAsciiLetter(previous)) {
        if (urlAt(v, p, end)) return 'url';
        if (monthDayDateAt(v, p, end)) return 'date';
        if (poBoxAt(v, p, end)) return 'address';
      }
    }
    if (!isAsciiAlnum(previous)) {
      if (vinAt(v, p, end)) return 'vin';
      for (const format of formats) if (formatAt(v, p, end, format)) return 'identifier';
      if (previous !== 0x3a && (isHexDigit(c) || c === 0x3a)) {
        if (macAt(v, p, end)) return 'mac';
        if (ipv6At(v, p, end)) return 'ip';
      }
    }
    previous = c;
  }
  return undefined;
}

const endsNumber = (v: Uint8Array, p: number, end: number): boolean => !isDigit(byteAt(v, p, end));
const isSsnSeparator = (c: number): boolean =>
  c === 0x2d || c === 0x20 || c === 0x2e || c === 0x2f || c === 0x5f;

function ssnAt(v: Uint8Array, start: number, end: number): boolean {
  if (!digitsAt(v, start, 3, end)) return false;
  let p = start + 3;
  if (isSsnSeparator(byteAt(v, p, end))) p++;
  if (!digitsAt(v, p, 2, end)) return false;
  const group = p;
  p += 2;
  if (isSsnSeparator(byteAt(v, p, end))) p++;
  if (!digitsAt(v, p, 4, end)) return false;
  const serial = p;
  p += 4;
  if (!endsNumber(v, p, end)) return false;
  const area = twoDigits(v, start) * 10 + (v[start + 2] - 0x30);
  if (area === 0 || area === 666 || area >= 900) return false;
  if (twoDigits(v, group) === 0) return false;
  return twoDigits(v, serial) !== 0 || twoDigits(v, serial + 2) !== 0;
}

function skipPhoneSeparator(v: Uint8Array, p: number, end: number): number {
  const c = byteAt(v, p, end);
  return c === 0x20 || c === 0x2d || c === 0x2e ? p + 1 : p;
}

function phoneAt(v: Uint8Array, start: number, end: number): boolean {
  const c = byteAt(v, start, end);
  if (c === 0x2b) {
    if (byteAt(v, start + 1, end) !== 0x31) return false;
    return nationalPhoneAt(v, skipPhoneSeparator(v, start + 2, end), end);
  }
  if (nationalPhoneAt(v, start, end)) return true;
  return c === 0x31 && nationalPhoneAt(v, skipPhoneSeparator(v, start + 1, end), end);
}

function nationalPhoneAt(v: Uint8Array, start: number, end: number): boolean {
  let p = start;
  const paren = byteAt(v, p, end) === 0x28;
  if (paren) p++;
  if (!digitsAt(v, p, 3, end)) return false;
  p += 3;
  if (paren) {
    if (byteAt(v, p, end) !== 0x29) return false;
    p++;
  }
  p = skipPhoneSeparator(v, p, end);
  if (!digitsAt(v, p, 3, end)) return false;
  p = skipPhoneSeparator(v, p + 3, end);
  if (!digitsAt(v, p, 4, end)) return false;
  return endsNumber(v, p + 4, end);
}

function cardAt(v: Uint8Array, start: number, end: number): boolean {
  let count = 0;
  // Luhn sums with the digits at even (sumEven) or odd (sumOdd) positions from the left doubled; which one applies
  // depends on the final count (the rightmost digit is never doubled).
  let sumEven = 0;
  let sumOdd = 0;
  let p = start;
  for (;;) {
    let c = byteAt(v, p, end);
    while (isDigit(c)) {
      if (count === 19) return false;
      const d = c - 0x30;
      const doubled = d * 2 > 9 ? d * 2 - 9 : d * 2;
      if ((count & 1) === 0) {
        sumEven += doubled;
        sumOdd += d;
      } else {
        sumEven += d;
        sumOdd += doubled;
      }
      count++;
      p++;
      c = byteAt(v, p, end);
    }
    if (count >= 13 && ((count & 1) === 0 ? sumEven : sumOdd) % 10 === 0) return true;
    if ((c === 0x20 || c === 0x2d) && isDigit(byteAt(v, p + 1, end))) {
      p++;
      continue;
    }
    return false;
  }
}

function isoDateAt(v: Uint8Array, start: number, end: number): boolean {
  if (!digitsAt(v, start, 4, end) || byteAt(v, start + 4, end) !== 0x2d) return false;
  if (
    !digitsAt(v, start + 5, 2, end) ||
    byteAt(v, start + 7, end) !== 0x2d ||
    !digitsAt(v, start + 8, 2, end)
  ) {
    return false;
  }
  if (!endsNumber(v, start + 10, end)) return false;
  const month = twoDigits(v, start + 5);
  const day = twoDigits(v, start + 8);
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

function zipAt(v: Uint8Array, start: number, end: number): boolean {
  return digitsAt(v, start, 5, end) && endsNumber(v, start + 5, end);
}

const isAsciiLetter = (c: number): boolean => (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;
const isHexDigit = (c: number): boolean => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
const lower = (c: number): number => (isAsciiLetter(c) ? c | 0x20 : c);

/** The digits at p (at most `max` + 1 are looked at): their count, or -1 when more than `max` follow. */
function digitRun(v: Uint8Array, p: number, max: number, end: number): number {
  let n = 0;
  while (isDigit(byteAt(v, p + n, end))) {
    if (n === max) return -1;
    n++;
  }
  return n;
}

function numberAt(v: Uint8Array, p: number, count: number): number {
  let value = 0;
  for (let i = 0; i < count; i++) value = value * 10 + (v[p + i] - 0x30);
  return value;
}

/** 'A/B/Y', 'A.B.Y', 'A-B-Y': one of A, B a month and the other a day; Y of 2 or 4 digits. */
function numericDateAt(v: Uint8Array, start: number, end: number): boolean {
  const aDigits = digitRun(v, start, 2, end);
  if (aDigits <= 0) return false;
  const separator = byteAt(v, start + aDigits, end);
  if (separator !== 0x2f && separator !== 0x2e && separator !== 0x2d) return false;
  const b = start + aDigits + 1;
  const bDigits = digitRun(v, b, 2, end);
  if (bDigits <= 0 || byteAt(v, b + bDigits, end) !== separator) return false;
  const yearDigits = digitRun(v, b + bDigits + 1, 4, end);
  if (yearDigits !== 2 && yearDigits !== 4) return false;
  const first = numberAt(v, start, aDigits);
  const second = numberAt(v, b, bDigits);
  if (first === 0 || second === 0) return false;
  return (first <= 12 && second <= 31) || (first <= 31 && second <= 12);
}

/** Month names and abbreviations a date may spell out (matched in any case, as whole words). */
const MONTH_NAMES: ReadonlySet<string> = new Set([
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
  'jan',
  'feb',
  'mar',
  'apr',
  'jun',
  'jul',
  'aug',
  'sep',
  'sept',
  'oct',
  'nov',
  'dec',
]);

/** The letters of the word at p, lower case, when it is at most `max` long; '' otherwise. */
function wordAt(v: Uint8Array, p: number, max: number, end: number): string {
  let word = '';
  while (isAsciiLetter(byteAt(v, p + word.length, end))) {
    if (word.length === max) return '';
    word += String.fromCharCode(v[p + word.length] | 0x20);
  }
  return word;
}

/** After a month name at p (and an optional '.'): the position, or -1 when no month name stands there. */
function afterMonthName(v: Uint8Array, p: number, end: number): number {
  const word = wordAt(v, p, 9, end);
  if (!MONTH_NAMES.has(word)) return -1;
  const after = p + word.length;
  return byteAt(v, after, end) === 0x2e ? after + 1 : after;
}

/** After a day of the month (1-31) at p, with an optional st/nd/rd/th: the position, or -1. */
function afterDay(v: Uint8Array, p: number, end: number): number {
  const digits = digitRun(v, p, 2, end);
  if (digits <= 0) return -1;
  const day = numberAt(v, p, digits);
  if (day === 0 || day > 31) return -1;
  const after = p + digits;
  return isOrdinalSuffix(v, after, end) && !isAsciiLetter(byteAt(v, after + 2, end)) ? after + 2 : after;
}

/** The end of 1-3 digits followed by st/nd/rd/th and no letter or digit ('5th', '101st'), or -1. */
function afterOrdinal(v: Uint8Array, p: number, end: number): number {
  const digits = digitRun(v, p, 3, end);
  if (digits <= 0) return -1;
  const after = p + digits;
  if (!isOrdinalSuffix(v, after, end) || isAsciiAlnum(byteAt(v, after + 2, end))) return -1;
  return after + 2;
}

/** st, nd, rd or th (any case) at p. */
function isOrdinalSuffix(v: Uint8Array, p: number, end: number): boolean {
  const pair = lower(byteAt(v, p, end)) * 256 + lower(byteAt(v, p + 1, end));
  return pair === 0x7374 || pair === 0x6e64 || pair === 0x7264 || pair === 0x7468;
}

const skipDateSeparator = (v: Uint8Array, p: number, end: number): number => {
  const c = byteAt(v, p, end);
  return c === 0x20 || c === 0x2d ? p + 1 : p;
};

/** A 4-digit year at p, not followed by a digit. */
const yearAt = (v: Uint8Array, p: number, end: number): boolean => digitRun(v, p, 4, end) === 4;

/** 'July 2, 1984', 'Jul 2nd 1984', 'Jul-02-1984': at the start of a word. */
function monthDayDateAt(v: Uint8Array, start: number, end: number): boolean {
  let p = afterMonthName(v, start, end);
  if (p < 0) return false;
  const separator = byteAt(v, p, end);
  if (separator !== 0x20 && separator !== 0x2d) return false;
  p = afterDay(v, p + 1, end);
  if (p < 0 || isAsciiLetter(byteAt(v, p, end))) return false;
  if (byteAt(v, p, end) === 0x2c) p++;
  return yearAt(v, skipDateSeparator(v, p, end), end);
}

/** '2 July 1984', '02-Jul-1984', '2nd Jul., 1984', '02JUL1984': at a digit not preceded by one. */
function dayMonthDateAt(v: Uint8Array, start: number, end: number): boolean {
  let p = afterDay(v, start, end);
  if (p < 0) return false;
  p = skipDateSeparator(v, p, end);
  p = afterMonthName(v, p, end);
  if (p < 0) return false;
  if (byteAt(v, p, end) === 0x2c) p++;
  return yearAt(v, skipDateSeparator(v, p, end), end);
}

/** Street suffixes (USPS abbreviations and words) that end a street name; matched in any case, as whole words. */
const STREET_SUFFIXES: ReadonlySet<string> = new Set([
  'street',
  'st',
  'avenue',
  'ave',
  'av',
  'road',
  'rd',
  'boulevard',
  'blvd',
  'drive',
  'lane',
  'ln',
  'way',
  'court',
  'ct',
  'place',
  'pl',
  'terrace',
  'circle',
  'cir',
  'parkway',
  'pkwy',
  'highway',
  'hwy',
  'square',
  'sq',
  'trail',
]);

/** '123 Main St', '221B Baker Street', '12 W. 5th Ave.': at a digit not preceded by one. */
function streetAddressAt(v: Uint8Array, start: number, end: number): boolean {
  const digits = digitRun(v, start, 6, end);
  if (digits <= 0) return false;
  let p = start + digits;
  if (isAsciiLetter(byteAt(v, p, end)) && !isAsciiLetter(byteAt(v, p + 1, end))) p++; // 221B
  if (byteAt(v, p, end) !== 0x20) return false;
  p++;
  for (let word = 0; word < 5; word++) {
    const c = byteAt(v, p, end);
    let next: number;
    if (isAsciiLetter(c)) {
      const text = wordAt(v, p, 20, end);
      if (text === '') return false;
      next = p + text.length;
      if (isDigit(byteAt(v, next, end))) return false;
      if (word > 0 && STREET_SUFFIXES.has(text)) return true;
      if (c > 0x5a) return false; // a name word starts upper case
    } else {
      next = afterOrdinal(v, p, end); // '5th', '42nd', '101st'
      if (next < 0) return false;
    }
    if (byteAt(v, next, end) === 0x2e) next++;
    if (byteAt(v, next, end) !== 0x20) return false;
    p = next + 1;
  }
  return false;
}

/** 'PO Box 12', 'P.O. Box 7', 'p o box #3': at the start of a word. */
function poBoxAt(v: Uint8Array, start: number, end: number): boolean {
  if (lower(v[start]) !== 0x70) return false;
  let p = start + 1;
  if (byteAt(v, p, end) === 0x2e) p++;
  if (byteAt(v, p, end) === 0x20) p++;
  if (lower(byteAt(v, p, end)) !== 0x6f) return false;
  p++;
  if (byteAt(v, p, end) === 0x2e) p++;
  if (byteAt(v, p, end) !== 0x20) return false;
  p++;
  if (!lettersAt(v, p, 'box ', end)) return false;
  p += 4;
  if (byteAt(v, p, end) === 0x23) p++;
  return isDigit(byteAt(v, p, end));
}

/** v[p...] starts with `text` (lower-case ASCII), letters compared in any case. */
function lettersAt(v: Uint8Array, p: number, text: string, end: number): boolean {
  if (end - p < text.length) return false;
  for (let i = 0; i < text.length; i++) if (lower(v[p + i]) !== text.charCodeAt(i)) return false;
  return true;
}

/** 'http://', 'https://', 'ftp://' or 'www.' followed by a letter or digit: at the start of a word. */
function urlAt(v: Uint8Array, start: number, end: number): boolean {
  for (const scheme of ['http://', 'https://', 'ftp://', 'www.']) {
    if (lettersAt(v, start, scheme, end)) return isAsciiAlnum(byteAt(v, start + scheme.length, end));
  }
  return false;
}

/** Four parts of 1-3 digits (each <= 255) joined by '.', not followed by a digit or by '.' and a digit. */
function ipv4At(v: Uint8Array, start: number, end: number): boolean {
  let p = start;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (byteAt(v, p, end) !== 0x2e) return false;
      p++;
    }
    const digits = digitRun(v, p, 3, end);
    if (digits <= 0 || numberAt(v, p, digits) > 255) return false;
    p += digits;
  }
  return !(byteAt(v, p, end) === 0x2e && isDigit(byteAt(v, p + 1, end)));
}

/** The hex digits at p (at most 5 looked at). */
function hexRun(v: Uint8Array, p: number, end: number): number {
  let n = 0;
  while (n < 5 && isHexDigit(byteAt(v, p + n, end))) n++;
  return n;
}

/** Eight groups of 1-4 hex digits joined by ':', or fewer (at least one) with one '::'; then no letter or digit. */
function ipv6At(v: Uint8Array, start: number, end: number): boolean {
  let p = start;
  let groups = 0;
  let compressed = false;
  if (byteAt(v, p, end) === 0x3a) {
    if (byteAt(v, p + 1, end) !== 0x3a) return false;
    compressed = true;
    p += 2;
  }
  for (;;) {
    const digits = hexRun(v, p, end);
    if (digits === 0) break;
    if (digits > 4 || groups === 8) return false;
    groups++;
    p += digits;
    if (byteAt(v, p, end) !== 0x3a) break;
    if (byteAt(v, p + 1, end) === 0x3a) {
      if (compressed) return false;
      compressed = true;
      p += 2;
    } else {
      if (!isHexDigit(byteAt(v, p + 1, end))) return false;
      p++;
    }
  }
  if (isAsciiAlnum(byteAt(v, p, end))) return false;
  return compressed ? groups >= 1 && groups <= 7 : groups === 8;
}

/** Six pairs of hex digits joined by ':' or '-' (the same throughout), not followed by a letter or digit. */
function macAt(v: Uint8Array, start: number, end: number): boolean {
  const separator = byteAt(v, start + 2, end);
  if (separator !== 0x3a && separator !== 0x2d) return false;
  for (let pair = 0; pair < 6; pair++) {
    const p = start + pair * 3;
    if (!isHexDigit(byteAt(v, p, end)) || !isHexDigit(byteAt(v, p + 1, end))) return false;
    if (pair < 5 && byteAt(v, p + 2, end) !== separator) return false;
  }
  return !isAsciiAlnum(byteAt(v, start + 17, end));
}

/** 17 of [0-9A-HJ-NPR-Z] with a letter and a digit, not followed by a letter or digit. */
function vinAt(v: Uint8Array, start: number, end: number): boolean {
  if (end - start < 17) return false;
  let letters = 0;
  let digits = 0;
  for (let i = 0; i < 17; i++) {
    const c = v[start + i];
    if (isDigit(c)) digits++;
    else if (c >= 0x41 && c <= 0x5a && c !== 0x49 && c !== 0x4f && c !== 0x51) letters++;
    else return false;
  }
  return letters > 0 && digits > 0 && !isAsciiAlnum(byteAt(v, start + 17, end));
}

/** One identifier format at p: '#' a digit, '@' a letter, anything else itself (letters in any case). */
function formatAt(v: Uint8Array, start: number, end: number, format: Uint8Array): boolean {
  if (end - start < format.length) return false;
  for (let i = 0; i < format.length; i++) {
    const f = format[i];
    const c = v[start + i];
    if (f === 0x23) {
      if (!isDigit(c)) return false;
    } else if (f === 0x40) {
      if (!isAsciiLetter(c)) return false;
    } else if (lower(c) !== lower(f)) {
      return false;
    }
  }
  return !isAsciiAlnum(byteAt(v, start + format.length, end));
}

function isEmailLocal(c: number): boolean {
  // RFC 5322 atext plus '.', and any non-ASCII byte (internationalised addresses).
  if (isAsciiAlnum(c) || c >= 0x80) return true;
  return (
    c === 0x21 ||
    (c >= 0x23 && c <= 0x27) ||
    c === 0x2a ||
    c === 0x2b ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x2f ||
    c === 0x3d ||
    c === 0x3f ||
    (c >= 0x5e && c <= 0x60) ||
    (c >= 0x7b && c <= 0x7e)
  );
}

const isDomainLabel = (c: number): boolean => isAsciiAlnum(c) || c === 0x2d || c >= 0x80;

function emailAt(v: Uint8Array, start: number, at: number, end: number): boolean {
  if (at === start || !isEmailLocal(v[at - 1])) return false;
  let p = at + 1;
  if (!isDomainLabel(byteAt(v, p, end))) return false;
  p++;
  while (p < end) {
    const c = v[p];
    if (!isDomainLabel(c)) return c === 0x2e && isDomainLabel(byteAt(v, p + 1, end));
    p++;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// WASM driver

export interface RowMasker {
  readonly plan: MaskPlan;
  /**
   * Masks one whole DataRow. Returns `row` itself when the plan is untouched (no call, no copy); otherwise a new
   * Buffer that stays valid. Throws DataRowMaskError when the row is malformed or has another column count.
   */
  mask(row: Buffer): Buffer;
  /**
   * Writes the masked row into target[offset...] instead of a new Buffer (e.g. straight into an outgoing write
   * buffer); returns the bytes written. An untouched plan copies the row. Throws DataRowMaskError as mask() does, with
   * status OutputTooSmall when the masked row does not fit (target is then left as it was).
   */
  maskInto(row: Buffer, target: Uint8Array, offset?: number): number;
}

function checkOffset(target: Uint8Array, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset > target.length) {
    throw new RangeError(`offset must be an integer in [0, ${target.length}], got ${offset}`);
  }
}

export type MaskerImpl = 'wasm' | 'typescript';

/** A masker for one result's plan; 'wasm' (default) instantiates build/pgwarden.wasm on first use. */
export function createRowMasker(plan: MaskPlan, impl: MaskerImpl = 'wasm'): RowMasker {
  switch (impl) {
    case 'wasm':
      return new WasmRowMasker(plan);
    case 'typescript':
      return new TsRowMasker(plan);
    default:
      throw new TypeError(`unknown masker implementation: ${String(impl)}`);
  }
}

export class TsRowMasker implements RowMasker {
  readonly plan: MaskPlan;
  constructor(plan: MaskPlan) {
    this.plan = plan;
  }

  mask(row: Buffer): Buffer {
    return maskDataRowTs(row, this.plan);
  }

  maskInto(row: Buffer, target: Uint8Array, offset = 0): number {
    checkOffset(target, offset);
    const masked = maskDataRowTs(row, this.plan);
    if (masked.length > target.length - offset) throw new DataRowMaskError(MaskStatus.OutputTooSmall);
    target.set(masked, offset);
    return masked.length;
  }
}

/**
 * Rows whose input or masked output would pass this many bytes go to the TypeScript twin instead: the region (plan +
 * input + output) must stay well inside the 4 GiB of wasm32 memory, next to the framer's region.
 */
export const MAX_WASM_MASK_ROW = 256 * 1024 * 1024;
const INITIAL_ROW_CAPACITY = 16 * 1024;
const INITIAL_PLAN_CAPACITY = 1024;

/**
 * The thread's shared masking region and the view over WASM memory. Every masker of the thread uses it; the plan in
 * it is the last one loaded (`loaded`), so a masker copies its plan in only when another masker ran in between.
 */
class MaskScratch {
  readonly wasm: PgwardenExports;
  planCapacity = 0;
  inputCapacity = 0;
  outputCapacity = 0;
  plan = 0;
  input = 0;
  output = 0;
  u8 = new Uint8Array(0);
  loaded: Uint8Array | undefined;

  constructor(wasm: PgwardenExports) {
    this.wasm = wasm;
  }

  /** Grows geometrically to hold these sizes; the plan must be copied in again afterwards (`loaded` is cleared). */
  reserve(planBytes: number, inputBytes: number, outputBytes: number): void {
    const grow = (needed: number, current: number, initial: number): number =>
      needed <= current ? current : Math.max(needed, current * 2, initial);
    const planCapacity = grow(planBytes, this.planCapacity, INITIAL_PLAN_CAPACITY);
    const inputCapacity = Math.min(
      MAX_WASM_MASK_ROW,
      grow(inputBytes, this.inputCapacity, INITIAL_ROW_CAPACITY),
    );
    const outputCapacity = Math.min(
      MAX_WASM_MASK_ROW,
      grow(outputBytes, this.outputCapacity, INITIAL_ROW_CAPACITY),
    );
    const base = this.wasm.maskReserve(planCapacity, inputCapacity, outputCapacity);
    const layout = maskLayout(base, planCapacity, inputCapacity);
    if (
      this.wasm.maskPlanPtr() !== layout.plan ||
      this.wasm.maskInputPtr() !== layout.input ||
      this.wasm.maskOutputPtr() !== layout.output
    ) {
      throw new Error('pgwarden.wasm masking layout differs from src/wasm/abi.ts; rebuild it');
    }
    this.planCapacity = planCapacity;
    this.inputCapacity = inputCapacity;
    this.outputCapacity = outputCapacity;
    this.plan = layout.plan;
    this.input = layout.input;
    this.output = layout.output;
    this.loaded = undefined;
    this.u8 = new Uint8Array(this.wasm.memory.buffer);
  }

  /** The view over the current memory.buffer (another kernel's memory.grow detaches the previous one). */
  view(): Uint8Array {
    if (this.u8.length === 0) this.u8 = new Uint8Array(this.wasm.memory.buffer);
    return this.u8;
  }
}

let maskScratch: MaskScratch | undefined;

function getMaskScratch(): MaskScratch {
  return (maskScratch ??= new MaskScratch(loadPgwardenWasm()));
}

/** The masker backed by build/pgwarden.wasm: the plan is encoded once, copied in when it is not the loaded one. */
export class WasmRowMasker implements RowMasker {
  readonly plan: MaskPlan;
  private readonly encoded: Uint8Array;
  private readonly scratch: MaskScratch;
  private readonly maxWasmRow: number;
  /** The twin's output when run() handed it the row (too large for the region); taken, and cleared, by the caller. */
  private fallback: Buffer | undefined;

  /** `maxWasmRow` (tests): rows or outputs above it are masked by the twin; at most MAX_WASM_MASK_ROW. */
  constructor(plan: MaskPlan, options: { maxWasmRow?: number } = {}) {
    const maxWasmRow = options.maxWasmRow ?? MAX_WASM_MASK_ROW;
    if (!Number.isInteger(maxWasmRow) || maxWasmRow < 0 || maxWasmRow > MAX_WASM_MASK_ROW) {
      throw new RangeError(`maxWasmRow must be an integer in [0, ${MAX_WASM_MASK_ROW}], got ${maxWasmRow}`);
    }
    this.plan = plan;
    this.encoded = encodeMaskPlan(plan);
    this.scratch = getMaskScratch();
    this.maxWasmRow = maxWasmRow;
  }

  mask(row: Buffer): Buffer {
    if (this.plan.untouched) return row;
    const result = this.tryMask(row);
    if (typeof result === 'number') throw new DataRowMaskError(result);
    return result;
  }

  maskInto(row: Buffer, target: Uint8Array, offset = 0): number {
    checkOffset(target, offset);
    const room = target.length - offset;
    if (this.plan.untouched) {
      if (row.length > room) throw new DataRowMaskError(MaskStatus.OutputTooSmall);
      target.set(row, offset);
      return row.length;
    }
    const written = this.run(row, maskedRowBound(row.length, this.plan));
    if (written < 0) throw new DataRowMaskError(written as MaskStatus);
    if (written > room) throw new DataRowMaskError(MaskStatus.OutputTooSmall);
    const fallback = this.takeFallback();
    const s = this.scratch;
    target.set(fallback ?? s.view().subarray(s.output, s.output + written), offset);
    return written;
  }

  /**
   * Runs the kernel whatever the plan (untouched included) with at most `outCapacity` output bytes (default: enough
   * for any row): the masked row as a new Buffer, or a negative MaskStatus. mask() is the one the proxy calls.
   */
  tryMask(row: Uint8Array, outCapacity?: number): Buffer | MaskStatus {
    const written = this.run(row, outCapacity);
    if (written < 0) return written as MaskStatus;
    const fallback = this.takeFallback();
    if (fallback !== undefined) return fallback;
    const s = this.scratch;
    const out = Buffer.allocUnsafe(written);
    out.set(s.view().subarray(s.output, s.output + written));
    return out;
  }

  private takeFallback(): Buffer | undefined {
    const fallback = this.fallback;
    this.fallback = undefined;
    return fallback;
  }

  /** Masks into the region's output area (or this.fallback); returns the length or a negative MaskStatus. */
  private run(row: Uint8Array, outCapacity: number | undefined): number {
    const plan = this.plan;
    const bound = maskedRowBound(row.length, plan);
    const capacity = outCapacity === undefined ? bound : Math.min(outCapacity, bound);
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new RangeError(`outCapacity must be an integer >= 0, got ${String(outCapacity)}`);
    }
    this.fallback = undefined;
    if (bound > this.maxWasmRow) {
      // Larger than the region may grow: the same semantics in TypeScript, rather than truncating or failing the row.
      const out = Buffer.allocUnsafe(capacity);
      const written = maskDataRowInto(row, plan, out);
      if (written >= 0) this.fallback = out.subarray(0, written);
      return written;
    }
    const s = this.scratch;
    const encoded = this.encoded;
    if (encoded.length > s.planCapacity || row.length > s.inputCapacity || bound > s.outputCapacity) {
      s.reserve(encoded.length, row.length, bound);
    }
    const memory = s.view();
    if (s.loaded !== encoded) {
      memory.set(encoded, s.plan);
      const status = s.wasm.maskLoadPlan(encoded.length);
      if (status !== MaskStatus.Ok) throw new DataRowMaskError(status as MaskStatus);
      s.loaded = encoded;
    }
    memory.set(row, s.input);
    return s.wasm.maskRow(row.length, capacity);
  }
}
