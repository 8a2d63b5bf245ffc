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
