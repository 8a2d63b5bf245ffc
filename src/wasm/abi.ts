// The ABI of build/pgwarden.wasm seen from TypeScript: exports, status codes and memory layout, mirrored from assembly/.
//
// Memory ownership. The module uses the AssemblyScript stub runtime, whose heap is a bump allocator starting at
// __heap_base. Each kernel owns ONE region it obtains from that allocator through its own exported reserve function,
// and never touches memory outside it; a kernel added later (masking) must do the same instead of assuming it owns
// everything above __heap_base. Any reserve call may grow memory, which detaches every view over memory.buffer:
// callers rebuild their typed-array views whenever memory.buffer is no longer the buffer they built them on.
//
// Framer region (assembly/framer.ts), obtained by framerReserve(chunkCapacity):
//
//   state      = base                      8 x u32: mode, remaining, carryLen, carryLo, carryHi, error, 0, 0
//   records    = base + 32                 recordCapacity x 3 x i32: (code, offset, length)
//   carry slack = records + 12 * recordCapacity   8 bytes: carried header bytes, stored so that they end at data
//   data       = carry slack + 8           chunkCapacity bytes: the chunk being scanned
//
//   recordCapacity = floor(chunkCapacity / 5) + 2
//
// JavaScript reads the state block after each framerScan, and may itself write the first records of a chunk (the
// framer's JS hop over large messages) before calling framerScan with recordStart = their count.
//
// Growing frees the old region first; the allocator reuses it in place when it is the last block, otherwise the old
// region is abandoned, which geometric growth keeps bounded.
//
// Masking region (assembly/mask.ts), obtained by maskReserve(planCapacity, inputCapacity, outputCapacity):
//
//   plan       = base                      planCapacity bytes: the encoded MaskPlan (below), validated by maskLoadPlan
//   input      = plan + planCapacity       inputCapacity bytes: the DataRow to mask
//   output     = input + inputCapacity     outputCapacity bytes: the masked DataRow written by maskRow
//
// Encoded plan, little-endian u32, offsets from the plan's start:
//
//   +0         columnCount, redactionOffset, redactionLength, formatCount
//   +16        columnCount x (action, a, b, flags): PARTIAL a = keepFirst, b = keepLast; FIXED a = text offset, b =
//              length; flags MaskFlag.NullOnMismatch: a shaped action (year_only, ...) writes NULL for another shape
//   then       formatCount x (text offset, length): the identifier formats of DETECT
//   then       the texts (redaction, fixed replacements, formats), each at most MASK_MAX_TEXT_BYTES
//
// maskReserve drops the loaded plan: JavaScript copies the plan in again and calls maskLoadPlan after growing.

/** Bumped whenever the exports or the layout below change; the loader refuses a module built for another version. */
export const FRAMER_ABI_VERSION = 1;

/** Status of a framer scan (FrameError in src/protocol/framing.ts carries the same names and values). */
export const FrameStatus = { None: 0, LengthTooSmall: 1, LengthTooLarge: 2 } as const;

export const FramerMode = { Untagged: 0, Tagged: 1 } as const;

/** u32 slots of the state block written by framerScan. */
export const FramerStateSlot = {
  Mode: 0,
  Remaining: 1,
  CarryLen: 2,
  CarryLo: 3,
  CarryHi: 4,
  Error: 5,
} as const;

export const FRAMER_STATE_BYTES = 32;
export const FRAMER_RECORD_BYTES = 12;
export const FRAMER_RECORD_INTS = 3;
export const FRAMER_CARRY_SLACK = 8;

export interface FramerLayout {
  readonly base: number;
  readonly chunkCapacity: number;
  readonly recordCapacity: number;
  readonly state: number;
  readonly records: number;
  readonly data: number;
}

export function framerRecordCapacity(chunkCapacity: number): number {
  return Math.floor(chunkCapacity / 5) + 2;
}

/** Where each part of the framer region lies for a region at `base` (what framerReserve computes). */
export function framerLayout(base: number, chunkCapacity: number): FramerLayout {
  const recordCapacity = framerRecordCapacity(chunkCapacity);
  const records = base + FRAMER_STATE_BYTES;
  return {
    base,
    chunkCapacity,
    recordCapacity,
    state: base,
    records,
    data: records + recordCapacity * FRAMER_RECORD_BYTES + FRAMER_CARRY_SLACK,
  };
}

/** Bumped whenever the masking exports, codes or layout change; the loader refuses a module built for another. */
export const MASK_ABI_VERSION = 3;

/** What the masking kernel does to one column (MASK_ACTION_* in assembly/mask.ts). */
export const MaskAction = {
  Pass: 0,
  Null: 1,
  Redact: 2,
  Partial: 3,
  YearOnly: 4,
  MonthYear: 5,
  Zip3: 6,
  Email: 7,
  Fixed: 8,
  Detect: 9,
} as const;
export type MaskAction = (typeof MaskAction)[keyof typeof MaskAction];
export const MASK_ACTION_COUNT = 10;

/** Column flags, the plan entry's fourth word (MASK_FLAG_* in assembly/mask.ts). */
export const MaskFlag = { NullOnMismatch: 1 } as const;

/** maskRow returns the masked row's length or one of these (negative) statuses; maskLoadPlan returns Ok or BadPlan. */
export const MaskStatus = {
  Ok: 0,
  MalformedRow: -1,
  ColumnCount: -2,
  OutputTooSmall: -3,
  BadPlan: -4,
  BadCall: -5,
} as const;
export type MaskStatus = (typeof MaskStatus)[keyof typeof MaskStatus];

export const MASK_PLAN_HEADER_BYTES = 16;
export const MASK_PLAN_ENTRY_BYTES = 16;
export const MASK_MAX_TEXT_BYTES = 1024;
export const MASK_MAX_COLUMNS = 0x7fff;
/** Identifier formats (masking.mrn_formats, identifier_formats) per plan, and the longest one. */
export const MASK_MAX_FORMATS = 64;
export const MASK_MAX_FORMAT_BYTES = 64;
export const MASK_FORMAT_ENTRY_BYTES = 8;

export interface MaskLayout {
  readonly base: number;
  readonly plan: number;
  readonly input: number;
  readonly output: number;
}

/** Where each part of the masking region lies for a region at `base` (what maskReserve computes). */
export function maskLayout(base: number, planCapacity: number, inputCapacity: number): MaskLayout {
  return { base, plan: base, input: base + planCapacity, output: base + planCapacity + inputCapacity };
}

// The project compiles without the DOM lib, which is where TypeScript declares WebAssembly: the little used is here.
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export interface WasmGlobal {
  readonly value: unknown;
}

/** The functions and constants build/pgwarden.wasm exports. */
export interface PgwardenExports {
  readonly memory: WasmMemory;
  readonly FRAMER_ABI_VERSION: WasmGlobal;
  readonly FRAME_ERROR_NONE: WasmGlobal;
  readonly FRAME_ERROR_LENGTH_TOO_SMALL: WasmGlobal;
  readonly FRAME_ERROR_LENGTH_TOO_LARGE: WasmGlobal;
  readonly FRAMER_MODE_UNTAGGED: WasmGlobal;
  readonly FRAMER_MODE_TAGGED: WasmGlobal;
  readonly FRAMER_STATE_BYTES: WasmGlobal;
  readonly FRAMER_RECORD_BYTES: WasmGlobal;
  readonly FRAMER_CARRY_SLACK: WasmGlobal;
  /** Makes room for chunks of `chunkCapacity` bytes; returns the region base. May grow memory. */
  framerReserve(chunkCapacity: number): number;
  framerStatePtr(): number;
  framerRecordsPtr(): number;
  framerDataPtr(): number;
  framerChunkCapacity(): number;
  /**
   * Scans data[start, length) (or from the carried header when carryLen > 0); record offsets are relative to data
   * plus `bias`. Writes records from index `recordStart` on (the caller wrote those before it) and returns the total
   * record count. Writes the next state to the state block.
   */
  framerScan(
    mode: number,
    carryLen: number,
    carryLo: number,
    carryHi: number,
    maxTagged: number,
    maxUntagged: number,
    length: number,
    start: number,
    bias: number,
    recordStart: number,
  ): number;
  readonly MASK_ABI_VERSION: WasmGlobal;
  readonly MASK_ACTION_PASS: WasmGlobal;
  readonly MASK_ACTION_NULL: WasmGlobal;
  readonly MASK_ACTION_REDACT: WasmGlobal;
  readonly MASK_ACTION_PARTIAL: WasmGlobal;
  readonly MASK_ACTION_YEAR_ONLY: WasmGlobal;
  readonly MASK_ACTION_MONTH_YEAR: WasmGlobal;
  readonly MASK_ACTION_ZIP3: WasmGlobal;
  readonly MASK_ACTION_EMAIL: WasmGlobal;
  readonly MASK_ACTION_FIXED: WasmGlobal;
  readonly MASK_ACTION_DETECT: WasmGlobal;
  readonly MASK_ACTION_COUNT: WasmGlobal;
  readonly MASK_FLAG_NULL_ON_MISMATCH: WasmGlobal;
  readonly MASK_OK: WasmGlobal;
  readonly MASK_ERROR_MALFORMED_ROW: WasmGlobal;
  readonly MASK_ERROR_COLUMN_COUNT: WasmGlobal;
  readonly MASK_ERROR_OUTPUT_TOO_SMALL: WasmGlobal;
  readonly MASK_ERROR_BAD_PLAN: WasmGlobal;
  readonly MASK_ERROR_BAD_CALL: WasmGlobal;
  readonly MASK_PLAN_HEADER_BYTES: WasmGlobal;
  readonly MASK_PLAN_ENTRY_BYTES: WasmGlobal;
  readonly MASK_MAX_TEXT_BYTES: WasmGlobal;
  readonly MASK_MAX_COLUMNS: WasmGlobal;
  readonly MASK_MAX_FORMATS: WasmGlobal;
  readonly MASK_MAX_FORMAT_BYTES: WasmGlobal;
  readonly MASK_FORMAT_ENTRY_BYTES: WasmGlobal;
  /** Makes room for a plan, an input row and an output row of these sizes; returns the region base. May grow memory. */
  maskReserve(planCapacity: number, inputCapacity: number, outputCapacity: number): number;
  maskPlanPtr(): number;
  maskInputPtr(): number;
  maskOutputPtr(): number;
  /** Validates the plan of `planLength` bytes in the plan area and makes it current: MaskStatus.Ok or BadPlan. */
  maskLoadPlan(planLength: number): number;
  /** Masks the row in the input area into the output area (at most outCapacity bytes): its length or a MaskStatus. */
  maskRow(rowLength: number, outCapacity: number): number;
}

/** Constant exports whose values must equal the mirrors above; the loader checks them once. */
export const FRAMER_ABI_CONSTANTS: ReadonlyArray<readonly [keyof PgwardenExports, number]> = [
  ['FRAMER_ABI_VERSION', FRAMER_ABI_VERSION],
  ['FRAME_ERROR_NONE', FrameStatus.None],
  ['FRAME_ERROR_LENGTH_TOO_SMALL', FrameStatus.LengthTooSmall],
  ['FRAME_ERROR_LENGTH_TOO_LARGE', FrameStatus.LengthTooLarge],
  ['FRAMER_MODE_UNTAGGED', FramerMode.Untagged],
  ['FRAMER_MODE_TAGGED', FramerMode.Tagged],
  ['FRAMER_STATE_BYTES', FRAMER_STATE_BYTES],
  ['FRAMER_RECORD_BYTES', FRAMER_RECORD_BYTES],
  ['FRAMER_CARRY_SLACK', FRAMER_CARRY_SLACK],
];

/** The masking kernel's constant exports and their mirrors; the loader checks them once, with the framer's. */
export const MASK_ABI_CONSTANTS: ReadonlyArray<readonly [keyof PgwardenExports, number]> = [
  ['MASK_ABI_VERSION', MASK_ABI_VERSION],
  ['MASK_ACTION_PASS', MaskAction.Pass],
  ['MASK_ACTION_NULL', MaskAction.Null],
  ['MASK_ACTION_REDACT', MaskAction.Redact],
  ['MASK_ACTION_PARTIAL', MaskAction.Partial],
  ['MASK_ACTION_YEAR_ONLY', MaskAction.YearOnly],
  ['MASK_ACTION_MONTH_YEAR', MaskAction.MonthYear],
  ['MASK_ACTION_ZIP3', MaskAction.Zip3],
  ['MASK_ACTION_EMAIL', MaskAction.Email],
  ['MASK_ACTION_FIXED', MaskAction.Fixed],
  ['MASK_ACTION_DETECT', MaskAction.Detect],
  ['MASK_ACTION_COUNT', MASK_ACTION_COUNT],
  ['MASK_FLAG_NULL_ON_MISMATCH', MaskFlag.NullOnMismatch],
  ['MASK_OK', MaskStatus.Ok],
  ['MASK_ERROR_MALFORMED_ROW', MaskStatus.MalformedRow],
  ['MASK_ERROR_COLUMN_COUNT', MaskStatus.ColumnCount],
  ['MASK_ERROR_OUTPUT_TOO_SMALL', MaskStatus.OutputTooSmall],
  ['MASK_ERROR_BAD_PLAN', MaskStatus.BadPlan],
  ['MASK_ERROR_BAD_CALL', MaskStatus.BadCall],
  ['MASK_PLAN_HEADER_BYTES', MASK_PLAN_HEADER_BYTES],
  ['MASK_PLAN_ENTRY_BYTES', MASK_PLAN_ENTRY_BYTES],
  ['MASK_MAX_TEXT_BYTES', MASK_MAX_TEXT_BYTES],
  ['MASK_MAX_COLUMNS', MASK_MAX_COLUMNS],
  ['MASK_MAX_FORMATS', MASK_MAX_FORMATS],
  ['MASK_MAX_FORMAT_BYTES', MASK_MAX_FORMAT_BYTES],
  ['MASK_FORMAT_ENTRY_BYTES', MASK_FORMAT_ENTRY_BYTES],
];
