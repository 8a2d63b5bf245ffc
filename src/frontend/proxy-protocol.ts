// Receiver side of the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a load balancer
// prepends to each TCP connection to say which client it relays. Listeners that expect it call this before any
// PostgreSQL byte is looked at; the source address it yields becomes the client address for IP rules, lockouts
// and audit, so the parser is strict and fails closed:
// - the header is required (the spec forbids guessing whether one is present), and the first byte that cannot
//   belong to a header is an error, without waiting for more;
// - v1 is one CRLF-terminated line of at most 107 bytes with single spaces, addresses valid for TCP4/TCP6 and
//   ports without leading zeros;
// - v2 is the 12-byte signature, version 2, LOCAL or PROXY, a stream or unspecified transport, an address block
//   long enough for its family, well-formed TLVs (skipped, not interpreted: no CRC32C check), at most 16 + 4096
//   bytes in all.
// Whoever may send the header at all (the load balancers' CIDRs) is decided by the caller before parsing.
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
import { isIPv4, isIPv6 } from 'node:net';
import { formatIpv6, parseIpAddress } from '../net/cidr.js';

export interface ProxyAddress {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** 'local': the load balancer's own connection (health check); use the socket's addresses. */
  command: 'proxy' | 'local';
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown';
  /**
   * The relayed client; null for LOCAL, UNKNOWN/unspecified families and AF_UNIX (a socket path is no client
   * address), in which case the connection's own peer address stands.
   */
  source: ProxyAddress | null;
  destination: ProxyAddress | null;
}

export type ProxyParseResult =
  | { state: 'more' }
  | { state: 'done'; header: ProxyHeader; rest: Buffer }
  | { state: 'error'; message: string };

/** Longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses and ports). */
export const PROXY_V1_MAX_LENGTH = 107;
/** Longest v2 header we accept: the fixed 16 bytes plus 4096 bytes of addresses and TLVs. */
export const PROXY_V2_MAX_LENGTH = 16 + 4096;

// \r\n\r\n\0\r\nQUIT\n: chosen by the spec so that no common protocol starts like it.
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_LENGTH = 16;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const CR = 0x0d;
const LF = 0x0a;

const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const TRANSPORT_STREAM = 0x1;
const TRANSPORT_DGRAM = 0x2;
const COMMAND_LOCAL = 0x0;
const COMMAND_PROXY = 0x1;

/** Address block sizes by family (proxy-protocol.txt 2.2, union proxy_addr). */
const V2_ADDRESS_LENGTH = { tcp4: 12, tcp6: 36, unix: 216, unknown: 0 } as const;
const TLV_HEADER_LENGTH = 3;

const MORE = Object.freeze({ state: 'more' as const });
/**
 * inspect() rejects any header that reaches the maximum length unfinished; this verdict only backs that up, so the
 * buffer stays bounded even if inspect() ever failed to.
 */
const TOO_LONG = {
  state: 'error' as const,
  message: 'the PROXY protocol header from the load balancer is longer than any valid header',
};
/** First size of the buffer that holds a header arriving in pieces; grows by doubling up to the maximum. */
const INITIAL_HOLD = 128;

/** What the bytes seen so far amount to; `length` is the header's size when it is complete. */
type Inspection =
  | { state: 'more' }
  | { state: 'error'; message: string }
  | { state: 'done'; header: ProxyHeader; length: number };

/**
 * Reads one PROXY header from the start of a connection, fed read by read. The first result other than 'more'
 * is final: 'done' carries the header and the bytes after it from the same read (the start of the PostgreSQL
 * conversation), 'error' says what was wrong. Pushing after that is a bug in the caller and throws.
 */
export class ProxyHeaderParser {
  /** Copy of the bytes of an incomplete header; never longer than PROXY_V2_MAX_LENGTH. */
  private held: Buffer | null = null;
  private heldLength = 0;
  private finished = false;

  push(chunk: Buffer): ProxyParseResult {
    if (this.finished)
      throw new Error('ProxyHeaderParser.push called after the header was parsed or rejected');
    if (this.heldLength === 0) {
      // The usual case: the whole header is in the first read, and `rest` is a view of that read.
      const verdict = inspect(chunk);
      if (verdict.state !== 'more') return this.finish(verdict, chunk, 0);
      if (chunk.length >= PROXY_V2_MAX_LENGTH) return this.finish(TOO_LONG, chunk, 0);
      this.hold(chunk);
      return MORE;
    }
    const before = this.heldLength;
    // Bytes beyond the longest possible header are never needed to decide; they stay in `chunk` for `rest`.
    const room = PROXY_V2_MAX_LENGTH - before;
    this.hold(chunk.subarray(0, Math.min(room, chunk.length)));
    const verdict = inspect(this.held!.subarray(0, this.heldLength));
    if (verdict.state !== 'more') return this.finish(verdict, chunk, before);
    if (this.heldLength >= PROXY_V2_MAX_LENGTH) return this.finish(TOO_LONG, chunk, 0);
    return MORE;
  }

  private hold(bytes: Buffer): void {
    const needed = this.heldLength + bytes.length;
    if (!this.held || this.held.length < needed) {
      const capacity = Math.min(
        PROXY_V2_MAX_LENGTH,
        Math.max(INITIAL_HOLD, needed, (this.held?.length ?? 0) * 2),
      );
      const grown = Buffer.allocUnsafe(capacity);
      if (this.held) this.held.copy(grown, 0, 0, this.heldLength);
      this.held = grown;
    }
    bytes.copy(this.held, this.heldLength);
    this.heldLength = needed;
  }

  /** `before`: how many header bytes came in earlier reads, so the header ends at `length - before` in `chunk`. */
  private finish(
    verdict: Exclude<Inspection, { state: 'more' }>,
    chunk: Buffer,
    before: number,
  ): ProxyParseResult {
    this.finished = true;
    this.held = null;
    this.heldLength = 0;
    if (verdict.state === 'error') return { state: 'error', message: verdict.message };
    return { state: 'done', header: verdict.header, rest: chunk.subarray(verdict.length - before) };
  }
}

/** Judges the bytes received so far, from the start of the connection. Pure: same prefix, same answer. */
function inspect(bytes: Uint8Array): Inspection {
  if (bytes.length === 0) return MORE;
  if (bytes[0] === V2_SIGNATURE[0]) return inspectV2(bytes);
  if (bytes[0] === V1_PREFIX[0]) return inspectV1(bytes);
  return { state: 'error', message: notAHeader(bytes) };
}

// ---------------------------------------------------------------------------------------------------------------
// Version 2: binary (proxy-protocol.txt 2.2)

function inspectV2(bytes: Uint8Array): Inspection {
  const signatureSeen = Math.min(bytes.length, V2_SIGNATURE.length);
  for (let i = 0; i < signatureSeen; i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) return { state: 'error', message: notAHeader(bytes) };
  }
  if (bytes.length <= 12) return MORE;

  // 13th byte: version (high nibble) and command (low nibble).
  const version = bytes[12] >> 4;
  if (version !== 2) return { state: 'error', message: v2Error(`version ${version} is not 2`) };
  const commandCode = bytes[12] & 0x0f;
  if (commandCode !== COMMAND_LOCAL && commandCode !== COMMAND_PROXY) {
    return {
      state: 'error',
      message: v2Error(`command 0x${commandCode.toString(16)} is neither LOCAL nor PROXY`),
    };
  }
  const command = commandCode === COMMAND_PROXY ? 'proxy' : 'local';
  if (bytes.length <= 13) return MORE;

  // 14th byte: address family (high nibble) and transport (low nibble).
  const addressFamily = bytes[13] >> 4;
  const transport = bytes[13] & 0x0f;
  if (addressFamily > AF_UNIX) {
    return {
      state: 'error',
      message: v2Error(`address family 0x${addressFamily.toString(16)} is not defined`),
    };
  }
  if (transport === TRANSPORT_DGRAM) {
    return { state: 'error', message: v2Error('the relayed connection is UDP (DGRAM); only TCP is proxied') };
  }
  if (transport > TRANSPORT_DGRAM) {
    return { state: 'error', message: v2Error(`transport 0x${transport.toString(16)} is not defined`) };
  }
  const family = v2Family(addressFamily, transport);
  if (bytes.length < V2_FIXED_LENGTH) return MORE;

  // 15th-16th bytes: how many bytes of addresses and TLVs follow.
  const blockLength = (bytes[14] << 8) | bytes[15];
  const total = V2_FIXED_LENGTH + blockLength;
  if (total > PROXY_V2_MAX_LENGTH) {
    return {
      state: 'error',
      message: v2Error(`header of ${total} bytes is longer than the ${PROXY_V2_MAX_LENGTH}-byte maximum`),
    };
  }
  // LOCAL: the spec says to ignore the family and discard the whole block; so do unspecified families, whose
  // block has no layout we could check.
  const addressesUsed = command === 'proxy' && family !== 'unknown';
  const addressLength = addressesUsed ? V2_ADDRESS_LENGTH[family] : blockLength;
  if (blockLength < addressLength) {
    return {
      state: 'error',
      message: v2Error(
        `address block of ${blockLength} bytes is too short for ${family} (${addressLength} needed)`,
      ),
    };
  }

  // TLVs (type, 16-bit length, value) fill the block after the addresses exactly; check each as it arrives.
  for (let offset = V2_FIXED_LENGTH + addressLength; offset < total;) {
    if (offset + TLV_HEADER_LENGTH > total) {
      return { state: 'error', message: v2Error('a TLV is cut off by the end of the header') };
    }
    if (offset + TLV_HEADER_LENGTH > bytes.length) return MORE;
    const valueLength = (bytes[offset + 1] << 8) | bytes[offset + 2];
    const next = offset + TLV_HEADER_LENGTH + valueLength;
    if (next > total) {
      return {
        state: 'error',
        message: v2Error(`TLV 0x${bytes[offset].toString(16)} of ${valueLength} bytes overruns the header`),
      };
    }
    offset = next;
  }
  if (bytes.length < total) return MORE;

  const header: ProxyHeader = { version: 2, command, family, source: null, destination: null };
  if (addressesUsed && family === 'tcp4') {
    header.source = { address: ipv4Text(bytes, 16), port: (bytes[24] << 8) | bytes[25] };
    header.destination = { address: ipv4Text(bytes, 20), port: (bytes[26] << 8) | bytes[27] };
  } else if (addressesUsed && family === 'tcp6') {
    header.source = { address: formatIpv6(bytes.subarray(16, 32)), port: (bytes[48] << 8) | bytes[49] };
    header.destination = { address: formatIpv6(bytes.subarray(32, 48)), port: (bytes[50] << 8) | bytes[51] };
  }
  return { state: 'done', header, length: total };
}

function v2Family(addressFamily: number, transport: number): ProxyHeader['family'] {
  // DGRAM and undefined transports were rejected before; what is left is STREAM or UNSPEC.
  if (addressFamily === AF_UNSPEC || transport !== TRANSPORT_STREAM) return 'unknown';
  if (addressFamily === AF_INET) return 'tcp4';
  if (addressFamily === AF_INET6) return 'tcp6';
  return 'unix';
}

function ipv4Text(bytes: Uint8Array, offset: number): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Version 1: one text line (proxy-protocol.txt 2.1)

const V1_FAMILIES = ['TCP4', 'TCP6', 'UNKNOWN'] as const;
type V1Family = (typeof V1_FAMILIES)[number];
const V1_FIELD_NAMES = ['source address', 'destination address', 'source port', 'destination port'] as const;

function inspectV1(bytes: Uint8Array): Inspection {
  const prefixSeen = Math.min(bytes.length, V1_PREFIX.length);
  for (let i = 0; i < prefixSeen; i++) {
    if (bytes[i] !== V1_PREFIX[i]) return { state: 'error', message: notAHeader(bytes) };
  }
  if (bytes.length <= V1_PREFIX.length) return MORE;

  // Find the end of the line: CRLF within the first 107 bytes, and no lone CR or LF before it.
  const scanEnd = Math.min(bytes.length, PROXY_V1_MAX_LENGTH);
  let lineEnd = scanEnd;
  let ended = false;
  for (let i = V1_PREFIX.length; i < scanEnd; i++) {
    if (bytes[i] === LF)
      return { state: 'error', message: v1Error('line feed without a carriage return before it') };
    if (bytes[i] !== CR) continue;
    if (i + 1 >= PROXY_V1_MAX_LENGTH) break;
    if (i + 1 < bytes.length && bytes[i + 1] !== LF) {
      return { state: 'error', message: v1Error('carriage return not followed by a line feed') };
    }
    lineEnd = i;
    ended = true;
    break;
  }
  if (!ended && bytes.length >= PROXY_V1_MAX_LENGTH) {
    return { state: 'error', message: v1Error(`no CRLF within the first ${PROXY_V1_MAX_LENGTH} bytes`) };
  }

  const fields = Buffer.from(bytes.buffer, bytes.byteOffset + V1_PREFIX.length, lineEnd - V1_PREFIX.length)
    .toString('latin1')
    .split(' ');
  const problem = checkV1Fields(fields, ended);
  if (problem) return { state: 'error', message: v1Error(problem) };
  // A CR as the last byte seen: the line is judged, the LF is still to come.
  if (!ended || lineEnd + 1 >= bytes.length) return MORE;

  const length = lineEnd + 2;
  const family = fields[0] as V1Family;
  if (family === 'UNKNOWN') {
    return {
      state: 'done',
      header: { version: 1, command: 'proxy', family: 'unknown', source: null, destination: null },
      length,
    };
  }
  const [, source, destination, sourcePort, destinationPort] = fields;
  return {
    state: 'done',
    header: {
      version: 1,
      command: 'proxy',
      family: family === 'TCP4' ? 'tcp4' : 'tcp6',
      source: { address: v1AddressText(family, source), port: Number(sourcePort) },
      destination: { address: v1AddressText(family, destination), port: Number(destinationPort) },
    },
    length,
  };
}

/**
 * What is wrong with the fields after "PROXY " (split on single spaces), or null. Fields before the last, and the
 * last one once the line has ended, are checked in full; the field still arriving only for what it may contain.
 */
function checkV1Fields(fields: string[], lineEnded: boolean): string | null {
  const familyText = fields[0];
  const familyComplete = fields.length > 1 || lineEnded;
  if (familyComplete ? !isV1Family(familyText) : !V1_FAMILIES.some((f) => f.startsWith(familyText))) {
    return `protocol ${quote(familyText)} is not TCP4, TCP6 or UNKNOWN`;
  }
  // UNKNOWN: the spec has the receiver ignore whatever precedes the CRLF.
  if (!familyComplete || familyText === 'UNKNOWN') return null;
  const family = familyText as 'TCP4' | 'TCP6';

  const values = fields.slice(1);
  for (let i = 0; i < Math.min(values.length, V1_FIELD_NAMES.length); i++) {
    const value = values[i];
    const complete = i < values.length - 1 || lineEnded;
    const name = V1_FIELD_NAMES[i];
    if (complete && value === '') return `empty ${name} (two spaces in a row, or a space before the CRLF)`;
    const problem = i < 2 ? checkV1Address(family, value, complete) : checkV1Port(value, complete);
    if (problem) return `${name} ${quote(value)} ${problem}`;
  }
  if (values.length > V1_FIELD_NAMES.length)
    return 'more than four fields after the protocol, or a stray space';
  if (lineEnded && values.length < V1_FIELD_NAMES.length) {
    return `the line ends before the ${V1_FIELD_NAMES[values.length]}`;
  }
  return null;
}

function isV1Family(text: string): text is V1Family {
  return (V1_FAMILIES as readonly string[]).includes(text);
}

function checkV1Address(family: 'TCP4' | 'TCP6', value: string, complete: boolean): string | null {
  const valid =
    family === 'TCP4'
      ? complete
        ? isIPv4(value)
        : couldBeIpv4(value)
      : complete
        ? /^[0-9A-Fa-f:.]+$/.test(value) && isIPv6(value)
        : couldBeIpv6(value);
  return valid ? null : `is not a valid ${family === 'TCP4' ? 'IPv4' : 'IPv6'} address for ${family}`;
}

/** Whether more characters could still turn `text` into a dotted quad without leading zeros. */
function couldBeIpv4(text: string): boolean {
  const parts = text.split('.');
  if (parts.length > 4) return false;
  return parts.every((part, i) => {
    const last = i === parts.length - 1;
    if (part === '') return last;
    return /^(0|[1-9][0-9]{0,2})$/.test(part) && Number(part) <= 255;
  });
}

/** A cheap necessary condition for a prefix of IPv6 text (full validation waits for the whole address). */
function couldBeIpv6(text: string): boolean {
  if (text.length > 45 || !/^[0-9A-Fa-f:.]*$/.test(text) || text.includes(':::')) return false;
  const gap = text.indexOf('::');
  if (gap >= 0 && text.indexOf('::', gap + 1) >= 0) return false;
  const groups = text.split(':').filter((g) => g !== '');
  if (groups.some((g) => !g.includes('.') && g.length > 4)) return false;
  // 16-bit groups written so far (a dotted quad is two); "::" stands for at least one more.
  const written = groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  if (written > (gap >= 0 ? 7 : 8)) return false;
  // A single trailing colon promises another group or a "::": either needs room for one more.
  return !(gap < 0 && text.endsWith(':') && written > 7);
}

function checkV1Port(value: string, complete: boolean): string | null {
  // No leading zeros: the spec rules them out to avoid any octal confusion.
  const shape = complete ? /^(0|[1-9][0-9]{0,4})$/ : /^(0|[1-9][0-9]{0,4})?$/;
  return shape.test(value) && Number(value) <= 65535
    ? null
    : 'is not a port from 0 to 65535 without leading zeros';
}

/** TCP6 text in the one form Node and the v2 path use (`::ffff:10.0.0.1`, lower case, `::` compression). */
function v1AddressText(family: 'TCP4' | 'TCP6', text: string): string {
  if (family === 'TCP4') return text;
  const parsed = parseIpAddress(text);
  if (!parsed) throw new Error(`internal: ${quote(text)} passed isIPv6 but does not parse`);
  return formatIpv6(parsed.bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// Messages: for the operator reading the log; they never contain more than a short, printable excerpt.

function notAHeader(bytes: Uint8Array): string {
  const expected =
    'expected a PROXY protocol header from the load balancer (HAProxy "send-proxy" or "send-proxy-v2"), ' +
    'but the connection did not start with one';
  if (bytes[0] === 0x00) {
    return (
      `${expected}: it starts like a PostgreSQL startup or SSL request, so the client is connecting without the ` +
      'load balancer, or the load balancer is not configured to send the PROXY header'
    );
  }
  if (bytes[0] === 0x16) {
    return `${expected}: it starts like a TLS handshake (a client using direct TLS without the load balancer?)`;
  }
  return `${expected} (first bytes ${hexExcerpt(bytes)})`;
}

function v1Error(detail: string): string {
  return `invalid PROXY protocol v1 header from the load balancer: ${detail}`;
}

function v2Error(detail: string): string {
  return `invalid PROXY protocol v2 header from the load balancer: ${detail}`;
}

function hexExcerpt(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 8)).toString('hex');
}

function quote(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(printable.length > 48 ? `${printable.slice(0, 48)}...` : printable);
}
