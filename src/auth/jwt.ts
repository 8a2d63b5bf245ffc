// Verifies the JWT an EHR backend asserts for the acting clinician: the backend logs in as one service user and,
// per transaction, runs `SET LOCAL pgwarden.actor = '<JWT>'`. Compact JWS only, HS256 / RS256 / EdDSA, with keys
// from configuration (a secret, a PEM public key or a JWKS document).
//
// node:crypto and not the `jose` library: jose verifies through WebCrypto, which is async only, while pgwarden
// decides each statement synchronously in the read path; node:crypto's HMAC and verify are synchronous.
//
// Hardening, after RFC 8725 (JWT best current practices):
// - the size limit is checked before anything is decoded; every part must be strict, canonical base64url, so a
//   token has exactly one spelling and any changed character changes what is verified;
// - alg comes from a fixed set ('none' and everything else refused) and must equal the key's alg, so an RSA
//   public key can never be used as an HMAC secret (the classic RS256/HS256 confusion);
// - keys come from configuration only: jwk / jku / x5u / x5c headers are ignored, crit is refused;
// - the payload is parsed only once the signature holds;
// - failure messages never quote the token or its signature: they go to logs and to the client.
// verifyJwt never throws for any token; it throws a TypeError only for options that are a programming error.
import {
  constants,
  createHmac,
  createPublicKey,
  createSecretKey,
  timingSafeEqual,
  verify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { TextDecoder } from 'node:util';

export type JwtAlgorithm = 'HS256' | 'RS256' | 'EdDSA';

/** One verification key: a secret KeyObject for HS256, a public one for RS256 (RSA) and EdDSA (Ed25519). */
export interface JwtKey {
  kid: string | null;
  alg: JwtAlgorithm;
  key: KeyObject;
}

export interface JwtVerifyOptions {
  keys: readonly JwtKey[];
  /** Accepted `iss` values (exact match); null: iss is not checked. */
  issuer: readonly string[] | null;
  /** Accepted `aud` values (the token's aud, string or array, must contain one); null: aud is not checked. */
  audience: readonly string[] | null;
  /** Tolerance for clocks that disagree, applied to exp and nbf. */
  clockSkewMs: number;
  /** Longest token accepted, checked before any decoding. */
  maxTokenBytes: number;
  /** Refuse tokens without exp (they would stay valid forever once leaked). */
  requireExp: boolean;
}

export type JwtFailure =
  | 'malformed'
  | 'too_large'
  | 'unsupported_alg'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'missing_exp';

export type JwtResult =
  | { ok: true; claims: Record<string, unknown>; header: { alg: string; kid: string | null } }
  | { ok: false; reason: JwtFailure; message: string };

/** RFC 7518 §3.2: an HS256 key at least as long as the hash output. */
export const JWT_MIN_SECRET_BYTES = 32;
/** RFC 7518 §3.3: RSA keys of 2048 bits or more. */
export const JWT_MIN_RSA_BITS = 2048;
/** A token without kid tries every key of its alg: this bounds what one token can cost. */
export const JWT_MAX_KEYS_TRIED = 8;

const ALGORITHMS: ReadonlySet<string> = new Set<JwtAlgorithm>(['HS256', 'RS256', 'EdDSA']);
const BASE64URL = /^[A-Za-z0-9_-]*$/;
/** fatal: invalid UTF-8 is malformed, not silently replaced; ignoreBOM: a BOM stays and JSON.parse refuses it. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const PRIVATE_PEM = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
/** JWK members that only a private key has: a JWKS given to a verifier must not carry them. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];

/** An HS256 key from a shared secret (a string is taken as its UTF-8 bytes). */
export function jwtKeyFromSecret(secret: Buffer | string, kid?: string): JwtKey {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  if (!Buffer.isBuffer(bytes)) throw new TypeError('HS256 secret must be a Buffer or a string');
  if (bytes.length < JWT_MIN_SECRET_BYTES) {
    throw new Error(
      `HS256 secret is ${bytes.length} bytes; at least ${JWT_MIN_SECRET_BYTES} are required (RFC 7518 §3.2)`,
    );
  }
  return { kid: checkKid(kid, 'HS256 key'), alg: 'HS256', key: createSecretKey(bytes) };
}

/** An RS256 or EdDSA key from a PEM public key (SPKI, or PKCS#1 for RSA). */
export function jwtKeyFromPem(pem: string, alg: 'RS256' | 'EdDSA', kid?: string): JwtKey {
  if (alg !== 'RS256' && alg !== 'EdDSA') throw new TypeError('PEM keys are for RS256 or EdDSA');
  if (typeof pem !== 'string') throw new TypeError(`${alg} key: the PEM must be a string`);
  // createPublicKey would quietly derive the public half of a private key; pgwarden must never hold a signing key.
  if (PRIVATE_PEM.test(pem)) {
    throw new Error(`${alg} key: a private key was given; give pgwarden only the public key`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`${alg} key: not a PEM public key`, { cause: err });
  }
  const problem = keyProblem(alg, key);
  if (problem !== null) throw new Error(`${alg} key: ${problem}`);
  return { kid: checkKid(kid, `${alg} key`), alg, key };
}

/**
 * The signing keys of a JWKS document (RFC 7517): kty RSA → RS256, kty OKP crv Ed25519 → EdDSA, kty oct → HS256.
 * Keys for another use (use != "sig", e.g. encryption keys published alongside) are skipped. Anything else — an
 * unknown kty or crv, an alg other than the one its kty gives, private key material, a weak key — throws an Error
 * naming the key, so a configuration mistake shows at load time rather than as tokens that never verify.
 */
export function jwtKeysFromJwks(json: string): JwtKey[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new Error('JWKS: not valid JSON');
  }
  if (!isJsonObject(doc) || !Array.isArray(doc.keys)) {
    throw new Error('JWKS: expected a JSON object with a "keys" array');
  }
  const keys: JwtKey[] = [];
  doc.keys.forEach((jwk: unknown, index: number) => {
    const key = keyFromJwk(jwk, index);
    if (key !== null) keys.push(key);
  });
  if (keys.length === 0) throw new Error('JWKS: no signing key (use "sig") in the document');
  return keys;
}

/** Checks a compact JWS and its claims; see the module header for the rules. */
export function verifyJwt(token: string, opts: JwtVerifyOptions, nowMs = Date.now()): JwtResult {
  checkOptions(opts, nowMs);
  if (typeof token !== 'string') return fail('malformed', 'token is not a string');
  // A string never has more characters than UTF-8 bytes, and a non-ASCII one fails the base64url check below.
  if (token.length > opts.maxTokenBytes) {
    return fail('too_large', `token is longer than ${opts.maxTokenBytes} bytes`);
  }

  const firstDot = token.indexOf('.');
  const secondDot = firstDot < 0 ? -1 : token.indexOf('.', firstDot + 1);
  if (secondDot < 0 || token.indexOf('.', secondDot + 1) >= 0) {
    return fail('malformed', 'token is not a compact JWS (three base64url parts separated by dots)');
  }
  const headerBytes = decodeBase64url(token.slice(0, firstDot));
  const payloadBytes = decodeBase64url(token.slice(firstDot + 1, secondDot));
  const signature = decodeBase64url(token.slice(secondDot + 1));
  if (headerBytes === null || headerBytes.length === 0) {
    return fail('malformed', 'token header is not strict base64url');
  }
  if (payloadBytes === null || payloadBytes.length === 0) {
    return fail('malformed', 'token payload is not strict base64url');
  }
  // An empty signature is left to the signature check, so that alg "none" is reported as such.
  if (signature === null) return fail('malformed', 'token signature is not strict base64url');

  const header = parseJsonObject(headerBytes);
  if (header === null) return fail('malformed', 'token header is not a JSON object');
  if (header.crit !== undefined) return fail('malformed', 'token header "crit" is not supported');
  const alg = header.alg;
  if (typeof alg !== 'string') return fail('malformed', 'token header has no alg');
  if (!ALGORITHMS.has(alg)) {
    return fail('unsupported_alg', `alg ${sanitize(alg)} is refused (accepted: HS256, RS256, EdDSA)`);
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') {
    return fail('malformed', 'token header kid is not a string');
  }
  const kid = header.kid === undefined ? null : header.kid;

  const candidates = candidateKeys(opts.keys, alg as JwtAlgorithm, kid);
  if (candidates.length === 0) {
    const which = kid === null ? `no ${alg} key` : `no ${alg} key with kid ${sanitize(kid)}`;
    return fail('unknown_key', `${which} is configured`);
  }
  // The signing input is the first two parts exactly as sent; they are ASCII, checked above.
  const signingInput = Buffer.from(token.slice(0, secondDot), 'latin1');
  if (!candidates.some((k) => signatureHolds(k, signingInput, signature))) {
    return fail('bad_signature', 'token signature does not verify');
  }

  const claims = parseJsonObject(payloadBytes);
  if (claims === null) return fail('malformed', 'token payload is not a JSON object');
  const claimsProblem = checkClaims(claims, opts, nowMs);
  if (claimsProblem !== null) return claimsProblem;
  return { ok: true, claims, header: { alg, kid } };
}

/** Keys of the token's alg (and kid, when it has one), at most JWT_MAX_KEYS_TRIED of them. */
function candidateKeys(keys: readonly JwtKey[], alg: JwtAlgorithm, kid: string | null): JwtKey[] {
  const candidates: JwtKey[] = [];
  for (const k of keys) {
    if (k.alg !== alg) continue;
    if (kid !== null && k.kid !== kid) continue;
    // Defence in depth for JwtKey objects built by hand: a key object of the wrong kind is never used.
    if (keyProblem(k.alg, k.key) !== null) continue;
    candidates.push(k);
    if (candidates.length === JWT_MAX_KEYS_TRIED) break;
  }
  return candidates;
}

function signatureHolds(k: JwtKey, signingInput: Buffer, signature: Buffer): boolean {
  try {
    switch (k.alg) {
      case 'HS256': {
        const mac = createHmac('sha256', k.key).update(signingInput).digest();
        return signature.length === mac.length && timingSafeEqual(mac, signature);
      }
      case 'RS256':
        return verify(
          'sha256',
          signingInput,
          { key: k.key, padding: constants.RSA_PKCS1_PADDING },
          signature,
        );
      case 'EdDSA':
        return verify(null, signingInput, k.key, signature);
    }
  } catch {
    // A signature OpenSSL cannot even parse (wrong length, bad encoding) is simply not valid.
    return false;
  }
  return false;
}

/** exp / nbf / iat types, then exp, nbf, iss and aud. Null when the claims are acceptable. */
function checkClaims(
  claims: Record<string, unknown>,
  opts: JwtVerifyOptions,
  nowMs: number,
): JwtResult | null {
  for (const name of ['exp', 'nbf', 'iat']) {
    const value = claims[name];
    if (value !== undefined && !isNumericDate(value)) {
      return fail('malformed', `claim ${name} is not a NumericDate (seconds since the epoch)`);
    }
  }
  const exp = claims.exp as number | undefined;
  if (exp === undefined) {
    if (opts.requireExp) return fail('missing_exp', 'token has no exp claim');
  } else if (nowMs >= exp * 1000 + opts.clockSkewMs) {
    // RFC 7519 §4.1.4: the current time must be before exp.
    return fail('expired', 'token has expired');
  }
  const nbf = claims.nbf as number | undefined;
  if (nbf !== undefined && nowMs < nbf * 1000 - opts.clockSkewMs) {
    return fail('not_yet_valid', 'token is not valid yet (nbf)');
  }
  if (opts.issuer !== null) {
    const iss = claims.iss;
    if (typeof iss !== 'string' || !opts.issuer.includes(iss)) {
      return fail('wrong_issuer', 'token issuer (iss) is not accepted');
    }
  }
  if (opts.audience !== null) {
    const aud = claims.aud;
    if (aud === undefined) return fail('wrong_audience', 'token has no audience (aud)');
    const audiences = typeof aud === 'string' ? [aud] : aud;
    if (!Array.isArray(audiences) || !audiences.every((a) => typeof a === 'string')) {
      return fail('malformed', 'claim aud is not a string or an array of strings');
    }
    const accepted = opts.audience;
    if (!audiences.some((a) => accepted.includes(a))) {
      return fail('wrong_audience', 'token audience (aud) is not accepted');
    }
  }
  return null;
}

function keyFromJwk(jwk: unknown, index: number): JwtKey | null {
  if (!isJsonObject(jwk)) throw new Error(`JWKS key ${index}: not a JSON object`);
  const rawKid = jwk.kid === undefined ? null : jwk.kid;
  if (rawKid !== null && (typeof rawKid !== 'string' || rawKid === '')) {
    throw new Error(`JWKS key ${index}: kid must be a non-empty string`);
  }
  const kid = rawKid as string | null;
  const where = kid === null ? `JWKS key ${index}` : `JWKS key ${index} (kid ${sanitize(kid)})`;

  if (jwk.use !== undefined) {
    if (typeof jwk.use !== 'string') throw new Error(`${where}: use must be a string`);
    // Encryption keys are often published in the same document; they are simply not ours.
    if (jwk.use !== 'sig') return null;
  }
  if (jwk.alg !== undefined && typeof jwk.alg !== 'string') throw new Error(`${where}: alg must be a string`);
  for (const member of PRIVATE_JWK_MEMBERS) {
    if (jwk[member] !== undefined) {
      throw new Error(`${where}: contains private key material ("${member}"); publish only the public key`);
    }
  }

  let alg: JwtAlgorithm;
  let key: KeyObject;
  switch (jwk.kty) {
    case 'RSA':
      alg = 'RS256';
      key = importPublicJwk(
        { kty: 'RSA', n: b64Member(jwk, 'n', where), e: b64Member(jwk, 'e', where) },
        where,
      );
      break;
    case 'OKP':
      if (jwk.crv !== 'Ed25519') {
        throw new Error(`${where}: unsupported OKP curve ${sanitize(String(jwk.crv))} (supported: Ed25519)`);
      }
      alg = 'EdDSA';
      key = importPublicJwk({ kty: 'OKP', crv: 'Ed25519', x: b64Member(jwk, 'x', where) }, where);
      break;
    case 'oct': {
      alg = 'HS256';
      const secret = decodeBase64url(b64Member(jwk, 'k', where));
      if (secret === null) throw new Error(`${where}: k is not strict base64url`);
      if (secret.length < JWT_MIN_SECRET_BYTES) {
        throw new Error(
          `${where}: HS256 secret is ${secret.length} bytes; at least ${JWT_MIN_SECRET_BYTES} are required`,
        );
      }
      key = createSecretKey(secret);
      break;
    }
    default:
      throw new Error(
        `${where}: unsupported kty ${sanitize(String(jwk.kty))} (supported: RSA, OKP with crv Ed25519, oct)`,
      );
  }
  // A key published for another algorithm must not be used for ours; a JWKS that says so is a configuration error.
  if (jwk.alg !== undefined && jwk.alg !== alg) {
    throw new Error(
      `${where}: alg ${sanitize(jwk.alg as string)} is not supported for kty ${jwk.kty} (expected ${alg})`,
    );
  }
  const problem = keyProblem(alg, key);
  if (problem !== null) throw new Error(`${where}: ${problem}`);
  return { kid, alg, key };
}

function b64Member(jwk: Record<string, unknown>, member: string, where: string): string {
  const value = jwk[member];
  if (typeof value !== 'string' || value === '' || !BASE64URL.test(value)) {
    throw new Error(`${where}: member "${member}" must be a base64url string`);
  }
  return value;
}

function importPublicJwk(jwk: JsonWebKey, where: string): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new Error(`${where}: not a valid ${jwk.kty} public key`, { cause: err });
  }
}

/** Why `key` cannot serve `alg`, or null when it can. */
function keyProblem(alg: JwtAlgorithm, key: KeyObject): string | null {
  if (alg === 'HS256') {
    if (key.type !== 'secret') return `HS256 needs a secret key, not a ${key.type} key`;
    const bytes = key.symmetricKeySize ?? 0;
    return bytes >= JWT_MIN_SECRET_BYTES
      ? null
      : `HS256 secret is ${bytes} bytes; at least ${JWT_MIN_SECRET_BYTES} are required`;
  }
  if (key.type !== 'public') return `${alg} needs a public key, not a ${key.type} key`;
  if (alg === 'RS256') {
    if (key.asymmetricKeyType !== 'rsa') return `RS256 needs an RSA key, not ${key.asymmetricKeyType}`;
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return bits >= JWT_MIN_RSA_BITS
      ? null
      : `RSA key is ${bits} bits; at least ${JWT_MIN_RSA_BITS} are required`;
  }
  return key.asymmetricKeyType === 'ed25519'
    ? null
    : `EdDSA needs an Ed25519 key, not ${key.asymmetricKeyType}`;
}

function checkKid(kid: string | undefined, what: string): string | null {
  if (kid === undefined) return null;
  if (typeof kid !== 'string' || kid === '') throw new TypeError(`${what}: kid must be a non-empty string`);
  return kid;
}

function checkOptions(opts: JwtVerifyOptions, nowMs: number): void {
  if (!Array.isArray(opts.keys)) throw new TypeError('verifyJwt: keys must be an array');
  if (!Number.isSafeInteger(opts.maxTokenBytes) || opts.maxTokenBytes <= 0) {
    throw new TypeError('verifyJwt: maxTokenBytes must be a positive integer');
  }
  if (!Number.isFinite(opts.clockSkewMs) || opts.clockSkewMs < 0) {
    throw new TypeError('verifyJwt: clockSkewMs must be a finite number >= 0');
  }
  if (!Number.isFinite(nowMs)) throw new TypeError('verifyJwt: nowMs must be a finite number');
}

/**
 * Strict base64url (RFC 7515 §2): the URL-safe alphabet only, no padding, and canonical — the unused low bits of
 * the last character must be zero — checked by re-encoding. Node's decoder alone would accept '+', '/', '=' and
 * non-canonical endings. Null when the text is not strict base64url.
 */
function decodeBase64url(text: string): Buffer | null {
  if (!BASE64URL.test(text)) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}

function parseJsonObject(bytes: Buffer): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(bytes));
  } catch {
    return null;
  }
  return isJsonObject(value) ? value : null;
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** NumericDate (RFC 7519 §2): JSON number of seconds. JSON.parse turns 1e999 into Infinity, hence isFinite. */
function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** For messages: header values are attacker-chosen, so printable ASCII only, at most 32 characters, quoted. */
function sanitize(text: string): string {
  const head = text.slice(0, 32).replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(head + (text.length > 32 ? '...' : ''));
}

function fail(reason: JwtFailure, message: string): JwtResult {
  return { ok: false, reason, message };
}
