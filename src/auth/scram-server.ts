// Server side of SCRAM-SHA-256 / SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) as PostgreSQL runs it.
//
// Reference behaviour: PostgreSQL's src/backend/libpq/auth-scram.c and
// https://www.postgresql.org/docs/current/sasl-authentication.html. As there:
// - the user name inside client-first (n=) is ignored; the startup packet's user is the identity;
// - the only channel binding type is tls-server-end-point;
// - an unknown user runs the whole exchange against a mock verifier (salt derived from a server secret and
//   the user name) and fails at the proof, exactly like a wrong password, so neither the messages nor the
//   work done reveal whether the user exists;
// - authzid (a=) and mandatory extensions (m=) are refused; a "y" flag on a connection where the server
//   offers channel binding is a downgrade and is refused.
// Every input is untrusted: each method either returns or throws ScramError — nothing else — whatever the
// bytes (PgBouncer's CVE-2026-6664 was a crash in exactly this exchange).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_DEFAULT_SALT_LEN,
  SCRAM_KEY_LEN,
  decodeBase64,
  hmacSha256,
  sha256,
  xorBuffers,
  type ScramVerifier,
} from './scram-verifier.js';

export type ScramErrorReason =
  'malformed' | 'unsupported-mechanism' | 'channel-binding' | 'bad-proof' | 'sequence';

/** SQLSTATE PostgreSQL reports for each kind of failure (auth-scram.c / auth.c). */
const SQLSTATE: Record<ScramErrorReason, string> = {
  malformed: '08P01', // protocol_violation
  'unsupported-mechanism': '08P01',
  'channel-binding': '28000', // invalid_authorization_specification
  'bad-proof': '28P01', // invalid_password
  sequence: '08P01',
};

/** Any SCRAM failure. Messages never contain secrets and quote client text only sanitised. */
export class ScramError extends Error {
  /** The SQLSTATE PostgreSQL would send for this failure; the caller builds the ErrorResponse. */
  readonly sqlstate: string;
  constructor(
    readonly reason: ScramErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'ScramError';
    this.sqlstate = SQLSTATE[reason];
  }
}

/** Whatever escaped a SCRAM step, as a ScramError: anything unexpected counts as a malformed message. */
export function asScramError(err: unknown): ScramError {
  if (err instanceof ScramError) return err;
  const wrapped = new ScramError('malformed', 'malformed SCRAM message');
  wrapped.cause = err;
  return wrapped;
}

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
/** The only channel binding type PostgreSQL implements. */
export const CB_TYPE = 'tls-server-end-point';
/** Upper bound for any SCRAM message; real ones are < 300 bytes. */
export const MAX_SCRAM_MESSAGE = 4096;
/** PostgreSQL's SCRAM_RAW_NONCE_LEN: 18 random bytes, 24 base64 characters. */
const RAW_NONCE_LEN = 18;

export interface ScramServerOptions {
  /** null => unknown user (or no usable verifier): mock exchange that ends in 'bad-proof'. */
  verifier: ScramVerifier | null;
  /** The startup packet's user; feeds the mock salt. */
  username: string;
  /** Per-process (better: cluster-wide) random secret for mock salts. */
  mockSecret: Buffer;
  /** tls-server-end-point hash of our certificate when the connection is TLS and binding is possible. */
  channelBinding: Buffer | null;
  /** Iteration count shown to unknown users; set it to what real verifiers use (default 4096). */
  mockIterations?: number;
  /** Server nonce part, for deterministic tests only. */
  nonce?: string;
}

type State = 'init' | 'first-sent' | 'done' | 'failed';

/** Accepts Buffer or any Uint8Array view without copying. */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Bounds and decodes a SCRAM message. latin1 keeps bytes and characters 1:1, so the exact bytes the peer sent
 * go back into AuthMessage; any non-ASCII byte is only legal inside a user name, which is ignored.
 */
export function decodeScramMessage(data: Uint8Array, what: string): string {
  if (!(data instanceof Uint8Array)) throw new ScramError('malformed', `malformed SCRAM ${what}: not bytes`);
  if (data.length === 0) throw new ScramError('malformed', `malformed SCRAM ${what}: empty message`);
  if (data.length > MAX_SCRAM_MESSAGE) throw new ScramError('malformed', `malformed SCRAM ${what}: too long`);
  const buf = asBuffer(data);
  if (buf.includes(0)) throw new ScramError('malformed', `malformed SCRAM ${what}: NUL byte`);
  return buf.toString('latin1');
}

/** printable = %x21-2B / %x2D-7E (RFC 5802 §7): what a nonce may contain. */
export function isPrintable(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

/** One attribute (`x=value`) of a comma-separated SCRAM message. */
export interface ScramAttr {
  name: string;
  value: string;
}

/**
 * Splits `a=1,b=2,...` into attributes. Each must be ALPHA "=" value (RFC 5802 §7 attr-val); an empty part
 * (",,", trailing comma) is malformed. Values cannot contain ',' by construction.
 */
export function splitAttributes(text: string, what: string): ScramAttr[] {
  const parts = text.split(',');
  if (parts.length > 64) throw new ScramError('malformed', `malformed SCRAM ${what}: too many attributes`);
  return parts.map((part) => {
    const c = part.charCodeAt(0);
    const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!alpha || part.charCodeAt(1) !== 0x3d) {
      throw new ScramError(
        'malformed',
        `malformed SCRAM ${what}: attribute expected, found ${sanitize(part)}`,
      );
    }
    return { name: part[0], value: part.slice(2) };
  });
}

/** For error messages: printable ASCII only, '?' elsewhere, at most 30 characters (auth-scram.c does this). */
export function sanitize(s: string): string {
  const head = s.slice(0, 30).replace(/[^\x21-\x7e]/g, '?');
  return `"${head}${s.length > 30 ? '...' : ''}"`;
}

/**
 * Rejects extension attributes that repeat a defined one. PostgreSQL skips unknown extensions, and so do we,
 * but a second r= or p= is never legitimate and only makes parsers disagree about which one counts.
 */
export function checkExtensions(attrs: ScramAttr[], defined: string, what: string): void {
  for (const a of attrs) {
    if (defined.includes(a.name)) {
      throw new ScramError(
        'malformed',
        `malformed SCRAM ${what}: duplicate or misplaced attribute "${a.name}"`,
      );
    }
  }
}

export class ScramServerSession {
  private state: State = 'init';
  private readonly verifier: ScramVerifier;
  private readonly doomed: boolean;
  private readonly serverNonce: string;
  private cbindFlag: 'n' | 'y' | 'p' = 'n';
  private usePlus = false;
  private clientNonce = '';
  private clientFirstBare = '';
  private serverFirst = '';

  constructor(private readonly opts: ScramServerOptions) {
    if (opts.verifier) {
      const v = opts.verifier;
      if (
        v.storedKey.length !== SCRAM_KEY_LEN ||
        v.serverKey.length !== SCRAM_KEY_LEN ||
        v.salt.length === 0
      ) {
        throw new TypeError('ScramServerSession: verifier keys must be 32 bytes and the salt non-empty');
      }
      this.verifier = v;
      this.doomed = false;
    } else {
      this.verifier = mockVerifier(
        opts.username,
        opts.mockSecret,
        opts.mockIterations ?? SCRAM_DEFAULT_ITERATIONS,
      );
      this.doomed = true;
    }
    if (opts.nonce !== undefined && !isPrintable(opts.nonce)) {
      throw new TypeError('ScramServerSession: nonce must be printable ASCII without ","');
    }
    this.serverNonce = opts.nonce ?? randomBytes(RAW_NONCE_LEN).toString('base64');
  }

  /** Mechanisms for AuthenticationSASL, preferred first (PostgreSQL's order). */
  mechanisms(): string[] {
    return this.opts.channelBinding ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
  }

  /** SASLInitialResponse: mechanism + client-first-message. Returns server-first-message. */
  clientFirst(mechanism: string, data: Buffer): Buffer {
    return this.guard(() => {
      if (this.state !== 'init') throw new ScramError('sequence', 'unexpected SCRAM client-first-message');
      this.state = 'failed'; // until this message has been fully accepted
      this.selectMechanism(mechanism);
      this.readClientFirst(decodeScramMessage(data, 'client-first-message'));
      const v = this.verifier;
      this.serverFirst = `r=${this.clientNonce}${this.serverNonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
      this.state = 'first-sent';
      return Buffer.from(this.serverFirst, 'latin1');
    });
  }

  /** SASLResponse: client-final-message. Returns server-final-message (v=ServerSignature) on success. */
  clientFinal(data: Buffer): Buffer {
    return this.guard(() => {
      if (this.state !== 'first-sent')
        throw new ScramError('sequence', 'unexpected SCRAM client-final-message');
      this.state = 'failed';
      const { withoutProof, proof } = this.readClientFinal(decodeScramMessage(data, 'client-final-message'));
      const authMessage = Buffer.from(
        `${this.clientFirstBare},${this.serverFirst},${withoutProof}`,
        'latin1',
      );

      // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds iff H(ClientKey) == StoredKey.
      // Computed in full for a mock verifier too (PostgreSQL's order), so an unknown user costs the same.
      const clientSignature = hmacSha256(this.verifier.storedKey, authMessage);
      const candidate = sha256(xorBuffers(proof, clientSignature));
      const proofOk = timingSafeEqual(candidate, this.verifier.storedKey);
      if (!proofOk || this.doomed) {
        throw new ScramError('bad-proof', 'password authentication failed');
      }
      this.state = 'done';
      const serverSignature = hmacSha256(this.verifier.serverKey, authMessage);
      return Buffer.from(`v=${serverSignature.toString('base64')}`, 'latin1');
    });
  }

  /** True once the client proved knowledge of the password. */
  get authenticated(): boolean {
    return this.state === 'done';
  }

  private selectMechanism(mechanism: string): void {
    // -PLUS is only valid where we advertised it; a client picking it anyway is a protocol violation.
    if (mechanism === SCRAM_SHA_256_PLUS && this.opts.channelBinding) this.usePlus = true;
    else if (mechanism === SCRAM_SHA_256) this.usePlus = false;
    else
      throw new ScramError(
        'unsupported-mechanism',
        'client selected an invalid SASL authentication mechanism',
      );
  }

  private readClientFirst(msg: string): void {
    // client-first-message = gs2-header client-first-message-bare
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let pos: number;
    if (msg.startsWith('n,')) {
      if (this.usePlus) throw this.cbMissing();
      this.cbindFlag = 'n';
      pos = 2;
    } else if (msg.startsWith('y,')) {
      if (this.usePlus) throw this.cbMissing();
      // The client can bind but thinks we cannot: if we can, someone stripped -PLUS from our list.
      if (this.opts.channelBinding) {
        throw new ScramError(
          'channel-binding',
          'SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the ' +
            'server does not; however, this server does support channel binding',
        );
      }
      this.cbindFlag = 'y';
      pos = 2;
    } else if (msg.startsWith('p=')) {
      if (!this.usePlus) {
        throw new ScramError(
          'channel-binding',
          'malformed SCRAM message: the client selected SCRAM-SHA-256 without channel binding, but the SCRAM ' +
            'message includes channel binding data',
        );
      }
      const comma = msg.indexOf(',');
      const cbName = comma < 0 ? msg.slice(2) : msg.slice(2, comma);
      if (cbName !== CB_TYPE) {
        throw new ScramError('channel-binding', `unsupported SCRAM channel-binding type ${sanitize(cbName)}`);
      }
      if (comma < 0) throw new ScramError('malformed', 'malformed SCRAM message: incomplete gs2 header');
      this.cbindFlag = 'p';
      pos = comma + 1;
    } else {
      throw new ScramError(
        'malformed',
        `malformed SCRAM message: unexpected channel-binding flag ${sanitize(msg)}`,
      );
    }

    if (msg[pos] === 'a') {
      throw new ScramError('malformed', 'client uses authorization identity, but it is not supported');
    }
    if (msg[pos] !== ',') {
      throw new ScramError(
        'malformed',
        'malformed SCRAM message: unexpected attribute in client-first-message',
      );
    }
    this.clientFirstBare = msg.slice(pos + 1);

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    const attrs = splitAttributes(this.clientFirstBare, 'client-first-message');
    if (attrs[0].name === 'm') {
      throw new ScramError('malformed', 'client requires an unsupported SCRAM extension');
    }
    if (attrs[0].name !== 'n' || attrs.length < 2 || attrs[1].name !== 'r') {
      throw new ScramError(
        'malformed',
        'malformed SCRAM message: expected "n=" then "r=" in client-first-message',
      );
    }
    // attrs[0] is the SCRAM user name: ignored, the startup packet's user is the one authenticated.
    if (!isPrintable(attrs[1].value)) {
      throw new ScramError('malformed', 'non-printable characters in SCRAM nonce');
    }
    checkExtensions(attrs.slice(2), 'mnr', 'client-first-message');
    this.clientNonce = attrs[1].value;
  }

  private readClientFinal(msg: string): { withoutProof: string; proof: Buffer } {
    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const attrs = splitAttributes(msg, 'client-final-message');
    if (
      attrs.length < 3 ||
      attrs[0].name !== 'c' ||
      attrs[1].name !== 'r' ||
      attrs[attrs.length - 1].name !== 'p'
    ) {
      throw new ScramError(
        'malformed',
        'malformed SCRAM message: expected "c=", "r=" ... "p=" in client-final-message',
      );
    }
    checkExtensions(attrs.slice(2, -1), 'crp', 'client-final-message');

    this.checkChannelBinding(attrs[0].value);

    // Nonce: exactly client nonce + our nonce. Plain comparison: both halves are public.
    if (attrs[1].value !== this.clientNonce + this.serverNonce) {
      throw new ScramError('malformed', 'invalid SCRAM response: nonce does not match');
    }

    const proof = decodeBase64(attrs[attrs.length - 1].value);
    if (!proof || proof.length !== SCRAM_KEY_LEN) {
      throw new ScramError('malformed', 'malformed SCRAM message: malformed proof in client-final-message');
    }
    // Everything before ",p=" — the proof is the last attribute, so this is the text before the last comma.
    const withoutProof = msg.slice(0, msg.lastIndexOf(','));
    return { withoutProof, proof };
  }

  private checkChannelBinding(value: string): void {
    // c= carries base64(gs2-header [cbind-data]); gs2-header is fixed since authzid is refused.
    const got = decodeBase64(value);
    if (this.usePlus) {
      const cb = this.opts.channelBinding as Buffer;
      const expected = Buffer.concat([Buffer.from(`p=${CB_TYPE},,`, 'latin1'), cb]);
      if (!got || got.length !== expected.length || !timingSafeEqual(got, expected)) {
        throw new ScramError('channel-binding', 'SCRAM channel binding check failed');
      }
      return;
    }
    // Without binding it must repeat the flag of client-first: "n,," (biws) or "y,," (eSws).
    const expected = this.cbindFlag === 'y' ? 'y,,' : 'n,,';
    if (!got || got.toString('latin1') !== expected) {
      throw new ScramError(
        'channel-binding',
        'unexpected SCRAM channel-binding attribute in client-final-message',
      );
    }
  }

  private cbMissing(): ScramError {
    return new ScramError(
      'channel-binding',
      'malformed SCRAM message: the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not ' +
        'include channel binding data',
    );
  }

  /** Runs one step; anything that escapes as a non-ScramError is turned into one (and the session fails). */
  private guard<T>(step: () => T): T {
    try {
      return step();
    } catch (err) {
      this.state = 'failed';
      throw asScramError(err);
    }
  }
}

/**
 * PostgreSQL's mock_scram_secret: a salt that is stable per user name for a given secret (so repeated probes
 * see the same salt, like a real user), the chosen iteration count, and keys no proof can match.
 */
function mockVerifier(username: string, secret: Buffer, iterations: number): ScramVerifier {
  const salt = sha256(Buffer.concat([Buffer.from(username, 'utf8'), secret])).subarray(
    0,
    SCRAM_DEFAULT_SALT_LEN,
  );
  return {
    iterations,
    salt,
    storedKey: Buffer.alloc(SCRAM_KEY_LEN),
    serverKey: Buffer.alloc(SCRAM_KEY_LEN),
  };
}
