// Client side of SCRAM-SHA-256 / -PLUS (RFC 5802, RFC 7677): pgwarden logging into PostgreSQL.
//
// Mirrors libpq (fe-auth-scram.c): empty SCRAM user name (PostgreSQL takes the startup user), 18-byte
// random nonce, channel binding type tls-server-end-point, and the gs2 flag rules of RFC 5802 §6:
// "p=tls-server-end-point" when binding, "y" when we could bind but the server did not offer -PLUS (a server
// that can bind rejects that as a downgrade), "n" when we cannot bind at all. The server is untrusted input
// too: a bounded iteration count (a hostile server could otherwise make us burn CPU), a nonce that must
// extend ours, and a constant-time check of the ServerSignature, which proves the server knows the verifier.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  SCRAM_KEY_LEN,
  clientKeyOf,
  decodeBase64,
  hmacSha256,
  saltedPassword,
  serverKeyOf,
  sha256,
  xorBuffers,
} from './scram-verifier.js';
import {
  CB_TYPE,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  asScramError,
  ScramError,
  type ScramErrorReason,
  asBuffer,
  checkExtensions,
  decodeScramMessage,
  isPrintable,
  sanitize,
  splitAttributes,
} from './scram-server.js';

export interface ScramClientOptions {
  password: string;
  /** tls-server-end-point hash of the server's certificate; when given, -PLUS is used if offered. */
  channelBinding?: Buffer | null;
  /** Fail unless -PLUS is negotiated (libpq's channel_binding=require). */
  requireChannelBinding?: boolean;
  /** Highest iteration count accepted from the server (default 10,000,000). */
  maxIterations?: number;
  /** SCRAM user name (n=); PostgreSQL ignores it and libpq sends it empty. For test vectors. */
  username?: string;
  /** Client nonce, for deterministic tests only. */
  nonce?: string;
}

export const DEFAULT_MAX_ITERATIONS = 10_000_000;
const RAW_NONCE_LEN = 18;

type State = 'init' | 'chosen' | 'first-sent' | 'final-sent' | 'done' | 'failed';

/** Server error codes of RFC 5802 §7 server-error-value, mapped onto our reasons. */
const SERVER_ERRORS: Record<string, ScramErrorReason> = {
  'channel-bindings-dont-match': 'channel-binding',
  'server-does-support-channel-binding': 'channel-binding',
  'channel-binding-not-supported': 'channel-binding',
  'unsupported-channel-binding-type': 'channel-binding',
  'invalid-encoding': 'malformed',
  'extensions-not-supported': 'malformed',
  'invalid-username-encoding': 'malformed',
};

export class ScramClientSession {
  private state: State = 'init';
  private mechanism = '';
  private readonly clientNonce: string;
  private readonly maxIterations: number;
  private clientFirstBare = Buffer.alloc(0);
  private expectedServerSignature: Buffer | null = null;

  constructor(private readonly opts: ScramClientOptions) {
    if (typeof opts.password !== 'string')
      throw new TypeError('ScramClientSession: password must be a string');
    if (opts.nonce !== undefined && !isPrintable(opts.nonce)) {
      throw new TypeError('ScramClientSession: nonce must be printable ASCII without ","');
    }
    this.clientNonce = opts.nonce ?? randomBytes(RAW_NONCE_LEN).toString('base64');
    this.maxIterations = opts.maxIterations ?? DEFAULT_MAX_ITERATIONS;
  }

  /** Picks from AuthenticationSASL's list: -PLUS when we can bind and it is offered, else plain SCRAM-SHA-256. */
  chooseMechanism(offered: string[]): string {
    return this.guard(() => {
      if (this.state !== 'init') throw new ScramError('sequence', 'SASL mechanism already chosen');
      const canBind = this.opts.channelBinding != null;
      if (canBind && offered.includes(SCRAM_SHA_256_PLUS)) {
        this.mechanism = SCRAM_SHA_256_PLUS;
      } else if (this.opts.requireChannelBinding) {
        throw new ScramError(
          'channel-binding',
          canBind
            ? 'channel binding is required, but the server did not offer SCRAM-SHA-256-PLUS'
            : 'channel binding is required, but no server certificate hash is available',
        );
      } else if (offered.includes(SCRAM_SHA_256)) {
        this.mechanism = SCRAM_SHA_256;
      } else {
        throw new ScramError(
          'unsupported-mechanism',
          "none of the server's SASL authentication mechanisms are supported",
        );
      }
      this.state = 'chosen';
      return this.mechanism;
    });
  }

  /** The SASLInitialResponse payload (client-first-message). */
  clientFirst(): Buffer {
    return this.guard(() => {
      if (this.state !== 'chosen') throw new ScramError('sequence', 'choose a SASL mechanism first');
      const user = (this.opts.username ?? '').replace(/=/g, '=3D').replace(/,/g, '=2C');
      this.clientFirstBare = Buffer.from(`n=${user},r=${this.clientNonce}`, 'utf8');
      this.state = 'first-sent';
      return Buffer.concat([Buffer.from(this.gs2Header(), 'latin1'), this.clientFirstBare]);
    });
  }

  /** Takes server-first-message, returns client-final-message (with the proof). */
  serverFirst(data: Buffer): Buffer {
    return this.guard(() => {
      if (this.state !== 'first-sent')
        throw new ScramError('sequence', 'unexpected SCRAM server-first-message');
      this.state = 'failed';
      const raw = decodeScramMessage(data, 'server-first-message');
      const attrs = splitAttributes(raw, 'server-first-message');
      if (attrs[0].name === 'm')
        throw new ScramError('malformed', 'server requires an unsupported SCRAM extension');
      if (attrs.length < 3 || attrs[0].name !== 'r' || attrs[1].name !== 's' || attrs[2].name !== 'i') {
        throw new ScramError(
          'malformed',
          'malformed SCRAM message: expected "r=", "s=", "i=" in server-first-message',
        );
      }
      checkExtensions(attrs.slice(3), 'mrsi', 'server-first-message');

      const nonce = attrs[0].value;
      if (
        !isPrintable(nonce) ||
        !nonce.startsWith(this.clientNonce) ||
        nonce.length === this.clientNonce.length
      ) {
        throw new ScramError(
          'malformed',
          'invalid SCRAM server-first-message: server nonce does not extend ours',
        );
      }
      const salt = decodeBase64(attrs[1].value);
      if (!salt || salt.length === 0)
        throw new ScramError('malformed', 'malformed SCRAM message: invalid salt');
      if (!/^[1-9][0-9]{0,9}$/.test(attrs[2].value)) {
        throw new ScramError('malformed', 'malformed SCRAM message: invalid iteration count');
      }
      const iterations = Number(attrs[2].value);
      if (iterations > this.maxIterations) {
        throw new ScramError(
          'malformed',
          `SCRAM iteration count ${iterations} exceeds the limit of ${this.maxIterations}`,
        );
      }

      const cbindInput = Buffer.concat([
        Buffer.from(this.gs2Header(), 'latin1'),
        this.mechanism === SCRAM_SHA_256_PLUS ? (this.opts.channelBinding as Buffer) : Buffer.alloc(0),
      ]);
      const withoutProof = Buffer.from(`c=${cbindInput.toString('base64')},r=${nonce}`, 'latin1');
      const authMessage = Buffer.concat([
        this.clientFirstBare,
        Buffer.from(',', 'latin1'),
        asBuffer(data),
        Buffer.from(',', 'latin1'),
        withoutProof,
      ]);

      const salted = saltedPassword(this.opts.password, salt, iterations);
      const clientKey = clientKeyOf(salted);
      const clientSignature = hmacSha256(sha256(clientKey), authMessage);
      const proof = xorBuffers(clientKey, clientSignature);
      this.expectedServerSignature = hmacSha256(serverKeyOf(salted), authMessage);
      salted.fill(0);
      clientKey.fill(0);

      this.state = 'final-sent';
      return Buffer.concat([withoutProof, Buffer.from(`,p=${proof.toString('base64')}`, 'latin1')]);
    });
  }

  /** Takes server-final-message; returns when the server proved it knows our verifier, throws otherwise. */
  serverFinal(data: Buffer): void {
    this.guard(() => {
      if (this.state !== 'final-sent')
        throw new ScramError('sequence', 'unexpected SCRAM server-final-message');
      this.state = 'failed';
      const attrs = splitAttributes(decodeScramMessage(data, 'server-final-message'), 'server-final-message');
      if (attrs[0].name === 'e') {
        const reason = SERVER_ERRORS[attrs[0].value] ?? 'bad-proof';
        throw new ScramError(reason, `server rejected SCRAM authentication: ${sanitize(attrs[0].value)}`);
      }
      if (attrs[0].name !== 'v') {
        throw new ScramError('malformed', 'malformed SCRAM message: expected "v=" in server-final-message');
      }
      checkExtensions(attrs.slice(1), 've', 'server-final-message');
      const signature = decodeBase64(attrs[0].value);
      const expected = this.expectedServerSignature as Buffer;
      if (!signature || signature.length !== SCRAM_KEY_LEN || !timingSafeEqual(signature, expected)) {
        throw new ScramError(
          'bad-proof',
          'invalid SCRAM server signature: the server does not know the password',
        );
      }
      this.state = 'done';
    });
  }

  /** True once the server's signature checked out. The caller must not accept AuthenticationOk before this. */
  get completed(): boolean {
    return this.state === 'done';
  }

  private gs2Header(): string {
    if (this.mechanism === SCRAM_SHA_256_PLUS) return `p=${CB_TYPE},,`;
    return this.opts.channelBinding != null ? 'y,,' : 'n,,';
  }

  private guard<T>(step: () => T): T {
    try {
      return step();
    } catch (err) {
      this.state = 'failed';
      throw asScramError(err);
    }
  }
}
