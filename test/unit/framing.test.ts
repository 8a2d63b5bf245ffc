// Framer tests: the WASM scanner and its TypeScript twin on wire fixtures split anywhere, against each other and the truth.
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  createFramer,
  FrameError,
  TsFramer,
  WasmFramer,
  type Framer,
  type FramerOptions,
} from '../../src/protocol/framing.js';
import { FrameStatus } from '../../src/wasm/abi.js';
import { loadPgwardenWasm } from '../../src/wasm/loader.js';

// The WASM framer hops the chunks of large-message streams in JavaScript and scans the others in WASM; the two
// extra variants force each path so that both meet every test.
const VARIANTS: Array<[string, (options: FramerOptions) => Framer]> = [
  ['wasm', (o) => createFramer(o, 'wasm')],
  ['wasm (JS hop first)', (o) => new WasmFramer(o, { jsHopAverageBytes: 0 })],
  ['wasm (scanner only)', (o) => new WasmFramer(o, { jsHopAverageBytes: Infinity })],
  ['typescript', (o) => createFramer(o, 'typescript')],
];
const WASM_VARIANTS = VARIANTS.filter(([name]) => name.startsWith('wasm'));
const FRONTEND: FramerOptions = { startup: true, maxMessageSize: 1 << 20, maxStartupSize: 10000 };
const BACKEND: FramerOptions = { startup: false, maxMessageSize: 1 << 20, maxStartupSize: 10000 };

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3_0 = 196608;

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: each message is built on its own, so the truth (where messages start, how long they are) comes from the
// builders, never from a parser.

interface Fixture {
  readonly code: number;
  readonly bytes: Buffer;
  readonly tagged: boolean;
}

/** byte type + int32 length (4 + body) + body; `body` is the bytes or a length to fill with noise. */
function tagged(type: string | number, body: Uint8Array | number = 0, seed = 1): Fixture {
  const payload = typeof body === 'number' ? noise(body, seed) : body;
  const bytes = Buffer.alloc(5 + payload.length);
  const code = typeof type === 'number' ? type : type.charCodeAt(0);
  bytes[0] = code;
  bytes.writeInt32BE(4 + payload.length, 1);
  bytes.set(payload, 5);
  return { code, bytes, tagged: true };
}

/** int32 length (8 + body) + int32 request code + body. */
function untagged(code: number, body: Uint8Array | number = 0, seed = 1): Fixture {
  const payload = typeof body === 'number' ? noise(body, seed) : body;
  const bytes = Buffer.alloc(8 + payload.length);
  bytes.writeInt32BE(8 + payload.length, 0);
  bytes.writeInt32BE(code, 4);
  bytes.set(payload, 8);
  return { code: code | 0, bytes, tagged: false };
}

/** A message serialized by pg-protocol, with the code the test expects for it. */
function wire(bytes: Buffer, code: string | number): Fixture {
  return typeof code === 'string'
    ? { code: code.charCodeAt(0), bytes, tagged: true }
    : { code, bytes, tagged: false };
}

/** Body bytes that often look like headers (xorshift), so a framer that peeks into bodies would go wrong. */
function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function dataRow(values: Array<string | null>): Fixture {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  parts[0].writeInt16BE(values.length, 0);
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1, 0);
      parts.push(len);
    } else {
      const text = Buffer.from(v);
      len.writeInt32BE(text.length, 0);
      parts.push(len, text);
    }
  }
  return tagged('D', Buffer.concat(parts));
}

function header(f: Fixture): number {
  return f.tagged ? 5 : 8;
}

interface Expected {
  readonly code: number;
  readonly start: number;
  readonly length: number;
  readonly headerEnd: number; // index just past the header
}

function layout(fixtures: readonly Fixture[]): { stream: Buffer; expected: Expected[] } {
  const expected: Expected[] = [];
  let at = 0;
  for (const f of fixtures) {
    expected.push({ code: f.code, start: at, length: f.bytes.length, headerEnd: at + header(f) });
    at += f.bytes.length;
  }
  return { stream: Buffer.concat(fixtures.map((f) => f.bytes)), expected };
}

const frontendStream: Fixture[] = [
  wire(serialize.requestSsl(), SSL_REQUEST),
  wire(serialize.startup({ user: 'alice', database: 'ehr', application_name: 'framing-test' }), PROTOCOL_3_0),
  wire(serialize.password('secret'), 'p'),
  wire(serialize.query('select * from patients where id = 1'), 'Q'),
  wire(serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }), 'P'),
  wire(serialize.bind({ statement: 's1', values: ['42'] }), 'B'),
  wire(serialize.describe({ type: 'P' }), 'D'),
  wire(serialize.execute({ rows: 0 }), 'E'),
  wire(serialize.sync(), 'S'),
  wire(serialize.flush(), 'H'),
  wire(serialize.end(), 'X'),
];

const backendStream: Fixture[] = [
  tagged('R', Buffer.from([0, 0, 0, 0])),
  tagged('S', Buffer.from('server_version\x0015.4\x00')),
  tagged('K', 8),
  tagged('Z', Buffer.from('I')),
  tagged('T', 60),
  dataRow(['1', '123-45-6789', 'Jane Doe', null]),
  dataRow(['2', '987-65-4321', 'John Roe', '1970-01-01']),
  tagged('D', 300, 7),
  tagged('C', Buffer.from('SELECT 3\x00')),
  tagged('Z', Buffer.from('I')),
];

// ---------------------------------------------------------------------------------------------------------------
// Driving a framer

interface ChunkResult {
  readonly n: number;
  readonly records: number[];
  readonly error: number;
  readonly tagged: boolean;
  readonly pendingBody: number;
}

function chunksAt(stream: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const c of [...points, stream.length]) {
    chunks.push(stream.subarray(from, c));
    from = c;
  }
  return chunks;
}

function scanAll(framer: Framer, chunks: readonly Uint8Array[]): ChunkResult[] {
  return chunks.map((chunk) => {
    const n = framer.scan(chunk);
    return {
      n,
      records: Array.from(framer.records.subarray(0, 3 * n)),
      error: framer.error,
      tagged: framer.tagged,
      pendingBody: framer.pendingBody,
    };
  });
}

/** Checks every chunk's records against the truth: offsets, the chunk each header completes in, pendingBody. */
function expectTruth(
  results: readonly ChunkResult[],
  chunks: readonly Uint8Array[],
  expected: readonly Expected[],
  badAt = Infinity,
): void {
  let chunkStart = 0;
  results.forEach((r, i) => {
    const chunkEnd = chunkStart + chunks[i].length;
    const due = expected.filter(
      (m) => m.headerEnd > chunkStart && m.headerEnd <= chunkEnd && m.start < badAt,
    );
    const got: Array<[number, number, number]> = [];
    for (let k = 0; k < r.n; k++) {
      got.push([r.records[3 * k], chunkStart + r.records[3 * k + 1], r.records[3 * k + 2]]);
    }
    expect(got, `records of chunk ${i} [${chunkStart}, ${chunkEnd})`).toEqual(
      due.map((m) => [m.code, m.start, m.length]),
    );
    const poisoned = badAt + 5 <= chunkEnd;
    expect(r.error !== FrameError.None, `error after chunk ${i}`).toBe(poisoned);
    const current = expected.find((m) => m.start < chunkEnd && m.start + m.length > chunkEnd);
    const pending =
      !poisoned && current && current.headerEnd <= chunkEnd ? current.start + current.length - chunkEnd : 0;
    expect(r.pendingBody, `pendingBody after chunk ${i}`).toBe(pending);
    chunkStart = chunkEnd;
  });
}

function recordsOf(results: readonly ChunkResult[]): number[] {
  return results.flatMap((r) => r.records);
}

// ---------------------------------------------------------------------------------------------------------------

describe.each(VARIANTS)('%s framer', (_name, make) => {
  it('frames a frontend stream (SSLRequest, StartupMessage, tagged) split in two at every offset', () => {
    const { stream, expected } = layout(frontendStream);
    for (let cut = 0; cut <= stream.length; cut++) {
      const chunks = chunksAt(stream, [cut]);
      const results = scanAll(make(FRONTEND), chunks);
      expectTruth(results, chunks, expected);
      expect(results.at(-1)?.tagged).toBe(true);
    }
  });

  it('frames a backend stream split in two at every offset', () => {
    const { stream, expected } = layout(backendStream);
    for (let cut = 0; cut <= stream.length; cut++) {
      const chunks = chunksAt(stream, [cut]);
      expectTruth(scanAll(make(BACKEND), chunks), chunks, expected);
    }
  });

  it('frames the whole stream in one chunk with offsets in that chunk', () => {
    const { stream, expected } = layout(frontendStream);
    const framer = make(FRONTEND);
    const n = framer.scan(stream);
    expect(n).toBe(expected.length);
    const codes = Array.from({ length: n }, (_, k) => framer.records[3 * k]);
    expect(codes.slice(2).map((c) => String.fromCharCode(c))).toEqual([
      'p',
      'Q',
      'P',
      'B',
      'D',
      'E',
      'S',
      'H',
      'X',
    ]);
    expect(codes.slice(0, 2)).toEqual([SSL_REQUEST, PROTOCOL_3_0]);
    expect(framer.pendingBody).toBe(0);
  });

  it('frames a frontend stream at random multi-splits', () => {
    const { stream, expected } = layout([...frontendStream, ...frontendStream.slice(2)]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }), (cuts) => {
        const chunks = chunksAt(stream, cuts);
        expectTruth(scanAll(make(FRONTEND), chunks), chunks, expected);
      }),
      { numRuns: 300 },
    );
  });

  it('carries a header across several one-byte chunks and reports it with a negative offset', () => {
    const query = serialize.query('select 1');
    const { stream, expected } = layout([
      wire(serialize.startup({ user: 'u' }), PROTOCOL_3_0),
      wire(query, 'Q'),
    ]);
    const chunks = chunksAt(
      stream,
      Array.from({ length: stream.length }, (_, i) => i),
    );
    const results = scanAll(make(FRONTEND), chunks);
    expectTruth(results, chunks, expected);
    // The startup header completes with its 8th byte: offset -7; the Query header with its 5th: offset -4.
    expect(results[7].records).toEqual([PROTOCOL_3_0, -7, expected[0].length]);
    const queryHeaderChunk = expected[1].start + 4;
    expect(results[queryHeaderChunk].records).toEqual(['Q'.charCodeAt(0), -4, query.length]);
    expect(results[queryHeaderChunk].pendingBody).toBe(query.length - 5);
    expect(results.at(-1)?.pendingBody).toBe(0);
  });

  it('completes a header carried over three chunks of uneven sizes', () => {
    const row = dataRow(['x'.repeat(100)]);
    const framer = make(BACKEND);
    expect(framer.scan(row.bytes.subarray(0, 2))).toBe(0);
    expect(framer.pendingBody).toBe(0);
    expect(framer.scan(row.bytes.subarray(2, 3))).toBe(0);
    expect(framer.scan(row.bytes.subarray(3, 40))).toBe(1);
    expect(Array.from(framer.records.subarray(0, 3))).toEqual(['D'.charCodeAt(0), -3, row.bytes.length]);
    expect(framer.pendingBody).toBe(row.bytes.length - 40);
  });

  it('counts pendingBody down through a 70000-byte DataRow read in 16 KiB chunks', () => {
    const big = tagged('D', 70000, 3);
    const { stream, expected } = layout([tagged('T', 20), big, tagged('C', 9), tagged('Z', 1)]);
    const cuts = Array.from({ length: Math.ceil(stream.length / 16384) }, (_, i) => i * 16384);
    const chunks = chunksAt(stream, cuts);
    const results = scanAll(make(BACKEND), chunks);
    expectTruth(results, chunks, expected);
    expect(results.map((r) => r.pendingBody)).toEqual([
      70005 + 25 - 16384,
      70030 - 32768,
      70030 - 49152,
      70030 - 65536,
      0,
    ]);
  });

  it('stays untagged after SSLRequest, GSSENCRequest and CancelRequest', () => {
    const { stream, expected } = layout([
      untagged(GSSENC_REQUEST),
      untagged(SSL_REQUEST),
      untagged(CANCEL_REQUEST, 8),
      untagged(SSL_REQUEST),
    ]);
    const framer = make(FRONTEND);
    const results = scanAll(framer, [stream]);
    expectTruth(results, [stream], expected);
    expect(framer.tagged).toBe(false);
  });

  it('switches to tagged in the middle of a chunk after a StartupMessage with any protocol code', () => {
    const { stream, expected } = layout([untagged(SSL_REQUEST), untagged(0x00030002, 30), tagged('Q', 9)]);
    const framer = make(FRONTEND);
    expectTruth(scanAll(framer, [stream]), [stream], expected);
    expect(framer.tagged).toBe(true);
  });

  it('ignores empty chunks, also in the middle of a header', () => {
    const q = wire(serialize.query('select 2'), 'Q');
    const framer = make(BACKEND);
    expect(framer.scan(new Uint8Array(0))).toBe(0);
    expect(framer.scan(q.bytes.subarray(0, 2))).toBe(0);
    expect(framer.scan(new Uint8Array(0))).toBe(0);
    expect(framer.scan(q.bytes.subarray(2))).toBe(1);
    expect(Array.from(framer.records.subarray(0, 3))).toEqual([q.code, -2, q.bytes.length]);
  });

  describe('invalid lengths', () => {
    const badTagged = (length: number): Buffer => {
      const b = Buffer.alloc(5);
      b[0] = 'Q'.charCodeAt(0);
      b.writeUInt32BE(length >>> 0, 1);
      return b;
    };
    const badUntagged = (length: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(length >>> 0, 0);
      b.writeInt32BE(PROTOCOL_3_0, 4);
      return b;
    };

    it.each([
      ['0', 0, FrameError.LengthTooSmall],
      ['3', 3, FrameError.LengthTooSmall],
      ['-1 (0xFFFFFFFF)', -1, FrameError.LengthTooSmall],
      ['-2^31', -(2 ** 31), FrameError.LengthTooSmall],
      ['2^31 - 1', 2 ** 31 - 1, FrameError.LengthTooLarge],
      ['maxMessageSize + 1', (1 << 20) + 1, FrameError.LengthTooLarge],
    ])(
      'stops at a tagged length of %s, returns the records before it and stays poisoned',
      (_, length, error) => {
        const good = [wire(serialize.sync(), 'S'), wire(serialize.query('select 1'), 'Q')];
        const stream = Buffer.concat([...good.map((g) => g.bytes), badTagged(length), serialize.sync()]);
        const framer = make(BACKEND);
        const n = framer.scan(stream);
        expect(n).toBe(2);
        expect(Array.from(framer.records.subarray(0, 6))).toEqual([
          good[0].code,
          0,
          good[0].bytes.length,
          good[1].code,
          good[0].bytes.length,
          good[1].bytes.length,
        ]);
        expect(framer.error).toBe(error);
        expect(framer.pendingBody).toBe(0);
        expect(framer.scan(serialize.sync())).toBe(0);
        expect(framer.error).toBe(error);
      },
    );

    it('accepts a tagged length of exactly maxMessageSize and the minimum of 4', () => {
      const framer = make({ ...BACKEND, maxMessageSize: 100 });
      expect(framer.scan(Buffer.concat([badTagged(4), badTagged(100)]))).toBe(2);
      expect(framer.error).toBe(FrameError.None);
      expect(framer.pendingBody).toBe(101 - 5);
      expect(framer.scan(badTagged(101))).toBe(0); // body bytes of the first message
      expect(framer.error).toBe(FrameError.None);
    });

    it.each([
      ['0', 0, FrameError.LengthTooSmall],
      ['7', 7, FrameError.LengthTooSmall],
      ['-1 (0xFFFFFFFF)', -1, FrameError.LengthTooSmall],
      ['10001 (above maxStartupSize)', 10001, FrameError.LengthTooLarge],
      ['2^31 - 1', 2 ** 31 - 1, FrameError.LengthTooLarge],
    ])('stops at an untagged length of %s after an SSLRequest', (_, length, error) => {
      const stream = Buffer.concat([serialize.requestSsl(), badUntagged(length), serialize.requestSsl()]);
      const framer = make(FRONTEND);
      expect(framer.scan(stream)).toBe(1);
      expect(Array.from(framer.records.subarray(0, 3))).toEqual([SSL_REQUEST, 0, 8]);
      expect(framer.error).toBe(error);
      expect(framer.tagged).toBe(false);
      expect(framer.scan(serialize.requestSsl())).toBe(0);
      expect(framer.error).toBe(error);
    });

    it('accepts an untagged length of exactly maxStartupSize', () => {
      const framer = make(FRONTEND);
      expect(framer.scan(badUntagged(10000))).toBe(1);
      expect(framer.error).toBe(FrameError.None);
      expect(framer.pendingBody).toBe(10000 - 8);
    });

    it('frames the largest allowed length field, 2^31 - 2, whose total still fits an int32 record', () => {
      const framer = make({ ...BACKEND, maxMessageSize: 2 ** 31 - 2 });
      expect(framer.scan(badTagged(2 ** 31 - 2))).toBe(1);
      expect(Array.from(framer.records.subarray(0, 3))).toEqual(['Q'.charCodeAt(0), 0, 2 ** 31 - 1]);
      expect(framer.pendingBody).toBe(2 ** 31 - 1 - 5);
      expect(framer.error).toBe(FrameError.None);
    });

    it('detects an invalid length whose header straddles chunks', () => {
      const stream = Buffer.concat([serialize.sync(), badTagged(2)]);
      const framer = make(BACKEND);
      expect(framer.scan(stream.subarray(0, 7))).toBe(1);
      expect(framer.error).toBe(FrameError.None);
      expect(framer.scan(stream.subarray(7, 8))).toBe(0);
      expect(framer.error).toBe(FrameError.None);
      expect(framer.scan(stream.subarray(8))).toBe(0);
      expect(framer.error).toBe(FrameError.LengthTooSmall);
    });
  });

  it('reset() clears poisoning, carried bytes and the body countdown', () => {
    const framer = make(FRONTEND);
    framer.scan(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0]));
    expect(framer.error).toBe(FrameError.LengthTooSmall);
    framer.reset(true);
    expect(framer.error).toBe(FrameError.None);
    expect(framer.tagged).toBe(false);
    const startup = serialize.startup({ user: 'u' });
    expect(framer.scan(startup.subarray(0, 3))).toBe(0); // carried header bytes
    framer.reset(true);
    expect(framer.scan(startup.subarray(0, 20))).toBe(1);
    expect(Array.from(framer.records.subarray(0, 3))).toEqual([PROTOCOL_3_0, 0, startup.length]);
    expect(framer.pendingBody).toBe(startup.length - 20);
    framer.reset(false);
    expect(framer.tagged).toBe(true);
    expect(framer.pendingBody).toBe(0);
    expect(framer.scan(serialize.sync())).toBe(1);
    expect(Array.from(framer.records.subarray(0, 3))).toEqual(['S'.charCodeAt(0), 0, 5]);
  });

  it('keeps the state of interleaved framers apart', () => {
    const a = layout(frontendStream);
    const b = layout(backendStream);
    const chunksA = chunksAt(a.stream, [3, 9, 17, 40, 41, 42, 80]);
    const chunksB = chunksAt(b.stream, [1, 2, 30, 31, 77, 100, 160]);
    const fa = make(FRONTEND);
    const fb = make(BACKEND);
    const ra: ChunkResult[] = [];
    const rb: ChunkResult[] = [];
    for (let i = 0; i < Math.max(chunksA.length, chunksB.length); i++) {
      if (i < chunksA.length) ra.push(...scanAll(fa, [chunksA[i]]));
      if (i < chunksB.length) rb.push(...scanAll(fb, [chunksB[i]]));
    }
    expectTruth(ra, chunksA, a.expected);
    expectTruth(rb, chunksB, b.expected);
  });

  it('frames a 2 MiB chunk of 5-byte messages (record table and scratch grow)', () => {
    const count = 400_000;
    const stream = Buffer.alloc(count * 5 + 3);
    for (let i = 0; i < count; i++) {
      stream[i * 5] = 'S'.charCodeAt(0);
      stream.writeInt32BE(4, i * 5 + 1);
    }
    stream.set([0x43, 0, 0], count * 5); // the start of a CommandComplete header
    const framer = make(BACKEND);
    const n = framer.scan(stream);
    expect(n).toBe(count);
    const records = framer.records;
    expect([records[0], records[1], records[2]]).toEqual([0x53, 0, 5]);
    expect([records[3 * (n - 1)], records[3 * (n - 1) + 1], records[3 * (n - 1) + 2]]).toEqual([
      0x53,
      (count - 1) * 5,
      5,
    ]);
    expect(framer.scan(Buffer.from([0, 9, 0, 0, 0, 0]))).toBe(1);
    expect(Array.from(framer.records.subarray(0, 3))).toEqual([0x43, -3, 10]);
  });

  it('rejects options that cannot be framed', () => {
    expect(() => make({ ...BACKEND, maxMessageSize: 3 })).toThrow(RangeError);
    expect(() => make({ ...BACKEND, maxMessageSize: 2 ** 31 - 1 })).toThrow(RangeError);
    expect(() => make({ ...BACKEND, maxMessageSize: Number.NaN })).toThrow(RangeError);
    expect(() => make({ ...FRONTEND, maxStartupSize: 7 })).toThrow(RangeError);
    expect(() => make({ ...FRONTEND, maxStartupSize: 1.5e9 + 0.5 })).toThrow(RangeError);
  });
});

describe('WASM framer', () => {
  it('is the default implementation, TsFramer the alternative', () => {
    expect(createFramer(BACKEND)).toBeInstanceOf(WasmFramer);
    expect(createFramer(BACKEND, 'typescript')).toBeInstanceOf(TsFramer);
  });

  it('rejects a JS hop threshold that is not a size', () => {
    expect(() => new WasmFramer(BACKEND, { jsHopAverageBytes: -1 })).toThrow(RangeError);
    expect(() => new WasmFramer(BACKEND, { jsHopAverageBytes: Number.NaN })).toThrow(RangeError);
  });

  it('switches between the JS hop and the scanner as the message sizes of a stream change', () => {
    const big = Array.from({ length: 40 }, (_, i) => tagged('D', 1000 + i, i + 1));
    const small = Array.from({ length: 400 }, (_, i) => tagged('D', 20 + (i % 50), i + 1));
    const { stream, expected } = layout([...big, ...small, ...big, ...small]);
    const cuts = Array.from({ length: Math.ceil(stream.length / 4096) }, (_, i) => i * 4096 + (i % 7));
    const chunks = chunksAt(stream, cuts);
    expectTruth(scanAll(createFramer(BACKEND, 'wasm'), chunks), chunks, expected);
  });

  it('mirrors its status codes in src/wasm/abi.ts', () => {
    expect(FrameStatus).toEqual({
      None: FrameError.None,
      LengthTooSmall: FrameError.LengthTooSmall,
      LengthTooLarge: FrameError.LengthTooLarge,
    });
    const wasm = loadPgwardenWasm();
    expect(wasm.FRAME_ERROR_LENGTH_TOO_LARGE.value).toBe(FrameError.LengthTooLarge);
  });

  it('keeps framing when another kernel grows memory between scans (views are rebuilt)', () => {
    const { stream, expected } = layout(backendStream);
    const chunks = chunksAt(stream, [7, 50, 51, 120]);
    const framer = createFramer(BACKEND, 'wasm');
    const memory = loadPgwardenWasm().memory;
    const results: ChunkResult[] = [];
    for (const chunk of chunks) {
      const before = memory.buffer;
      memory.grow(1);
      expect(memory.buffer).not.toBe(before);
      results.push(...scanAll(framer, [chunk]));
    }
    expectTruth(results, chunks, expected);
  });

  it('hands out records that a later memory.grow does not lose when read through the getter', () => {
    const { stream, expected } = layout(backendStream);
    const framer = createFramer(BACKEND, 'wasm');
    const n = framer.scan(stream);
    loadPgwardenWasm().memory.grow(1);
    expect(Array.from(framer.records.subarray(0, 3 * n))).toEqual(
      expected.flatMap((m) => [m.code, m.start, m.length]),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Property: random message streams, random splits: WASM == TypeScript chunk by chunk, and both equal the truth.

const bodySize = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 4, arbitrary: fc.integer({ min: 65, max: 4096 }) },
  { weight: 1, arbitrary: fc.integer({ min: 4097, max: 70000 }) },
);

const taggedMessage = fc
  .record({ type: fc.integer({ min: 0, max: 255 }), size: bodySize, seed: fc.integer() })
  .map(({ type, size, seed }) => tagged(type, size, seed));

const startupPrefix = fc.option(
  fc.record({
    negotiations: fc.array(
      fc.constantFrom(untagged(SSL_REQUEST), untagged(GSSENC_REQUEST), untagged(CANCEL_REQUEST, 8)),
      { maxLength: 3 },
    ),
    code: fc.oneof(
      fc.constant(PROTOCOL_3_0),
      fc
        .integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
        .filter((c) => c < CANCEL_REQUEST || c > GSSENC_REQUEST),
    ),
    size: fc.integer({ min: 0, max: 300 }),
    seed: fc.integer(),
  }),
  { freq: 3 },
);

// A third of the streams end in a header with an invalid length (negative, < 4, or above maxMessageSize).
const badLength = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.integer({ min: -(2 ** 31), max: 3 }),
      fc.integer({ min: (1 << 20) + 1, max: 2 ** 31 - 1 }),
    ),
  },
);

const cutsFor = (total: number) =>
  fc
    .tuple(
      fc.array(fc.integer({ min: 0, max: total }), { maxLength: 24 }),
      // A run of 1-byte chunks somewhere, so headers straddle three and more chunks.
      fc.integer({ min: 0, max: total }),
      fc.integer({ min: 0, max: 12 }),
    )
    .map(([cuts, at, run]) => [...cuts, ...Array.from({ length: run }, (_, i) => at + i)]);

describe('WASM framer vs TypeScript twin', () => {
  it('agrees chunk by chunk with each other and with the truth on random streams and splits', () => {
    const scenario = fc
      .record({
        prefix: startupPrefix,
        messages: fc.array(taggedMessage, { maxLength: 20 }),
        bad: badLength,
      })
      .chain((s) => {
        const fixtures: Fixture[] = [];
        if (s.prefix)
          fixtures.push(...s.prefix.negotiations, untagged(s.prefix.code, s.prefix.size, s.prefix.seed));
        fixtures.push(...s.messages);
        const { stream, expected } = layout(fixtures);
        let badAt = Infinity;
        let bytes = stream;
        if (s.bad !== null) {
          badAt = stream.length;
          const bad = Buffer.alloc(5 + 16);
          bad[0] = 'Q'.charCodeAt(0);
          bad.writeInt32BE(s.bad, 1);
          bytes = Buffer.concat([stream, bad]);
        }
        return cutsFor(bytes.length).map((cuts) => ({
          startup: s.prefix !== null,
          bytes,
          expected,
          badAt,
          cuts,
        }));
      });
    fc.assert(
      fc.property(scenario, ({ startup, bytes, expected, badAt, cuts }) => {
        const options = startup ? FRONTEND : BACKEND;
        const chunks = chunksAt(bytes, cuts);
        const ts = createFramer(options, 'typescript');
        const wasm = WASM_VARIANTS.map(([, make]) => make(options));
        const tsResults: ChunkResult[] = [];
        const wasmResults: ChunkResult[][] = wasm.map(() => []);
        for (const chunk of chunks) {
          tsResults.push(...scanAll(ts, [chunk]));
          wasm.forEach((framer, i) => {
            wasmResults[i].push(...scanAll(framer, [chunk]));
            expect(wasmResults[i].at(-1), WASM_VARIANTS[i][0]).toEqual(tsResults.at(-1));
          });
        }
        expectTruth(tsResults, chunks, expected, badAt);
        expect(recordsOf(tsResults).length).toBe(3 * expected.length);
      }),
      { numRuns: 300 },
    );
  });
});
