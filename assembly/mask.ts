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
//   +0    columnCount, redactionOffset, redactionLength, 0
//   +16   columnCount x (action, a, b, 0): PARTIAL a = keepFirst, b = keepLast; FIXED a = text offset, b = text length
//   ...   the texts
//
// maskLoadPlan validates a plan once (every text inside the plan, every action known) so that maskRow, which runs per
// row, can trust it. Growing (maskReserve) drops the loaded plan: JavaScript copies it in again.

export const MASK_ABI_VERSION: u32 = 1;

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
    if (action == MASK_ACTION_FIXED && !textInPlan(load<u32>(entry, 4), load<u32>(entry, 8), planLength)) {
      return MASK_ERROR_BAD_PLAN;
    }
  }
  planColumns = columns;
  redactionPtr = planPtr + redactionOffset;
  redactionLength = redactionLen;
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

/** Writes the masked form of one non-NULL value at dst; returns its length, or -1 when `room` bytes are too few. */
function maskValue(action: u32, entry: usize, value: usize, length: u32, dst: usize, room: usize): i32 {
  switch (action) {
    case MASK_ACTION_PASS:
      return emit(value, length, dst, room);
    case MASK_ACTION_PARTIAL:
      return writePartial(value, length, load<u32>(entry, 4), load<u32>(entry, 8), dst, room);
    case MASK_ACTION_YEAR_ONLY:
      return writeDate(value, length, false, dst, room);
    case MASK_ACTION_MONTH_YEAR:
      return writeDate(value, length, true, dst, room);
    case MASK_ACTION_ZIP3:
      return writeZip3(value, length, dst, room);
    case MASK_ACTION_EMAIL:
      return writeEmail(value, length, dst, room);
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
 * by anything (fraction, zone) -> the same plus ` 00:00:00`; anything else -> the redaction text.
 */
function writeDate(value: usize, length: u32, keepMonth: bool, dst: usize, room: usize): i32 {
  const end = value + length;
  const isDate =
    digitsAt(value, 4, end) &&
    byteAt(value + 4, end) == 0x2d &&
    digitsAt(value + 5, 2, end) &&
    byteAt(value + 7, end) == 0x2d &&
    digitsAt(value + 8, 2, end);
  if (!isDate) return emitRedaction(dst, room);
  let outLength: u32 = 10;
  if (length != 10) {
    const isTimestamp =
      byteAt(value + 10, end) == 0x20 &&
      digitsAt(value + 11, 2, end) &&
      byteAt(value + 13, end) == 0x3a &&
      digitsAt(value + 14, 2, end) &&
      byteAt(value + 16, end) == 0x3a &&
      digitsAt(value + 17, 2, end);
    if (!isTimestamp) return emitRedaction(dst, room);
    outLength = 19;
  }
  if (<usize>outLength > room) return -1;
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
  return <i32>outLength;
}

/** ZIP3: five leading digits -> the first three + `**` (the rest dropped); anything else -> the redaction text. */
function writeZip3(value: usize, length: u32, dst: usize, room: usize): i32 {
  if (!digitsAt(value, 5, value + length)) return emitRedaction(dst, room);
  if (room < 5) return -1;
  store<u8>(dst, load<u8>(value));
  store<u8>(dst + 1, load<u8>(value + 1));
  store<u8>(dst + 2, load<u8>(value + 2));
  store<u8>(dst + 3, STAR);
  store<u8>(dst + 4, STAR);
  return 5;
}

/** EMAIL: `***` + everything from the last '@' on; no '@' -> the redaction text. */
function writeEmail(value: usize, length: u32, dst: usize, room: usize): i32 {
  let at = value + length;
  while (at > value) {
    if (load<u8>(at - 1) == 0x40) break;
    at--;
  }
  if (at == value) return emitRedaction(dst, room);
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
// Content detectors (DETECT). Exact definitions in src/masking/kernel.ts; a candidate starts at a byte not preceded
// by an ASCII digit, and numeric candidates must not be followed by one.

/** True when [value, end) contains an SSN, a phone number, an e-mail address, a card number, an ISO date or a ZIP. */
function containsPhi(value: usize, end: usize): bool {
  let previous: u32 = 0;
  for (let p = value; p < end; p++) {
    const c = <u32>load<u8>(p);
    if (c == 0x40) {
      if (emailAt(value, p, end)) return true;
    } else if (!isDigit(previous)) {
      if (isDigit(c)) {
        if (ssnAt(p, end) || phoneAt(p, end) || cardAt(p, end) || isoDateAt(p, end) || zipAt(p, end)) return true;
      } else if (c == 0x2b || c == 0x28) {
        if (phoneAt(p, end)) return true;
      }
    }
    previous = c;
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
