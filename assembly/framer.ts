// PostgreSQL v3 protocol framer: hops from header to header of one copied-in chunk and writes (code, offset, length) records.
//
// Layout and status codes are mirrored in src/wasm/abi.ts (the loader checks the exported constants at load time).
// Per-framer state lives in JavaScript and arrives as parameters; the module keeps only the shared scratch region:
//
//   base (16-byte aligned, from heap.alloc)
//   +0                  state out: 8 x u32 (mode, remaining, carryLen, carryLo, carryHi, error, 0, 0)
//   +32                 record table: recordCapacity x (i32 code, i32 offset, i32 length)
//   records + 12*cap    8 bytes of carry slack: the header bytes carried from earlier chunks are stored right before data
//   data                chunkCapacity bytes: the chunk, copied in by JavaScript with one TypedArray.set
//
// recordCapacity = chunkCapacity / 5 + 2: every message but the first starts inside the chunk, at least 5 bytes after
// the previous one, and is only recorded once its header is complete, so a chunk of n bytes yields at most n/5 + 1.
//
// The region comes from the runtime's bump allocator (heap.alloc), so other kernels in this module can take their own
// regions next to it. Growing frees the old region first: when it is the last block the allocator reuses it in place,
// otherwise it is abandoned (bounded, since JavaScript grows the capacity geometrically).

export const FRAMER_ABI_VERSION: u32 = 1;

// Status codes (FrameError in TypeScript).
export const FRAME_ERROR_NONE: u32 = 0;
export const FRAME_ERROR_LENGTH_TOO_SMALL: u32 = 1;
export const FRAME_ERROR_LENGTH_TOO_LARGE: u32 = 2;

export const FRAMER_MODE_UNTAGGED: u32 = 0;
export const FRAMER_MODE_TAGGED: u32 = 1;

export const FRAMER_STATE_BYTES: u32 = 32;
export const FRAMER_RECORD_BYTES: u32 = 12;
export const FRAMER_CARRY_SLACK: u32 = 8;

// CancelRequest 80877102, SSLRequest 80877103, GSSENCRequest 80877104: contiguous, so one unsigned compare tests all three.
const CANCEL_REQUEST_CODE: u32 = 80877102;
const NEGOTIATION_CODE_COUNT: u32 = 3;

const TAGGED_HEADER: usize = 5;
const UNTAGGED_HEADER: usize = 8;

let regionBase: usize = 0;
let chunkCapacity: u32 = 0;
let recordsPtr: usize = 0;
let dataPtr: usize = 0;

// @ts-ignore: decorator
@inline function loadBE32(ptr: usize): u32 {
  return bswap<u32>(load<u32>(ptr));
}

// @ts-ignore: decorator
@inline function writeRecord(rec: usize, code: u32, offset: i32, length: u32): void {
  store<u32>(rec, code);
  store<i32>(rec, offset, 4);
  store<u32>(rec, length, 8);
}

/** Ensures room for chunks of `capacity` bytes (and their records); returns the region base. Memory may grow. */
export function framerReserve(capacity: u32): usize {
  if (regionBase != 0) heap.free(regionBase);
  const recordCapacity = <usize>(capacity / 5 + 2);
  const size = <usize>FRAMER_STATE_BYTES + recordCapacity * FRAMER_RECORD_BYTES + FRAMER_CARRY_SLACK + capacity;
  regionBase = heap.alloc(size);
  chunkCapacity = capacity;
  recordsPtr = regionBase + FRAMER_STATE_BYTES;
  dataPtr = recordsPtr + recordCapacity * FRAMER_RECORD_BYTES + FRAMER_CARRY_SLACK;
  return regionBase;
}

export function framerStatePtr(): usize {
  return regionBase;
}

export function framerRecordsPtr(): usize {
  return recordsPtr;
}

export function framerDataPtr(): usize {
  return dataPtr;
}

export function framerChunkCapacity(): u32 {
  return chunkCapacity;
}

/**
 * Scans `length` bytes at data, starting at data + start (or at the carried header when carryLen > 0, which implies
 * start == 0). Record offsets are relative to data plus `bias` (the number of chunk bytes JavaScript did not copy).
 * Records are written from index `recordStart` on (JavaScript wrote the ones before it); returns the total count.
 * The next state is written to the state block.
 */
export function framerScan(
  mode: u32,
  carryLen: u32,
  carryLo: u32,
  carryHi: u32,
  maxTagged: u32,
  maxUntagged: u32,
  length: u32,
  start: u32,
  bias: i32,
  recordStart: u32,
): u32 {
  const data = dataPtr;
  const end = data + length;
  let p = data + start;
  if (carryLen != 0) {
    // The carried bytes are the last carryLen bytes of this little-endian word; they land right before data.
    store<u64>(data - 8, (<u64>carryHi << 32) | <u64>carryLo);
    p = data - carryLen;
  }
  let rec = recordsPtr + <usize>recordStart * FRAMER_RECORD_BYTES;
  let remaining: u32 = 0;
  let error = FRAME_ERROR_NONE;

  if (mode == FRAMER_MODE_UNTAGGED) {
    // Startup phase: int32 length (includes itself) + int32 request code.
    while (end - p >= UNTAGGED_HEADER) {
      const len = loadBE32(p);
      const code = loadBE32(p + 4);
      if (<i32>len < <i32>UNTAGGED_HEADER) {
        error = FRAME_ERROR_LENGTH_TOO_SMALL;
        break;
      }
      if (len > maxUntagged) {
        error = FRAME_ERROR_LENGTH_TOO_LARGE;
        break;
      }
      writeRecord(rec, code, <i32>(p - data) + bias, len);
      rec += FRAMER_RECORD_BYTES;
      // Anything but SSLRequest/GSSENCRequest/CancelRequest is a StartupMessage: tagged messages follow it.
      if (code - CANCEL_REQUEST_CODE >= NEGOTIATION_CODE_COUNT) mode = FRAMER_MODE_TAGGED;
      const avail = <u32>(end - p);
      if (len >= avail) {
        remaining = len - avail;
        p = end;
        break;
      }
      p += len;
      if (mode == FRAMER_MODE_TAGGED) break;
    }
  }

  if (mode == FRAMER_MODE_TAGGED && error == FRAME_ERROR_NONE) {
    // byte type + int32 length (includes itself, not the type byte). The hot loop: each header's position depends on
    // the previous length, so the chain load -> bswap -> add sets the pace; p + 1 is computed off that chain.
    while (end - p >= TAGGED_HEADER) {
      const field = p + 1;
      const len = loadBE32(field);
      if (<i32>len < 4) {
        error = FRAME_ERROR_LENGTH_TOO_SMALL;
        break;
      }
      if (len > maxTagged) {
        error = FRAME_ERROR_LENGTH_TOO_LARGE;
        break;
      }
      writeRecord(rec, <u32>load<u8>(p), <i32>(p - data) + bias, len + 1);
      rec += FRAMER_RECORD_BYTES;
      const avail = <u32>(end - field);
      if (len >= avail) {
        remaining = len - avail;
        p = end;
        break;
      }
      p = field + len;
    }
  }

  const state = regionBase;
  store<u32>(state, mode);
  if (error != FRAME_ERROR_NONE) {
    store<u32>(state, 0, 4);
    store<u32>(state, 0, 8);
  } else {
    // Whatever is left is a partial header: hand its bytes back to JavaScript as the last bytes of one u64.
    const left = <u32>(end - p);
    store<u32>(state, remaining, 4);
    store<u32>(state, left, 8);
    if (left != 0) {
      const window = load<u64>(end - 8);
      store<u32>(state, <u32>window, 12);
      store<u32>(state, <u32>(window >>> 32), 16);
    }
  }
  store<u32>(state, error, 20);
  return <u32>((rec - recordsPtr) / FRAMER_RECORD_BYTES);
}
