// tls-server-end-point channel binding data (RFC 5929 §4.1): a hash of the server's DER certificate.
//
// The hash is the one of the certificate's signatureAlgorithm, except MD5 and SHA-1 which become SHA-256.
// PostgreSQL (be_tls_get_certificate_hash, and libpq on the client side) asks OpenSSL for the signature's
// digest. Where OpenSSL has none — Ed25519 and Ed448, "pure" signatures that RFC 5929 does not cover — both
// fail ("could not find digest for NID UNDEF"), so there is no value any PostgreSQL peer would agree on:
// tlsServerEndPointHash throws ChannelBindingError('unsupported-algorithm') for those. The caller then runs
// without channel binding (do not advertise SCRAM-SHA-256-PLUS / do not select it), rather than advertise it
// and fail every -PLUS login the way PostgreSQL does.
//
// RSASSA-PSS names its hash in the AlgorithmIdentifier parameters (RFC 4055); they are parsed, as OpenSSL's
// X509_get_signature_info does, with the RFC's default (SHA-1, hence SHA-256) when the field is absent.
import { createHash } from 'node:crypto';

export class ChannelBindingError extends Error {
  constructor(
    readonly reason: 'malformed-certificate' | 'unsupported-algorithm',
    message: string,
  ) {
    super(message);
    this.name = 'ChannelBindingError';
  }
}

type HashName = 'sha224' | 'sha256' | 'sha384' | 'sha512' | 'sha512-224' | 'sha512-256';

/** Signature algorithm OID -> hash for channel binding (MD5/SHA-1 already raised to SHA-256). */
const SIGNATURE_HASH: ReadonlyMap<string, HashName> = new Map<string, HashName>([
  // PKCS #1 v1.5 RSA (RFC 8017 appendix A.2.4)
  ['1.2.840.113549.1.1.4', 'sha256'], // md5WithRSAEncryption
  ['1.2.840.113549.1.1.5', 'sha256'], // sha1WithRSAEncryption
  ['1.2.840.113549.1.1.14', 'sha224'],
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.2.840.113549.1.1.15', 'sha512-224'],
  ['1.2.840.113549.1.1.16', 'sha512-256'],
  // ECDSA (RFC 5758 §3.2, RFC 3279)
  ['1.2.840.10045.4.1', 'sha256'], // ecdsa-with-SHA1
  ['1.2.840.10045.4.3.1', 'sha224'],
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
  // DSA (RFC 3279, RFC 5758 §3.1)
  ['1.2.840.10040.4.3', 'sha256'], // dsa-with-sha1
  ['2.16.840.1.101.3.4.3.1', 'sha224'],
  ['2.16.840.1.101.3.4.3.2', 'sha256'],
]);

/** Hash algorithm OIDs as they appear inside RSASSA-PSS parameters. */
const HASH_OID: ReadonlyMap<string, HashName> = new Map<string, HashName>([
  ['1.2.840.113549.2.5', 'sha256'], // md5
  ['1.3.14.3.2.26', 'sha256'], // sha1
  ['2.16.840.1.101.3.4.2.4', 'sha224'],
  ['2.16.840.1.101.3.4.2.1', 'sha256'],
  ['2.16.840.1.101.3.4.2.2', 'sha384'],
  ['2.16.840.1.101.3.4.2.3', 'sha512'],
  ['2.16.840.1.101.3.4.2.5', 'sha512-224'],
  ['2.16.840.1.101.3.4.2.6', 'sha512-256'],
]);

const RSASSA_PSS = '1.2.840.113549.1.1.10';
const PURE_SIGNATURES = new Map([
  ['1.3.101.112', 'Ed25519'],
  ['1.3.101.113', 'Ed448'],
]);

interface Tlv {
  tag: number;
  start: number; // first content byte
  end: number; // one past the last content byte
}

function malformed(what: string): ChannelBindingError {
  return new ChannelBindingError('malformed-certificate', `malformed certificate: ${what}`);
}

/** Reads one DER TLV at `pos` that must end by `limit`. Only low-tag-number form (all X.509 needs). */
function readTlv(der: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw malformed('truncated');
  const tag = der[pos];
  if ((tag & 0x1f) === 0x1f) throw malformed('unexpected high tag number');
  let len = der[pos + 1];
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    // 0x80 is BER's indefinite length (not DER); more than 4 length bytes cannot describe a real certificate.
    if (n === 0 || n > 4 || start + n > limit) throw malformed('bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  const end = start + len;
  if (end > limit) throw malformed('length past the end');
  return { tag, start, end };
}

function expect(der: Buffer, pos: number, limit: number, tag: number, what: string): Tlv {
  const tlv = readTlv(der, pos, limit);
  if (tlv.tag !== tag) throw malformed(`expected ${what}`);
  return tlv;
}

function oidToString(der: Buffer, tlv: Tlv): string {
  if (tlv.end - tlv.start < 1 || tlv.end - tlv.start > 64) throw malformed('bad OID length');
  const arcs: number[] = [];
  let value = 0;
  let bytes = 0;
  for (let i = tlv.start; i < tlv.end; i++) {
    value = value * 128 + (der[i] & 0x7f);
    if (++bytes > 7) throw malformed('OID arc too large');
    if ((der[i] & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        arcs.push(first, value - first * 40);
      } else {
        arcs.push(value);
      }
      value = 0;
      bytes = 0;
    }
  }
  if (bytes !== 0) throw malformed('truncated OID');
  return arcs.join('.');
}

/** RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] HashAlgorithm DEFAULT sha1, ... } (RFC 4055 §3.1). */
function pssHash(der: Buffer, algId: Tlv, afterOid: number): HashName {
  if (afterOid >= algId.end) return 'sha256'; // no parameters: the defaults, SHA-1 -> SHA-256
  const params = expect(der, afterOid, algId.end, 0x30, 'RSASSA-PSS parameters');
  if (params.start >= params.end) return 'sha256';
  const first = readTlv(der, params.start, params.end);
  if (first.tag !== 0xa0) return 'sha256'; // hashAlgorithm omitted
  const hashAlg = expect(der, first.start, first.end, 0x30, 'hash AlgorithmIdentifier');
  const hashOid = oidToString(der, expect(der, hashAlg.start, hashAlg.end, 0x06, 'hash OID'));
  const hash = HASH_OID.get(hashOid);
  if (!hash) {
    throw new ChannelBindingError('unsupported-algorithm', `unsupported RSASSA-PSS hash ${hashOid}`);
  }
  return hash;
}

/**
 * The hash tls-server-end-point uses for this certificate, as a node:crypto name.
 * Throws ChannelBindingError when the DER cannot be read or the algorithm has no defined hash.
 */
export function certificateBindingHash(certDer: Buffer): HashName {
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm AlgorithmIdentifier, signature }
  const cert = expect(certDer, 0, certDer.length, 0x30, 'Certificate SEQUENCE');
  if (cert.end !== certDer.length) throw malformed('trailing bytes');
  const tbs = expect(certDer, cert.start, cert.end, 0x30, 'TBSCertificate SEQUENCE');
  const algId = expect(certDer, tbs.end, cert.end, 0x30, 'signatureAlgorithm SEQUENCE');
  const oidTlv = expect(certDer, algId.start, algId.end, 0x06, 'signature algorithm OID');
  const oid = oidToString(certDer, oidTlv);

  const hash = SIGNATURE_HASH.get(oid);
  if (hash) return hash;
  if (oid === RSASSA_PSS) return pssHash(certDer, algId, oidTlv.end);
  const pure = PURE_SIGNATURES.get(oid);
  if (pure) {
    throw new ChannelBindingError(
      'unsupported-algorithm',
      `${pure} certificates have no tls-server-end-point hash (PostgreSQL refuses channel binding with them)`,
    );
  }
  throw new ChannelBindingError(
    'unsupported-algorithm',
    `unsupported certificate signature algorithm ${oid}`,
  );
}

/** RFC 5929 §4.1 tls-server-end-point: hash of the DER certificate (see the file comment for the rules). */
export function tlsServerEndPointHash(certDer: Buffer): Buffer {
  return createHash(certificateBindingHash(certDer)).update(certDer).digest();
}

/** Same as tlsServerEndPointHash, but null instead of throwing: null means "run without channel binding". */
export function tryTlsServerEndPointHash(certDer: Buffer): Buffer | null {
  try {
    return tlsServerEndPointHash(certDer);
  } catch (err) {
    if (err instanceof ChannelBindingError) return null;
    throw err;
  }
}
