// JWT verification: keys from secrets, PEM and JWKS; every failure reason; alg confusion; tampering (property).
import {
  createHmac,
  generateKeyPairSync,
  randomBytes,
  sign as cryptoSign,
  type KeyObject,
} from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  JWT_MAX_KEYS_TRIED,
  jwtKeyFromPem,
  jwtKeyFromSecret,
  jwtKeysFromJwks,
  verifyJwt,
  type JwtKey,
  type JwtResult,
  type JwtVerifyOptions,
} from '../../src/auth/jwt.js';

// Keys generated once per file: RSA generation takes a moment.
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed = generateKeyPairSync('ed25519');
const edOther = generateKeyPairSync('ed25519');
const hsSecret = randomBytes(32);

const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
const edPublicPem = ed.publicKey.export({ type: 'spki', format: 'pem' }) as string;

const NOW = 1_750_000_000_000; // ms; NOW_S in seconds
const NOW_S = NOW / 1000;

type Signer = (input: Buffer) => Buffer;
const hs256 =
  (secret: Buffer | string): Signer =>
  (input) =>
    createHmac('sha256', secret).update(input).digest();
const rs256 =
  (privateKey: KeyObject): Signer =>
  (input) =>
    cryptoSign('sha256', input, privateKey);
const eddsa =
  (privateKey: KeyObject): Signer =>
  (input) =>
    cryptoSign(null, input, privateKey);

const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Test-only signer: a compact JWS over whatever header and payload it is given. */
function signToken(header: unknown, payload: unknown, signer: Signer): string {
  const input = `${part(header)}.${part(payload)}`;
  return `${input}.${signer(Buffer.from(input, 'latin1')).toString('base64url')}`;
}

/** Same, with raw (already encoded) header and payload parts. */
function signRaw(headerPart: string, payloadPart: string, signer: Signer): string {
  const input = `${headerPart}.${payloadPart}`;
  return `${input}.${signer(Buffer.from(input, 'latin1')).toString('base64url')}`;
}

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: 'dr.house',
  iss: 'https://idp.example',
  aud: 'pgwarden',
  exp: NOW_S + 300,
  ...extra,
});

const hsKey = jwtKeyFromSecret(hsSecret, 'hs1');
const rsKey = jwtKeyFromPem(rsaPublicPem, 'RS256', 'rs1');
const edKey = jwtKeyFromPem(edPublicPem, 'EdDSA', 'ed1');

function options(extra: Partial<JwtVerifyOptions> = {}): JwtVerifyOptions {
  return {
    keys: [hsKey, rsKey, edKey],
    issuer: ['https://idp.example'],
    audience: ['pgwarden'],
    clockSkewMs: 0,
    maxTokenBytes: 8192,
    requireExp: true,
    ...extra,
  };
}

function reasonOf(result: JwtResult): string {
  return result.ok ? 'ok' : result.reason;
}

describe('verifyJwt accepts', () => {
  it('an HS256 token and returns its claims and header', () => {
    const token = signToken({ alg: 'HS256', typ: 'JWT', kid: 'hs1' }, claims(), hs256(hsSecret));
    const result = verifyJwt(token, options(), NOW);
    expect(result).toEqual({ ok: true, claims: claims(), header: { alg: 'HS256', kid: 'hs1' } });
  });

  it('an RS256 token', () => {
    const token = signToken({ alg: 'RS256', kid: 'rs1' }, claims(), rs256(rsa.privateKey));
    expect(verifyJwt(token, options(), NOW)).toMatchObject({
      ok: true,
      header: { alg: 'RS256', kid: 'rs1' },
    });
  });

  it('an EdDSA (Ed25519) token', () => {
    const token = signToken({ alg: 'EdDSA', kid: 'ed1' }, claims(), eddsa(ed.privateKey));
    expect(verifyJwt(token, options(), NOW)).toMatchObject({
      ok: true,
      header: { alg: 'EdDSA', kid: 'ed1' },
    });
  });

  it('a token without kid, trying the keys of its alg', () => {
    const keys = [
      jwtKeyFromPem(rsaOther.publicKey.export({ type: 'spki', format: 'pem' }) as string, 'RS256'),
      rsKey,
    ];
    const token = signToken({ alg: 'RS256' }, claims(), rs256(rsa.privateKey));
    expect(verifyJwt(token, options({ keys }), NOW)).toMatchObject({ ok: true, header: { kid: null } });
  });

  it('a token without exp when exp is not required', () => {
    const token = signToken({ alg: 'HS256' }, claims({ exp: undefined }), hs256(hsSecret));
    expect(verifyJwt(token, options({ requireExp: false }), NOW).ok).toBe(true);
  });

  it('any iss and aud when neither is configured', () => {
    const token = signToken({ alg: 'HS256' }, claims({ iss: 'someone', aud: 42 }), hs256(hsSecret));
    expect(verifyJwt(token, options({ issuer: null, audience: null }), NOW).ok).toBe(true);
  });

  it('ignores a jwk header: keys come only from configuration', () => {
    const attacker = generateKeyPairSync('ed25519');
    const jwk = attacker.publicKey.export({ format: 'jwk' });
    const token = signToken({ alg: 'EdDSA', jwk }, claims(), eddsa(attacker.privateKey));
    expect(reasonOf(verifyJwt(token, options(), NOW))).toBe('bad_signature');
  });
});

describe('verifyJwt refuses', () => {
  const good = (): string => signToken({ alg: 'HS256', kid: 'hs1' }, claims(), hs256(hsSecret));

  it('too_large: a token over maxTokenBytes, before decoding it', () => {
    const token = good();
    expect(verifyJwt(token, options({ maxTokenBytes: token.length }), NOW).ok).toBe(true);
    expect(reasonOf(verifyJwt(token, options({ maxTokenBytes: token.length - 1 }), NOW))).toBe('too_large');
    expect(reasonOf(verifyJwt('%'.repeat(100), options({ maxTokenBytes: 10 }), NOW))).toBe('too_large');
  });

  it.each([
    ['no dots', 'abc'],
    ['two parts', 'eyJhbGciOiJIUzI1NiJ9.e30'],
    ['four parts', `${'a'.repeat(4)}.b.c.d`],
    ['empty token', ''],
    ['empty header', '.e30.AAAA'],
    ['empty payload', 'eyJhbGciOiJIUzI1NiJ9..AAAA'],
  ])('malformed: %s', (_name, token) => {
    expect(reasonOf(verifyJwt(token, options(), NOW))).toBe('malformed');
  });

  it('malformed: padding, standard base64 characters, whitespace and non-canonical endings', () => {
    const token = good();
    const [h, p, s] = token.split('.');
    const variants = [
      `${h}=.${p}.${s}`, // padding
      `${h}.${p}.${s}=`,
      `${h}.${p}.${s}+/`, // the standard alphabet
      ` ${token}`,
      `${token}\n`,
      `${h}.${p}.${s}\u00e9`,
    ];
    for (const variant of variants) {
      expect(reasonOf(verifyJwt(variant, options(), NOW)), JSON.stringify(variant.slice(-4))).toBe(
        'malformed',
      );
    }
    // The last character of a 32-byte signature carries 4 bits and 2 unused ones, zero when canonical. Setting an
    // unused bit yields the same bytes from Node's decoder; it is still a different token and must be refused.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = `${h}.${p}.${s.slice(0, -1)}${alphabet[alphabet.indexOf(s[s.length - 1]) | 1]}`;
    expect(Buffer.from(sibling.split('.')[2], 'base64url')).toEqual(Buffer.from(s, 'base64url'));
    expect(reasonOf(verifyJwt(sibling, options(), NOW))).toBe('malformed');
  });

  it('malformed: header or payload that is not a JSON object, or not UTF-8', () => {
    const sign = (h: string, p: string): string => signRaw(h, p, hs256(hsSecret));
    const okPayload = part(claims());
    const header = part({ alg: 'HS256' });
    expect(reasonOf(verifyJwt(sign(part([1, 2]), okPayload), options(), NOW))).toBe('malformed');
    expect(reasonOf(verifyJwt(sign(part('HS256'), okPayload), options(), NOW))).toBe('malformed');
    expect(reasonOf(verifyJwt(sign(part(null), okPayload), options(), NOW))).toBe('malformed');
    expect(
      reasonOf(verifyJwt(sign(Buffer.from('{"alg":').toString('base64url'), okPayload), options(), NOW)),
    ).toBe('malformed');
    const bomHeader = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"alg":"HS256"}')]);
    expect(reasonOf(verifyJwt(sign(bomHeader.toString('base64url'), okPayload), options(), NOW))).toBe(
      'malformed',
    );
    const badUtf8 = Buffer.from('{"alg":"HS256","x":"\xff"}', 'latin1').toString('base64url');
    expect(reasonOf(verifyJwt(sign(badUtf8, okPayload), options(), NOW))).toBe('malformed');
    // Payload problems are found once the signature holds.
    expect(reasonOf(verifyJwt(sign(header, part([claims()])), options(), NOW))).toBe('malformed');
    expect(reasonOf(verifyJwt(sign(header, part('text')), options(), NOW))).toBe('malformed');
  });

  it('malformed: a header without alg, a non-string kid, or crit', () => {
    const signer = hs256(hsSecret);
    expect(reasonOf(verifyJwt(signToken({ typ: 'JWT' }, claims(), signer), options(), NOW))).toBe(
      'malformed',
    );
    expect(reasonOf(verifyJwt(signToken({ alg: 7 }, claims(), signer), options(), NOW))).toBe('malformed');
    expect(
      reasonOf(verifyJwt(signToken({ alg: 'HS256', kid: null }, claims(), signer), options(), NOW)),
    ).toBe('malformed');
    expect(reasonOf(verifyJwt(signToken({ alg: 'HS256', kid: 1 }, claims(), signer), options(), NOW))).toBe(
      'malformed',
    );
    const crit = signToken({ alg: 'HS256', crit: ['b64'], b64: false }, claims(), signer);
    expect(verifyJwt(crit, options(), NOW)).toMatchObject({
      ok: false,
      reason: 'malformed',
      message: /crit/,
    });
  });

  it('malformed: exp, nbf or iat that are not NumericDates', () => {
    const signer = hs256(hsSecret);
    for (const bad of [{ exp: '1750000300' }, { nbf: null }, { iat: true }, { exp: [NOW_S + 300] }]) {
      const token = signToken({ alg: 'HS256' }, claims(bad), signer);
      expect(reasonOf(verifyJwt(token, options(), NOW)), JSON.stringify(bad)).toBe('malformed');
    }
    // 1e999 is valid JSON that parses to Infinity.
    const infinite = signRaw(
      part({ alg: 'HS256' }),
      Buffer.from('{"sub":"x","exp":1e999}').toString('base64url'),
      signer,
    );
    expect(reasonOf(verifyJwt(infinite, options({ issuer: null, audience: null }), NOW))).toBe('malformed');
  });

  it('unsupported_alg: none, in any spelling, with or without a signature', () => {
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${part({ alg })}.${part(claims())}.`;
      expect(reasonOf(verifyJwt(unsigned, options(), NOW))).toBe('unsupported_alg');
      const withSig = signToken({ alg }, claims(), hs256(hsSecret));
      expect(reasonOf(verifyJwt(withSig, options(), NOW))).toBe('unsupported_alg');
    }
  });

  it('unsupported_alg: algorithms outside HS256, RS256, EdDSA', () => {
    for (const alg of ['HS512', 'RS512', 'PS256', 'ES256', 'hs256', 'Ed25519', '']) {
      const token = signToken({ alg }, claims(), hs256(hsSecret));
      const result = verifyJwt(token, options(), NOW);
      expect(reasonOf(result), alg).toBe('unsupported_alg');
    }
  });

  it('alg confusion: an HS256 token signed with the RSA public key PEM as the secret', () => {
    const forged = signToken({ alg: 'HS256' }, claims(), hs256(rsaPublicPem));
    expect(reasonOf(verifyJwt(forged, options({ keys: [rsKey] }), NOW))).toBe('unknown_key');
    const forgedWithKid = signToken({ alg: 'HS256', kid: 'rs1' }, claims(), hs256(rsaPublicPem));
    expect(reasonOf(verifyJwt(forgedWithKid, options({ keys: [rsKey] }), NOW))).toBe('unknown_key');
    // Even a hand-built JwtKey pairing HS256 with the RSA public key is never used as an HMAC key.
    const confused: JwtKey = { kid: null, alg: 'HS256', key: rsa.publicKey };
    expect(reasonOf(verifyJwt(forged, options({ keys: [confused] }), NOW))).toBe('unknown_key');
  });

  it('alg confusion: a token whose alg differs from the key with its kid', () => {
    const token = signToken({ alg: 'EdDSA', kid: 'rs1' }, claims(), eddsa(ed.privateKey));
    expect(reasonOf(verifyJwt(token, options(), NOW))).toBe('unknown_key');
  });

  it('unknown_key: a kid no key has, and a key without kid is not a match for a kid', () => {
    const token = signToken({ alg: 'HS256', kid: 'other' }, claims(), hs256(hsSecret));
    const result = verifyJwt(token, options(), NOW);
    expect(result).toMatchObject({ ok: false, reason: 'unknown_key', message: /"other"/ });
    const noKid = jwtKeyFromSecret(hsSecret);
    expect(reasonOf(verifyJwt(token, options({ keys: [noKid] }), NOW))).toBe('unknown_key');
    expect(reasonOf(verifyJwt(token, options({ keys: [] }), NOW))).toBe('unknown_key');
  });

  it('kid selection: only the key with the token kid is tried', () => {
    const a = jwtKeyFromSecret(randomBytes(32), 'a');
    const bSecret = randomBytes(32);
    const b = jwtKeyFromSecret(bSecret, 'b');
    const signedWithB = (kid: string): string => signToken({ alg: 'HS256', kid }, claims(), hs256(bSecret));
    expect(verifyJwt(signedWithB('b'), options({ keys: [a, b] }), NOW).ok).toBe(true);
    // Signed with b's secret but naming a: a is the only candidate, so the signature fails.
    expect(reasonOf(verifyJwt(signedWithB('a'), options({ keys: [a, b] }), NOW))).toBe('bad_signature');
  });

  it(`without kid, at most ${JWT_MAX_KEYS_TRIED} keys are tried`, () => {
    const secret = randomBytes(32);
    const decoys = Array.from({ length: JWT_MAX_KEYS_TRIED }, () => jwtKeyFromSecret(randomBytes(32)));
    const token = signToken({ alg: 'HS256' }, claims(), hs256(secret));
    const last = jwtKeyFromSecret(secret);
    expect(verifyJwt(token, options({ keys: [...decoys.slice(1), last] }), NOW).ok).toBe(true);
    expect(reasonOf(verifyJwt(token, options({ keys: [...decoys, last] }), NOW))).toBe('bad_signature');
  });

  it('bad_signature: wrong key, tampered payload, truncated or empty signature', () => {
    const other = signToken({ alg: 'EdDSA', kid: 'ed1' }, claims(), eddsa(edOther.privateKey));
    expect(reasonOf(verifyJwt(other, options(), NOW))).toBe('bad_signature');
    const rsWrong = signToken({ alg: 'RS256', kid: 'rs1' }, claims(), rs256(rsaOther.privateKey));
    expect(reasonOf(verifyJwt(rsWrong, options(), NOW))).toBe('bad_signature');

    const [h, , s] = good().split('.');
    const tampered = `${h}.${part(claims({ sub: 'dr.cuddy' }))}.${s}`;
    expect(reasonOf(verifyJwt(tampered, options(), NOW))).toBe('bad_signature');
    const [h2, p2, s2] = good().split('.');
    expect(reasonOf(verifyJwt(`${h2}.${p2}.${s2.slice(0, 40)}`, options(), NOW))).toBe('bad_signature');
    expect(reasonOf(verifyJwt(`${h2}.${p2}.`, options(), NOW))).toBe('bad_signature');
    const rs = signToken({ alg: 'RS256', kid: 'rs1' }, claims(), rs256(rsa.privateKey)).split('.');
    expect(reasonOf(verifyJwt(`${rs[0]}.${rs[1]}.AAAA`, options(), NOW))).toBe('bad_signature');
  });

  it('expired and not_yet_valid, at the exact edges, with and without clock skew', () => {
    const signer = hs256(hsSecret);
    const exp = NOW_S + 10;
    const expiring = signToken({ alg: 'HS256' }, claims({ exp }), signer);
    expect(verifyJwt(expiring, options(), exp * 1000 - 1).ok).toBe(true);
    expect(reasonOf(verifyJwt(expiring, options(), exp * 1000))).toBe('expired');
    expect(verifyJwt(expiring, options({ clockSkewMs: 5000 }), exp * 1000 + 4999).ok).toBe(true);
    expect(reasonOf(verifyJwt(expiring, options({ clockSkewMs: 5000 }), exp * 1000 + 5000))).toBe('expired');

    const nbf = NOW_S + 60;
    const early = signToken({ alg: 'HS256' }, claims({ nbf, exp: NOW_S + 600 }), signer);
    expect(reasonOf(verifyJwt(early, options(), nbf * 1000 - 1))).toBe('not_yet_valid');
    expect(verifyJwt(early, options(), nbf * 1000).ok).toBe(true);
    expect(verifyJwt(early, options({ clockSkewMs: 5000 }), nbf * 1000 - 5000).ok).toBe(true);
    expect(reasonOf(verifyJwt(early, options({ clockSkewMs: 5000 }), nbf * 1000 - 5001))).toBe(
      'not_yet_valid',
    );

    // Fractional NumericDates are allowed (RFC 7519 §2).
    const fractional = signToken({ alg: 'HS256' }, claims({ exp: NOW_S + 0.5 }), signer);
    expect(verifyJwt(fractional, options(), NOW + 499).ok).toBe(true);
    expect(reasonOf(verifyJwt(fractional, options(), NOW + 500))).toBe('expired');
  });

  it('missing_exp when exp is required', () => {
    const token = signToken({ alg: 'HS256' }, claims({ exp: undefined }), hs256(hsSecret));
    expect(reasonOf(verifyJwt(token, options(), NOW))).toBe('missing_exp');
  });

  it('wrong_issuer: another, a missing or a non-string iss; exact match only', () => {
    const signer = hs256(hsSecret);
    for (const iss of ['https://evil.example', 'https://idp.example/', 'HTTPS://IDP.EXAMPLE', undefined, 5]) {
      const token = signToken({ alg: 'HS256' }, claims({ iss }), signer);
      expect(reasonOf(verifyJwt(token, options(), NOW)), String(iss)).toBe('wrong_issuer');
    }
    const second = signToken({ alg: 'HS256' }, claims({ iss: 'https://second.example' }), signer);
    expect(
      verifyJwt(second, options({ issuer: ['https://idp.example', 'https://second.example'] }), NOW).ok,
    ).toBe(true);
    expect(reasonOf(verifyJwt(second, options({ issuer: [] }), NOW))).toBe('wrong_issuer');
  });

  it('aud as a string or an array: any match accepted, none refused', () => {
    const signer = hs256(hsSecret);
    const verdict = (aud: unknown, audience: string[] = ['pgwarden']): string =>
      reasonOf(verifyJwt(signToken({ alg: 'HS256' }, claims({ aud }), signer), options({ audience }), NOW));
    expect(verdict('pgwarden')).toBe('ok');
    expect(verdict(['billing', 'pgwarden'])).toBe('ok');
    expect(verdict('billing', ['billing', 'pgwarden'])).toBe('ok');
    expect(verdict('billing')).toBe('wrong_audience');
    expect(verdict(['billing', 'reports'])).toBe('wrong_audience');
    expect(verdict([])).toBe('wrong_audience');
    expect(verdict(undefined)).toBe('wrong_audience');
    expect(verdict('pgwarden ')).toBe('wrong_audience');
    expect(verdict(7)).toBe('malformed');
    expect(verdict(['pgwarden', 7])).toBe('malformed');
  });

  it('never quotes the token or its signature in messages', () => {
    const signer = hs256(hsSecret);
    const cases = [
      signToken({ alg: 'HS256', kid: 'hs1' }, claims({ exp: NOW_S - 1 }), signer),
      signToken({ alg: 'HS256', kid: 'nope' }, claims(), signer),
      signToken({ alg: 'HS256' }, claims({ aud: 'x' }), hs256(randomBytes(32))),
      signToken({ alg: 'none' }, claims(), signer),
    ];
    for (const token of cases) {
      const result = verifyJwt(token, options(), NOW);
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      for (const piece of token.split('.')) expect(result.message).not.toContain(piece);
    }
  });

  it('throws a TypeError only for options that are a programming error', () => {
    const token = good();
    expect(() => verifyJwt(token, options({ maxTokenBytes: 0 }), NOW)).toThrow(TypeError);
    expect(() => verifyJwt(token, options({ clockSkewMs: -1 }), NOW)).toThrow(TypeError);
    expect(() => verifyJwt(token, options(), Number.NaN)).toThrow(TypeError);
    expect(verifyJwt(undefined as unknown as string, options(), NOW)).toMatchObject({
      ok: false,
      reason: 'malformed',
    });
  });
});

describe('verifyJwt properties', () => {
  const valid: Array<[string, string]> = [
    ['HS256', signToken({ alg: 'HS256', kid: 'hs1' }, claims(), hs256(hsSecret))],
    ['RS256', signToken({ alg: 'RS256', kid: 'rs1' }, claims(), rs256(rsa.privateKey))],
    ['EdDSA', signToken({ alg: 'EdDSA' }, claims(), eddsa(ed.privateKey))],
  ];

  it.each(valid)('any single-byte change in a valid %s token makes it fail', (_alg, token) => {
    expect(verifyJwt(token, options(), NOW).ok).toBe(true);
    fc.assert(
      fc.property(fc.nat({ max: token.length - 1 }), fc.integer({ min: 0, max: 255 }), (index, code) => {
        fc.pre(code !== token.charCodeAt(index));
        const changed = token.slice(0, index) + String.fromCharCode(code) + token.slice(index + 1);
        expect(verifyJwt(changed, options(), NOW).ok).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws and never accepts arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc
            .tuple(fc.base64String(), fc.base64String(), fc.base64String())
            .map((parts) => parts.join('.').replace(/=/g, '')),
        ),
        (token) => {
          expect(verifyJwt(token, options(), NOW).ok).toBe(false);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('jwtKeyFromSecret and jwtKeyFromPem', () => {
  it('refuses HS256 secrets shorter than 32 bytes, counting UTF-8 bytes', () => {
    expect(() => jwtKeyFromSecret(randomBytes(31))).toThrow(/31 bytes; at least 32/);
    expect(() => jwtKeyFromSecret('x'.repeat(31))).toThrow(/at least 32/);
    expect(jwtKeyFromSecret('é'.repeat(16)).key.symmetricKeySize).toBe(32);
    expect(jwtKeyFromSecret(randomBytes(32), 'k')).toMatchObject({ alg: 'HS256', kid: 'k' });
    expect(() => jwtKeyFromSecret(randomBytes(32), '')).toThrow(/kid/);
  });

  it('refuses a key type that does not match the alg', () => {
    expect(() => jwtKeyFromPem(edPublicPem, 'RS256')).toThrow(/RS256 needs an RSA key/);
    expect(() => jwtKeyFromPem(rsaPublicPem, 'EdDSA')).toThrow(/EdDSA needs an Ed25519 key/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() =>
      jwtKeyFromPem(ec.publicKey.export({ type: 'spki', format: 'pem' }) as string, 'RS256'),
    ).toThrow(/RSA/);
  });

  it('refuses RSA keys under 2048 bits, private keys and garbage', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() =>
      jwtKeyFromPem(small.publicKey.export({ type: 'spki', format: 'pem' }) as string, 'RS256'),
    ).toThrow(/1024 bits; at least 2048/);
    const privatePem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(() => jwtKeyFromPem(privatePem, 'RS256')).toThrow(/private key/);
    const pkcs1Private = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    expect(() => jwtKeyFromPem(pkcs1Private, 'RS256')).toThrow(/private key/);
    expect(() => jwtKeyFromPem('not a pem', 'EdDSA')).toThrow(/not a PEM public key/);
  });

  it('accepts PKCS#1 RSA public keys', () => {
    const pkcs1 = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    const key = jwtKeyFromPem(pkcs1, 'RS256');
    const token = signToken({ alg: 'RS256' }, claims(), rs256(rsa.privateKey));
    expect(verifyJwt(token, options({ keys: [key] }), NOW).ok).toBe(true);
  });
});

describe('jwtKeysFromJwks', () => {
  const rsaJwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' };
  const edJwk = { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1' };
  const octSecret = randomBytes(32);
  const octJwk = { kty: 'oct', k: octSecret.toString('base64url'), kid: 'oct-1', alg: 'HS256' };
  const encJwk = {
    ...rsaOther.publicKey.export({ format: 'jwk' }),
    kid: 'enc-1',
    use: 'enc',
    alg: 'RSA-OAEP',
  };
  const jwks = (...keys: unknown[]): string => JSON.stringify({ keys });

  it('reads RSA, OKP Ed25519 and oct keys, skipping use=enc, and the keys verify tokens', () => {
    const keys = jwtKeysFromJwks(jwks(rsaJwk, encJwk, edJwk, octJwk));
    expect(keys.map((k) => [k.kid, k.alg])).toEqual([
      ['rsa-1', 'RS256'],
      ['ed-1', 'EdDSA'],
      ['oct-1', 'HS256'],
    ]);
    const opts = options({ keys });
    expect(
      verifyJwt(signToken({ alg: 'RS256', kid: 'rsa-1' }, claims(), rs256(rsa.privateKey)), opts, NOW).ok,
    ).toBe(true);
    expect(
      verifyJwt(signToken({ alg: 'EdDSA', kid: 'ed-1' }, claims(), eddsa(ed.privateKey)), opts, NOW).ok,
    ).toBe(true);
    expect(
      verifyJwt(signToken({ alg: 'HS256', kid: 'oct-1' }, claims(), hs256(octSecret)), opts, NOW).ok,
    ).toBe(true);
    // The encryption key is not there to verify with.
    const withEnc = signToken({ alg: 'RS256', kid: 'enc-1' }, claims(), rs256(rsaOther.privateKey));
    expect(reasonOf(verifyJwt(withEnc, opts, NOW))).toBe('unknown_key');
  });

  it('keys without kid have kid null', () => {
    const { kid: _kid, ...anonymous } = edJwk;
    expect(jwtKeysFromJwks(jwks(anonymous))).toMatchObject([{ kid: null, alg: 'EdDSA' }]);
  });

  it('rejects an unknown kty or curve, naming the key by index and kid', () => {
    const ecJwk = {
      ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }),
      kid: 'ec-1',
    };
    expect(() => jwtKeysFromJwks(jwks(rsaJwk, ecJwk))).toThrow(
      /JWKS key 1 \(kid "ec-1"\): unsupported kty "EC"/,
    );
    const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
    expect(() => jwtKeysFromJwks(jwks(x25519))).toThrow(/JWKS key 0: unsupported OKP curve "X25519"/);
    expect(() => jwtKeysFromJwks(jwks({ kty: 'RSA' }))).toThrow(/JWKS key 0: member "n"/);
  });

  it('rejects an alg that does not belong to the kty, private material and weak keys', () => {
    expect(() => jwtKeysFromJwks(jwks({ ...rsaJwk, alg: 'HS256' }))).toThrow(
      /alg "HS256" is not supported for kty RSA/,
    );
    expect(() => jwtKeysFromJwks(jwks({ ...rsaJwk, alg: 'RS512' }))).toThrow(/expected RS256/);
    const privateJwk = { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'p' };
    expect(() => jwtKeysFromJwks(jwks(privateJwk))).toThrow(/private key material/);
    const shortOct = { kty: 'oct', k: randomBytes(16).toString('base64url') };
    expect(() => jwtKeysFromJwks(jwks(shortOct))).toThrow(/16 bytes; at least 32/);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    expect(() => jwtKeysFromJwks(jwks(small))).toThrow(/1024 bits/);
    expect(() => jwtKeysFromJwks(jwks({ ...edJwk, x: 'AAAA' }))).toThrow(/not a valid OKP public key/);
  });

  it('rejects documents that are not a JWKS, and one with no signing key', () => {
    expect(() => jwtKeysFromJwks('{')).toThrow(/not valid JSON/);
    expect(() => jwtKeysFromJwks('[]')).toThrow(/"keys" array/);
    expect(() => jwtKeysFromJwks('{"keys":{}}')).toThrow(/"keys" array/);
    expect(() => jwtKeysFromJwks(jwks('RSA'))).toThrow(/JWKS key 0: not a JSON object/);
    expect(() => jwtKeysFromJwks(jwks({ ...edJwk, kid: 3 }))).toThrow(/kid must be a non-empty string/);
    expect(() => jwtKeysFromJwks(jwks({ ...edJwk, use: 1 }))).toThrow(/use must be a string/);
    expect(() => jwtKeysFromJwks(jwks(encJwk))).toThrow(/no signing key/);
    expect(() => jwtKeysFromJwks(jwks())).toThrow(/no signing key/);
  });
});
