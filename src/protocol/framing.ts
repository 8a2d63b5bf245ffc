// Splits a PostgreSQL v3 byte stream into messages across arbitrary reads: a WASM scanner and its TypeScript twin.
//
// Wire format: https://www.postgresql.org/docs/current/protocol-message-formats.html
//   untagged (startup phase, frontend only): int32 length (includes itself) + int32 request code + body
//   tagged: byte type + int32 length (includes itself, not the type byte) + body
//
// A scan reports one (code, offset, length) record per message whose HEADER completes in the chunk; payloads are never
// copied back to JavaScript. Per-framer state is a handful of numbers kept on the framer object, so thousands of
// framers share one WASM instance (and one scratch region) per thread, and a chunk costs at most one copy-in and ONE
// call. When a stream's messages are large, its chunks are hopped header to header in JavaScript instead: reading a
// few headers is cheaper than copying the bodies in (see WasmFramerTuning and bench/micro/framing.ts).
import {
  FRAMER_RECORD_INTS,
  FramerMode,
  FramerStateSlot,
  framerLayout,
  framerRecordCapacity,
  type PgwardenExports,
} from '../wasm/abi.js';
import { loadPgwardenWasm } from '../wasm/loader.js';

export const enum FrameError {
  None = 0,
  /** Tagged length field < 4 (including a negative int32), or untagged length field < 8. */
  LengthTooSmall = 1,
  /** Length field above maxMessageSize (tagged) or maxStartupSize (untagged). */
  LengthTooLarge = 2,
}

export interface FramerOptions {
  /** true: begin in untagged mode (frontend); false: tagged (backend). */
  startup: boolean;
  /** Max tagged message length field (bytes, inclusive of the 4 length bytes); larger -> LengthTooLarge. */
  maxMessageSize: number;
  /** Max untagged length field; larger -> LengthTooLarge (PostgreSQL uses 10000). */
  maxStartupSize: number;
}

export interface Framer {
  /**
   * Scans one chunk. Returns the number of records written to `records` (3 int32 per record: code, offset, length).
   * Records are for each message whose HEADER completes in this chunk. offset = index in `chunk` of the message's
   * first byte (negative when the header straddled the previous chunk(s)); length = total bytes of the message on the
   * wire (tagged: 1 + length field; untagged: length field). code = type byte for tagged, the int32 request code for
   * untagged. On an invalid length (tagged: field < 4 or > maxMessageSize, including negative int32; untagged: field
   * < 8 or > maxStartupSize) scanning stops: the records before it are returned, `error` is set (FrameError) and the
   * framer is poisoned: later scans return 0 and keep the error.
   */
  scan(chunk: Uint8Array): number;
  /**
   * Valid for [0, 3*n) until the next scan() call of ANY framer of the same implementation on this thread; consume
   * the records before scanning again. WASM: a view over the module's memory, overwritten by the next scan and
   * detached (length 0) by any memory.grow, so read it through this getter after each scan and do not keep it.
   * TypeScript: one array shared by all TsFramers of the thread, replaced by a larger one when a chunk needs more.
   */
  readonly records: Int32Array;
  /** FrameError. */
  readonly error: number;
  /** Current mode: false while in the untagged startup phase. */
  readonly tagged: boolean;
  /** Bytes of the current (last) message still to come after the end of the last chunk (0 on a boundary or mid-header). */
  readonly pendingBody: number;
  /** Back to the initial state (used when TLS starts: the decrypted stream begins untagged again). */
  reset(startup: boolean): void;
}

export type FramerImpl = 'wasm' | 'typescript';

/** Creates a framer; 'wasm' (default) instantiates build/pgwarden.wasm on first use and throws if it is missing. */
export function createFramer(options: FramerOptions, impl: FramerImpl = 'wasm'): Framer {
  switch (impl) {
    case 'wasm':
      return new WasmFramer(options);
    case 'typescript':
      return new TsFramer(options);
    default:
      throw new TypeError(`unknown framer implementation: ${String(impl)}`);
  }
}

// Tagged totals are 1 + length field and must fit an int32 record, hence one less than INT32_MAX.
const MAX_TAGGED_LIMIT = 0x7ffffffe;
const MAX_UNTAGGED_LIMIT = 0x7fffffff;
const TAGGED_HEADER = 5;
const UNTAGGED_HEADER = 8;
// CancelRequest, SSLRequest, GSSENCRequest: the only untagged requests after which the stream stays untagged.
const CANCEL_REQUEST_CODE = 80877102;
const GSSENC_REQUEST_CODE = 80877104;

function checkOptions(options: FramerOptions): void {
  const { maxMessageSize, maxStartupSize } = options;
  if (!Number.isInteger(maxMessageSize) || maxMessageSize < 4 || maxMessageSize > MAX_TAGGED_LIMIT) {
    throw new RangeError(
      `maxMessageSize must be an integer in [4, ${MAX_TAGGED_LIMIT}], got ${maxMessageSize}`,
    );
  }
  if (!Number.isInteger(maxStartupSize) || maxStartupSize < 8 || maxStartupSize > MAX_UNTAGGED_LIMIT) {
    throw new RangeError(
      `maxStartupSize must be an integer in [8, ${MAX_UNTAGGED_LIMIT}], got ${maxStartupSize}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// WASM implementation

/** Scratch capacity allocated on first use: a socket read is at most 64 KiB by default. */
const INITIAL_WASM_CAPACITY = 64 * 1024;
/** Larger chunks are refused: the region (about 3.4 x capacity) must stay well inside the 4 GiB of wasm32 memory. */
export const MAX_WASM_CHUNK = 256 * 1024 * 1024;
/**
 * When the scanner starts more than this many bytes into the chunk, only the bytes from there are copied in
 * (subarray + bias); below it, copying the extra bytes costs less than allocating the subarray (~50 ns).
 */
const SKIP_COPY_THRESHOLD = 1024;

/** The thread's shared framer region in WASM memory and the typed-array views over it. */
class WasmScratch {
  readonly wasm: PgwardenExports;
  capacity = 0;
  data = 0;
  u8!: Uint8Array;
  state!: Uint32Array;
  records!: Int32Array;

  constructor(wasm: PgwardenExports) {
    this.wasm = wasm;
    this.reserve(INITIAL_WASM_CAPACITY);
  }

  /** Grows geometrically to hold chunks of at least `needed` bytes; rebuilds the views (memory may have grown). */
  reserve(needed: number): void {
    if (needed > MAX_WASM_CHUNK) {
      throw new RangeError(
        `chunk of ${needed} bytes exceeds the WASM framer's limit of ${MAX_WASM_CHUNK} bytes`,
      );
    }
    const capacity = Math.min(MAX_WASM_CHUNK, Math.max(needed, this.capacity * 2));
    const base = this.wasm.framerReserve(capacity);
    const layout = framerLayout(base, capacity);
    if (
      this.wasm.framerRecordsPtr() !== layout.records ||
      this.wasm.framerDataPtr() !== layout.data ||
      this.wasm.framerChunkCapacity() !== capacity
    ) {
      throw new Error('pgwarden.wasm framer layout differs from src/wasm/abi.ts; rebuild it');
    }
    this.capacity = capacity;
    this.data = layout.data;
    this.refresh();
  }

  /** Rebuilds the views over the current memory.buffer (a memory.grow detached the previous ones). */
  refresh(): void {
    const buffer = this.wasm.memory.buffer;
    const layout = framerLayout(this.wasm.framerStatePtr(), this.capacity);
    this.u8 = new Uint8Array(buffer);
    this.state = new Uint32Array(buffer, layout.state, 8);
    this.records = new Int32Array(buffer, layout.records, layout.recordCapacity * FRAMER_RECORD_INTS);
  }
}

let wasmScratch: WasmScratch | undefined;

function getWasmScratch(): WasmScratch {
  return (wasmScratch ??= new WasmScratch(loadPgwardenWasm()));
}

/** Knobs of the WASM framer, for benchmarks and tests; production uses the defaults. */
export interface WasmFramerTuning {
  /**
   * A tagged chunk is hopped header to header in JavaScript, without copying it into WASM memory, when the previous
   * chunk's messages averaged at least this many bytes: then reading a few headers costs less than the copy-in. The
   * scanner still takes over at an invalid length or a header cut by the chunk's end. 0: always hop (as far as
   * possible); Infinity: the scanner takes every chunk.
   */
  jsHopAverageBytes?: number;
}

/**
 * From bench/micro/framing.ts (16 KiB chunks): the copy-in plus the scanner beat the JS hop on ~100-byte DataRows by
 * ~1.4x; they break even around 170 bytes; at 300 bytes the hop is 1.6x faster and at 2 KiB 7x (the copy-in is then
 * nearly all the scanner path does).
 */
const DEFAULT_JS_HOP_AVERAGE_BYTES = 160;

/** The framer backed by build/pgwarden.wasm; its state is passed in and read back on every scan. */
export class WasmFramer implements Framer {
  private readonly scratch: WasmScratch;
  private readonly maxTagged: number;
  private readonly maxUntagged: number;
  private readonly hopAverage: number;
  private mode: number;
  private remaining = 0;
  private carryLen = 0;
  // The carried header bytes are the last carryLen bytes of the little-endian u64 (carryHi:carryLo).
  private carryLo = 0;
  private carryHi = 0;
  private err: number = FrameError.None;
  /** Average message size in the last chunk that had a header (chunk bytes / records); decides JS hop vs scanner. */
  private bytesPerMessage = 0;

  constructor(options: FramerOptions, tuning: WasmFramerTuning = {}) {
    checkOptions(options);
    const hopAverage = tuning.jsHopAverageBytes ?? DEFAULT_JS_HOP_AVERAGE_BYTES;
    if (!(hopAverage >= 0)) throw new RangeError(`jsHopAverageBytes must be >= 0, got ${hopAverage}`);
    this.scratch = getWasmScratch();
    this.maxTagged = options.maxMessageSize;
    this.maxUntagged = options.maxStartupSize;
    this.hopAverage = hopAverage;
    this.mode = options.startup ? FramerMode.Untagged : FramerMode.Tagged;
  }

  scan(chunk: Uint8Array): number {
    if (this.err !== FrameError.None) return 0;
    const length = chunk.length;
    let p = this.remaining;
    if (p >= length) {
      // The whole chunk is body of the current message: nothing to look at, no call.
      this.remaining = p - length;
      return 0;
    }
    const s = this.scratch;
    // Room for every record of the chunk, before any is written (reserving moves the region).
    if (length > s.capacity) s.reserve(length);
    else if (s.u8.length === 0) s.refresh(); // detached: memory grew since the views were built
    let n = 0;
    if (this.bytesPerMessage >= this.hopAverage && this.mode === FramerMode.Tagged && this.carryLen === 0) {
      // Large messages: hop their headers here, writing the records straight into the scanner's table.
      const records = s.records;
      const max = this.maxTagged;
      while (length - p >= TAGGED_HEADER) {
        const len = (chunk[p + 1] << 24) | (chunk[p + 2] << 16) | (chunk[p + 3] << 8) | chunk[p + 4];
        if (len < 4 || len > max) break; // the scanner reports it
        const total = len + 1;
        records[n] = chunk[p];
        records[n + 1] = p;
        records[n + 2] = total;
        n += FRAMER_RECORD_INTS;
        const avail = length - p;
        if (total >= avail) {
          const count = n / FRAMER_RECORD_INTS;
          this.remaining = total - avail;
          this.bytesPerMessage = length / count;
          return count;
        }
        p += total;
      }
    }
    // The scanner takes [p, length): copy from p when that saves more than a subarray costs, else the whole chunk.
    const from = p > SKIP_COPY_THRESHOLD ? p : 0;
    s.u8.set(from === 0 ? chunk : chunk.subarray(from), s.data);
    const count = s.wasm.framerScan(
      this.mode,
      this.carryLen,
      this.carryLo,
      this.carryHi,
      this.maxTagged,
      this.maxUntagged,
      length - from,
      p - from,
      from,
      n / FRAMER_RECORD_INTS,
    );
    const state = s.state;
    this.mode = state[FramerStateSlot.Mode];
    this.remaining = state[FramerStateSlot.Remaining];
    this.carryLen = state[FramerStateSlot.CarryLen];
    this.carryLo = state[FramerStateSlot.CarryLo];
    this.carryHi = state[FramerStateSlot.CarryHi];
    this.err = state[FramerStateSlot.Error];
    if (count > 0) this.bytesPerMessage = length / count;
    return count;
  }

  get records(): Int32Array {
    const s = this.scratch;
    if (s.records.length === 0) s.refresh();
    return s.records;
  }

  get error(): number {
    return this.err;
  }

  get tagged(): boolean {
    return this.mode === FramerMode.Tagged;
  }

  get pendingBody(): number {
    return this.remaining;
  }

  reset(startup: boolean): void {
    this.mode = startup ? FramerMode.Untagged : FramerMode.Tagged;
    this.remaining = 0;
    this.carryLen = 0;
    this.carryLo = 0;
    this.carryHi = 0;
    this.err = FrameError.None;
    this.bytesPerMessage = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// TypeScript twin: the reference in property tests and the switchable fallback.

let tsRecords = new Int32Array(FRAMER_RECORD_INTS * framerRecordCapacity(16 * 1024));

export class TsFramer implements Framer {
  private readonly maxTagged: number;
  private readonly maxUntagged: number;
  private isTagged: boolean;
  private remaining = 0;
  private carryLen = 0;
  /** Header bytes carried from earlier chunks, from the message's first byte. */
  private readonly carry = new Uint8Array(UNTAGGED_HEADER);
  private err: number = FrameError.None;

  constructor(options: FramerOptions) {
    checkOptions(options);
    this.maxTagged = options.maxMessageSize;
    this.maxUntagged = options.maxStartupSize;
    this.isTagged = !options.startup;
  }

  scan(chunk: Uint8Array): number {
    if (this.err !== FrameError.None) return 0;
    const length = chunk.length;
    const remaining = this.remaining;
    if (remaining >= length) {
      this.remaining = remaining - length;
      return 0;
    }
    const needed = FRAMER_RECORD_INTS * framerRecordCapacity(length);
    if (tsRecords.length < needed) tsRecords = new Int32Array(Math.max(needed, tsRecords.length * 2));
    const out = tsRecords;
    const carry = this.carry;
    let tagged = this.isTagged;
    let n = 0;
    let p = remaining;
    let pending = 0;
    let error: number = FrameError.None;

    if (this.carryLen > 0) {
      // A header straddles the previous chunk(s): complete it in `carry`, then read it from there (p < 0 below).
      const carried = this.carryLen;
      const headerLen = tagged ? TAGGED_HEADER : UNTAGGED_HEADER;
      const take = Math.min(headerLen - carried, length);
      for (let i = 0; i < take; i++) carry[carried + i] = chunk[i];
      if (carried + take < headerLen) {
        this.carryLen = carried + take;
        return 0;
      }
      p = -carried;
    }

    if (!tagged) {
      while (length - p >= UNTAGGED_HEADER) {
        const h = p < 0 ? carry : chunk;
        const q = p < 0 ? 0 : p;
        const len = (h[q] << 24) | (h[q + 1] << 16) | (h[q + 2] << 8) | h[q + 3];
        const code = (h[q + 4] << 24) | (h[q + 5] << 16) | (h[q + 6] << 8) | h[q + 7];
        if (len < UNTAGGED_HEADER) {
          error = FrameError.LengthTooSmall;
          break;
        }
        if (len > this.maxUntagged) {
          error = FrameError.LengthTooLarge;
          break;
        }
        out[n] = code;
        out[n + 1] = p;
        out[n + 2] = len;
        n += 3;
        if (code < CANCEL_REQUEST_CODE || code > GSSENC_REQUEST_CODE) tagged = true; // a StartupMessage
        const avail = length - p;
        if (len >= avail) {
          pending = len - avail;
          p = length;
          break;
        }
        p += len;
        if (tagged) break;
      }
    }

    if (tagged && error === FrameError.None) {
      while (length - p >= TAGGED_HEADER) {
        const h = p < 0 ? carry : chunk;
        const q = p < 0 ? 0 : p;
        const len = (h[q + 1] << 24) | (h[q + 2] << 16) | (h[q + 3] << 8) | h[q + 4];
        if (len < 4) {
          error = FrameError.LengthTooSmall;
          break;
        }
        if (len > this.maxTagged) {
          error = FrameError.LengthTooLarge;
          break;
        }
        const total = len + 1;
        out[n] = h[q];
        out[n + 1] = p;
        out[n + 2] = total;
        n += 3;
        const avail = length - p;
        if (total >= avail) {
          pending = total - avail;
          p = length;
          break;
        }
        p += total;
      }
    }

    this.isTagged = tagged;
    if (error !== FrameError.None) {
      this.err = error;
      this.remaining = 0;
      this.carryLen = 0;
    } else {
      // Whatever is left is the start of a header: keep it for the next chunk.
      const left = length - p;
      for (let i = 0; i < left; i++) carry[i] = chunk[p + i];
      this.carryLen = left;
      this.remaining = pending;
    }
    return n / FRAMER_RECORD_INTS;
  }

  get records(): Int32Array {
    return tsRecords;
  }

  get error(): number {
    return this.err;
  }

  get tagged(): boolean {
    return this.isTagged;
  }

  get pendingBody(): number {
    return this.remaining;
  }

  reset(startup: boolean): void {
    this.isTagged = !startup;
    this.remaining = 0;
    this.carryLen = 0;
    this.err = FrameError.None;
  }
}
