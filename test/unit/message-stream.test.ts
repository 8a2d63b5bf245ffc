// MessageStream hands over exactly the messages of interest, whole, however the stream is split into reads.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createFramer, type FramerImpl } from '../../src/protocol/framing.js';
import {
  ASSEMBLY_TOO_LARGE,
  MessageStream,
  Want,
  wantTable,
  atMessageBoundary,
} from '../../src/protocol/message-stream.js';

function tagged(code: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = code.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const WANTS = wantTable([
  [0x5a, Want.Bytes], // 'Z'
  [0x53, Want.Bytes], // 'S'
  [0x43, Want.Code], // 'C'
]);

function collect(chunks: Buffer[], impl: FramerImpl) {
  const seen: Array<{ code: number; bytes: string | null }> = [];
  const stream = new MessageStream(
    createFramer({ startup: false, maxMessageSize: 1 << 24, maxStartupSize: 10000 }, impl),
    WANTS,
    (code, _start, _end, bytes) => seen.push({ code, bytes: bytes ? bytes.toString('hex') : null }),
  );
  for (const c of chunks) expect(stream.push(c)).toBe(0);
  return { seen, boundary: atMessageBoundary(stream) };
}

const sample = Buffer.concat([
  tagged('T', Buffer.alloc(30, 1)),
  tagged('D', Buffer.alloc(200, 2)),
  tagged('C', Buffer.from('SELECT 1\0')),
  tagged('S', Buffer.from('TimeZone\0UTC\0')),
  tagged('Z', Buffer.from('I')),
]);
const expected = [
  { code: 0x43, bytes: null },
  { code: 0x53, bytes: tagged('S', Buffer.from('TimeZone\0UTC\0')).toString('hex') },
  { code: 0x5a, bytes: tagged('Z', Buffer.from('I')).toString('hex') },
];

describe.each(['wasm', 'typescript'] as const)('MessageStream (%s framer)', (impl) => {
  it('delivers ParameterStatus and ReadyForQuery whole when split at every offset', () => {
    for (let cut = 0; cut <= sample.length; cut++) {
      const { seen, boundary } = collect([sample.subarray(0, cut), sample.subarray(cut)], impl);
      expect(seen, `split at ${cut}`).toEqual(expected);
      expect(boundary).toBe(true);
    }
  });

  it('delivers them whole one byte at a time', () => {
    const bytes = [...sample].map((b) => Buffer.from([b]));
    expect(collect(bytes, impl).seen).toEqual(expected);
  });

  it('is not at a message boundary in the middle of a message', () => {
    expect(collect([sample.subarray(0, sample.length - 2)], impl).boundary).toBe(false);
    expect(collect([sample.subarray(0, 3)], impl).boundary).toBe(false);
  });

  it('refuses to assemble a message of interest over maxAssembly, and stays refused', () => {
    const stream = new MessageStream(
      createFramer({ startup: false, maxMessageSize: 1 << 24, maxStartupSize: 10000 }, impl),
      WANTS,
      () => {
        throw new Error('must not be delivered');
      },
    );
    stream.maxAssembly = 64;
    const big = tagged('S', Buffer.alloc(100, 0x41));
    expect(stream.push(big.subarray(0, 10))).toBe(ASSEMBLY_TOO_LARGE);
    expect(stream.push(big.subarray(10))).toBe(ASSEMBLY_TOO_LARGE);
  });

  it('matches for random splits (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: sample.length }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(sample.subarray(prev, p));
          prev = p;
        }
        chunks.push(sample.subarray(prev));
        expect(collect(chunks, impl).seen).toEqual(expected);
      }),
    );
  });
});
