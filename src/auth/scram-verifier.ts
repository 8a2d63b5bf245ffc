// SCRAM-SHA-256 key math (RFC 5802 §3, RFC 7677) and PostgreSQL's stored verifier format.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { preparePassword } from './saslprep.js';

/** What a server stores for a SCRAM-SHA-256 user: never the password, only what proves knowledge of it. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** SHA-256 output size; StoredKey, ServerKey, proofs and signatures all have this length. */
export const SCRAM_KEY_LEN = 32;
/** PostgreSQL's defaults (SCRAM_DEFAULT_ITERATIONS, SCRAM_DEFAULT_SALT_LEN). */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_DEFAULT_SALT_LEN = 16;
/** PostgreSQL keeps iterations in a C int. */
const MAX_ITERATIONS = 0x7fffffff;

// Strict RFC 4648 base64 with padding, the `base64` production of RFC 5802. Buffer.from(s, 'base64') alone
// silently skips invalid characters, which would let garbage through.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes strict base64; null when the text is not base64. */
export function decodeBase64(text: string): Buffer | null {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : null;
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function sha256(data: Buffer | string): Buffer {
  return createHash('sha256').update(data).digest();
}

/** ClientKey := HMAC(SaltedPassword, "Client Key") */
export function clientKeyOf(salted: Buffer): Buffer {
  return hmacSha256(salted, 'Client Key');
}

/** ServerKey := HMAC(SaltedPassword, "Server Key") */
export function serverKeyOf(salted: Buffer): Buffer {
  return hmacSha256(salted, 'Server Key');
}

/** a XOR b for equal-length buffers (proof = ClientKey XOR ClientSignature, and back). */
export function xorBuffers(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/**
 * Parses PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
 * Stricter than PostgreSQL's strtol/strtok parse: a plain positive decimal count, canonical base64, keys of
 * exactly 32 bytes, a non-empty salt. Returns null for anything else, never throws.
 */
export function parseScramVerifier(text: string): ScramVerifier | null {
  if (typeof text !== 'string') return null;
  const m = /^SCRAM-SHA-256\$([1-9][0-9]{0,9}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (iterations > MAX_ITERATIONS) return null;
  const salt = decodeBase64(m[2]);
  const storedKey = decodeBase64(m[3]);
  const serverKey = decodeBase64(m[4]);
  if (!salt || salt.length === 0) return null;
  if (!storedKey || storedKey.length !== SCRAM_KEY_LEN) return null;
  if (!serverKey || serverKey.length !== SCRAM_KEY_LEN) return null;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramVerifier(v: ScramVerifier): string {
  return (
    `SCRAM-SHA-256$${v.iterations}:${v.salt.toString('base64')}` +
    `$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`
  );
}

/** Builds the verifier for a password; the result is what `pgwarden passwd` prints and PostgreSQL accepts. */
export function generateScramVerifier(
  password: string,
  options?: { iterations?: number; salt?: Buffer },
): string {
  const iterations = options?.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  const salt = options?.salt ?? randomBytes(SCRAM_DEFAULT_SALT_LEN);
  const salted = saltedPassword(password, salt, iterations);
  return formatScramVerifier({
    iterations,
    salt: Buffer.from(salt),
    storedKey: sha256(clientKeyOf(salted)),
    serverKey: serverKeyOf(salted),
  });
}

// --- SaltedPassword with a small LRU -------------------------------------------------------------------
//
// pgwarden logs into PostgreSQL with the same brokered password again and again, and PostgreSQL sends the
// same salt and iteration count every time, so only the first login should pay the PBKDF2 cost (4096
// rounds ≈ milliseconds of CPU on the event loop). The cache key is an HMAC under a per-process random key
// over (password, salt, iterations): the cleartext never sits in the map, and unlike a bare sha256(password)
// the key cannot be brute-forced offline from a memory dump without that secret as well.

const CACHE_LIMIT = 64;
const cacheKeySecret = randomBytes(32);
const saltedCache = new Map<string, Buffer>();

function cacheKey(prepared: Buffer, salt: Buffer, iterations: number): string {
  const len = Buffer.allocUnsafe(8);
  len.writeUInt32BE(prepared.length, 0);
  len.writeUInt32BE(iterations, 4);
  // Length-prefixing the password keeps (password, salt) pairs from colliding by shifting bytes across.
  return createHmac('sha256', cacheKeySecret).update(len).update(prepared).update(salt).digest('base64');
}

/**
 * SaltedPassword := Hi(Normalize(password), salt, i) = PBKDF2-HMAC-SHA-256, 32 bytes. Normalize is
 * PostgreSQL's SASLprep (raw bytes when SASLprep fails). Results are cached (bounded LRU, see above);
 * every call returns its own copy, so callers may wipe it.
 */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
    throw new RangeError('SCRAM iteration count must be an integer between 1 and 2^31-1');
  }
  const prepared = preparePassword(password);
  const key = cacheKey(prepared, salt, iterations);
  const hit = saltedCache.get(key);
  if (hit) {
    // Re-insert to mark as most recently used (Map iterates in insertion order).
    saltedCache.delete(key);
    saltedCache.set(key, hit);
    return Buffer.from(hit);
  }
  const salted = pbkdf2Sync(prepared, salt, iterations, SCRAM_KEY_LEN, 'sha256');
  prepared.fill(0);
  saltedCache.set(key, salted);
  if (saltedCache.size > CACHE_LIMIT) {
    const oldest = saltedCache.keys().next().value as string;
    saltedCache.get(oldest)?.fill(0);
    saltedCache.delete(oldest);
  }
  return Buffer.from(salted);
}

/** Test hook: how many derivations are cached (the cache itself stays private). */
export function saltedPasswordCacheSize(): number {
  return saltedCache.size;
}
