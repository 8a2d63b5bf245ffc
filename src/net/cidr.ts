// IP networks (CIDR) for access rules: parse `10.0.0.0/8` or `fd00::/8` once, then test client addresses against
// the set on every connection (trusted load balancers, IP rules, lockouts).
//
// Every address is handled as 16 bytes: IPv6 as is, IPv4 as its IPv4-mapped form ::ffff:a.b.c.d (RFC 4291
// section 2.5.5.2), and an IPv4 network /p as the mapped network /(96 + p). So one comparison covers the cases a
// dual-stack listener produces: `::ffff:127.0.0.1` from Node matches `127.0.0.0/8`, and `127.0.0.1` matches
// `::ffff:0:0/96`. The other side of that coin: an IPv6 network that contains the mapped range (`::/0`, `::/64`)
// contains every IPv4 address as well.
//
// Unlike PostgreSQL's pg_hba (which rejects `10.1.2.3/8`), host bits in a network are accepted and cleared.
import { isIP, isIPv4 } from 'node:net';

/** A parsed network; `network` has its host bits cleared and is written the way `formatIpv6`/dotted quads write it. */
export interface Cidr {
  /** 4 when the network was written as IPv4, 6 when written as IPv6 (including `::ffff:a.b.c.d/n`). */
  readonly family: 4 | 6;
  readonly network: string;
  /** Prefix length in the written family: 0-32 for IPv4, 0-128 for IPv6. */
  readonly prefix: number;
  /** `${network}/${prefix}` */
  readonly text: string;
}

/** A network as the matcher sees it: 16 bytes with the host bits cleared, and the prefix over all 128 bits. */
interface MappedNetwork {
  readonly bytes: Uint8Array;
  readonly bits: number;
}

const MAPPED_PREFIX_BITS = 96;
/** Longest text worth quoting back in an error; config values longer than any address are cut. */
const MAX_QUOTED = 64;

/**
 * An address as 16 bytes (IPv4 mapped into ::ffff:0:0/96), or null when `text` is not an IP address. A zone id on
 * an IPv6 address (`fe80::1%eth0`) is dropped: it names an interface, not part of the address.
 */
export function parseIpAddress(text: string): { family: 4 | 6; bytes: Uint8Array } | null {
  const family = isIP(text);
  if (family === 4) {
    const bytes = new Uint8Array(16);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    return writeIpv4(text, bytes, 12) ? { family: 4, bytes } : null;
  }
  if (family === 6) {
    const bytes = ipv6Bytes(text);
    return bytes ? { family: 6, bytes } : null;
  }
  return null;
}

/**
 * 16 bytes as IPv6 text the way Node writes `socket.remoteAddress` (libuv's inet_ntop): lower case, no leading
 * zeros, the first longest run of two or more zero groups as `::`, and the last 32 bits as a dotted quad for
 * IPv4-mapped (`::ffff:127.0.0.1`) and IPv4-compatible (`::10.0.0.1`) addresses.
 */
export function formatIpv6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`an IPv6 address is 16 bytes, got ${bytes.length}`);
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1]);

  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && words[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  if (bestLength < 2) bestStart = -1;

  const embedsIpv4 = bestStart === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += ':';
      i += bestLength - 1;
      if (i === 7) out += ':';
      continue;
    }
    if (i > 0) out += ':';
    if (i === 6 && embedsIpv4) {
      out += `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
      break;
    }
    out += words[i].toString(16);
  }
  return out;
}

/** Parses `address/prefix` or a bare address (a /32 or /128 network); throws an Error saying what is wrong. */
export function parseCidr(text: string): Cidr {
  return parseNetwork(text).cidr;
}

/** Whether `parseCidr(text)` would succeed. */
export function isValidCidr(text: string): boolean {
  try {
    parseNetwork(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * A fixed set of networks, parsed once, for the per-connection question "is this peer one of ours?".
 * `has` takes addresses as Node reports them (`socket.remoteAddress`); anything that is not an IP address never
 * matches, so a missing or odd address fails closed. A zone id (`fe80::1%eth0`) is ignored for matching, as
 * PostgreSQL compares only address bytes; networks themselves cannot carry one.
 */
export class CidrSet {
  /** Distinct networks after masking (`10.1.0.0/16` and `10.1.2.3/16` count once). */
  readonly size: number;
  private readonly networks: readonly MappedNetwork[];

  constructor(cidrs: readonly string[]) {
    const seen = new Map<string, MappedNetwork>();
    for (const text of cidrs) {
      const { cidr, mapped } = parseNetwork(text);
      seen.set(cidr.text, mapped);
    }
    this.networks = [...seen.values()];
    this.size = this.networks.length;
  }

  has(address: string): boolean {
    if (this.networks.length === 0 || typeof address !== 'string') return false;
    const parsed = parseIpAddress(address);
    if (!parsed) return false;
    for (const network of this.networks) {
      if (prefixMatches(parsed.bytes, network)) return true;
    }
    return false;
  }
}

function prefixMatches(address: Uint8Array, network: MappedNetwork): boolean {
  const fullBytes = network.bits >>> 3;
  for (let i = 0; i < fullBytes; i++) {
    if (address[i] !== network.bytes[i]) return false;
  }
  const restBits = network.bits & 7;
  if (restBits === 0) return true;
  const mask = (0xff << (8 - restBits)) & 0xff;
  return (address[fullBytes] & mask) === network.bytes[fullBytes];
}

function parseNetwork(text: string): { cidr: Cidr; mapped: MappedNetwork } {
  if (typeof text !== 'string') throw new Error('a CIDR must be a string such as "10.0.0.0/8"');
  const quoted = quote(text);
  const slash = text.indexOf('/');
  const addressText = slash >= 0 ? text.slice(0, slash) : text;
  if (addressText.includes('%')) {
    throw new Error(`invalid CIDR ${quoted}: a network cannot carry an IPv6 zone id ("%...")`);
  }
  const address = parseIpAddress(addressText);
  if (!address) {
    throw new Error(`invalid CIDR ${quoted}: ${quote(addressText)} is not an IPv4 or IPv6 address`);
  }
  const maxPrefix = address.family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    // Plain decimal only: "/08", "/+8" or "/ 8" are typos worth reporting, not values to guess at.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
      throw new Error(
        `invalid CIDR ${quoted}: the prefix length after "/" must be a number from 0 to ${maxPrefix}`,
      );
    }
    prefix = Number(prefixText);
    if (prefix > maxPrefix) {
      throw new Error(
        `invalid CIDR ${quoted}: prefix /${prefix} is longer than an IPv${address.family} address (${maxPrefix} bits)`,
      );
    }
  }
  const bits = address.family === 4 ? MAPPED_PREFIX_BITS + prefix : prefix;
  const bytes = maskBytes(address.bytes, bits);
  const network =
    address.family === 4 ? `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` : formatIpv6(bytes);
  return {
    cidr: { family: address.family, network, prefix, text: `${network}/${prefix}` },
    mapped: { bytes, bits },
  };
}

function maskBytes(bytes: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(16);
  const fullBytes = bits >>> 3;
  out.set(bytes.subarray(0, fullBytes));
  const restBits = bits & 7;
  if (restBits > 0) out[fullBytes] = bytes[fullBytes] & ((0xff << (8 - restBits)) & 0xff);
  return out;
}

/** Writes a dotted quad into `out` at `offset`; false when it is not one (the caller already asked isIP). */
function writeIpv4(text: string, out: Uint8Array, offset: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    if (!/^[0-9]{1,3}$/.test(parts[i])) return false;
    const value = Number(parts[i]);
    if (value > 255) return false;
    out[offset + i] = value;
  }
  return true;
}

/**
 * IPv6 text (already accepted by isIP, zone id allowed and ignored) to 16 bytes. Checked again here rather than
 * trusted, so the byte layout can never silently disagree with what isIP thought it saw.
 */
function ipv6Bytes(text: string): Uint8Array | null {
  const zone = text.indexOf('%');
  const body = zone >= 0 ? text.slice(0, zone) : text;
  const gap = body.indexOf('::');
  if (gap >= 0 && body.indexOf('::', gap + 1) >= 0) return null;
  const head = gap >= 0 ? splitGroups(body.slice(0, gap)) : splitGroups(body);
  const tail = gap >= 0 ? splitGroups(body.slice(gap + 2)) : [];
  const words: number[] = [];
  const tailWords: number[] = [];
  const dotted = new Uint8Array(4);
  const last = gap >= 0 ? tail : head;
  for (const [groups, into] of [
    [head, words],
    [tail, tailWords],
  ] as const) {
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i];
      if (group.includes('.')) {
        // An embedded dotted quad is only allowed as the last 32 bits.
        if (groups !== last || i !== groups.length - 1 || !isIPv4(group) || !writeIpv4(group, dotted, 0)) {
          return null;
        }
        into.push((dotted[0] << 8) | dotted[1], (dotted[2] << 8) | dotted[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
        into.push(parseInt(group, 16));
      }
    }
  }
  const total = words.length + tailWords.length;
  if (gap >= 0 ? total > 7 : total !== 8) return null;
  const all = [...words, ...new Array<number>(8 - total).fill(0), ...tailWords];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = all[i] >>> 8;
    bytes[2 * i + 1] = all[i] & 0xff;
  }
  return bytes;
}

function splitGroups(part: string): string[] {
  return part === '' ? [] : part.split(':');
}

function quote(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(printable.length > MAX_QUOTED ? `${printable.slice(0, MAX_QUOTED)}...` : printable);
}
