// PROXY protocol header builders for tests: what a load balancer would send, written from proxy-protocol.txt
// independently of src/frontend/proxy-protocol.ts, so that parser tests compare against the spec, not themselves.

/** The v2 signature: \r\n\r\n\0\r\nQUIT\n. */
export const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

export interface ProxyV1Line {
  protocol: 'TCP4' | 'TCP6' | 'UNKNOWN';
  /** Omitted for the short form `PROXY UNKNOWN\r\n`. */
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
}

/** `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, or `PROXY UNKNOWN\r\n` when no addresses are given. */
export function encodeProxyV1(line: ProxyV1Line): Buffer {
  const fields = ['PROXY', line.protocol];
  if (line.source !== undefined) {
    fields.push(line.source, line.destination ?? '', String(line.sourcePort), String(line.destinationPort));
  }
  return Buffer.from(`${fields.join(' ')}\r\n`, 'latin1');
}

export interface ProxyV2Tlv {
  type: number;
  value: Uint8Array;
}

export interface ProxyV2Header {
  command: 'local' | 'proxy';
  /** tcp4 = AF_INET/STREAM (0x11), tcp6 = AF_INET6/STREAM (0x21), unix = AF_UNIX/STREAM (0x31), unspec = 0x00. */
  family: 'tcp4' | 'tcp6' | 'unix' | 'unspec';
  /** IPv4 dotted quad, IPv6 text or 16 raw bytes (tcp4/tcp6), or a socket path (unix). */
  source?: string | Uint8Array;
  destination?: string | Uint8Array;
  sourcePort?: number;
  destinationPort?: number;
  tlvs?: ProxyV2Tlv[];
}

const FAMILY_BYTE = { tcp4: 0x11, tcp6: 0x21, unix: 0x31, unspec: 0x00 } as const;

/** The binary header: signature, ver_cmd, family, length, address block (if any), then the TLVs. */
export function encodeProxyV2(header: ProxyV2Header): Buffer {
  const block: Buffer[] = [];
  if (header.source !== undefined && header.destination !== undefined) {
    if (header.family === 'unix') {
      block.push(unixPath(header.source), unixPath(header.destination));
    } else if (header.family === 'tcp4' || header.family === 'tcp6') {
      const size = header.family === 'tcp4' ? 4 : 16;
      const ports = Buffer.alloc(4);
      ports.writeUInt16BE(header.sourcePort ?? 0, 0);
      ports.writeUInt16BE(header.destinationPort ?? 0, 2);
      block.push(addressBytes(header.source, size), addressBytes(header.destination, size), ports);
    }
  }
  for (const tlv of header.tlvs ?? []) {
    const head = Buffer.alloc(3);
    head[0] = tlv.type;
    head.writeUInt16BE(tlv.value.length, 1);
    block.push(head, Buffer.from(tlv.value));
  }
  const body = Buffer.concat(block);
  const fixed = Buffer.alloc(4);
  fixed[0] = header.command === 'proxy' ? 0x21 : 0x20;
  fixed[1] = FAMILY_BYTE[header.family];
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

function unixPath(path: string | Uint8Array): Buffer {
  const out = Buffer.alloc(108);
  Buffer.from(typeof path === 'string' ? Buffer.from(path, 'utf8') : path).copy(out, 0, 0, 107);
  return out;
}

function addressBytes(address: string | Uint8Array, size: 4 | 16): Buffer {
  if (typeof address !== 'string') {
    if (address.length !== size) throw new Error(`expected ${size} address bytes, got ${address.length}`);
    return Buffer.from(address);
  }
  return size === 4 ? ipv4ToBytes(address) : ipv6ToBytes(address);
}

function ipv4ToBytes(text: string): Buffer {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${text}`);
  }
  return Buffer.from(parts);
}

/** Expands `::`, accepts a trailing dotted quad; enough for test fixtures, which are well-formed by construction. */
function ipv6ToBytes(text: string): Buffer {
  let groups: string[];
  const [head, tail] = text.split('::');
  const expand = (part: string | undefined): string[] => {
    if (!part) return [];
    return part.split(':').flatMap((g) => {
      if (!g.includes('.')) return [g];
      const q = ipv4ToBytes(g);
      return [q.readUInt16BE(0).toString(16), q.readUInt16BE(2).toString(16)];
    });
  };
  if (tail === undefined) {
    groups = expand(head);
  } else {
    const left = expand(head);
    const right = expand(tail);
    groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  }
  if (groups.length !== 8) throw new Error(`not an IPv6 address: ${text}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Full, uncompressed IPv6 text for 16 bytes (eight 4-digit groups): a form any IPv6 parser must accept. */
export function ipv6Uncompressed(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).padStart(4, '0'));
  return groups.join(':');
}
