// SCRAM-SHA-256(-PLUS): RFC 7677 vector, PostgreSQL-generated verifiers, pg interop, channel binding, hostile input.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ChannelBindingError,
  certificateBindingHash,
  tlsServerEndPointHash,
  tryTlsServerEndPointHash,
} from '../../src/auth/channel-binding.js';
import { preparePassword, saslprep } from '../../src/auth/saslprep.js';
import { ScramClientSession } from '../../src/auth/scram-client.js';
import { ScramError, ScramServerSession, type ScramServerOptions } from '../../src/auth/scram-server.js';
import {
  clientKeyOf,
  formatScramVerifier,
  generateScramVerifier,
  hmacSha256,
  parseScramVerifier,
  saltedPassword,
  saltedPasswordCacheSize,
  sha256,
  type ScramVerifier,
  xorBuffers,
} from '../../src/auth/scram-verifier.js';

const require = createRequire(import.meta.url);

interface PgSaslSession {
  mechanism: string;
  response: string;
}
// node-postgres' own SCRAM client: an independent implementation to interoperate with.
const pgSasl = require('pg/lib/crypto/sasl.js') as {
  startSession(mechanisms: string[], stream?: unknown): PgSaslSession;
  continueSession(
    session: PgSaslSession,
    password: string,
    serverData: string,
    stream?: unknown,
  ): Promise<void>;
  finalizeSession(session: PgSaslSession, serverData: string): void;
};
const pgCertSignatures = require('pg/lib/crypto/cert-signatures.js') as {
  signatureAlgorithmHashFromCertificate(der: Buffer): string;
};

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const s = (buf: Buffer): string => buf.toString('latin1');
const mockSecret = Buffer.alloc(32, 7);

function verifierFor(password: string, iterations = 4096): ScramVerifier {
  const v = parseScramVerifier(generateScramVerifier(password, { iterations }));
  if (!v) throw new Error('generated verifier does not parse');
  return v;
}

function server(opts: Partial<ScramServerOptions> = {}): ScramServerSession {
  return new ScramServerSession({
    verifier: null,
    username: 'alice',
    mockSecret,
    channelBinding: null,
    ...opts,
  });
}

/** Runs a whole exchange; returns the error the server or client threw, or null on success. */
function exchange(srv: ScramServerSession, cli: ScramClientSession): unknown {
  try {
    const mech = cli.chooseMechanism(srv.mechanisms());
    const serverFirst = srv.clientFirst(mech, cli.clientFirst());
    const serverFinal = srv.clientFinal(cli.serverFirst(serverFirst));
    cli.serverFinal(serverFinal);
    expect(srv.authenticated).toBe(true);
    expect(cli.completed).toBe(true);
    return null;
  } catch (err) {
    return err;
  }
}

function expectScramError(fn: () => unknown, reason: ScramError['reason']): ScramError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(ScramError);
  expect((thrown as ScramError).reason).toBe(reason);
  return thrown as ScramError;
}

// RFC 7677 §3, SCRAM-SHA-256 with user "user" and password "pencil".
const RFC7677 = {
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

describe('RFC 7677 test vector', () => {
  it('the client produces the RFC client messages and accepts the RFC server signature', () => {
    const cli = new ScramClientSession({ password: 'pencil', username: 'user', nonce: RFC7677.clientNonce });
    expect(cli.chooseMechanism(['SCRAM-SHA-256'])).toBe('SCRAM-SHA-256');
    expect(s(cli.clientFirst())).toBe(RFC7677.clientFirst);
    expect(s(cli.serverFirst(b(RFC7677.serverFirst)))).toBe(RFC7677.clientFinal);
    expect(cli.completed).toBe(false);
    cli.serverFinal(b(RFC7677.serverFinal));
    expect(cli.completed).toBe(true);
  });

  it('the server produces the RFC server messages from a verifier with the RFC salt', () => {
    const verifier = parseScramVerifier(
      generateScramVerifier('pencil', { salt: Buffer.from(RFC7677.salt, 'base64'), iterations: 4096 }),
    );
    const srv = server({ verifier, nonce: RFC7677.serverNonce });
    expect(s(srv.clientFirst('SCRAM-SHA-256', b(RFC7677.clientFirst)))).toBe(RFC7677.serverFirst);
    expect(s(srv.clientFinal(b(RFC7677.clientFinal)))).toBe(RFC7677.serverFinal);
    expect(srv.authenticated).toBe(true);
  });

  it('the client rejects a server signature that is off by one bit', () => {
    const cli = new ScramClientSession({ password: 'pencil', username: 'user', nonce: RFC7677.clientNonce });
    cli.chooseMechanism(['SCRAM-SHA-256']);
    cli.clientFirst();
    cli.serverFirst(b(RFC7677.serverFirst));
    const sig = Buffer.from(RFC7677.serverFinal.slice(2), 'base64');
    sig[0] ^= 1;
    expectScramError(() => cli.serverFinal(b(`v=${sig.toString('base64')}`)), 'bad-proof');
    expect(cli.completed).toBe(false);
  });
});

// Verifiers produced by PostgreSQL 15.20 itself (CREATE ROLE ... PASSWORD '<plain>' with
// password_encryption = scram-sha-256, server encoding UTF8), i.e. by pg_saslprep + scram_build_secret.
const PG15_VERIFIERS: Array<[string, string, string]> = [
  [
    'ascii',
    'pencil',
    'SCRAM-SHA-256$4096:Tqstot9GF+DQYpA3/ZGwUg==$VYxSgYpvXPlfUKhKbJxdvn7BbMwUXugmE2hukft064M=:S/e7+AaEnTgWnXPLfztdP0jFc7ImnA8OB/pCdCXoewk=',
  ],
  [
    'ascii control char kept as is',
    'a\tb',
    'SCRAM-SHA-256$4096:QxVZO9oXHBrRwP2j3Wltwg==$cg5wniq3kxcThAjmWoiLSoMPn9gHtoQQcycCL6tC0WM=:dsMM+SU11bhgmWqsTWtO6ZikHzGdu8Uu2k+h1oIb7PE=',
  ],
  [
    'NFKC composes',
    'cafe\u0301',
    'SCRAM-SHA-256$4096:k8L/LbK0XFQmhXa1+vzTWA==$riI7QtJNrl3RdJyqurqZjjmO/oPgYFEJALW+VjtWBsg=:9ea9AS+A0r0lyPnYZhzO6flAqPzvfPEONMkfNr+/oB0=',
  ],
  [
    'unassigned in Unicode 3.2 (emoji): raw bytes',
    'pw\u{1F600}',
    'SCRAM-SHA-256$4096:ZbAz/QFsgv8optpMAuLYNg==$0Dwf9naQWCjjaIMbzwO72Q83JGEm8H/OmZtn1e2ILbU=:VL9Qo9bzTm8JMB12d4lLQWngLwgvNgJI3dI9eXWQHGo=',
  ],
  [
    'right-to-left only',
    '\u05E9\u05DC\u05D5\u05DD',
    'SCRAM-SHA-256$4096:dzsRYKwsQgncYQzRPrt4iw==$BLQwdiSXM5hBzptHNGdLdHzIWvI47WpuG3/D5Oc/irE=:A3j3yYHlyi0eLC2+vvAwuTAqjv44Wqs30unHPhTzKJM=',
  ],
  [
    'ligature',
    '\uFB01x',
    'SCRAM-SHA-256$4096:BXSFmC8j4K6HaaVHNB8Mfw==$x7X3zwF/MWzp8EXHCQdHhY2UMHGItHTq8cQ2MOzl/Ck=:zdHxXEi9F6okWDjJfgQIu14oCN6kKInRZproAm3BMcg=',
  ],
  [
    'mixed bidi: raw bytes',
    'a\u05E9\u05DC\u05D5\u05DD',
    'SCRAM-SHA-256$4096:SGW/wB9rraUcSVrizEPCuw==$b3MU91nUECCrg5CDky+2FUG9VxkkcY5/u2NuDU2ywzU=:jQzZkCKGIzV9KTAtFHxT1Ed733NLaawxdoTl8BN4Lew=',
  ],
  [
    'only mapped-to-nothing: raw bytes',
    '\u00AD',
    'SCRAM-SHA-256$4096:SWYjHwUeLYz3o/alb8Fk8Q==$I2Zlm+S0Xf5qw8PXXAqQJKXzEKRKVmZUifS9CaGoDD0=:e3whzxMr7p/PEYz6QwZL5+ojjdW/nlvnlZLRfOSavBs=',
  ],
  [
    'ordinal indicator',
    '\u00AAbc',
    'SCRAM-SHA-256$4096:JGalN6JCLFNbygmlBFrh4Q==$DhfmULuSEryhDneYx02AwhiSOUscaMVVptWeMJ/7HXo=:DQi4kSH+AThu7Dku1KipYhjmsDdzlLG2YTDeOB2T2og=',
  ],
  [
    'roman numeral',
    '\u2168',
    'SCRAM-SHA-256$4096:Hg2S8Qvz0ciQU1Jdc5UPug==$1Ed7mYjyq23nMRyQC95WqRKOG13nEM1JsRZdtG4Y7pY=:ScNg2Lb0MV+GWG1eAfP8SOLCIuFQRuecwSlsm3xp1vs=',
  ],
  [
    'soft hyphen mapped to nothing',
    'a\u00ADb',
    'SCRAM-SHA-256$4096:UAMNepqzUtjjz9rJfNODrQ==$uI1oi3sKWEfzDJN+qMjkUpvX0lI64QtRniwvC6V41p4=:le6oaevQjS8O00lw3Fr56uk3nQs0MUGXyyTbExy9Ufc=',
  ],
  [
    'assigned only after Unicode 3.2: raw bytes',
    '\u0221',
    'SCRAM-SHA-256$4096:NFhFwbacukl1cLfEVcwXwg==$rKVq+SBBIOPODo6sxt1LTa3+YGsRR2AuYBmqgefc9Xw=:rePirazcfbLSeeo+cSUZs0vu1qOtJAeXnj3OKd83oXQ=',
  ],
  [
    'no-break space mapped to space',
    'x\u00A0y',
    'SCRAM-SHA-256$4096:DVkq7OU0oB56Xy7iyuNkMg==$whoASWhK+FARoe5/s0uI2wAlWiQjjhm/dF6V0/p7oTw=:a0gsRlpinY2Fhbu/N82FIEZ5vNcEXine4Okeot0xvk0=',
  ],
  [
    'ideographic spaces',
    '\u3000pw\u3000',
    'SCRAM-SHA-256$4096:bsIj0oUF/BQ2PZsenhVsTQ==$dquXcSuT1G2cYkSf8cOy4t6iHMtav745cdp/jqvEaa4=:iVcriNc1KK+o88SRjMUBQJz6UoTFC4h4VpujrlsqpVk=',
  ],
  [
    'fullwidth letters',
    '\uFF30\uFF37',
    'SCRAM-SHA-256$4096:Drh5vHsaTMd9C1Tr9WxAyg==$VMW/AmTxyqNWAzeSihWlHd1q6dMpFkUDyPMR3mI6dOs=:QdOcB/PvzNvlEMC8VdpU9cZIHe8SKz7dIMpoyjLKVyc=',
  ],
];

describe('verifiers', () => {
  it('generate, parse and format round-trip', () => {
    const text = generateScramVerifier('correct horse', { iterations: 5000 });
    expect(text).toMatch(/^SCRAM-SHA-256\$5000:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    const v = parseScramVerifier(text);
    expect(v).not.toBeNull();
    expect(v?.salt).toHaveLength(16);
    expect(formatScramVerifier(v as ScramVerifier)).toBe(text);
  });

  it('uses PostgreSQL defaults: 4096 iterations and a fresh 16-byte salt each time', () => {
    const a = parseScramVerifier(generateScramVerifier('x')) as ScramVerifier;
    const c = parseScramVerifier(generateScramVerifier('x')) as ScramVerifier;
    expect(a.iterations).toBe(4096);
    expect(a.salt).toHaveLength(16);
    expect(a.salt.equals(c.salt)).toBe(false);
  });

  it.each(PG15_VERIFIERS)(
    'reproduces the PostgreSQL 15 verifier byte for byte: %s',
    (_name, password, pgText) => {
      const pg = parseScramVerifier(pgText) as ScramVerifier;
      expect(pg).not.toBeNull();
      expect(generateScramVerifier(password, { salt: pg.salt, iterations: pg.iterations })).toBe(pgText);
    },
  );

  it('authenticates against PostgreSQL-generated verifiers, and not with a near-miss password', () => {
    for (const [, password, pgText] of PG15_VERIFIERS.slice(0, 4)) {
      const verifier = parseScramVerifier(pgText);
      expect(exchange(server({ verifier }), new ScramClientSession({ password }))).toBeNull();
      const err = exchange(server({ verifier }), new ScramClientSession({ password: password + 'x' }));
      expect(err).toBeInstanceOf(ScramError);
      expect((err as ScramError).reason).toBe('bad-proof');
    }
  });

  it.each([
    ['empty', ''],
    ['other mechanism', 'SCRAM-SHA-1$4096:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '='],
    ['md5 hash', 'md5' + '0'.repeat(32)],
    ['zero iterations', 'SCRAM-SHA-256$0:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '='],
    ['negative iterations', 'SCRAM-SHA-256$-1:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '='],
    [
      'iterations beyond int',
      'SCRAM-SHA-256$4294967296:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=',
    ],
    ['bad salt base64', 'SCRAM-SHA-256$4096:c2F*dA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '='],
    ['short stored key', 'SCRAM-SHA-256$4096:c2FsdA==$' + 'A'.repeat(40) + '==:' + 'A'.repeat(43) + '='],
    ['missing server key', 'SCRAM-SHA-256$4096:c2FsdA==$' + 'A'.repeat(43) + '='],
    ['extra field', 'SCRAM-SHA-256$4096:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=:AAAA'],
    ['trailing newline', 'SCRAM-SHA-256$4096:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=\n'],
  ])('rejects a malformed verifier: %s', (_name, text) => {
    expect(parseScramVerifier(text)).toBeNull();
  });

  it('returns null rather than throwing for non-string input', () => {
    expect(parseScramVerifier(undefined as unknown as string)).toBeNull();
  });

  it('caches salted passwords in a bounded LRU and hands out copies', () => {
    const salt = randomBytes(16);
    const first = saltedPassword('cache me', salt, 4096);
    first.fill(0); // wiping the caller's copy must not poison the cache
    const second = saltedPassword('cache me', salt, 4096);
    expect(second.equals(Buffer.alloc(32))).toBe(false);
    expect(second.equals(saltedPassword('cache me', Buffer.from(salt), 4096))).toBe(true);
    for (let i = 0; i < 80; i++) saltedPassword(`p${i}`, salt, 1);
    expect(saltedPasswordCacheSize()).toBe(64);
  });

  it('rejects nonsensical iteration counts', () => {
    expect(() => saltedPassword('x', Buffer.from('salt'), 0)).toThrow(RangeError);
    expect(() => saltedPassword('x', Buffer.from('salt'), 1.5)).toThrow(RangeError);
  });
});

describe('SASLprep (PostgreSQL semantics)', () => {
  it.each([
    ['pencil', 'pencil'],
    ['a\tb', 'a\tb'], // pure ASCII is never touched, even control characters
    ['\u2168', 'IX'],
    ['a\u00ADb', 'ab'],
    ['x\u00A0y', 'x y'],
    ['\u200Bz', ' z'], // U+200B is in both C.1.2 and B.1; the space mapping wins
    ['\uFB01', 'fi'],
    ['\u05E9\u05DC\u05D5\u05DD', '\u05E9\u05DC\u05D5\u05DD'],
  ])('prepares %j as %j', (input, output) => {
    expect(saslprep(input)).toBe(output);
  });

  it.each([
    ['unassigned in 3.2', 'pw\u{1F600}'],
    ['private use', '\uE000'],
    ['empty after mapping', '\u00AD\u200C'],
    ['RandALCat with LCat', 'a\u05E9'],
    ['RandALCat not at the end', '\u05E91'],
    ['lone surrogate', 'x\uD800'],
  ])('reports failure (raw bytes are used) for %s', (_name, input) => {
    expect(saslprep(input)).toBeNull();
    expect(preparePassword(input).equals(Buffer.from(input, 'utf8'))).toBe(true);
  });
});

describe('ScramServerSession', () => {
  it('advertises -PLUS only when channel binding is available', () => {
    expect(server().mechanisms()).toEqual(['SCRAM-SHA-256']);
    expect(server({ channelBinding: randomBytes(32) }).mechanisms()).toEqual([
      'SCRAM-SHA-256-PLUS',
      'SCRAM-SHA-256',
    ]);
  });

  it('accepts the right password and rejects a wrong one with bad-proof', () => {
    const verifier = verifierFor('s3cret');
    expect(exchange(server({ verifier }), new ScramClientSession({ password: 's3cret' }))).toBeNull();
    const err = exchange(server({ verifier }), new ScramClientSession({ password: 'S3cret' })) as ScramError;
    expect(err).toBeInstanceOf(ScramError);
    expect(err.reason).toBe('bad-proof');
    expect(err.sqlstate).toBe('28P01');
    expect(err.message).not.toContain('S3cret');
  });

  it('gives an unknown user a plausible, stable challenge and fails it exactly like a wrong password', () => {
    const first = (srv: ScramServerSession): string =>
      s(srv.clientFirst('SCRAM-SHA-256', b('n,,n=,r=abcdef')));
    const a1 = first(server({ username: 'ghost' }));
    const a2 = first(server({ username: 'ghost' }));
    const other = first(server({ username: 'ghost2' }));
    const salt = (m: string): string => /,s=([^,]+),/.exec(m)?.[1] ?? '';
    expect(a1).toMatch(/^r=abcdef[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/]{22}==,i=4096$/);
    expect(salt(a1)).toBe(salt(a2));
    expect(salt(a1)).not.toBe(salt(other));
    expect(first(server({ username: 'ghost', mockIterations: 600_000 }))).toMatch(/,i=600000$/);

    const real = server({ verifier: verifierFor('pw'), username: 'alice' });
    const realErr = exchange(real, new ScramClientSession({ password: 'wrong' })) as ScramError;
    const mockErr = exchange(
      server({ username: 'ghost' }),
      new ScramClientSession({ password: 'pw' }),
    ) as ScramError;
    expect(mockErr).toBeInstanceOf(ScramError);
    expect(mockErr.reason).toBe(realErr.reason);
    expect(mockErr.message).toBe(realErr.message);
  });

  it('completes with channel binding and rejects a client bound to another certificate', () => {
    const cb = randomBytes(32);
    const verifier = verifierFor('pw');
    const cli = new ScramClientSession({ password: 'pw', channelBinding: cb });
    expect(exchange(server({ verifier, channelBinding: cb }), cli)).toBeNull();

    const mitm = new ScramClientSession({ password: 'pw', channelBinding: randomBytes(32) });
    const err = exchange(server({ verifier, channelBinding: cb }), mitm) as ScramError;
    expect(err.reason).toBe('channel-binding');
    expect(err.message).toBe('SCRAM channel binding check failed');
  });

  it('rejects "y" when the server offered -PLUS over TLS (downgrade) and accepts it in plaintext', () => {
    const srv = server({ verifier: verifierFor('pw'), channelBinding: randomBytes(32) });
    const err = expectScramError(() => srv.clientFirst('SCRAM-SHA-256', b('y,,n=,r=abc')), 'channel-binding');
    expect(err.message).toMatch(/SCRAM channel binding negotiation error/);

    // A client that can bind, talking to a server that cannot: "y" all the way through.
    const cli = new ScramClientSession({ password: 'pw', channelBinding: randomBytes(32) });
    expect(exchange(server({ verifier: verifierFor('pw') }), cli)).toBeNull();
  });

  it('rejects mechanism and gs2 flag combinations PostgreSQL rejects', () => {
    const cb = randomBytes(32);
    expectScramError(
      () => server().clientFirst('SCRAM-SHA-256-PLUS', b('p=tls-server-end-point,,n=,r=a')),
      'unsupported-mechanism',
    );
    expectScramError(() => server().clientFirst('SCRAM-SHA-1', b('n,,n=,r=a')), 'unsupported-mechanism');
    expectScramError(
      () => server({ channelBinding: cb }).clientFirst('SCRAM-SHA-256-PLUS', b('n,,n=,r=a')),
      'channel-binding',
    );
    expectScramError(
      () => server({ channelBinding: cb }).clientFirst('SCRAM-SHA-256-PLUS', b('y,,n=,r=a')),
      'channel-binding',
    );
    expectScramError(
      () => server({ channelBinding: cb }).clientFirst('SCRAM-SHA-256', b('p=tls-server-end-point,,n=,r=a')),
      'channel-binding',
    );
    expectScramError(
      () => server({ channelBinding: cb }).clientFirst('SCRAM-SHA-256-PLUS', b('p=tls-unique,,n=,r=a')),
      'channel-binding',
    );
  });

  it.each([
    ['empty', ''],
    ['NUL byte', 'n,,n=,r=ab\0c'],
    ['too long', 'n,,n=,r=' + 'a'.repeat(5000)],
    ['unknown flag', 'x,,n=,r=abc'],
    ['missing comma after flag', 'nn=,r=abc'],
    ['authzid', 'n,a=admin,n=,r=abc'],
    ['mandatory extension', 'n,,m=ext,n=,r=abc'],
    ['attributes out of order', 'n,,r=abc,n='],
    ['missing nonce', 'n,,n='],
    ['empty nonce', 'n,,n=,r='],
    ['non-printable nonce', 'n,,n=,r=ab\x7fc'],
    ['non-ASCII nonce', 'n,,n=,r=ab\xe9c'],
    ['duplicate nonce', 'n,,n=,r=abc,r=def'],
    ['trailing comma', 'n,,n=,r=abc,'],
    ['attribute without "="', 'n,,n=,r=abc,x'],
    ['just a flag', 'n'],
  ])('rejects a malformed client-first-message: %s', (_name, msg) => {
    expectScramError(() => server().clientFirst('SCRAM-SHA-256', b(msg)), 'malformed');
  });

  it('ignores the SCRAM user name and unknown extensions, like PostgreSQL', () => {
    const srv = server({ verifier: verifierFor('pw'), nonce: 'SRV' });
    expect(s(srv.clientFirst('SCRAM-SHA-256', b('n,,n=mallory\xe9,r=abc,x=ext')))).toMatch(/^r=abcSRV,s=/);
  });

  describe('client-final-message', () => {
    const verifier = verifierFor('pw');
    // A valid exchange with fixed nonces, so that client-final can be edited textually.
    function valid(): { srv: ScramServerSession; final: string } {
      const srv = server({ verifier, nonce: 'SRVNONCE' });
      const cli = new ScramClientSession({ password: 'pw', nonce: 'CLINONCE' });
      cli.chooseMechanism(['SCRAM-SHA-256']);
      const first = srv.clientFirst('SCRAM-SHA-256', cli.clientFirst());
      return { srv, final: s(cli.serverFirst(first)) };
    }

    it('accepts the untouched message', () => {
      const { srv, final } = valid();
      expect(s(srv.clientFinal(b(final)))).toMatch(/^v=[A-Za-z0-9+/]{43}=$/);
    });

    it.each([
      ['wrong nonce', (m: string) => m.replace('r=CLINONCESRVNONCE', 'r=CLINONCESRVNONCX'), 'malformed'],
      [
        'nonce without server part',
        (m: string) => m.replace('r=CLINONCESRVNONCE', 'r=CLINONCE'),
        'malformed',
      ],
      ['"y" binding after "n"', (m: string) => m.replace('c=biws', 'c=eSws'), 'channel-binding'],
      ['bad base64 binding', (m: string) => m.replace('c=biws', 'c=bi*s'), 'channel-binding'],
      ['proof not base64', (m: string) => m.replace(/p=.*/, 'p=!!!!'), 'malformed'],
      ['short proof', (m: string) => m.replace(/p=.*/, 'p=AAAA'), 'malformed'],
      ['garbage after proof', (m: string) => m + ',x=1', 'malformed'],
      ['missing proof', (m: string) => m.replace(/,p=.*/, ''), 'malformed'],
      ['duplicate nonce', (m: string) => m.replace(',p=', ',r=CLINONCESRVNONCE,p='), 'malformed'],
      ['attributes swapped', (m: string) => m.replace(/^c=biws,(r=[^,]+)/, '$1,c=biws'), 'malformed'],
      [
        'flipped proof bit',
        (m: string) => m.replace(/p=(.)/, (_x, c: string) => `p=${c === 'A' ? 'B' : 'A'}`),
        'bad-proof',
      ],
      ['empty', () => '', 'malformed'],
    ] as const)('rejects %s', (_name, edit, reason) => {
      const { srv, final } = valid();
      expectScramError(() => srv.clientFinal(b(edit(final))), reason);
      expect(srv.authenticated).toBe(false);
      // A failed session stays failed: no second attempt on the same exchange.
      expectScramError(() => srv.clientFinal(b(final)), 'sequence');
    });

    it('accepts an unknown extension before the proof and covers it with the proof (PostgreSQL skips them)', () => {
      const srv = server({ verifier, nonce: 'SRVNONCE' });
      const first = s(srv.clientFirst('SCRAM-SHA-256', b('n,,n=,r=CLINONCE')));
      const withoutProof = 'c=biws,r=CLINONCESRVNONCE,x=ext';
      const authMessage = `n=,r=CLINONCE,${first},${withoutProof}`;
      const clientKey = clientKeyOf(saltedPassword('pw', verifier.salt, verifier.iterations));
      const proof = xorBuffers(clientKey, hmacSha256(sha256(clientKey), authMessage));
      expect(s(srv.clientFinal(b(`${withoutProof},p=${proof.toString('base64')}`)))).toMatch(/^v=/);
    });
  });

  it('enforces the message order', () => {
    const srv = server({ verifier: verifierFor('pw') });
    expectScramError(() => srv.clientFinal(b('c=biws,r=a,p=AAAA')), 'sequence');
    const srv2 = server({ verifier: verifierFor('pw') });
    srv2.clientFirst('SCRAM-SHA-256', b('n,,n=,r=abc'));
    expectScramError(() => srv2.clientFirst('SCRAM-SHA-256', b('n,,n=,r=abc')), 'sequence');
  });

  it("interoperates with node-postgres' SCRAM client (plain and -PLUS)", async () => {
    const verifier = verifierFor('interop pw');
    const srv = server({ verifier });
    const session = pgSasl.startSession(srv.mechanisms());
    const serverFirst = s(srv.clientFirst(session.mechanism, b(session.response)));
    await pgSasl.continueSession(session, 'interop pw', serverFirst);
    pgSasl.finalizeSession(session, s(srv.clientFinal(b(session.response))));
    expect(srv.authenticated).toBe(true);
  });
});

describe('ScramClientSession', () => {
  it('chooses mechanisms and gs2 flags like libpq', () => {
    const cb = randomBytes(32);
    const plus = new ScramClientSession({ password: 'x', channelBinding: cb, nonce: 'N' });
    expect(plus.chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'])).toBe('SCRAM-SHA-256-PLUS');
    expect(s(plus.clientFirst())).toBe('p=tls-server-end-point,,n=,r=N');

    const y = new ScramClientSession({ password: 'x', channelBinding: cb, nonce: 'N' });
    expect(y.chooseMechanism(['SCRAM-SHA-256'])).toBe('SCRAM-SHA-256');
    expect(s(y.clientFirst())).toBe('y,,n=,r=N');

    const n = new ScramClientSession({ password: 'x', nonce: 'N' });
    expect(n.chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'])).toBe('SCRAM-SHA-256');
    expect(s(n.clientFirst())).toBe('n,,n=,r=N');

    expectScramError(
      () => new ScramClientSession({ password: 'x' }).chooseMechanism(['OAUTHBEARER']),
      'unsupported-mechanism',
    );
    expectScramError(
      () =>
        new ScramClientSession({
          password: 'x',
          channelBinding: cb,
          requireChannelBinding: true,
        }).chooseMechanism(['SCRAM-SHA-256']),
      'channel-binding',
    );
    expectScramError(() => new ScramClientSession({ password: 'x' }).clientFirst(), 'sequence');
  });

  it('escapes "," and "=" in the SCRAM user name', () => {
    const cli = new ScramClientSession({ password: 'x', username: 'a,b=c', nonce: 'N' });
    cli.chooseMechanism(['SCRAM-SHA-256']);
    expect(s(cli.clientFirst())).toBe('n,,n=a=2Cb=3Dc,r=N');
  });

  function started(maxIterations?: number): ScramClientSession {
    const cli = new ScramClientSession({ password: 'pw', nonce: 'CLI', maxIterations });
    cli.chooseMechanism(['SCRAM-SHA-256']);
    cli.clientFirst();
    return cli;
  }

  it.each([
    ['nonce not extending ours', 'r=XYZ123,s=c2FsdA==,i=4096'],
    ['nonce equal to ours', 'r=CLI,s=c2FsdA==,i=4096'],
    ['non-printable nonce', 'r=CLI\x01x,s=c2FsdA==,i=4096'],
    ['bad salt', 'r=CLIx,s=c2F*dA==,i=4096'],
    ['empty salt', 'r=CLIx,s=,i=4096'],
    ['zero iterations', 'r=CLIx,s=c2FsdA==,i=0'],
    ['iterations not a number', 'r=CLIx,s=c2FsdA==,i=4k'],
    ['iterations above the cap', 'r=CLIx,s=c2FsdA==,i=20000000'],
    ['mandatory extension', 'm=x,r=CLIx,s=c2FsdA==,i=4096'],
    ['missing iterations', 'r=CLIx,s=c2FsdA=='],
    ['reordered', 's=c2FsdA==,r=CLIx,i=4096'],
    ['duplicate salt', 'r=CLIx,s=c2FsdA==,i=4096,s=c2FsdA=='],
    ['NUL byte', 'r=CLIx,s=c2FsdA==,i=4096\0'],
  ])('rejects a hostile server-first-message: %s', (_name, msg) => {
    expectScramError(() => started().serverFirst(b(msg)), 'malformed');
  });

  it('honours a lower iteration cap', () => {
    expectScramError(() => started(1000).serverFirst(b('r=CLIx,s=c2FsdA==,i=4096')), 'malformed');
  });

  it.each([
    ['invalid-proof', 'e=invalid-proof', 'bad-proof'],
    ['channel binding error', 'e=channel-bindings-dont-match', 'channel-binding'],
    ['missing signature', 'x=1', 'malformed'],
    ['bad base64', 'v=***', 'bad-proof'],
    ['wrong length', 'v=AAAA', 'bad-proof'],
  ] as const)('rejects server-final-message: %s', (_name, msg, reason) => {
    const cli = started();
    cli.serverFirst(b('r=CLIx,s=c2FsdA==,i=4096'));
    expectScramError(() => cli.serverFinal(b(msg)), reason);
    expect(cli.completed).toBe(false);
  });

  it('interoperates as a client with a server driven by its own verifier and -PLUS', () => {
    const cb = randomBytes(48);
    const verifier = verifierFor('pw', 8192);
    const cli = new ScramClientSession({ password: 'pw', channelBinding: cb, requireChannelBinding: true });
    expect(exchange(server({ verifier, channelBinding: cb }), cli)).toBeNull();
  });
});

describe('tls-server-end-point', () => {
  let dir = '';
  const certs = new Map<string, Buffer>();

  function makeCert(name: string, keyArgs: string[], sigArgs: string[]): void {
    const crt = join(dir, `${name}.crt`);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=pgwarden-test',
        '-keyout',
        join(dir, `${name}.key`),
        '-out',
        crt,
        ...keyArgs,
        ...sigArgs,
      ],
      { stdio: 'pipe' },
    );
    certs.set(name, new X509Certificate(readFileSync(crt)).raw);
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-cb-'));
    const ec256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    const rsa = ['-newkey', 'rsa:2048'];
    makeCert('rsa-sha256', rsa, ['-sha256']);
    makeCert('rsa-sha384', rsa, ['-sha384']);
    makeCert('rsa-sha512', rsa, ['-sha512']);
    makeCert('rsa-sha1', rsa, ['-sha1']);
    makeCert('ecdsa-sha256', ec256, ['-sha256']);
    makeCert('ecdsa-sha384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], ['-sha384']);
    makeCert(
      'pss-sha512',
      ['-newkey', 'rsa-pss', '-pkeyopt', 'rsa_keygen_bits:2048'],
      ['-sha512', '-sigopt', 'rsa_padding_mode:pss'],
    );
    makeCert(
      'pss-sha256',
      ['-newkey', 'rsa-pss', '-pkeyopt', 'rsa_keygen_bits:2048'],
      ['-sha256', '-sigopt', 'rsa_padding_mode:pss'],
    );
    makeCert('ed25519', ['-newkey', 'ed25519'], []);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['rsa-sha256', 'sha256'],
    ['rsa-sha384', 'sha384'],
    ['rsa-sha512', 'sha512'],
    ['rsa-sha1', 'sha256'], // RFC 5929: SHA-1 is replaced by SHA-256
    ['ecdsa-sha256', 'sha256'],
    ['ecdsa-sha384', 'sha384'],
    ['pss-sha512', 'sha512'],
    ['pss-sha256', 'sha256'],
  ])('hashes a %s certificate with %s', (name, hash) => {
    const der = certs.get(name) as Buffer;
    expect(certificateBindingHash(der)).toBe(hash);
    // Independent answers: openssl's fingerprint over the same certificate with that hash, and
    // node-postgres' own signature-algorithm parser.
    const fingerprint = execFileSync(
      'openssl',
      ['x509', '-inform', 'DER', '-noout', '-fingerprint', `-${hash}`],
      { input: der },
    )
      .toString()
      .trim()
      .replace(/^.*=/, '')
      .replace(/:/g, '')
      .toLowerCase();
    expect(tlsServerEndPointHash(der).toString('hex')).toBe(fingerprint);
    const pgHash = pgCertSignatures.signatureAlgorithmHashFromCertificate(der).replace('-', '').toLowerCase();
    expect(pgHash === 'sha1' ? 'sha256' : pgHash).toBe(hash);
  });

  it('refuses Ed25519 certificates, as PostgreSQL does', () => {
    const der = certs.get('ed25519') as Buffer;
    expect(() => tlsServerEndPointHash(der)).toThrow(ChannelBindingError);
    expect(tryTlsServerEndPointHash(der)).toBeNull();
  });

  it('never throws anything but ChannelBindingError on mangled certificates', () => {
    const der = certs.get('rsa-sha256') as Buffer;
    fc.assert(
      fc.property(
        fc.nat(der.length - 1),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(der.length),
        (pos, byte, cut) => {
          const mangled = Buffer.from(der.subarray(0, Math.max(cut, pos + 1)));
          mangled[pos] = byte;
          try {
            tlsServerEndPointHash(mangled);
          } catch (err) {
            expect(err).toBeInstanceOf(ChannelBindingError);
          }
        },
      ),
      { numRuns: 2000 },
    );
    expect(() => tlsServerEndPointHash(Buffer.alloc(0))).toThrow(ChannelBindingError);
    expect(() => tlsServerEndPointHash(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]))).toThrow(
      ChannelBindingError,
    );
  });

  it('binds a full exchange with node-postgres computing the hash from the certificate itself', async () => {
    for (const name of ['rsa-sha384', 'ecdsa-sha256', 'pss-sha512']) {
      const der = certs.get(name) as Buffer;
      const stream = { getPeerCertificate: () => ({ raw: der }) };
      const srv = server({ verifier: verifierFor('cb pw'), channelBinding: tlsServerEndPointHash(der) });
      const session = pgSasl.startSession(srv.mechanisms(), stream);
      expect(session.mechanism).toBe('SCRAM-SHA-256-PLUS');
      const serverFirst = s(srv.clientFirst(session.mechanism, b(session.response)));
      await pgSasl.continueSession(session, 'cb pw', serverFirst, stream);
      pgSasl.finalizeSession(session, s(srv.clientFinal(b(session.response))));
      expect(srv.authenticated).toBe(true);
    }
  });
});

describe('hostile input (property)', () => {
  const verifier = verifierFor('pw');
  const cb = createHash('sha256').update('cert').digest();

  function mutate(base: string): fc.Arbitrary<Buffer> {
    const bytes = Buffer.from(base, 'latin1');
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('del' as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
      fc.record({
        kind: fc.constant('ins' as const),
        pos: fc.nat(),
        text: fc.constantFrom(
          ',',
          '=',
          ',r=',
          ',p=',
          ',c=',
          'm=',
          'a=',
          '==',
          ',,',
          'y',
          'p=tls-server-end-point',
          '\0',
          '\xff',
        ),
      }),
    );
    return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
      let cur = Buffer.from(bytes);
      for (const e of edits) {
        const pos = cur.length === 0 ? 0 : e.pos % (cur.length + 1);
        if (e.kind === 'set' && cur.length > 0) cur[pos % cur.length] = e.byte;
        else if (e.kind === 'del') cur = Buffer.concat([cur.subarray(0, pos), cur.subarray(pos + e.len)]);
        else if (e.kind === 'ins')
          cur = Buffer.concat([cur.subarray(0, pos), Buffer.from(e.text, 'latin1'), cur.subarray(pos)]);
      }
      return cur;
    });
  }

  const anyBytes = fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u));
  const mechanism = fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', '', 'SCRAM-SHA-1');
  // A ScramError with a cause is an internal exception the session's guard converted: still a bug here.
  const onlyScramErrors = (fn: () => unknown): void => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ScramError) || err.cause !== undefined) throw err;
    }
  };

  it('server: random or mutated client-first-messages throw nothing but ScramError', () => {
    const valid = ['n,,n=,r=abcdef', 'p=tls-server-end-point,,n=,r=abcdef', 'y,,n=user,r=abcdef,x=ext'];
    fc.assert(
      fc.property(
        fc.oneof(anyBytes, ...valid.map(mutate)),
        mechanism,
        fc.boolean(),
        fc.boolean(),
        (data, mech, tls, known) => {
          const srv = server({ verifier: known ? verifier : null, channelBinding: tls ? cb : null });
          onlyScramErrors(() => srv.clientFirst(mech, data));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('server: random or mutated client-final-messages throw nothing but ScramError', () => {
    // A valid -PLUS exchange to mutate; each run replays client-first on a fresh session.
    const cli = new ScramClientSession({ password: 'pw', channelBinding: cb, nonce: 'CLI' });
    const mech = cli.chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    const clientFirst = cli.clientFirst();
    let serverFirst: Buffer = Buffer.alloc(0);
    const fresh = (): ScramServerSession => {
      const srv = server({ verifier, channelBinding: cb, nonce: 'SRV' });
      serverFirst = srv.clientFirst(mech, clientFirst);
      return srv;
    };
    fresh();
    const final = s(cli.serverFirst(serverFirst));
    expect(fresh().clientFinal(b(final))).toBeInstanceOf(Buffer);
    fc.assert(
      fc.property(fc.oneof(anyBytes, mutate(final)), (data) => {
        onlyScramErrors(() => fresh().clientFinal(data));
      }),
      { numRuns: 3000 },
    );
  });

  it('client: random or mutated server messages throw nothing but ScramError', () => {
    const serverFirst = 'r=CLISRV,s=c2FsdHNhbHQ=,i=16';
    const serverFinal = 'v=' + Buffer.alloc(32, 1).toString('base64');
    fc.assert(
      fc.property(
        fc.oneof(anyBytes, mutate(serverFirst)),
        fc.oneof(anyBytes, mutate(serverFinal)),
        (first, fin) => {
          const cli = new ScramClientSession({ password: 'pw', nonce: 'CLI', maxIterations: 10_000 });
          cli.chooseMechanism(['SCRAM-SHA-256']);
          cli.clientFirst();
          onlyScramErrors(() => {
            cli.serverFirst(first);
            cli.serverFinal(fin);
          });
          expect(cli.completed).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
