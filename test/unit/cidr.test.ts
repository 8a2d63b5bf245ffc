// CIDR parsing and matching: known answers at the edges of prefixes, IPv4-mapped addresses, zone ids, and
// properties that every address inside a random network matches while its neighbours just outside do not.
import { SocketAddress } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CidrSet, formatIpv6, isValidCidr, parseCidr, parseIpAddress } from '../../src/net/cidr.js';
import { ipv6Uncompressed } from '../harness/proxy-header.js';

const ALL_128 = (1n << 128n) - 1n;

function ipv4Text(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

function bigintBytes(value: bigint): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** Node's own rendering (inet_ntop) of an IPv6 address: the oracle for formatIpv6. */
function nodeIpv6Text(bytes: Uint8Array): string {
  return new SocketAddress({ address: ipv6Uncompressed(bytes), family: 'ipv6' }).address;
}

function ipv4Mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', 4, '10.0.0.0', 8],
    ['192.168.1.7', 4, '192.168.1.7', 32],
    ['192.168.1.7/32', 4, '192.168.1.7', 32],
    ['0.0.0.0/0', 4, '0.0.0.0', 0],
    ['10.1.2.3/8', 4, '10.0.0.0', 8],
    ['192.168.1.200/25', 4, '192.168.1.128', 25],
    ['255.255.255.255/1', 4, '128.0.0.0', 1],
    ['fd00::/8', 6, 'fd00::', 8],
    ['fd12:3456::1/16', 6, 'fd12::', 16],
    ['::1', 6, '::1', 128],
    ['::/0', 6, '::', 0],
    ['2001:DB8:0:0:0:0:0:1/128', 6, '2001:db8::1', 128],
    ['2001:db8:ffff::/33', 6, '2001:db8:8000::', 33],
    ['::ffff:10.1.2.3/104', 6, '::ffff:10.0.0.0', 104],
    ['::ffff:0:0/96', 6, '::ffff:0.0.0.0', 96],
  ] as const)('parses %s as %s/%s', (text, family, network, prefix) => {
    expect(parseCidr(text)).toEqual({ family, network, prefix, text: `${network}/${prefix}` });
    expect(isValidCidr(text)).toBe(true);
  });

  it.each([
    ['', /not an IPv4 or IPv6 address/],
    ['10.0.0.0/33', /prefix \/33 is longer than an IPv4 address/],
    ['::/129', /prefix \/129 is longer than an IPv6 address/],
    ['10.0.0.0/', /prefix length after "\/" must be a number from 0 to 32/],
    ['10.0.0.0/08', /prefix length/],
    ['10.0.0.0/-1', /prefix length/],
    ['10.0.0.0/+8', /prefix length/],
    ['10.0.0.0/ 8', /prefix length/],
    ['10.0.0.0/8/8', /prefix length/],
    ['10.0.0.0/1000', /prefix length/],
    ['10.0.0/8', /not an IPv4 or IPv6 address/],
    ['256.0.0.0/8', /not an IPv4 or IPv6 address/],
    ['01.2.3.4/8', /not an IPv4 or IPv6 address/],
    [' 10.0.0.0/8', /not an IPv4 or IPv6 address/],
    ['10.0.0.0/8 ', /prefix length/],
    ['fe80::1%eth0/64', /zone id/],
    ['fe80::1%eth0', /zone id/],
    ['1:::2/64', /not an IPv4 or IPv6 address/],
    ['localhost', /not an IPv4 or IPv6 address/],
    ['/8', /not an IPv4 or IPv6 address/],
  ])('rejects %j', (text, message) => {
    expect(() => parseCidr(text)).toThrow(message);
    expect(isValidCidr(text)).toBe(false);
  });

  it('names the offending text in the error, cut short and printable', () => {
    expect(() => parseCidr('10.0.0.0/99')).toThrow('invalid CIDR "10.0.0.0/99"');
    const long = `${'x'.repeat(200)}\u0000`;
    expect(() => parseCidr(long)).toThrow(/^invalid CIDR "x{64}\.\.\."/);
  });
});

describe('CidrSet', () => {
  it('matches the first and last address of a network and nothing just outside it', () => {
    const set = new CidrSet(['10.0.0.0/8', '192.168.1.128/25']);
    expect(set.has('10.0.0.0')).toBe(true);
    expect(set.has('10.255.255.255')).toBe(true);
    expect(set.has('9.255.255.255')).toBe(false);
    expect(set.has('11.0.0.0')).toBe(false);
    expect(set.has('192.168.1.128')).toBe(true);
    expect(set.has('192.168.1.255')).toBe(true);
    expect(set.has('192.168.1.127')).toBe(false);
    expect(set.has('192.168.2.0')).toBe(false);
  });

  it('treats /32 and /128 as one address', () => {
    const set = new CidrSet(['192.0.2.7/32', '2001:db8::7']);
    expect(set.has('192.0.2.7')).toBe(true);
    expect(set.has('192.0.2.6')).toBe(false);
    expect(set.has('192.0.2.8')).toBe(false);
    expect(set.has('2001:db8::7')).toBe(true);
    expect(set.has('2001:0db8:0000:0000:0000:0000:0000:0007')).toBe(true);
    expect(set.has('2001:db8::6')).toBe(false);
    expect(set.has('2001:db8::8')).toBe(false);
  });

  it('matches every IPv4 address with 0.0.0.0/0, and no IPv6 outside the mapped range', () => {
    const set = new CidrSet(['0.0.0.0/0']);
    expect(set.has('0.0.0.0')).toBe(true);
    expect(set.has('255.255.255.255')).toBe(true);
    expect(set.has('::ffff:8.8.8.8')).toBe(true);
    expect(set.has('::1')).toBe(false);
    expect(set.has('2001:db8::1')).toBe(false);
    expect(set.has('::fffe:ffff:ffff')).toBe(false);
  });

  it('matches everything with ::/0, IPv4 included (IPv4 lives at ::ffff:0:0/96)', () => {
    const set = new CidrSet(['::/0']);
    expect(set.has('::')).toBe(true);
    expect(set.has('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(set.has('10.0.0.1')).toBe(true);
  });

  it('matches IPv4-mapped addresses (as Node reports them on dual-stack sockets) against IPv4 networks', () => {
    const set = new CidrSet(['127.0.0.0/8']);
    expect(set.has('::ffff:127.0.0.1')).toBe(true);
    expect(set.has('::FFFF:127.0.0.1')).toBe(true);
    expect(set.has('::ffff:7f00:1')).toBe(true);
    expect(set.has('0:0:0:0:0:ffff:7f00:1')).toBe(true);
    expect(set.has('::ffff:128.0.0.1')).toBe(false);
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) forms are other addresses, not IPv4.
    expect(set.has('::127.0.0.1')).toBe(false);
    expect(set.has('64:ff9b::127.0.0.1')).toBe(false);
  });

  it('matches IPv4 addresses against IPv6 networks written in the mapped range', () => {
    const set = new CidrSet(['::ffff:10.0.0.0/104']);
    expect(set.has('10.1.2.3')).toBe(true);
    expect(set.has('::ffff:10.1.2.3')).toBe(true);
    expect(set.has('11.0.0.0')).toBe(false);
    const all = new CidrSet(['::ffff:0:0/96']);
    expect(all.has('1.2.3.4')).toBe(true);
    expect(all.has('::1')).toBe(false);
    expect(all.has('::fffe:102:304')).toBe(false);
  });

  it('ignores a zone id on the address and matches its bytes', () => {
    const set = new CidrSet(['fe80::/10']);
    expect(set.has('fe80::1%eth0')).toBe(true);
    expect(set.has('febf:ffff::1%2')).toBe(true);
    expect(set.has('fec0::1%eth0')).toBe(false);
    expect(() => new CidrSet(['fe80::%eth0/10'])).toThrow(/zone id/);
  });

  it('never matches something that is not an IP address', () => {
    const set = new CidrSet(['0.0.0.0/0', '::/0']);
    for (const address of [
      '',
      'localhost',
      '10.0.0.1:5432',
      '[::1]',
      '10.0.0.256',
      '010.0.0.1',
      '1:::2',
      '::1 ',
      '/tmp/.s.PGSQL.5432',
      'fe80::1%',
    ]) {
      expect(set.has(address), address).toBe(false);
    }
    expect(set.has(undefined as unknown as string)).toBe(false);
  });

  it('matches nothing when empty', () => {
    const set = new CidrSet([]);
    expect(set.size).toBe(0);
    expect(set.has('127.0.0.1')).toBe(false);
  });

  it('counts distinct networks after masking', () => {
    expect(new CidrSet(['10.1.0.0/16', '10.1.2.3/16', '10.1.0.0/16', '::1', '0:0::1/128']).size).toBe(2);
    expect(new CidrSet(['10.0.0.0/8', '::ffff:10.0.0.0/104']).size).toBe(2);
  });

  it('refuses to build from a bad entry, naming it', () => {
    expect(() => new CidrSet(['10.0.0.0/8', '10.0.0.0/40'])).toThrow('invalid CIDR "10.0.0.0/40"');
  });
});

describe('IP address helpers', () => {
  it.each([
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['0:0:0:0:0:ffff:102:304', '::ffff:1.2.3.4'],
    ['0:0:0:0:0:0:102:304', '::1.2.3.4'],
    ['FE80:0:0:0:0:0:0:ABCD', 'fe80::abcd'],
  ])('writes %s as %s', (input, expected) => {
    const parsed = parseIpAddress(input);
    expect(parsed?.family).toBe(6);
    expect(formatIpv6(parsed!.bytes)).toBe(expected);
  });

  it('maps IPv4 into ::ffff:0:0/96', () => {
    expect(parseIpAddress('1.2.3.4')).toEqual({
      family: 4,
      bytes: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]),
    });
    expect(parseIpAddress('1.2.3')).toBeNull();
  });

  it('formats any 16 bytes exactly as Node does, and parses them back', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (words) => {
        const bytes = new Uint8Array(16);
        words.forEach((w, i) => {
          bytes[2 * i] = w >> 8;
          bytes[2 * i + 1] = w & 0xff;
        });
        const text = formatIpv6(bytes);
        expect(text).toBe(nodeIpv6Text(bytes));
        expect(parseIpAddress(text)?.bytes).toEqual(bytes);
        expect(parseIpAddress(ipv6Uncompressed(bytes))?.bytes).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('CidrSet properties', () => {
  const ipv4Network = fc.record({
    network: fc.integer({ min: 0, max: 0xffffffff }),
    prefix: fc.integer({ min: 0, max: 32 }),
    host: fc.integer({ min: 0, max: 0xffffffff }),
    written: fc.constantFrom('ipv4', 'mapped-ipv6'),
  });

  it('matches every IPv4 address built inside the prefix and none just outside it', () => {
    fc.assert(
      fc.property(ipv4Network, ({ network, prefix, host, written }) => {
        const mask = ipv4Mask(prefix);
        const first = (network & mask) >>> 0;
        const last = (first | ~mask) >>> 0;
        const inside = (first | (host & ~mask)) >>> 0;
        // The network is written with its host bits still set: the set masks them.
        const cidr =
          written === 'ipv4'
            ? `${ipv4Text(network)}/${prefix}`
            : `::ffff:${ipv4Text(network)}/${96 + prefix}`;
        const set = new CidrSet([cidr]);
        expect(set.has(ipv4Text(inside))).toBe(true);
        expect(set.has(`::ffff:${ipv4Text(inside)}`)).toBe(true);
        expect(set.has(ipv4Text(first))).toBe(true);
        expect(set.has(ipv4Text(last))).toBe(true);
        if (first > 0) expect(set.has(ipv4Text(first - 1))).toBe(false);
        if (last < 0xffffffff) expect(set.has(ipv4Text(last + 1))).toBe(false);
        if (prefix > 0) {
          const bit = host % prefix;
          expect(set.has(ipv4Text((inside ^ (1 << (31 - bit))) >>> 0))).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });

  const ipv6Network = fc.record({
    network: fc.bigInt({ min: 0n, max: ALL_128 }),
    prefix: fc.integer({ min: 0, max: 128 }),
    host: fc.bigInt({ min: 0n, max: ALL_128 }),
    compressed: fc.boolean(),
  });

  it('matches every IPv6 address built inside the prefix and none just outside it', () => {
    fc.assert(
      fc.property(ipv6Network, ({ network, prefix, host, compressed }) => {
        const text = (value: bigint): string =>
          compressed ? nodeIpv6Text(bigintBytes(value)) : ipv6Uncompressed(bigintBytes(value));
        const mask = prefix === 0 ? 0n : (ALL_128 << BigInt(128 - prefix)) & ALL_128;
        const first = network & mask;
        const last = first | (~mask & ALL_128);
        const inside = first | (host & ~mask & ALL_128);
        const set = new CidrSet([`${text(network)}/${prefix}`]);
        expect(set.has(text(inside))).toBe(true);
        expect(set.has(text(first))).toBe(true);
        expect(set.has(text(last))).toBe(true);
        if (first > 0n) expect(set.has(text(first - 1n))).toBe(false);
        if (last < ALL_128) expect(set.has(text(last + 1n))).toBe(false);
        if (prefix > 0) {
          const bit = Number(host % BigInt(prefix));
          expect(set.has(text(inside ^ (1n << BigInt(127 - bit))))).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees with a membership check done on whole numbers, for several networks at once', () => {
    const entry = fc.record({
      network: fc.integer({ min: 0, max: 0xffffffff }),
      prefix: fc.integer({ min: 0, max: 32 }),
    });
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 20 }),
        (entries, addresses) => {
          const set = new CidrSet(entries.map((e) => `${ipv4Text(e.network)}/${e.prefix}`));
          for (const address of addresses) {
            const expected = entries.some(
              (e) => (address & ipv4Mask(e.prefix)) >>> 0 === (e.network & ipv4Mask(e.prefix)) >>> 0,
            );
            expect(set.has(ipv4Text(address))).toBe(expected);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
