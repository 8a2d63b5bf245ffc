// PHI masking kernel: rewrites one text-format DataRow according to a column plan, in one pass, lengths recomputed.
//
// Wire format: https://www.postgresql.org/docs/current/protocol-message-formats.html (DataRow)
//   byte 'D', int32 length (includes itself), int16 column count, per column int32 length (-1 = NULL) + that many bytes.
//
// The TypeScript twin in src/masking/kernel.ts defines the same semantics line for line (its comments describe each
// action and detector); the property tests hold the two byte-equal. Layout, action codes and status codes are
// mirrored in src/wasm/abi.ts and checked by the loader.
//
// Region (one block from heap.alloc, like the framer's; masking never touches memory outside it):
//
//   base                    plan area, planCapacity bytes: the plan JavaScript copied in
//   base + planCapacity     input, inputCapacity bytes: the DataRow to mask
//   input + inputCapacity   output, outputCapacity bytes: the masked DataRow
//
// Plan (little-endian u32, offsets from the start of the plan):
//
//   +0    columnCount, redactionOffset, redactionLength, formatCount
//   +16   columnCount x (action, a, b, flags): PARTIAL a = keepFirst, b = keepLast; FIXED a = text offset, b = text
//         length; flags MASK_FLAG_NULL_ON_MISMATCH: YEAR_ONLY, MONTH_YEAR, ZIP3 and EMAIL write NULL, not the redaction
//         text, for a value of another shape (a typed column: '***' is no date a driver could parse)
//   ...   formatCount x (text offset, text length): the identifier formats DETECT also recognises
//   ...   the texts
//
// maskLoadPlan validates a plan once (every text inside the plan, every action known) so that maskRow, which runs per
// row, can trust it. Growing (maskReserve) drops the loaded plan: JavaScript copies it in again.

export const MASK_ABI_VERSION: u32 = 3;

// Action codes (MaskAction in TypeScript).
export const MASK_ACTION_PASS: u32 = 0;
export const MASK_ACTION_NULL: u32 = 1;
export const MASK_ACTION_REDACT: u32 = 2;
export const MASK_ACTION_PARTIAL: u32 = 3;
export const MASK_ACTION_YEAR_ONLY: u32 = 4;
export const MASK_ACTION_MONTH_YEAR: u32 = 5;
export const MASK_ACTION_ZIP3: u32 = 6;
export const MASK_ACTION_EMAIL: u32 = 7;
export const MASK_ACTION_FIXED: u32 = 8;
export const MASK_ACTION_DETECT: u32 = 9;
export const MASK_ACTION_COUNT: u32 = 10;

/** Column flags (the plan entry's fourth word). */
export const MASK_FLAG_NULL_ON_MISMATCH: u32 = 1;

// Status codes (MaskStatus in TypeScript): maskRow returns the output length (>= 7) or one of these.
export const MASK_OK: i32 = 0;
export const MASK_ERROR_MALFORMED_ROW: i32 = -1;
export const MASK_ERROR_COLUMN_COUNT: i32 = -2;
export const MASK_ERROR_OUTPUT_TOO_SMALL: i32 = -3;
export const MASK_ERROR_BAD_PLAN: i32 = -4;
export const MASK_ERROR_BAD_CALL: i32 = -5;

export const MASK_PLAN_HEADER_BYTES: u32 = 16;
export const MASK_PLAN_ENTRY_BYTES: u32 = 16;
/** Longest redaction or fixed text: bounds how much a masked row can grow per column. */
export const MASK_MAX_TEXT_BYTES: u32 = 1024;
/** A DataRow's column count is an int16. */
export const MASK_MAX_COLUMNS: u32 = 0x7fff;
/** Identifier formats (masking.mrn_formats, identifier_formats) per plan, and the longest one. */
export const MASK_MAX_FORMATS: u32 = 64;
export const MASK_MAX_FORMAT_BYTES: u32 = 64;
export const MASK_FORMAT_ENTRY_BYTES: u32 = 8;

const DATA_ROW: u32 = 0x44; // 'D'
const ROW_HEADER: u32 = 7;
const STAR: u8 = 0x2a; // '*'
const NULL_LENGTH: u32 = 0xffffffff;

let regionBase: usize = 0;
let planPtr: usize = 0;
let planCapacity: u32 = 0;
let inputPtr: usize = 0;
let inputCapacity: u32 = 0;
let outputPtr: usize = 0;
let outputCapacity: u32 = 0;

let planLoaded = false;
let planColumns: u32 = 0;
let redactionPtr: usize = 0;
let redactionLength: u32 = 0;
let formatTable: usize = 0;
let formatCount: u32 = 0;

// @ts-ignore: decorator
@inline function loadBE32(ptr: usize): u32 {
  return bswap<u32>(load<u32>(ptr));
}

// @ts-ignore: decorator
@inline function isDigit(c: u32): bool {
  return c - 0x30 < 10;
}

// @ts-ignore: decorator
@inline function isAsciiAlnum(c: u32): bool {
  return c - 0x30 < 10 || (c | 0x20) - 0x61 < 26;
}

// @ts-ignore: decorator
@inline function isAsciiLetter(c: u32): bool {
  return (c | 0x20) - 0x61 < 26;
}

// @ts-ignore: decorator
@inline function isHexDigit(c: u32): bool {
  return c - 0x30 < 10 || (c | 0x20) - 0x61 < 6;
}

// @ts-ignore: decorator
@inline function lower(c: u32): u32 {
  return isAsciiLetter(c) ? c | 0x20 : c;
}

// @ts-ignore: decorator
@inline function byteAt(p: usize, end: usize): u32 {
  // 0 past the end: never a digit, separator or text character, so matchers need no separate bound test.
  return p < end ? <u32>load<u8>(p) : 0;
}

function digitsAt(p: usize, count: usize, end: usize): bool {
  if (end < p || end - p < count) return false;
  for (let i: usize = 0; i < count; i++) {
    if (!isDigit(<u32>load<u8>(p + i))) return false;
  }
  return true;
}

// @ts-ignore: decorator
@inline function twoDigits(p: usize): u32 {
  return (<u32>load<u8>(p) - 0x30) * 10 + (<u32>load<u8>(p + 1) - 0x30);
}

/** Makes room for a plan of planCap bytes, rows of inputCap bytes and outputs of outputCap bytes; returns the base. */
export function maskReserve(planCap: u32, inputCap: u32, outputCap: u32): usize {
  if (regionBase != 0) heap.free(regionBase);
  regionBase = heap.alloc(<usize>planCap + <usize>inputCap + <usize>outputCap);
  planPtr = regionBase;
  planCapacity = planCap;
  inputPtr = planPtr + planCap;
  inputCapacity = inputCap;
  outputPtr = inputPtr + inputCap;
  outputCapacity = outputCap;
  planLoaded = false;
  return regionBase;
}

export function maskPlanPtr(): usize {
  return planPtr;
}

export function maskInputPtr(): usize {
  return inputPtr;
}

export function maskOutputPtr(): usize {
  return outputPtr;
}

/** True when [offset, offset + length) lies inside a plan of planLength bytes and is not longer than a text may be. */
function textInPlan(offset: u32, length: u32, planLength: u32): bool {
  return length <= MASK_MAX_TEXT_BYTES && offset <= planLength && length <= planLength - offset;
}

/** Validates the plan of `planLength` bytes JavaScript copied to the plan area and makes it current. */
export function maskLoadPlan(planLength: u32): i32 {
  planLoaded = false;
  if (planLength > planCapacity || planLength < MASK_PLAN_HEADER_BYTES) return MASK_ERROR_BAD_PLAN;
  const columns = load<u32>(planPtr);
  if (columns > MASK_MAX_COLUMNS) return MASK_ERROR_BAD_PLAN;
  if (MASK_PLAN_HEADER_BYTES + columns * MASK_PLAN_ENTRY_BYTES > planLength) return MASK_ERROR_BAD_PLAN;
  const redactionOffset = load<u32>(planPtr, 4);
  const redactionLen = load<u32>(planPtr, 8);
  if (!textInPlan(redactionOffset, redactionLen, planLength)) return MASK_ERROR_BAD_PLAN;
  let entry = planPtr + MASK_PLAN_HEADER_BYTES;
  for (let c: u32 = 0; c < columns; c++, entry += MASK_PLAN_ENTRY_BYTES) {
    const action = load<u32>(entry);
    if (action >= MASK_ACTION_COUNT) return MASK_ERROR_BAD_PLAN;
    if ((load<u32>(entry, 12) & ~MASK_FLAG_NULL_ON_MISMATCH) != 0) return MASK_ERROR_BAD_PLAN;
    if (action == MASK_ACTION_FIXED && !textInPlan(load<u32>(entry, 4), load<u32>(entry, 8), planLength)) {
      return MASK_ERROR_BAD_PLAN;
    }
  }
  const formats = load<u32>(planPtr, 12);
  const table = MASK_PLAN_HEADER_BYTES + columns * MASK_PLAN_ENTRY_BYTES;
  if (formats > MASK_MAX_FORMATS || table + formats * MASK_FORMAT_ENTRY_BYTES > planLength) return MASK_ERROR_BAD_PLAN;
  for (let f: u32 = 0; f < formats; f++) {
    const offset = load<u32>(planPtr + table + f * MASK_FORMAT_ENTRY_BYTES);
    const length = load<u32>(planPtr + table + f * MASK_FORMAT_ENTRY_BYTES, 4);
    if (length == 0 || length > MASK_MAX_FORMAT_BYTES || !textInPlan(offset, length, planLength)) {
      return MASK_ERROR_BAD_PLAN;
    }
  }
  planColumns = columns;
  redactionPtr = planPtr + redactionOffset;
  redactionLength = redactionLen;
  formatTable = planPtr + table;
  formatCount = formats;
  planLoaded = true;
  return MASK_OK;
}

/**
 * Masks the DataRow of `rowLength` bytes in the input area into the output area (at most `outCapacity` bytes of it).
 * Returns the masked row's length or a negative status. Checks, in this order: the call (plan loaded, row inside the
 * input area), the header (at least 7 bytes, 'D', length field = rowLength - 1, column count an int16 >= 0), the
 * column count against the plan, then column by column: 4 length bytes present, length >= -1 and inside the row
 * (MALFORMED), room for the length and the masked value (OUTPUT_TOO_SMALL); finally no bytes after the last column.
 */
export function maskRow(rowLength: u32, outCapacity: u32): i32 {
  if (!planLoaded || rowLength > inputCapacity) return MASK_ERROR_BAD_CALL;
  const row = inputPtr;
  const end = row + <usize>rowLength;
  const out = outputPtr;
  const outEnd = out + <usize>min(outCapacity, outputCapacity);

  if (rowLength < ROW_HEADER) return MASK_ERROR_MALFORMED_ROW;
  if (<u32>load<u8>(row) != DATA_ROW) return MASK_ERROR_MALFORMED_ROW;
  if (loadBE32(row + 1) != rowLength - 1) return MASK_ERROR_MALFORMED_ROW;
  const count = <u32>bswap<u16>(load<u16>(row + 5));
  if (count > MASK_MAX_COLUMNS) return MASK_ERROR_MALFORMED_ROW; // a negative int16
  if (count != planColumns) return MASK_ERROR_COLUMN_COUNT;
  if (outEnd - out < ROW_HEADER) return MASK_ERROR_OUTPUT_TOO_SMALL;

  let p = row + ROW_HEADER;
  let o = out + ROW_HEADER;
  let entry = planPtr + MASK_PLAN_HEADER_BYTES;
  for (let c: u32 = 0; c < count; c++, entry += MASK_PLAN_ENTRY_BYTES) {
    if (end - p < 4) return MASK_ERROR_MALFORMED_ROW;
    const length = loadBE32(p);
    p += 4;
    if (length != NULL_LENGTH && (<i32>length < 0 || <usize>length > end - p)) return MASK_ERROR_MALFORMED_ROW;
    if (outEnd - o < 4) return MASK_ERROR_OUTPUT_TOO_SMALL;
    const action = load<u32>(entry);
    if (length == NULL_LENGTH || action == MASK_ACTION_NULL) {
      // NULL stays NULL whatever the action; the NULL action makes every value NULL.
      store<u32>(o, NULL_LENGTH);
      o += 4;
      if (length != NULL_LENGTH) p += length;
      continue;
    }
    const written = maskValue(action, entry, p, length, o + 4, outEnd - (o + 4));
    if (written == WRITE_NULL) {
      store<u32>(o, NULL_LENGTH);
      o += 4;
      p += length;
      continue;
    }
    if (written < 0) return MASK_ERROR_OUTPUT_TOO_SMALL;
    store<u32>(o, bswap<u32>(<u32>written));
    o += 4 + <usize>written;
    p += length;
  }
  if (p != end) return MASK_ERROR_MALFORMED_ROW;

  const total = <u32>(o - out);
  store<u8>(out, <u8>DATA_ROW);
  store<u32>(out + 1, bswap<u32>(total - 1));
  store<u16>(out + 5, bswap<u16>(<u16>count));
  return <i32>total;
}

/** What a writer returns for a value that must go out as NULL (a shape mismatch under MASK_FLAG_NULL_ON_MISMATCH). */
const WRITE_NULL: i32 = -2;

/** The value does not have the shape its action expects: the redaction text, or NULL when the column says so. */
function mismatch(entry: usize, dst: usize, room: usize): i32 {
  if ((load<u32>(entry, 12) & MASK_FLAG_NULL_ON_MISMATCH) != 0) return WRITE_NULL;
  return emitRedaction(dst, room);
}

/**
 * Writes the masked form of one non-NULL value at dst; returns its length, -1 when `room` bytes are too few, or
 * WRITE_NULL.
 */
function maskValue(action: u32, entry: usize, value: usize, length: u32, dst: usize, room: usize): i32 {
  switch (action) {
    case MASK_ACTION_PASS:
      return emit(value, length, dst, room);
    case MASK_ACTION_PARTIAL:
      return writePartial(value, length, load<u32>(entry, 4), load<u32>(entry, 8), dst, room);
    case MASK_ACTION_YEAR_ONLY:
      return writeDate(entry, value, length, false, dst, room);
    case MASK_ACTION_MONTH_YEAR:
      return writeDate(entry, value, length, true, dst, room);
    case MASK_ACTION_ZIP3:
      return writeZip3(entry, value, length, dst, room);
    case MASK_ACTION_EMAIL:
      return writeEmail(entry, value, length, dst, room);
    case MASK_ACTION_FIXED:
      return emit(planPtr + <usize>load<u32>(entry, 4), load<u32>(entry, 8), dst, room);
    case MASK_ACTION_DETECT:
      if (containsPhi(value, value + length)) return emitRedaction(dst, room);
      return emit(value, length, dst, room);
    default:
      // REDACT, and any code maskLoadPlan let through by mistake: fail closed.
      return emitRedaction(dst, room);
  }
}

function emit(src: usize, length: u32, dst: usize, room: usize): i32 {
  if (<usize>length > room) return -1;
  copyBytes(dst, src, length);
  return <i32>length;
}

/**
 * Copies between the input, plan and output areas (never overlapping). V8 runs memory.copy as a call out of the
 * module, which costs more than a typical column value takes to copy inline, so short values are copied here.
 */
function copyBytes(dst: usize, src: usize, length: usize): void {
  if (length >= 256) {
    memory.copy(dst, src, length);
    return;
  }
  let n = length;
  while (n >= 16) {
    v128.store(dst, v128.load(src));
    dst += 16;
    src += 16;
    n -= 16;
  }
  if (n >= 8) {
    store<u64>(dst, load<u64>(src));
    dst += 8;
    src += 8;
    n -= 8;
  }
  while (n != 0) {
    store<u8>(dst, load<u8>(src));
    dst++;
    src++;
    n--;
  }
}

// @ts-ignore: decorator
@inline function emitRedaction(dst: usize, room: usize): i32 {
  return emit(redactionPtr, redactionLength, dst, room);
}

/**
 * PARTIAL: ASCII letters and digits are numbered from 0; number i is kept when i < keepFirst or i >= count - keepLast,
 * the others become '*'. Other ASCII bytes are kept. Each non-ASCII character becomes one '*': a byte >= 0x80 starts
 * one unless it is a continuation byte (10xxxxxx) right after another byte >= 0x80.
 */
function writePartial(value: usize, length: u32, keepFirst: u32, keepLast: u32, dst: usize, room: usize): i32 {
  const end = value + length;
  let alnums: u32 = 0;
  let outLength: u32 = 0;
  let previous: u32 = 0;
  for (let p = value; p < end; p++) {
    const c = <u32>load<u8>(p);
    if (c < 0x80) {
      outLength++;
      if (isAsciiAlnum(c)) alnums++;
    } else if (previous < 0x80 || (c & 0xc0) != 0x80) {
      outLength++;
    }
    previous = c;
  }
  if (<usize>outLength > room) return -1;
  const lastFrom: u32 = keepLast >= alnums ? 0 : alnums - keepLast;
  let o = dst;
  let index: u32 = 0;
  previous = 0;
  for (let p = value; p < end; p++) {
    const c = <u32>load<u8>(p);
    if (c < 0x80) {
      if (isAsciiAlnum(c)) {
        store<u8>(o, index < keepFirst || index >= lastFrom ? <u8>c : STAR);
        index++;
      } else {
        store<u8>(o, <u8>c);
      }
      o++;
    } else if (previous < 0x80 || (c & 0xc0) != 0x80) {
      store<u8>(o, STAR);
      o++;
    }
    previous = c;
  }
  return <i32>outLength;
}

/**
 * YEAR_ONLY / MONTH_YEAR: `YYYY-MM-DD` (exactly 10 bytes) -> `YYYY-01-01` / `YYYY-MM-01`; `YYYY-MM-DD HH:MM:SS` followed
 * by anything (fraction, zone) -> the same plus ` 00:00:00`; either with ` BC` at the end keeps it; anything else ->
 * the redaction text (NULL under MASK_FLAG_NULL_ON_MISMATCH).
 */
function writeDate(entry: usize, value: usize, length: u32, keepMonth: bool, dst: usize, room: usize): i32 {
  const end = value + length;
  const isDate =
    digitsAt(value, 4, end) &&
    byteAt(value + 4, end) == 0x2d &&
    digitsAt(value + 5, 2, end) &&
    byteAt(value + 7, end) == 0x2d &&
    digitsAt(value + 8, 2, end);
  if (!isDate) return mismatch(entry, dst, room);
  // PostgreSQL writes an era after the value: ' BC' stays (year 44 BC is not year 44).
  const bc =
    length >= 13 && load<u8>(end - 3) == 0x20 && load<u8>(end - 2) == 0x42 && load<u8>(end - 1) == 0x43;
  let outLength: u32 = 10;
  if (length - (bc ? 3 : 0) != 10) {
    const isTimestamp =
      byteAt(value + 10, end) == 0x20 &&
      digitsAt(value + 11, 2, end) &&
      byteAt(value + 13, end) == 0x3a &&
      digitsAt(value + 14, 2, end) &&
      byteAt(value + 16, end) == 0x3a &&
      digitsAt(value + 17, 2, end);
    if (!isTimestamp) return mismatch(entry, dst, room);
    outLength = 19;
  }
  if (<usize>outLength + (bc ? 3 : 0) > room) return -1;
  store<u32>(dst, load<u32>(value)); // YYYY
  store<u8>(dst + 4, 0x2d);
  if (keepMonth) {
    store<u8>(dst + 5, load<u8>(value + 5));
    store<u8>(dst + 6, load<u8>(value + 6));
  } else {
    store<u8>(dst + 5, 0x30);
    store<u8>(dst + 6, 0x31);
  }
  store<u8>(dst + 7, 0x2d);
  store<u8>(dst + 8, 0x30);
  store<u8>(dst + 9, 0x31);
  if (outLength == 19) {
    // " 00:00:00"
    store<u8>(dst + 10, 0x20);
    store<u8>(dst + 11, 0x30);
    store<u8>(dst + 12, 0x30);
    store<u8>(dst + 13, 0x3a);
    store<u8>(dst + 14, 0x30);
    store<u8>(dst + 15, 0x30);
    store<u8>(dst + 16, 0x3a);
    store<u8>(dst + 17, 0x30);
    store<u8>(dst + 18, 0x30);
  }
  if (bc) {
    store<u8>(dst + outLength, 0x20);
    store<u8>(dst + outLength + 1, 0x42);
    store<u8>(dst + outLength + 2, 0x43);
    outLength += 3;
  }
  return <i32>outLength;
}

/** ZIP3: five leading digits -> the first three + `**` (the rest dropped); anything else -> the redaction text. */
function writeZip3(entry: usize, value: usize, length: u32, dst: usize, room: usize): i32 {
  if (!digitsAt(value, 5, value + length)) return mismatch(entry, dst, room);
  if (room < 5) return -1;
  store<u8>(dst, load<u8>(value));
  store<u8>(dst + 1, load<u8>(value + 1));
  store<u8>(dst + 2, load<u8>(value + 2));
  store<u8>(dst + 3, STAR);
  store<u8>(dst + 4, STAR);
  return 5;
}

/** EMAIL: `***` + everything from the last '@' on; no '@' -> the redaction text. */
function writeEmail(entry: usize, value: usize, length: u32, dst: usize, room: usize): i32 {
  let at = value + length;
  while (at > value) {
    if (load<u8>(at - 1) == 0x40) break;
    at--;
  }
  if (at == value) return mismatch(entry, dst, room);
  at--; // the '@'
  const domainLength = <u32>(value + length - at);
  const outLength = 3 + domainLength;
  if (<usize>outLength > room) return -1;
  store<u8>(dst, STAR);
  store<u8>(dst + 1, STAR);
  store<u8>(dst + 2, STAR);
  copyBytes(dst + 3, at, domainLength);
  return <i32>outLength;
}

// ---------------------------------------------------------------------------------------------------------------
// Content detectors (DETECT). Exact definitions in src/masking/kernel.ts (findPhi and the functions it calls); a
// numeric candidate starts at a byte not preceded by an ASCII digit, and numeric candidates must not be followed by
// one. Only whether something is found matters here, not which detector found it.

/** Bit (letter - 'a') set for the letters a month name starts with: a, d, f, j, m, n, o, s. */
const MONTH_INITIALS: u32 = (1 << 0) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 18);

/**
 * True when [value, end) contains an identifier one of the detectors (or the plan's formats) recognises.
 *
 * The twin tries every byte; here 16 bytes at a time are classified with SIMD first (letters, digits, '@', '+', '(',
 * ':') and phiAt runs only where it could fire: at those bytes that start a run of digits or letters, at the four
 * punctuation bytes, and (when the plan has formats) after any byte that is not a letter or digit. Everywhere else
 * phiAt is false by its own conditions, so both scans find the same. In running text this skips most bytes.
 */
function containsPhi(value: usize, end: usize): bool {
  let p = value;
  let previous: u32 = 0;
  const anyStart: i32 = formatCount > 0 ? 0xffff : 0;
  while (end - p >= 16) {
    const v = v128.load(p);
    const letters = i8x16.bitmask(
      i8x16.lt_u(i8x16.sub(v128.or(v, i8x16.splat(0x20)), i8x16.splat(0x61)), i8x16.splat(26)),
    );
    const digits = i8x16.bitmask(i8x16.lt_u(i8x16.sub(v, i8x16.splat(0x30)), i8x16.splat(10)));
    const marks = i8x16.bitmask(
      v128.or(
        v128.or(i8x16.eq(v, i8x16.splat(0x40)), i8x16.eq(v, i8x16.splat(0x2b))),
        v128.or(i8x16.eq(v, i8x16.splat(0x28)), i8x16.eq(v, i8x16.splat(0x3a))),
      ),
    );
    // Bit i of these: byte i - 1 (bit 0: the byte before the block) is a letter / a digit.
    const afterLetter = (letters << 1) | <i32>isAsciiLetter(previous);
    const afterDigit = (digits << 1) | <i32>isDigit(previous);
    let candidates =
      (marks | (digits & ~afterDigit) | (letters & ~afterLetter) | (anyStart & ~(afterLetter | afterDigit))) & 0xffff;
    while (candidates != 0) {
      const i = <usize>ctz(candidates);
      const before = i == 0 ? previous : <u32>load<u8>(p + i - 1);
      if (phiAt(value, p + i, end, before)) return true;
      candidates &= candidates - 1;
    }
    previous = <u32>load<u8>(p + 15);
    p += 16;
  }
  for (; p < end; p++) {
    if (phiAt(value, p, end, previous)) return true;
    previous = <u32>load<u8>(p);
  }
  return false;
}

/** Whether a detector fires at p (previous: the byte before it, 0 at the value's start); findPhi's loop body. */
function phiAt(value: usize, p: usize, end: usize, previous: u32): bool {
  const c = <u32>load<u8>(p);
  if (c == 0x40) {
    if (emailAt(value, p, end)) return true;
  } else if (isDigit(c)) {
    if (!isDigit(previous)) {
      if (ssnAt(p, end) || phoneAt(p, end) || cardAt(p, end)) return true;
      if (isoDateAt(p, end) || numericDateAt(p, end) || dayMonthDateAt(p, end)) return true;
      if (streetAddressAt(p, end) || ipv4At(p, end) || zipAt(p, end)) return true;
    }
  } else if (c == 0x2b || c == 0x28) {
    if (!isDigit(previous) && phoneAt(p, end)) return true;
  } else if (isAsciiLetter(c)) {
    if (!isAsciiLetter(previous)) {
      // Each word-shaped detector can only start at some letters: the first byte decides which are tried.
      const first = c | 0x20;
      if ((first == 0x68 || first == 0x66 || first == 0x77) && urlAt(p, end)) return true; // h f w
      if (((1 << (first - 0x61)) & MONTH_INITIALS) != 0 && monthDayDateAt(p, end)) return true;
      if (first == 0x70 && poBoxAt(p, end)) return true; // p
    }
  }
  if (!isAsciiAlnum(previous)) {
    if ((isDigit(c) || c - 0x41 < 26) && vinAt(p, end)) return true;
    for (let f: u32 = 0; f < formatCount; f++) {
      const entry = formatTable + <usize>(f * MASK_FORMAT_ENTRY_BYTES);
      if (formatAt(p, end, planPtr + <usize>load<u32>(entry), load<u32>(entry, 4))) return true;
    }
    if (previous != 0x3a && (isHexDigit(c) || c == 0x3a)) {
      if (macAt(p, end) || ipv6At(p, end)) return true;
    }
  }
  return false;
}

// @ts-ignore: decorator
@inline function endsNumber(p: usize, end: usize): bool {
  return !isDigit(byteAt(p, end));
}

// @ts-ignore: decorator
@inline function isSsnSeparator(c: u32): bool {
  return c == 0x2d || c == 0x20 || c == 0x2e || c == 0x2f || c == 0x5f;
}

function ssnAt(start: usize, end: usize): bool {
  if (!digitsAt(start, 3, end)) return false;
  let p = start + 3;
  if (isSsnSeparator(byteAt(p, end))) p++;
  if (!digitsAt(p, 2, end)) return false;
  const group = p;
  p += 2;
  if (isSsnSeparator(byteAt(p, end))) p++;
  if (!digitsAt(p, 4, end)) return false;
  const serial = p;
  p += 4;
  if (!endsNumber(p, end)) return false;
  const area = twoDigits(start) * 10 + (<u32>load<u8>(start + 2) - 0x30);
  if (area == 0 || area == 666 || area >= 900) return false;
  if (twoDigits(group) == 0) return false;
  return twoDigits(serial) != 0 || twoDigits(serial + 2) != 0;
}

// @ts-ignore: decorator
@inline function skipPhoneSeparator(p: usize, end: usize): usize {
  const c = byteAt(p, end);
  return c == 0x20 || c == 0x2d || c == 0x2e ? p + 1 : p;
}

function phoneAt(start: usize, end: usize): bool {
  const c = byteAt(start, end);
  if (c == 0x2b) {
    if (byteAt(start + 1, end) != 0x31) return false;
    return nationalPhoneAt(skipPhoneSeparator(start + 2, end), end);
  }
  if (nationalPhoneAt(start, end)) return true;
  return c == 0x31 && nationalPhoneAt(skipPhoneSeparator(start + 1, end), end);
}

function nationalPhoneAt(start: usize, end: usize): bool {
  let p = start;
  const paren = byteAt(p, end) == 0x28;
  if (paren) p++;
  if (!digitsAt(p, 3, end)) return false;
  p += 3;
  if (paren) {
    if (byteAt(p, end) != 0x29) return false;
    p++;
  }
  p = skipPhoneSeparator(p, end);
  if (!digitsAt(p, 3, end)) return false;
  p = skipPhoneSeparator(p + 3, end);
  if (!digitsAt(p, 4, end)) return false;
  return endsNumber(p + 4, end);
}

function cardAt(start: usize, end: usize): bool {
  let count: u32 = 0;
  // Luhn sums with the digits at even (sumEven) or odd (sumOdd) positions from the left doubled; which one applies
  // depends on the final count (the rightmost digit is never doubled).
  let sumEven: u32 = 0;
  let sumOdd: u32 = 0;
  let p = start;
  while (true) {
    let c = byteAt(p, end);
    while (isDigit(c)) {
      if (count == 19) return false;
      const d = c - 0x30;
      let doubled = d * 2;
      if (doubled > 9) doubled -= 9;
      if ((count & 1) == 0) {
        sumEven += doubled;
        sumOdd += d;
      } else {
        sumEven += d;
        sumOdd += doubled;
      }
      count++;
      p++;
      c = byteAt(p, end);
    }
    if (count >= 13 && ((count & 1) == 0 ? sumEven : sumOdd) % 10 == 0) return true;
    if ((c == 0x20 || c == 0x2d) && isDigit(byteAt(p + 1, end))) {
      p++;
      continue;
    }
    return false;
  }
  return false;
}

function isoDateAt(start: usize, end: usize): bool {
  if (!digitsAt(start, 4, end) || byteAt(start + 4, end) != 0x2d) return false;
  if (!digitsAt(start + 5, 2, end) || byteAt(start + 7, end) != 0x2d || !digitsAt(start + 8, 2, end)) return false;
  if (!endsNumber(start + 10, end)) return false;
  const month = twoDigits(start + 5);
  const day = twoDigits(start + 8);
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

function zipAt(start: usize, end: usize): bool {
  return digitsAt(start, 5, end) && endsNumber(start + 5, end);
}

// @ts-ignore: decorator
@inline function isEmailLocal(c: u32): bool {
  // RFC 5322 atext plus '.', and any non-ASCII byte (internationalised addresses).
  if (isAsciiAlnum(c) || c >= 0x80) return true;
  return (
    c == 0x21 || (c >= 0x23 && c <= 0x27) || c == 0x2a || c == 0x2b || c == 0x2d || c == 0x2e || c == 0x2f ||
    c == 0x3d || c == 0x3f || (c >= 0x5e && c <= 0x60) || (c >= 0x7b && c <= 0x7e)
  );
}

// @ts-ignore: decorator
@inline function isDomainLabel(c: u32): bool {
  return isAsciiAlnum(c) || c == 0x2d || c >= 0x80;
}

function emailAt(value: usize, at: usize, end: usize): bool {
  if (at == value || !isEmailLocal(<u32>load<u8>(at - 1))) return false;
  let p = at + 1;
  if (!isDomainLabel(byteAt(p, end))) return false;
  p++;
  while (p < end) {
    const c = <u32>load<u8>(p);
    if (isDomainLabel(c)) {
      p++;
    } else {
      return c == 0x2e && isDomainLabel(byteAt(p + 1, end));
    }
  }
  return false;
}

/** The digits at p (at most max + 1 looked at): their count, or -1 when more than max follow. */
function digitRun(p: usize, max: i32, end: usize): i32 {
  let n: i32 = 0;
  while (isDigit(byteAt(p + <usize>n, end))) {
    if (n == max) return -1;
    n++;
  }
  return n;
}

function numberAt(p: usize, count: i32): u32 {
  let value: u32 = 0;
  for (let i: i32 = 0; i < count; i++) value = value * 10 + (<u32>load<u8>(p + <usize>i) - 0x30);
  return value;
}

function numericDateAt(start: usize, end: usize): bool {
  const aDigits = digitRun(start, 2, end);
  if (aDigits <= 0) return false;
  const separator = byteAt(start + <usize>aDigits, end);
  if (separator != 0x2f && separator != 0x2e && separator != 0x2d) return false;
  const b = start + <usize>aDigits + 1;
  const bDigits = digitRun(b, 2, end);
  if (bDigits <= 0 || byteAt(b + <usize>bDigits, end) != separator) return false;
  const yearDigits = digitRun(b + <usize>bDigits + 1, 4, end);
  if (yearDigits != 2 && yearDigits != 4) return false;
  const first = numberAt(start, aDigits);
  const second = numberAt(b, bDigits);
  if (first == 0 || second == 0) return false;
  return (first <= 12 && second <= 31) || (first <= 31 && second <= 12);
}

// A word's letters as a number: each letter (any case) is 1-26 in base 32, so words of up to 12 letters have distinct
// keys. The month names and street suffixes below are the keys of MONTH_NAMES and STREET_SUFFIXES in the twin.
let wordLength: i32 = 0;

/** The key of the word at p; wordLength is set to its length, or to -1 when it is longer than max letters. */
function wordKeyAt(p: usize, max: i32, end: usize): u64 {
  let key: u64 = 0;
  let n: i32 = 0;
  while (isAsciiLetter(byteAt(p + <usize>n, end))) {
    if (n == max) {
      wordLength = -1;
      return 0;
    }
    key = (key << 5) | <u64>((<u32>load<u8>(p + <usize>n) | 0x20) - 0x60);
    n++;
  }
  wordLength = n;
  return key;
}

function isMonthName(key: u64): bool {
  switch (<i64>key) {
    case 10786342489: // january
    case 211613812313: // february
    case 13682792: // march
    case 1591596: // april
    case 13369: // may
    case 349637: // june
    case 349593: // july
    case 55826036: // august
    case 21080376248498: // september
    case 16228255922: // october
    case 497886333106: // november
    case 142913996978: // december
    case 10286: // jan
    case 6306: // feb
    case 13362: // mar
    case 1554: // apr
    case 10926: // jun
    case 10924: // jul
    case 1703: // aug
    case 19632: // sep
    case 628244: // sept
    case 15476: // oct
    case 14838: // nov
    case 4259: // dec
      return true;
  }
  return false;
}

function isStreetSuffix(key: u64): bool {
  switch (<i64>key) {
    case 659100852: // street
    case 628: // st
    case 56801957: // avenue
    case 1733: // ave
    case 54: // av
    case 605220: // road
    case 580: // rd
    case 2737376527940: // boulevard
    case 78532: // blvd
    case 4794053: // drive
    case 394693: // lane
    case 398: // ln
    case 23609: // way
    case 3659348: // court
    case 116: // ct
    case 17171557: // place
    case 524: // pl
    case 21662073957: // terrace
    case 110693765: // circle
    case 3378: // cir
    case 17232682041: // parkway
    case 536313: // pkwy
    case 8899550265: // highway
    case 8953: // hwy
    case 656049733: // square
    case 625: // sq
    case 21562668: // trail
      return true;
  }
  return false;
}

/** After a month name at p (and an optional '.'), or 0 when none stands there. */
function afterMonthName(p: usize, end: usize): usize {
  const key = wordKeyAt(p, 9, end);
  if (wordLength <= 0 || !isMonthName(key)) return 0;
  const after = p + <usize>wordLength;
  return byteAt(after, end) == 0x2e ? after + 1 : after;
}

function isOrdinalSuffix(p: usize, end: usize): bool {
  const pair = (lower(byteAt(p, end)) << 8) | lower(byteAt(p + 1, end));
  return pair == 0x7374 || pair == 0x6e64 || pair == 0x7264 || pair == 0x7468; // st nd rd th
}

/** After a day of the month (1-31) at p with an optional st/nd/rd/th, or 0. */
function afterDay(p: usize, end: usize): usize {
  const digits = digitRun(p, 2, end);
  if (digits <= 0) return 0;
  const day = numberAt(p, digits);
  if (day == 0 || day > 31) return 0;
  const after = p + <usize>digits;
  return isOrdinalSuffix(after, end) && !isAsciiLetter(byteAt(after + 2, end)) ? after + 2 : after;
}

/** After 1-3 digits with st/nd/rd/th and no letter or digit next ('5th'), or 0. */
function afterOrdinal(p: usize, end: usize): usize {
  const digits = digitRun(p, 3, end);
  if (digits <= 0) return 0;
  const after = p + <usize>digits;
  if (!isOrdinalSuffix(after, end) || isAsciiAlnum(byteAt(after + 2, end))) return 0;
  return after + 2;
}

// @ts-ignore: decorator
@inline function skipDateSeparator(p: usize, end: usize): usize {
  const c = byteAt(p, end);
  return c == 0x20 || c == 0x2d ? p + 1 : p;
}

// @ts-ignore: decorator
@inline function yearAt(p: usize, end: usize): bool {
  return digitRun(p, 4, end) == 4;
}

function monthDayDateAt(start: usize, end: usize): bool {
  let p = afterMonthName(start, end);
  if (p == 0) return false;
  const separator = byteAt(p, end);
  if (separator != 0x20 && separator != 0x2d) return false;
  p = afterDay(p + 1, end);
  if (p == 0 || isAsciiLetter(byteAt(p, end))) return false;
  if (byteAt(p, end) == 0x2c) p++;
  return yearAt(skipDateSeparator(p, end), end);
}

function dayMonthDateAt(start: usize, end: usize): bool {
  let p = afterDay(start, end);
  if (p == 0) return false;
  p = afterMonthName(skipDateSeparator(p, end), end);
  if (p == 0) return false;
  if (byteAt(p, end) == 0x2c) p++;
  return yearAt(skipDateSeparator(p, end), end);
}

function streetAddressAt(start: usize, end: usize): bool {
  const digits = digitRun(start, 6, end);
  if (digits <= 0) return false;
  let p = start + <usize>digits;
  if (isAsciiLetter(byteAt(p, end)) && !isAsciiLetter(byteAt(p + 1, end))) p++; // 221B
  if (byteAt(p, end) != 0x20) return false;
  p++;
  for (let word = 0; word < 5; word++) {
    const c = byteAt(p, end);
    let next: usize;
    if (isAsciiLetter(c)) {
      const key = wordKeyAt(p, 20, end);
      if (wordLength <= 0) return false;
      next = p + <usize>wordLength;
      if (isDigit(byteAt(next, end))) return false;
      if (word > 0 && wordLength <= 9 && isStreetSuffix(key)) return true;
      if (c > 0x5a) return false; // a name word starts upper case
    } else {
      next = afterOrdinal(p, end);
      if (next == 0) return false;
    }
    if (byteAt(next, end) == 0x2e) next++;
    if (byteAt(next, end) != 0x20) return false;
    p = next + 1;
  }
  return false;
}

/** v[p...] starts with the lower-case ASCII text at `text` (length bytes), letters compared in any case. */
function lettersAt(p: usize, end: usize, text: usize, length: usize): bool {
  if (end < p || end - p < length) return false;
  for (let i: usize = 0; i < length; i++) {
    if (lower(<u32>load<u8>(p + i)) != <u32>load<u8>(text + i)) return false;
  }
  return true;
}

const BOX = memory.data<u8>([0x62, 0x6f, 0x78, 0x20]); // "box "
const HTTP = memory.data<u8>([0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f]); // "http://"
const HTTPS = memory.data<u8>([0x68, 0x74, 0x74, 0x70, 0x73, 0x3a, 0x2f, 0x2f]); // "https://"
const FTP = memory.data<u8>([0x66, 0x74, 0x70, 0x3a, 0x2f, 0x2f]); // "ftp://"
const WWW = memory.data<u8>([0x77, 0x77, 0x77, 0x2e]); // "www."

function poBoxAt(start: usize, end: usize): bool {
  if (lower(<u32>load<u8>(start)) != 0x70) return false;
  let p = start + 1;
  if (byteAt(p, end) == 0x2e) p++;
  if (byteAt(p, end) == 0x20) p++;
  if (lower(byteAt(p, end)) != 0x6f) return false;
  p++;
  if (byteAt(p, end) == 0x2e) p++;
  if (byteAt(p, end) != 0x20) return false;
  p++;
  if (!lettersAt(p, end, BOX, 4)) return false;
  p += 4;
  if (byteAt(p, end) == 0x23) p++;
  return isDigit(byteAt(p, end));
}

function urlAt(start: usize, end: usize): bool {
  if (lettersAt(start, end, HTTP, 7)) return isAsciiAlnum(byteAt(start + 7, end));
  if (lettersAt(start, end, HTTPS, 8)) return isAsciiAlnum(byteAt(start + 8, end));
  if (lettersAt(start, end, FTP, 6)) return isAsciiAlnum(byteAt(start + 6, end));
  if (lettersAt(start, end, WWW, 4)) return isAsciiAlnum(byteAt(start + 4, end));
  return false;
}

function ipv4At(start: usize, end: usize): bool {
  let p = start;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (byteAt(p, end) != 0x2e) return false;
      p++;
    }
    const digits = digitRun(p, 3, end);
    if (digits <= 0 || numberAt(p, digits) > 255) return false;
    p += <usize>digits;
  }
  return !(byteAt(p, end) == 0x2e && isDigit(byteAt(p + 1, end)));
}

function hexRun(p: usize, end: usize): u32 {
  let n: u32 = 0;
  while (n < 5 && isHexDigit(byteAt(p + <usize>n, end))) n++;
  return n;
}

function ipv6At(start: usize, end: usize): bool {
  let p = start;
  let groups: u32 = 0;
  let compressed = false;
  if (byteAt(p, end) == 0x3a) {
    if (byteAt(p + 1, end) != 0x3a) return false;
    compressed = true;
    p += 2;
  }
  while (true) {
    const digits = hexRun(p, end);
    if (digits == 0) break;
    if (digits > 4 || groups == 8) return false;
    groups++;
    p += <usize>digits;
    if (byteAt(p, end) != 0x3a) break;
    if (byteAt(p + 1, end) == 0x3a) {
      if (compressed) return false;
      compressed = true;
      p += 2;
    } else {
      if (!isHexDigit(byteAt(p + 1, end))) return false;
      p++;
    }
  }
  if (isAsciiAlnum(byteAt(p, end))) return false;
  return compressed ? groups >= 1 && groups <= 7 : groups == 8;
}

function macAt(start: usize, end: usize): bool {
  const separator = byteAt(start + 2, end);
  if (separator != 0x3a && separator != 0x2d) return false;
  for (let pair: usize = 0; pair < 6; pair++) {
    const p = start + pair * 3;
    if (!isHexDigit(byteAt(p, end)) || !isHexDigit(byteAt(p + 1, end))) return false;
    if (pair < 5 && byteAt(p + 2, end) != separator) return false;
  }
  return !isAsciiAlnum(byteAt(start + 17, end));
}

function vinAt(start: usize, end: usize): bool {
  if (end < start || end - start < 17) return false;
  let letters: u32 = 0;
  let digits: u32 = 0;
  for (let i: usize = 0; i < 17; i++) {
    const c = <u32>load<u8>(start + i);
    if (isDigit(c)) digits++;
    else if (c - 0x41 < 26 && c != 0x49 && c != 0x4f && c != 0x51) letters++;
    else return false;
  }
  return letters > 0 && digits > 0 && !isAsciiAlnum(byteAt(start + 17, end));
}

function formatAt(start: usize, end: usize, format: usize, length: u32): bool {
  if (end < start || end - start < <usize>length) return false;
  for (let i: usize = 0; i < <usize>length; i++) {
    const f = <u32>load<u8>(format + i);
    const c = <u32>load<u8>(start + i);
    if (f == 0x23) {
      if (!isDigit(c)) return false;
    } else if (f == 0x40) {
      if (!isAsciiLetter(c)) return false;
    } else if (lower(c) != lower(f)) {
      return false;
    }
  }
  return !isAsciiAlnum(byteAt(start + <usize>length, end));
}
