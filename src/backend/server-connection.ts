// One connection from pgwarden to an upstream PostgreSQL, logged in with the brokered account. It outlives the
// client sessions that borrow it (pooling), so it owns the framing state of its byte stream and the server-side
// facts a session must replay (ParameterStatus values, transaction status); the upstream's BackendKeyData stays
// here and is never shown to clients.

import type net from 'node:net';
import tls from 'node:tls';
import { AuthCode, BackendCode, TxStatus } from '../protocol/codes.js';
import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeErrorFields,
  decodeParameterStatus,
  decodeSASLMechanisms,
} from '../protocol/decode.js';
import { createFramer } from '../protocol/framing.js';
import { MessageStream, Want, wantAll, wantTable } from '../protocol/message-stream.js';
import * as writer from '../protocol/writer.js';
import { md5PasswordResponse } from '../auth/md5.js';
import { ScramClientSession } from '../auth/scram-client.js';
import { tryTlsServerEndPointHash } from '../auth/channel-binding.js';
import { stats } from '../metrics/worker-stats.js';
import { openUpstreamSocket, UpstreamConnectError } from './upstream-socket.js';
import type { UpstreamSettings } from './upstream-settings.js';

/** Whoever currently holds the connection: a client session, or the pool while it resets or idles. */
export interface ServerOwner {
  serverData(chunk: Buffer): void;
  serverReady(status: number): void;
  serverClosed(): void;
  /** Outcome messages (CommandComplete, ErrorResponse), delivered only while outcome tracking is on. */
  serverOutcome?(code: number, msg: Buffer): void;
  /**
   * Rewriting owners (policy, masking) receive every message whole instead of raw chunks, and write what the
   * client gets themselves; serverChunkEnd follows the last message of each read.
   */
  serverMessage?(code: number, msg: Buffer): void;
  serverChunkEnd?(): void;
}

/** The upstream refused the login or the startup; `errorResponse` is its original ErrorResponse when it sent one. */
export class UpstreamStartupError extends Error {
  override readonly name = 'UpstreamStartupError';
  constructor(
    message: string,
    readonly kind: 'connect' | 'auth' | 'startup',
    readonly errorResponse: Buffer | null = null,
  ) {
    super(message);
  }
}

const STREAM_WANTS = wantTable([
  [BackendCode.ReadyForQuery, Want.Bytes],
  [BackendCode.ParameterStatus, Want.Bytes],
]);

/** For a rewriting owner: every message, whole. */
const ALL_WANTS = wantAll(Want.Bytes);

/** For an audited session: also each statement's outcome. */
const OUTCOME_WANTS = wantTable([
  [BackendCode.ReadyForQuery, Want.Bytes],
  [BackendCode.ParameterStatus, Want.Bytes],
  [BackendCode.CommandComplete, Want.Bytes],
  [BackendCode.ErrorResponse, Want.Bytes],
]);

let nextConnectionId = 1;

export class ServerConnection {
  readonly id = nextConnectionId++;
  readonly params = new Map<string, string>();
  processId = 0;
  secret: Buffer = Buffer.alloc(0);
  txStatus: number = TxStatus.Idle;
  readonly createdAt = Date.now();
  idleSince = Date.now();
  closed = false;
  owner: ServerOwner | null = null;
  readonly stream: MessageStream;
  private counted = false;

  private constructor(
    readonly socket: net.Socket,
    readonly settings: UpstreamSettings,
    readonly paramsKey: string,
  ) {
    this.stream = new MessageStream(
      createFramer(
        { startup: false, maxMessageSize: settings.maxMessageSize, maxStartupSize: 10000 },
        settings.framing,
      ),
      STREAM_WANTS,
      (code, _start, _end, bytes) => this.onMessage(code, bytes!),
    );
    // Only ReadyForQuery and ParameterStatus are assembled: both are small.
    this.stream.maxAssembly = 1 << 20;
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /** Connects, negotiates TLS, logs in with the configured account and waits for the first ReadyForQuery. */
  static async connect(
    settings: UpstreamSettings,
    startupParams: ReadonlyArray<readonly [string, string]>,
    paramsKey: string,
  ): Promise<ServerConnection> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), settings.connectTimeoutMs);
    let socket: net.Socket;
    try {
      socket = await openUpstreamSocket(settings, abort.signal);
    } catch (e) {
      clearTimeout(timer);
      throw new UpstreamStartupError((e as Error).message, 'connect');
    }
    const conn = new ServerConnection(socket, settings, paramsKey);
    try {
      await conn.login(startupParams, abort.signal);
    } catch (e) {
      conn.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    stats.serverConnectionsOpened++;
    stats.serverConnectionsActive++;
    conn.counted = true;
    return conn;
  }

  private login(startupParams: ReadonlyArray<readonly [string, string]>, signal: AbortSignal): Promise<void> {
    const { settings, socket } = this;
    return new Promise<void>((resolve, reject) => {
      let scram: ScramClientSession | null = null;
      let authenticated = false;
      const finish = (err: Error | null) => {
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () =>
        finish(new UpstreamStartupError(`timed out after ${settings.connectTimeoutMs} ms`, 'connect'));
      const onClose = () =>
        finish(new UpstreamStartupError('the server closed the connection during login', 'connect'));
      const loginStream = new MessageStream(
        createFramer({ startup: false, maxMessageSize: 1 << 20, maxStartupSize: 10000 }, settings.framing),
        ALL_WANTS,
        (code, _s, _e, msg) => {
          try {
            handle(code, msg!);
          } catch (e) {
            finish(
              e instanceof UpstreamStartupError ? e : new UpstreamStartupError((e as Error).message, 'auth'),
            );
          }
        },
      );
      const handle = (code: number, msg: Buffer) => {
        switch (code) {
          case BackendCode.Authentication: {
            const { kind, data } = decodeAuthentication(msg);
            if (kind === AuthCode.Ok) {
              // A SCRAM exchange must have verified the server's signature first: an AuthenticationOk that skips
              // SASLFinal would let a man in the middle impersonate the server.
              if (scram && !scram.completed) {
                throw new UpstreamStartupError('the server skipped the SCRAM server signature', 'auth');
              }
              authenticated = true;
              return;
            }
            if (settings.password === undefined) {
              throw new UpstreamStartupError('the server asks for a password but none is configured', 'auth');
            }
            if (kind === AuthCode.CleartextPassword) {
              // A cleartext password may only cross an encrypted connection.
              if (!(socket instanceof tls.TLSSocket)) {
                throw new UpstreamStartupError(
                  'the server asks for a cleartext password over an unencrypted connection; refusing to send it',
                  'auth',
                );
              }
              socket.write(writer.passwordMessage(settings.password));
            } else if (kind === AuthCode.MD5Password) {
              socket.write(
                writer.passwordMessage(md5PasswordResponse(settings.user, settings.password, data)),
              );
            } else if (kind === AuthCode.SASL) {
              const cert = socket instanceof tls.TLSSocket ? socket.getPeerCertificate(false) : null;
              const channelBinding = cert && cert.raw ? tryTlsServerEndPointHash(cert.raw) : null;
              scram = new ScramClientSession({ password: settings.password, channelBinding });
              const mechanism = scram.chooseMechanism(decodeSASLMechanisms(data));
              socket.write(writer.saslInitialResponse(mechanism, scram.clientFirst()));
            } else if (kind === AuthCode.SASLContinue && scram) {
              socket.write(writer.saslResponse(scram.serverFirst(data)));
            } else if (kind === AuthCode.SASLFinal && scram) {
              scram.serverFinal(data);
            } else {
              throw new UpstreamStartupError(`unsupported authentication request ${kind}`, 'auth');
            }
            return;
          }
          case BackendCode.ErrorResponse: {
            const sqlstate = decodeErrorFields(msg).get('C') ?? 'XX000';
            const kind = !authenticated || sqlstate.startsWith('28') ? 'auth' : 'startup';
            throw new UpstreamStartupError(`SQLSTATE ${sqlstate}`, kind, Buffer.from(msg));
          }
          case BackendCode.ParameterStatus: {
            const [name, value] = decodeParameterStatus(msg);
            this.params.set(name, value);
            return;
          }
          case BackendCode.BackendKeyData: {
            const key = decodeBackendKeyData(msg);
            this.processId = key.processId;
            this.secret = key.secret;
            return;
          }
          case BackendCode.ReadyForQuery:
            this.txStatus = msg[5];
            finish(null);
            return;
          case BackendCode.NoticeResponse:
          case BackendCode.NegotiateProtocolVersion:
            return;
          default:
            throw new UpstreamStartupError(
              `unexpected message '${String.fromCharCode(code)}' during login`,
              'startup',
            );
        }
      };
      const onData = (chunk: Buffer) => {
        if (loginStream.push(chunk) !== 0)
          finish(new UpstreamStartupError('invalid message from the server', 'startup'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.on('data', onData);
      socket.on('close', onClose);
      socket.write(
        writer.startupMessage([['user', settings.user], ['database', settings.database], ...startupParams]),
      );
    });
  }

  /** Hands the connection to a new owner; from now on its bytes go there. */
  attach(owner: ServerOwner): void {
    this.owner = owner;
    this.socket.removeAllListeners('data');
    this.socket.on('data', (chunk: Buffer) => {
      try {
        // The owner at the start of the chunk gets all of it, even when a ReadyForQuery inside hands us on.
        const owner = this.owner;
        const rewriting = this.rewriting;
        if (this.stream.push(chunk) !== 0) throw new Error('invalid message framing from the server');
        if (rewriting) owner?.serverChunkEnd?.();
        else owner?.serverData(chunk);
      } catch {
        // A server that breaks the protocol cannot be trusted with the session any more.
        stats.protocolErrors++;
        this.close();
      }
    });
    this.socket.resume();
  }

  /** Outcome tracking costs decoding on the hot path, so only audited sessions turn it on. */
  trackOutcomes(on: boolean): void {
    this.stream.want = on ? OUTCOME_WANTS : STREAM_WANTS;
  }

  /**
   * Message-by-message delivery to the owner. Switched on when a session attaches (never mid-stream: a message
   * half forwarded as raw bytes would be delivered again whole) and off when it is released.
   */
  setRewriting(on: boolean): void {
    this.rewriting = on;
    this.stream.want = on ? ALL_WANTS : STREAM_WANTS;
    // Rows are assembled whole when they straddle reads; max_message_size (the framer's limit) bounds them.
    this.stream.maxAssembly = on ? Number.POSITIVE_INFINITY : 1 << 20;
  }
  private rewriting = false;

  private onMessage(code: number, msg: Buffer): void {
    if (code === BackendCode.ReadyForQuery) {
      this.txStatus = msg[5];
    } else if (code === BackendCode.ParameterStatus) {
      const [name, value] = decodeParameterStatus(msg);
      this.params.set(name, value);
    }
    if (this.rewriting) {
      // The owner sees ReadyForQuery in its place among the messages it forwards.
      this.owner?.serverMessage?.(code, msg);
      return;
    }
    if (code === BackendCode.ReadyForQuery) this.owner?.serverReady(this.txStatus);
    else if (code !== BackendCode.ParameterStatus) this.owner?.serverOutcome?.(code, msg);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.counted) stats.serverConnectionsActive--;
    if (!this.socket.destroyed) {
      this.socket.end(writer.terminate());
      this.socket.destroySoon();
    }
    const owner = this.owner;
    this.owner = null;
    owner?.serverClosed();
  }
}

export { UpstreamConnectError };
