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
//              zone) -> 'YYYY-01-01 00:00:00'; anything else -> the redaction text (fail closed). Y, M, D, H, S: digits.
//   MonthYear  the same with the month kept: 'YYYY-MM-01' / 'YYYY-MM-01 00:00:00'.
//   Zip3       five leading digits -> the first three + '**' (whatever follows, e.g. a ZIP+4, dropped); anything
//              else -> the redaction text.
//   Email      '***' + everything from the last '@' on; no '@' -> the redaction text.
//   Fixed      the column's fixed text.
//   Detect     the redaction text when containsPhi() finds something, else the value as is.
import {
  MASK_ACTION_COUNT,
  MASK_MAX_COLUMNS,
  MASK_MAX_TEXT_BYTES,
  MASK_PLAN_ENTRY_BYTES,
  MASK_PLAN_HEADER_BYTES,
  MaskAction,
  MaskStatus,
  maskLayout,
  type PgwardenExports,
} from '../wasm/abi.js';
import { loadPgwardenWasm } from '../wasm/loader.js';

export { MaskAction, MaskStatus } from '../wasm/abi.js';

export interface MaskColumnPlan {
  readonly action: MaskAction;
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
}

export interface MaskColumnSpec {
  action: MaskAction;
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

/** Builds a plan from one spec per result column; throws MaskPlanError on anything the kernel would not accept. */
export function buildMaskPlan(columns: readonly MaskColumnSpec[], redaction = '***'): MaskPlan {
  if (columns.length > MASK_MAX_COLUMNS) {
    throw new MaskPlanError(`a masking plan has at most ${MASK_MAX_COLUMNS} columns, got ${columns.length}`);
  }
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
    return Object.freeze({ action, keepFirst, keepLast, fixed });
  });
  return Object.freeze({
    columns: Object.freeze(planned),
    redaction: redactionBytes,
    untouched,
    growthPerColumn: growth,
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

/** The plan in the kernel's layout (src/wasm/abi.ts): header, one entry per column, then the texts. */
export function encodeMaskPlan(plan: MaskPlan): Uint8Array {
  const columns = plan.columns;
  const tableEnd = MASK_PLAN_HEADER_BYTES + columns.length * MASK_PLAN_ENTRY_BYTES;
  let size = tableEnd + plan.redaction.length;
  for (const column of columns) size += column.fixed?.length ?? 0;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let text = tableEnd;
  view.setUint32(0, columns.length, true);
  view.setUint32(4, text, true);
  view.setUint32(8, plan.redaction.length, true);
  bytes.set(plan.redaction, text);
  text += plan.redaction.length;
  let entry = MASK_PLAN_HEADER_BYTES;
  for (const column of columns) {
    view.setUint32(entry, column.action, true);
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
    const written = maskValue(column, plan.redaction, row, p, p + length, out, o + 4);
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
  redaction: Buffer,
  v: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  dst: number,
): number {
  switch (column.action) {
    case MaskAction.Pass:
      return emit(v, start, end, out, dst);
    case MaskAction.Partial:
      return writePartial(v, start, end, column.keepFirst, column.keepLast, out, dst);
    case MaskAction.YearOnly:
      return writeDate(v, start, end, false, redaction, out, dst);
    case MaskAction.MonthYear:
      return writeDate(v, start, end, true, redaction, out, dst);
    case MaskAction.Zip3:
      return writeZip3(v, start, end, redaction, out, dst);
    case MaskAction.Email:
      return writeEmail(v, start, end, redaction, out, dst);
    case MaskAction.Fixed:
      return column.fixed === undefined
        ? emit(redaction, 0, redaction.length, out, dst)
        : emit(column.fixed, 0, column.fixed.length, out, dst);
    case MaskAction.Detect:
      if (containsPhi(v, start, end)) return emit(redaction, 0, redaction.length, out, dst);
      return emit(v, start, end, out, dst);
    default:
      return emit(redaction, 0, redaction.length, out, dst);
  }
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

function writeDate(
  v: Uint8Array,
  start: number,
  end: number,
  keepMonth: boolean,
  redaction: Buffer,
  out: Uint8Array,
  dst: number,
): number {
  const isDate =
    digitsAt(v, start, 4, end) &&
    byteAt(v, start + 4, end) === 0x2d &&
    digitsAt(v, start + 5, 2, end) &&
    byteAt(v, start + 7, end) === 0x2d &&
    digitsAt(v, start + 8, 2, end);
  if (!isDate) return emit(redaction, 0, redaction.length, out, dst);
  let outLength = 10;
  if (end - start !== 10) {
    const isTimestamp =
      byteAt(v, start + 10, end) === 0x20 &&
      digitsAt(v, start + 11, 2, end) &&
      byteAt(v, start + 13, end) === 0x3a &&
      digitsAt(v, start + 14, 2, end) &&
      byteAt(v, start + 16, end) === 0x3a &&
      digitsAt(v, start + 17, 2, end);
    if (!isTimestamp) return emit(redaction, 0, redaction.length, out, dst);
    outLength = 19;
  }
  if (outLength > out.length - dst) return -1;
  out.set(v.subarray(start, start + 5), dst); // YYYY-
  out[dst + 5] = keepMonth ? v[start + 5] : 0x30;
  out[dst + 6] = keepMonth ? v[start + 6] : 0x31;
  out[dst + 7] = 0x2d;
  out[dst + 8] = 0x30;
  out[dst + 9] = 0x31;
  if (outLength === 19) out.set(MIDNIGHT, dst + 10);
  return outLength;
}

function writeZip3(
  v: Uint8Array,
  start: number,
  end: number,
  redaction: Buffer,
  out: Uint8Array,
  dst: number,
): number {
  if (!digitsAt(v, start, 5, end)) return emit(redaction, 0, redaction.length, out, dst);
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
  redaction: Buffer,
  out: Uint8Array,
  dst: number,
): number {
  const at = v.subarray(start, end).lastIndexOf(0x40);
  if (at < 0) return emit(redaction, 0, redaction.length, out, dst);
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
//   ZIP    exactly 5 digits (not followed by a digit); a ZIP+4 matches through its first 5. Note that this makes any
//          standalone 5-digit number (e.g. 12345.67) a match.

/** True when v[start, end) contains an SSN, a phone number, an e-mail address, a card number, an ISO date or a ZIP. */
export function containsPhi(v: Uint8Array, start = 0, end = v.length): boolean {
  return findPhi(v, start, end) !== undefined;
}

export type PhiKind = 'ssn' | 'phone' | 'card' | 'date' | 'zip' | 'email';

/** The first detector that fires, scanning left to right (at one position: e-mail, SSN, phone, card, date, ZIP). */
export function findPhi(v: Uint8Array, start = 0, end = v.length): PhiKind | undefined {
  let previous = 0;
  for (let p = start; p < end; p++) {
    const c = v[p];
    if (c === 0x40) {
      if (emailAt(v, start, p, end)) return 'email';
    } else if (!isDigit(previous)) {
      if (isDigit(c)) {
        if (ssnAt(v, p, end)) return 'ssn';
        if (phoneAt(v, p, end)) return 'phone';
        if (cardAt(v, p, end)) return 'card';
        if (isoDateAt(v, p, end)) return 'date';
        if (zipAt(v, p, end)) return 'zip';
      } else if (c === 0x2b || c === 0x28) {
        if (phoneAt(v, p, end)) return 'phone';
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
