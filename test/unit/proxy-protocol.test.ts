// PROXY protocol parser: v1 and v2 known answers, malformed headers rejected as early as the bytes allow, and
// headers split anywhere parsing exactly like one read, with the PostgreSQL bytes after them kept intact.
import { SocketAddress } from 'node:net';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_LENGTH,
  ProxyHeaderParser,
  type ProxyHeader,
  type ProxyParseResult,
} from '../../src/frontend/proxy-protocol.js';
import {
  encodeProxyV1,
  encodeProxyV2,
  ipv6Uncompressed,
  V2_SIGNATURE,
  type ProxyV2Header,
  type ProxyV2Tlv,
} from '../harness/proxy-header.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function parseOnce(bytes: Buffer): ProxyParseResult {
  return new ProxyHeaderParser().push(bytes);
}

/** Feeds `chunks` in order; returns the first final result with `rest` joined with the chunks after it. */
function parseChunks(chunks: Buffer[]): ProxyParseResult {
  const parser = new ProxyHeaderParser();
  for (let i = 0; i < chunks.length; i++) {
    const result = parser.push(chunks[i]);
    if (result.state === 'done')
      return { ...result, rest: Buffer.concat([result.rest, ...chunks.slice(i + 1)]) };
    if (result.state === 'error') return result;
  }
  return { state: 'more' };
}

function splitAt(bytes: Buffer, offsets: number[]): Buffer[] {
  const cuts = [...new Set(offsets.filter((o) => o > 0 && o < bytes.length))].sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  return chunks;
}

function expectDone(result: ProxyParseResult, header: ProxyHeader, rest: Buffer | string = ''): void {
  expect(result).toEqual({ state: 'done', header, rest: typeof rest === 'string' ? b(rest) : rest });
}

function expectError(result: ProxyParseResult, message: RegExp | string): void {
  expect(result.state).toBe('error');
  if (result.state === 'error') expect(result.message).toMatch(message);
}

/** The first prefix of `bytes` (fed one byte at a time) at which the parser gives up, or -1 when it never does. */
function errorOffset(bytes: Buffer): number {
  const parser = new ProxyHeaderParser();
  for (let i = 0; i < bytes.length; i++) {
    const result = parser.push(bytes.subarray(i, i + 1));
    if (result.state === 'error') return i + 1;
    if (result.state === 'done') return -1;
  }
  return -1;
}

const tcp4 = (src: string, sport: number, dst: string, dport: number, version: 1 | 2 = 1): ProxyHeader => ({
  version,
  command: 'proxy',
  family: 'tcp4',
  source: { address: src, port: sport },
  destination: { address: dst, port: dport },
});
const tcp6 = (src: string, sport: number, dst: string, dport: number, version: 1 | 2 = 1): ProxyHeader => ({
  ...tcp4(src, sport, dst, dport, version),
  family: 'tcp6',
});
const noAddresses = (
  version: 1 | 2,
  command: 'proxy' | 'local',
  family: ProxyHeader['family'],
): ProxyHeader => ({ version, command, family, source: null, destination: null });

const STARTUP = serialize.startup({ user: 'app', database: 'ehr' });
const SSL_REQUEST = serialize.requestSsl();

describe('PROXY v1', () => {
  it('parses the spec example and keeps the bytes after it', () => {
    const result = parseOnce(b('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n'));
    expectDone(result, tcp4('192.168.0.1', 56324, '192.168.0.11', 443), 'GET / HTTP/1.1\r\n');
  });

  it('parses ports 0 and 65535 and the longest IPv4 line (56 bytes)', () => {
    const line = b('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n');
    expect(line.length).toBe(56);
    expectDone(parseOnce(line), tcp4('255.255.255.255', 65535, '255.255.255.255', 65535));
    expectDone(parseOnce(b('PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n')), tcp4('0.0.0.0', 0, '0.0.0.0', 0));
  });

  it('writes TCP6 addresses the way Node does (lower case, compressed, mapped IPv4 dotted)', () => {
    expectDone(
      parseOnce(b('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:10.0.0.1 1234 5432\r\n')),
      tcp6('2001:db8::1', 1234, '::ffff:10.0.0.1', 5432),
    );
  });

  it('parses the longest TCP6 line (104 bytes)', () => {
    const full = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const line = b(`PROXY TCP6 ${full} ${full} 65535 65535\r\n`);
    expect(line.length).toBe(104);
    expectDone(parseOnce(Buffer.concat([line, STARTUP])), tcp6(full, 65535, full, 65535), STARTUP);
  });

  it('parses UNKNOWN in the short form and ignores whatever follows it on the line, up to 107 bytes', () => {
    expectDone(parseOnce(b('PROXY UNKNOWN\r\nx')), noAddresses(1, 'proxy', 'unknown'), 'x');
    const full = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const worst = b(`PROXY UNKNOWN ${full} ${full} 65535 65535\r\n`);
    expect(worst.length).toBe(PROXY_V1_MAX_LENGTH);
    expectDone(parseOnce(worst), noAddresses(1, 'proxy', 'unknown'));
    expectDone(parseOnce(b('PROXY UNKNOWN anything \u00ff at all\r\n')), noAddresses(1, 'proxy', 'unknown'));
  });

  it.each([
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', /line feed without a carriage return/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', /carriage return not followed by a line feed/],
    ['PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', /empty destination address/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', /more than four fields/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', /more than four fields/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /ends before the destination port/],
    ['PROXY TCP4\r\n', /ends before the source address/],
    ['PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "" is not TCP4, TCP6 or UNKNOWN/],
    ['PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "TCP5"/],
    ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "tcp4"/],
    ['PROXY UNKNOWNX\r\n', /protocol "UNKNOWNX"/],
    ['PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', /source address "01\.2\.3\.4" is not a valid IPv4 address/],
    ['PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n', /source address "256\.1\.1\.1"/],
    ['PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n', /source address "1\.2\.3"/],
    ['PROXY TCP4 ::1 ::1 1 2\r\n', /source address "::1" is not a valid IPv4 address for TCP4/],
    [
      'PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n',
      /source address "1\.2\.3\.4" is not a valid IPv6 address for TCP6/,
    ],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /source address "fe80::1%eth0"/],
    ['PROXY TCP6 ::1 1:::2 1 2\r\n', /destination address "1:::2"/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', /source port "65536" is not a port from 0 to 65535/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n', /destination port "080".*without leading zeros/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', /source port "-1"/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n', /source port "\+1"/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\t\r\n', /destination port "2\?"/],
    ['PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n', /expected a PROXY protocol header from the load balancer/],
    ['proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /expected a PROXY protocol header from the load balancer/],
  ])('rejects %j', (text, message) => {
    expectError(parseOnce(b(text)), message);
  });

  it('rejects a line without CRLF in its first 107 bytes, as soon as it has 107 bytes', () => {
    const line = b(`PROXY UNKNOWN ${'x'.repeat(200)}\r\n`);
    expect(parseOnce(line.subarray(0, PROXY_V1_MAX_LENGTH - 1))).toEqual({ state: 'more' });
    expectError(parseOnce(line.subarray(0, PROXY_V1_MAX_LENGTH)), /no CRLF within the first 107 bytes/);
    expect(errorOffset(line)).toBe(PROXY_V1_MAX_LENGTH);
    // A CRLF that would end at byte 108 is one byte too late.
    const late = b(`PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_LENGTH - 15)}\r\n`);
    expect(late.length).toBe(PROXY_V1_MAX_LENGTH + 1);
    expectError(parseOnce(late), /no CRLF within the first 107 bytes/);
  });

  it.each([
    ['PROXX', 5],
    ['PROXY TCP7', 10],
    ['PROXY TCP4 300', 14],
    ['PROXY TCP4 1.2.3.4.', 19],
    ['PROXY TCP4 01', 13],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 99999', 32],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 0', -1],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 00', 29],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ', 31],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r', 32],
    ['PROXY TCP4 1.2.3.4 ', -1],
    ['PROXY TCP6 fe80::1%', 19],
    ['PROXY TCP6 1:::', 15],
    ['PROXY TCP6 12345', 16],
    ['PROXY TCP6 1:2:3:4:5:6:7:8:9', 27],
    ['PROXY TCP6 ::1 ', -1],
  ])('decides %j at byte %i without waiting for the rest of the line', (text, offset) => {
    expect(errorOffset(b(text))).toBe(offset);
  });
});

describe('PROXY v2', () => {
  it('parses TCP over IPv4 from hand-written bytes', () => {
    const bytes = hex(`0d0a0d0a 000d0a51 5549540a  21 11 000c  c0a80001 c0a8000b dc04 01bb`);
    expectDone(
      parseOnce(Buffer.concat([bytes, STARTUP])),
      tcp4('192.168.0.1', 56324, '192.168.0.11', 443, 2),
      STARTUP,
    );
  });

  it('parses TCP over IPv6', () => {
    const bytes = encodeProxyV2({
      command: 'proxy',
      family: 'tcp6',
      source: '2001:db8::1',
      destination: '::ffff:192.0.2.1',
      sourcePort: 65535,
      destinationPort: 5432,
    });
    expect(bytes.length).toBe(16 + 36);
    expectDone(parseOnce(bytes), tcp6('2001:db8::1', 65535, '::ffff:192.0.2.1', 5432, 2));
  });

  it('parses LOCAL with no addresses, and LOCAL with an address block it must skip', () => {
    expectDone(
      parseOnce(hex(`${V2_SIGNATURE.toString('hex')} 20 00 0000`)),
      noAddresses(2, 'local', 'unknown'),
    );
    const withBlock = encodeProxyV2({
      command: 'local',
      family: 'tcp4',
      source: '10.0.0.1',
      destination: '10.0.0.2',
      sourcePort: 1,
      destinationPort: 2,
    });
    expectDone(
      parseOnce(Buffer.concat([withBlock, SSL_REQUEST])),
      noAddresses(2, 'local', 'tcp4'),
      SSL_REQUEST,
    );
    // LOCAL ignores the family's address layout, so even a short block is only skipped.
    expectDone(
      parseOnce(hex(`${V2_SIGNATURE.toString('hex')} 20 21 0003 aabbcc 51`)),
      noAddresses(2, 'local', 'tcp6'),
      hex('51'),
    );
  });

  it('parses PROXY with an unspecified family or transport as having no usable addresses', () => {
    expectDone(
      parseOnce(hex(`${V2_SIGNATURE.toString('hex')} 21 00 0000`)),
      noAddresses(2, 'proxy', 'unknown'),
    );
    expectDone(
      parseOnce(hex(`${V2_SIGNATURE.toString('hex')} 21 10 0005 0102030405 ff`)),
      noAddresses(2, 'proxy', 'unknown'),
      hex('ff'),
    );
  });

  it('parses AF_UNIX without turning socket paths into client addresses', () => {
    const bytes = encodeProxyV2({
      command: 'proxy',
      family: 'unix',
      source: '/run/a.sock',
      destination: '/run/b',
    });
    expect(bytes.length).toBe(16 + 216);
    expectDone(parseOnce(Buffer.concat([bytes, b('Q')])), noAddresses(2, 'proxy', 'unix'), 'Q');
  });

  it('skips TLVs after the addresses, including empty and nested ones', () => {
    const tlvs: ProxyV2Tlv[] = [
      { type: 0x01, value: b('postgresql') }, // PP2_TYPE_ALPN
      { type: 0x04, value: new Uint8Array(0) }, // PP2_TYPE_NOOP
      { type: 0x05, value: new Uint8Array(128).fill(7) }, // PP2_TYPE_UNIQUE_ID
      // PP2_TYPE_SSL: client, verify, then PP2_SUBTYPE_SSL_VERSION "TLSv1.3".
      { type: 0x20, value: Buffer.concat([hex('01 00000000 21 0007'), b('TLSv1.3')]) },
    ];
    const bytes = encodeProxyV2({
      command: 'proxy',
      family: 'tcp4',
      source: '203.0.113.9',
      destination: '10.1.1.1',
      sourcePort: 40000,
      destinationPort: 6432,
      tlvs,
    });
    expectDone(
      parseOnce(Buffer.concat([bytes, STARTUP])),
      tcp4('203.0.113.9', 40000, '10.1.1.1', 6432, 2),
      STARTUP,
    );
  });

  it('accepts a header of exactly 16 + 4096 bytes and rejects one byte more as soon as the length is read', () => {
    const exact = encodeProxyV2({
      command: 'proxy',
      family: 'tcp4',
      source: '1.1.1.1',
      destination: '2.2.2.2',
      sourcePort: 1,
      destinationPort: 2,
      tlvs: [{ type: 0x04, value: new Uint8Array(4096 - 12 - 3) }],
    });
    expect(exact.length).toBe(PROXY_V2_MAX_LENGTH);
    expectDone(parseOnce(exact), tcp4('1.1.1.1', 1, '2.2.2.2', 2, 2));
    const tooLong = Buffer.from(exact);
    tooLong.writeUInt16BE(4097, 14);
    expect(errorOffset(tooLong)).toBe(16);
    expectError(parseOnce(tooLong.subarray(0, 16)), /4113 bytes is longer than the 4112-byte maximum/);
  });

  const sample = encodeProxyV2({
    command: 'proxy',
    family: 'tcp4',
    source: '1.2.3.4',
    destination: '5.6.7.8',
    sourcePort: 1000,
    destinationPort: 5432,
  });
  const withByte = (offset: number, value: number): Buffer => {
    const copy = Buffer.from(sample);
    copy[offset] = value;
    return copy;
  };
  const withLength = (length: number, base: Buffer = sample): Buffer => {
    const copy = Buffer.from(base);
    copy.writeUInt16BE(length, 14);
    return copy;
  };

  it.each([
    ['a signature with a wrong 5th byte', withByte(4, 0x01), 5, /expected a PROXY protocol header/],
    ['a signature with a wrong last byte', withByte(11, 0x0d), 12, /expected a PROXY protocol header/],
    ['version 1 in the binary format', withByte(12, 0x11), 13, /version 1 is not 2/],
    ['version 3', withByte(12, 0x31), 13, /version 3 is not 2/],
    ['an unassigned command', withByte(12, 0x22), 13, /command 0x2 is neither LOCAL nor PROXY/],
    ['an undefined address family', withByte(13, 0x41), 14, /address family 0x4 is not defined/],
    ['UDP over IPv4', withByte(13, 0x12), 14, /UDP \(DGRAM\)/],
    ['an undefined transport', withByte(13, 0x13), 14, /transport 0x3 is not defined/],
    [
      'an IPv4 block of 11 bytes',
      withLength(11),
      16,
      /address block of 11 bytes is too short for tcp4 \(12 needed\)/,
    ],
    [
      'an IPv6 block of 35 bytes',
      withLength(35, withByte(13, 0x21)),
      16,
      /address block of 35 bytes is too short for tcp6 \(36 needed\)/,
    ],
    [
      'an AF_UNIX block of 215 bytes',
      withLength(215, withByte(13, 0x31)),
      16,
      /too short for unix \(216 needed\)/,
    ],
    [
      'a TLV running past the header',
      Buffer.concat([withLength(12 + 3 + 5), hex('01 0006 0102030405')]),
      31,
      /TLV 0x1 of 6 bytes overruns the header/,
    ],
    [
      'two stray bytes after the addresses',
      Buffer.concat([withLength(14), hex('0400')]),
      16,
      /TLV is cut off/,
    ],
  ])('rejects %s', (_name, bytes, offset, message) => {
    expect(errorOffset(bytes)).toBe(offset);
    expectError(parseOnce(bytes), message);
  });

  it('waits while the header is incomplete, whatever its length says', () => {
    for (let length = 0; length < sample.length; length++) {
      expect(parseOnce(sample.subarray(0, length))).toEqual({ state: 'more' });
    }
  });
});

describe('what is not a PROXY header', () => {
  it('rejects a PostgreSQL startup packet on the first byte, saying the client bypassed the load balancer', () => {
    const result = parseOnce(STARTUP);
    expectError(result, /^expected a PROXY protocol header from the load balancer/);
    expectError(result, /PostgreSQL startup or SSL request/);
    expect(errorOffset(STARTUP)).toBe(1);
    expect(errorOffset(SSL_REQUEST)).toBe(1);
  });

  it('rejects a TLS ClientHello and other protocols on the first byte', () => {
    expectError(parseOnce(hex('16030100')), /TLS handshake/);
    expectError(parseOnce(b('GET / HTTP/1.1\r\n')), /expected a PROXY protocol header.*first bytes 474554/);
    expect(errorOffset(b('SSH-2.0-OpenSSH'))).toBe(1);
  });
});

describe('ProxyHeaderParser', () => {
  it('waits on empty reads', () => {
    const parser = new ProxyHeaderParser();
    expect(parser.push(Buffer.alloc(0))).toEqual({ state: 'more' });
    expect(parser.push(b('PROXY UNKNOWN\r'))).toEqual({ state: 'more' });
    expect(parser.push(Buffer.alloc(0))).toEqual({ state: 'more' });
    expectDone(parser.push(b('\n')), noAddresses(1, 'proxy', 'unknown'));
  });

  it('gives `rest` as a view of the read that completed the header, not a copy', () => {
    const read = Buffer.concat([v2Tcp4Header(), STARTUP]);
    const oneShot = parseOnce(read);
    expect(oneShot.state === 'done' && oneShot.rest.buffer === read.buffer).toBe(true);
    const parser = new ProxyHeaderParser();
    parser.push(read.subarray(0, 10));
    const last = read.subarray(10);
    const split = parser.push(last);
    expect(split.state === 'done' && split.rest.buffer === last.buffer).toBe(true);
    expect(split.state === 'done' && split.rest.equals(STARTUP)).toBe(true);
  });

  it('keeps every byte after the header when the final read is far larger than any header', () => {
    const payload = Buffer.alloc(100_000, 0x5a);
    const header = v2Tcp4Header();
    const result = parseChunks([header.subarray(0, 7), Buffer.concat([header.subarray(7), payload])]);
    expectDone(result, tcp4('1.2.3.4', 1000, '5.6.7.8', 5432, 2), payload);
  });

  it('refuses to be used after it finished', () => {
    const done = new ProxyHeaderParser();
    done.push(b('PROXY UNKNOWN\r\n'));
    expect(() => done.push(STARTUP)).toThrow(/after the header was parsed or rejected/);
    const failed = new ProxyHeaderParser();
    failed.push(STARTUP);
    expect(() => failed.push(b('PROXY'))).toThrow(/after the header was parsed or rejected/);
  });

  it('parses a header split at every offset, one byte at a time, the same as in one read', () => {
    const fixtures = [
      Buffer.concat([b('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'), STARTUP]),
      Buffer.concat([b('PROXY UNKNOWN\r\n'), SSL_REQUEST]),
      Buffer.concat([
        encodeProxyV2({
          command: 'proxy',
          family: 'tcp6',
          source: '::1',
          destination: '::2',
          sourcePort: 3,
          destinationPort: 4,
          tlvs: [{ type: 0x02, value: b('db.example') }],
        }),
        STARTUP,
      ]),
    ];
    for (const bytes of fixtures) {
      const whole = parseOnce(bytes);
      expect(whole.state).toBe('done');
      for (let cut = 1; cut < bytes.length; cut++) expect(parseChunks(splitAt(bytes, [cut]))).toEqual(whole);
      expect(parseChunks(splitAt(bytes, [...Array(bytes.length).keys()]))).toEqual(whole);
    }
  });
});

function v2Tcp4Header(): Buffer {
  return encodeProxyV2({
    command: 'proxy',
    family: 'tcp4',
    source: '1.2.3.4',
    destination: '5.6.7.8',
    sourcePort: 1000,
    destinationPort: 5432,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Properties: random valid headers, the truth derived from the generator, not from the parser.

interface Case {
  bytes: Buffer;
  header: ProxyHeader;
}

/** Node's own text for IPv6 bytes (inet_ntop), which is what the parser is meant to produce. */
const nodeIpv6 = (bytes: Uint8Array): string =>
  new SocketAddress({ address: ipv6Uncompressed(bytes), family: 'ipv6' }).address;
const ipv4 = (bytes: Uint8Array): string => Array.from(bytes).join('.');

const port = fc.integer({ min: 0, max: 65535 });
const ipv4Bytes = fc.uint8Array({ minLength: 4, maxLength: 4 });
const ipv6Group = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
const ipv6Bytes = fc.array(ipv6Group, { minLength: 8, maxLength: 8 }).map((words) => {
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
});
const tlvArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), value: fc.uint8Array({ maxLength: 64 }) });

const v1Tcp4: fc.Arbitrary<Case> = fc.tuple(ipv4Bytes, ipv4Bytes, port, port).map(([s, d, sp, dp]) => ({
  bytes: encodeProxyV1({
    protocol: 'TCP4',
    source: ipv4(s),
    destination: ipv4(d),
    sourcePort: sp,
    destinationPort: dp,
  }),
  header: tcp4(ipv4(s), sp, ipv4(d), dp),
}));

const v1Tcp6: fc.Arbitrary<Case> = fc
  .tuple(ipv6Bytes, ipv6Bytes, port, port, fc.boolean(), fc.boolean())
  .map(([s, d, sp, dp, compress, upper]) => {
    const text = (x: Uint8Array): string => {
      const t = compress ? nodeIpv6(x) : ipv6Uncompressed(x);
      return upper ? t.toUpperCase() : t;
    };
    return {
      bytes: encodeProxyV1({
        protocol: 'TCP6',
        source: text(s),
        destination: text(d),
        sourcePort: sp,
        destinationPort: dp,
      }),
      header: tcp6(nodeIpv6(s), sp, nodeIpv6(d), dp),
    };
  });

const v1Unknown: fc.Arbitrary<Case> = fc
  .string({ unit: fc.constantFrom(...'abcdef0123456789:. '.split('')), maxLength: PROXY_V1_MAX_LENGTH - 16 })
  .map((tail) => ({
    bytes: b(tail === '' ? 'PROXY UNKNOWN\r\n' : `PROXY UNKNOWN ${tail}\r\n`),
    header: noAddresses(1, 'proxy', 'unknown'),
  }));

const v2Inet: fc.Arbitrary<Case> = fc
  .tuple(
    fc.boolean(),
    ipv4Bytes,
    ipv6Bytes,
    ipv4Bytes,
    ipv6Bytes,
    port,
    port,
    fc.array(tlvArb, { maxLength: 4 }),
  )
  .map(([six, s4, s6, d4, d6, sp, dp, tlvs]) => {
    const spec: ProxyV2Header = {
      command: 'proxy',
      family: six ? 'tcp6' : 'tcp4',
      source: six ? s6 : s4,
      destination: six ? d6 : d4,
      sourcePort: sp,
      destinationPort: dp,
      tlvs,
    };
    const header = six ? tcp6(nodeIpv6(s6), sp, nodeIpv6(d6), dp, 2) : tcp4(ipv4(s4), sp, ipv4(d4), dp, 2);
    return { bytes: encodeProxyV2(spec), header };
  });

const v2Other: fc.Arbitrary<Case> = fc
  .tuple(
    fc.constantFrom('local', 'proxy'),
    fc.constantFrom('tcp4', 'tcp6', 'unix', 'unspec'),
    fc.array(tlvArb, { maxLength: 3 }),
  )
  .filter(([command, family]) => command === 'local' || family === 'unix' || family === 'unspec')
  .map(([command, family, tlvs]) => {
    const addresses =
      family === 'unix'
        ? { source: '/run/lb.sock', destination: '/run/pgwarden.sock' }
        : family === 'unspec'
          ? {}
          : {
              source: family === 'tcp4' ? '10.0.0.1' : '::1',
              destination: family === 'tcp4' ? '10.0.0.2' : '::2',
            };
    const bytes = encodeProxyV2({ command, family, ...addresses, sourcePort: 1, destinationPort: 2, tlvs });
    return { bytes, header: noAddresses(2, command, family === 'unspec' ? 'unknown' : family) };
  });

const anyCase = fc.oneof(v1Tcp4, v1Tcp6, v1Unknown, v2Inet, v2Other);

describe('properties', () => {
  it('parses a random valid header the same whether it arrives in one read or in random pieces', () => {
    fc.assert(
      fc.property(
        anyCase,
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        ({ bytes, header }, trailing, offsets) => {
          const stream = Buffer.concat([bytes, trailing]);
          const whole = parseOnce(stream);
          expectDone(whole, header, Buffer.from(trailing));
          const cuts = offsets.map((o) => o % (stream.length + 1));
          expect(parseChunks(splitAt(stream, cuts))).toEqual(whole);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('waits on every strict prefix of a valid header', () => {
    fc.assert(
      fc.property(anyCase, fc.nat(), ({ bytes }, n) => {
        expect(parseOnce(bytes.subarray(0, n % bytes.length))).toEqual({ state: 'more' });
      }),
      { numRuns: 2000 },
    );
  });

  it('answers any bytes with more, done or error, never an exception, and decides within the maximum length', () => {
    const prefix = fc.constantFrom(
      Buffer.alloc(0),
      V2_SIGNATURE,
      b('PROXY '),
      b('PROXY TCP4 '),
      b('PROXY TCP6 '),
    );
    fc.assert(
      fc.property(
        prefix,
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (p, tail, cuts) => {
          const stream = Buffer.concat([p, tail]);
          const result = parseChunks(
            splitAt(
              stream,
              cuts.map((c) => c % (stream.length + 1)),
            ),
          );
          expect(['more', 'done', 'error']).toContain(result.state);
          if (result.state === 'more') expect(stream.length).toBeLessThan(PROXY_V2_MAX_LENGTH);
          if (result.state === 'more' && stream[0] === 0x50)
            expect(stream.length).toBeLessThan(PROXY_V1_MAX_LENGTH);
          // An error message may quote more of a field when more of it has arrived; the verdict may not change.
          const whole = parseOnce(stream);
          if (result.state === 'error') expect(whole.state).toBe('error');
          else expect(whole).toEqual(result);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
