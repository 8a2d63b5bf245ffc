// One client connection from accept to close: the startup phase (SSLRequest / direct TLS / GSSENCRequest /
// CancelRequest / StartupMessage), SCRAM authentication against pgwarden's own users, the borrow of a server
// connection from the pool, then the forwarding of both byte streams. Forwarding never re-serialises: each read is
// framed (one WASM call), the few messages that change state are noted, and the chunk goes out as one write.

import crypto from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import { PgwardenError, pgwError, pgwErrorWithDetail, type ErrorCode } from '../core/errors.js';
import { describeError, log } from '../core/log.js';
import { ScramError, ScramServerSession } from '../auth/scram-server.js';
import { Pool, PoolTimeoutError } from '../backend/pool.js';
import { ServerConnection, UpstreamStartupError, type ServerOwner } from '../backend/server-connection.js';
import { stats, type AuthFailureReason } from '../metrics/worker-stats.js';
import { BackendCode, FrontendCode, RequestCode, TxStatus } from '../protocol/codes.js';
import {
  decodeBind,
  decodeCancel,
  decodeClose,
  decodeCommandComplete,
  dataRowValue,
  decodeDataRow,
  decodeErrorFields,
  decodeExecute,
  decodeParameterStatus,
  decodeParse,
  decodeQuery,
  decodeSASLInitialResponse,
  decodeStartup,
  ProtocolError,
} from '../protocol/decode.js';
import { SessionAudit, type RoundTripOutcome } from '../audit/session-audit.js';
import { createFramer, FrameError } from '../protocol/framing.js';
import {
  ASSEMBLY_TOO_LARGE,
  atMessageBoundary,
  MessageStream,
  Want,
  wantAll,
  wantTable,
} from '../protocol/message-stream.js';
import * as writer from '../protocol/writer.js';
import { upgradeClient } from './tls.js';
import { StatementGate } from './statement-gate.js';
import { ProxyHeaderParser } from './proxy-protocol.js';
import {
  certificateNamesUser,
  verifiedClientCertificate,
  type ClientCertificate,
} from '../auth/client-cert.js';
import { lockoutKeys } from '../auth/lockout.js';
import { sendCancel } from '../backend/cancel.js';
import { SessionPolicy } from '../policy/session-policy.js';
import { statementTextRisk, type CompiledRole, type MaskedViewColumn } from '../policy/rules.js';
import { SessionMasker } from '../masking/session-masker.js';
import { canonicalText } from '../masking/typed-values.js';
import { maskedViewColumns } from '../masking/mask-catalog.js';
import type { MaskRule } from '../masking/mask-spec.js';
import {
  decodeBindResultFormats,
  ResultTracker,
  type ResultDescription,
  type ResultField,
} from '../masking/result-tracker.js';
import { formatCopyCsv, formatCopyText, parseCopyCsv, parseCopyText } from '../masking/copy-rows.js';
import type { DatabaseEntry, UserEntry } from './runtime.js';
import type { WorkerContext } from './worker-context.js';

type Phase = 'startup' | 'auth' | 'connecting' | 'active' | 'closed';

/** Startup: every message is needed whole. */
const ALL_BYTES = wantAll(Want.Bytes);

/** Authentication: SASL responses whole; any other code is refused on its type byte alone, as PostgreSQL does. */
const AUTH_WANTS = wantTable(
  Array.from({ length: 256 }, (_, i) => [i, i === FrontendCode.Password ? Want.Bytes : Want.Code] as const),
);

/** Forwarding: only the codes that open a round trip, count a statement or end the session. */
const ACTIVE_WANTS = wantTable([
  [FrontendCode.Query, Want.Code],
  [FrontendCode.Sync, Want.Code],
  [FrontendCode.FunctionCall, Want.Code],
  [FrontendCode.Execute, Want.Code],
  [FrontendCode.Terminate, Want.Code],
]);

/** Forwarding for an audited session: statements are read whole to be recorded before they are forwarded. */
const AUDITED_WANTS = wantTable([
  [FrontendCode.Query, Want.Bytes],
  [FrontendCode.Parse, Want.Bytes],
  [FrontendCode.Bind, Want.Bytes],
  [FrontendCode.Execute, Want.Bytes],
  [FrontendCode.Sync, Want.Code],
  [FrontendCode.FunctionCall, Want.Code],
  [FrontendCode.Terminate, Want.Code],
]);

/** Forwarding under SQL policy: every message whole, so any of them can be judged, replaced or held back. */
const GATED_WANTS = ALL_BYTES;

/** Largest SASL message accepted before login (PostgreSQL: PG_MAX_AUTH_TOKEN_LENGTH 65535, plus the header). */
const MAX_AUTH_MESSAGE = 65535 + 5;

/** Startup parameters that pgwarden owns or refuses instead of passing upstream. */
const NOT_FORWARDED = new Set(['user', 'database', 'replication']);

/** PostgreSQL's parse_bool accepts these for "off"; anything else in `replication` asks for a walsender. */
const FALSE_WORDS = new Set(['false', 'off', 'no', '0', 'f', 'n']);

export class ClientSession implements ServerOwner {
  private phase: Phase = 'startup';
  private io: net.Socket;
  private stream: MessageStream;
  private tlsActive = false;
  private startupTimer: NodeJS.Timeout | null;
  private chunkLength = 0;
  private userName = '';
  private user: UserEntry | undefined;
  private databaseName = '';
  private upstreamParams: Array<[string, string]> = [];
  private negotiate: Buffer | null = null;
  private scram: ScramServerSession | null = null;
  private scramFinal: Buffer | null = null;
  private pool: Pool | null = null;
  private server: ServerConnection | null = null;
  private processId = 0;
  cancelSecret: Buffer = Buffer.alloc(0);
  /** Round trips sent upstream whose ReadyForQuery has not come back yet. */
  private outstanding = 0;
  private roundTripStart = 0;
  private txStatus: number = TxStatus.Idle;
  private lastActivity = Date.now();
  private terminateAt = -1;
  private closeWhenForwarded = false;
  private clientPaused = false;
  private serverPaused = false;
  /** The audit trail of this session; null when audit is off (the hot path then decodes nothing). */
  private readonly audit: SessionAudit | null;
  private outcome: RoundTripOutcome = { tags: [], rows: 0, sqlstate: null };
  private auditedInChunk = 0;
  private queriesInChunk = 0;
  private auditedOnlySimple = true;
  /** Bytes queued towards a slow peer before reading from the other side pauses (limits.write_buffer_high_water). */
  private readonly highWater: number;
  /** The client's address: the socket's peer, or the one a trusted load balancer's PROXY header carries. */
  private clientAddress: string | null;
  private clientPort: number | null;
  private clientCert: ClientCertificate | null = null;
  private authMethod = 'scram-sha-256';
  /** SQL policy for this session; null when access.enforce is off (then nothing is parsed). */
  private gate: StatementGate | null = null;
  /** Gated forwarding: the messages (or replacements) of the read being processed, in order. */
  private out: Buffer[] = [];
  private sentRoundTrips = 0;
  private doneRoundTrips = 0;
  /** Rows of the current statement's result, against max_rows; rows are dropped until ReadyForQuery once hit. */
  private rowCount = 0;
  private rowStop = false;
  /** Masking: the session's masker and the tracker that ties rows to their descriptions; null when no role the
   *  session may take on has masks. */
  private masker: SessionMasker | null = null;
  private tracker: ResultTracker | null = null;
  /** Expressions in results are masked (not only content-checked) until this round trip has ended. */
  private maskedReadsUntil = 0;

  constructor(
    private readonly raw: net.Socket,
    private readonly ctx: WorkerContext,
  ) {
    this.io = raw;
    const rt = ctx.runtime;
    this.highWater = rt.writeBufferHighWater;
    this.audit = ctx.audit ? ctx.audit.forSession() : null;
    this.clientAddress = raw.remoteAddress ?? null;
    this.clientPort = raw.remotePort ?? null;
    this.stream = this.newStartupStream();
    stats.clientConnectionsOpened++;
    stats.clientConnectionsActive++;
    ctx.allSessions.add(this);
    raw.setNoDelay(true);
    raw.on('error', () => this.close());
    raw.on('close', () => this.close());
    this.startupTimer = setTimeout(() => {
      this.fail(pgwError('PGW_ERR_STARTUP_TIMEOUT', rt.startupTimeoutMs));
    }, rt.startupTimeoutMs);
    const trusted = rt.policy.proxyTrusted;
    if (trusted && this.clientAddress !== null && trusted.has(this.clientAddress)) {
      const parser = new ProxyHeaderParser();
      raw.on('data', (chunk: Buffer) => this.onProxyData(parser, chunk));
      return;
    }
    if (!this.addressAllowed()) return;
    this.audit?.connectionOpen(this.clientAddress ?? undefined, this.clientPort ?? undefined);
    raw.on('data', (chunk: Buffer) => this.onFirstData(chunk));
  }

  /** A trusted load balancer's connection: its PROXY header says who the client is; the rest is PostgreSQL. */
  private onProxyData(parser: ProxyHeaderParser, chunk: Buffer): void {
    const result = parser.push(chunk);
    if (result.state === 'more') return;
    this.raw.removeAllListeners('data');
    if (result.state === 'error') {
      stats.protocolErrors++;
      this.fail(pgwError('PGW_ERR_PROXY_HEADER', result.message));
      return;
    }
    const source = result.header.source;
    if (source) {
      this.clientAddress = source.address;
      this.clientPort = source.port;
    }
    if (!this.addressAllowed()) return;
    this.audit?.connectionOpen(this.clientAddress ?? undefined, this.clientPort ?? undefined);
    if (result.rest.length > 0) this.onFirstData(result.rest);
    else this.raw.once('data', (c: Buffer) => this.onFirstData(c));
  }

  /** access.deny_cidrs, checked before anything else is read from the client. */
  private addressAllowed(): boolean {
    if (this.clientAddress !== null && this.ctx.runtime.policy.denyCidrs.has(this.clientAddress)) {
      stats.addressRefusals++;
      log.info('client address refused', { rule: 'access.deny_cidrs', worker: this.ctx.workerIndex });
      this.fail(pgwError('PGW_ERR_ADDRESS_DENIED'));
      return false;
    }
    return true;
  }

  private newStartupStream(): MessageStream {
    const rt = this.ctx.runtime;
    const stream = new MessageStream(
      createFramer(
        { startup: true, maxMessageSize: rt.maxMessageSize, maxStartupSize: rt.maxStartupSize },
        rt.framing,
      ),
      ALL_BYTES,
      (code, start, end, bytes) => this.onMessage(code, start, end, bytes),
    );
    stream.maxAssembly = MAX_AUTH_MESSAGE;
    return stream;
  }

  // ---- reading ------------------------------------------------------------------------------------------------

  /** The first read tells a PG17 direct-TLS handshake (a TLS record, 0x16) from the PostgreSQL startup packet. */
  private onFirstData(chunk: Buffer): void {
    this.raw.removeAllListeners('data');
    if (this.ctx.runtime.policy.proxyTrusted && (chunk[0] === 0x50 || chunk[0] === 0x0d)) {
      // "PROXY " (v1) or "\r\n\r\n..." (v2), which no startup packet can begin with: a PROXY header from an
      // address that is not a trusted load balancer would let any client claim any address.
      stats.addressRefusals++;
      this.fail(
        pgwError('PGW_ERR_PROXY_HEADER', 'sent from an address that is not in listen.proxy_protocol.trusted'),
      );
      return;
    }
    if (chunk[0] === 0x16) {
      const clientTls = this.ctx.runtime.tls;
      if (!clientTls) {
        this.close(); // a TLS client cannot read a PostgreSQL error; nothing else can be said
        return;
      }
      this.startTls(upgradeClient(this.raw, clientTls, chunk), true);
      return;
    }
    this.raw.on('data', (c: Buffer) => this.onData(c));
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    try {
      this.chunkLength = chunk.length;
      if (this.phase === 'active') {
        this.forwardClientChunk(chunk);
        return;
      }
      const error = this.stream.push(chunk);
      if (error !== FrameError.None && this.phase !== 'closed') this.frameError(error);
    } catch (e) {
      this.internalError(e);
    }
  }

  private frameError(error: number): void {
    stats.protocolErrors++;
    const what =
      error === FrameError.LengthTooLarge || error === ASSEMBLY_TOO_LARGE
        ? 'message length exceeds the limit'
        : 'message length too small';
    this.fail(pgwError('PGW_ERR_MESSAGE_LENGTH', what));
  }

  private onMessage(code: number, start: number, end: number, bytes: Buffer | null): void {
    if (this.phase === 'closed') return;
    try {
      switch (this.phase) {
        case 'startup':
          this.onStartupMessage(code, end, bytes!);
          return;
        case 'auth':
          this.onAuthMessage(code, bytes!);
          return;
        case 'connecting':
          throw new ProtocolError('message sent before authentication completed');
        case 'active':
          this.onActiveMessage(code, start, bytes);
          return;
      }
    } catch (e) {
      if (e instanceof PgwardenError) this.fail(e);
      else if (e instanceof ProtocolError) {
        stats.protocolErrors++;
        this.fail(pgwError('PGW_ERR_PROTOCOL_VIOLATION', e.message));
      } else this.internalError(e);
    }
  }

  // ---- startup phase ------------------------------------------------------------------------------------------

  private onStartupMessage(code: number, end: number, msg: Buffer): void {
    switch (code) {
      case RequestCode.SSLRequest:
      case RequestCode.GSSENCRequest: {
        if (this.tlsActive) throw new ProtocolError('SSLRequest or GSSENCRequest inside TLS');
        if (end !== this.chunkLength) {
          // Plaintext that follows the request would otherwise be read as if it came through TLS (CVE-2021-23214).
          stats.protocolErrors++;
          this.fail(pgwError('PGW_ERR_SSL_INJECTION'));
          return;
        }
        const clientTls = this.ctx.runtime.tls;
        if (code === RequestCode.SSLRequest && clientTls) {
          this.raw.write('S');
          this.startTls(upgradeClient(this.raw, clientTls, null), false);
        } else {
          this.raw.write('N'); // GSSAPI encryption is not offered; the client goes on with SSL or plaintext
        }
        return;
      }
      case RequestCode.CancelRequest: {
        const { processId, secret } = decodeCancel(msg);
        this.ctx.routeCancel(processId, Buffer.from(secret));
        this.close();
        return;
      }
      default:
        this.onStartupPacket(msg);
    }
  }

  private startTls(socket: tls.TLSSocket, direct: boolean): void {
    this.tlsActive = true;
    this.io = socket;
    this.stream = this.newStartupStream();
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.once('secure', () => {
      if (direct && socket.alpnProtocol !== 'postgresql') {
        // PG17 direct TLS requires ALPN; a TLS client without it is not speaking PostgreSQL.
        this.close();
        return;
      }
      socket.on('data', (c: Buffer) => this.onData(c));
    });
  }

  private onStartupPacket(msg: Buffer): void {
    const packet = decodeStartup(msg);
    if (packet.major !== 3) {
      throw pgwError('PGW_ERR_UNSUPPORTED_PROTOCOL', `${packet.major}.${packet.minor}`);
    }
    const rt = this.ctx.runtime;
    if (!this.tlsActive && !rt.allowPlaintext) {
      this.authFailed('tls_required', pgwError('PGW_ERR_TLS_REQUIRED'));
      return;
    }
    if (this.ctx.draining) throw pgwError('PGW_ERR_SHUTTING_DOWN');
    const replication = packet.params.get('replication');
    if (replication !== undefined && !FALSE_WORDS.has(replication.toLowerCase())) {
      throw pgwError('PGW_ERR_REPLICATION_REFUSED');
    }
    const user = packet.params.get('user');
    if (!user) throw pgwError('PGW_ERR_NO_USER');
    if (this.ctx.allSessions.size > rt.maxClientsPerWorker) {
      stats.clientsRefused++;
      throw pgwError('PGW_ERR_TOO_MANY_CONNECTIONS', rt.maxClientConnections);
    }
    this.userName = user;
    this.databaseName = packet.params.get('database') || user;
    // Protocol options (_pq_.*) and versions above 3.0 are answered with NegotiateProtocolVersion: we speak 3.0.
    const unknownOptions: string[] = [];
    for (const [name, value] of packet.params) {
      if (name.startsWith('_pq_.')) unknownOptions.push(name);
      else if (!NOT_FORWARDED.has(name)) this.upstreamParams.push([name, value]);
    }
    if (packet.minor > 0 || unknownOptions.length > 0) {
      this.negotiate = writer.negotiateProtocolVersion(0, unknownOptions);
    }
    this.user = rt.users.get(user);
    this.phase = 'auth';
    this.stream.want = AUTH_WANTS;
    const lockout = this.ctx.lockoutStore();
    if (!lockout) {
      this.beginAuthentication();
      return;
    }
    // Locked names and addresses are refused before any credential is looked at, known user or not, so the
    // refusal says nothing about which names exist.
    this.io.pause();
    lockout.lockedFor(lockoutKeys(user, this.clientAddress), Date.now()).then(
      (ms) => {
        if (this.phase !== 'auth') return;
        if (ms > 0) {
          stats.lockouts++;
          this.audit?.lockout(user, this.clientAddress, Date.now() + ms);
          log.info('login refused: locked out', { worker: this.ctx.workerIndex });
          this.fail(pgwError('PGW_ERR_LOCKED_OUT'));
          return;
        }
        this.io.resume();
        this.beginAuthentication();
      },
      (e: unknown) => this.internalError(e),
    );
  }

  /**
   * Decides the factors: a verified client certificate that names the user, a SCRAM exchange, or both. Whatever
   * is missing, the client gets the same SCRAM challenge (against a mock verifier when the password cannot
   * succeed), so neither an unknown name nor a certificate-only account is told apart from a wrong password.
   */
  private beginAuthentication(): void {
    const rt = this.ctx.runtime;
    const user = this.user;
    if (this.tlsActive && rt.tls?.requestCert)
      this.clientCert = verifiedClientCertificate(this.io as tls.TLSSocket);
    const certOk =
      user?.certificate != null &&
      this.clientCert !== null &&
      certificateNamesUser(this.clientCert, user.certificate);
    if (user && user.auth === 'certificate' && certOk) {
      this.authMethod = 'cert';
      this.phase = 'connecting';
      this.io.pause();
      if (this.negotiate) this.io.write(this.negotiate);
      void this.connectUpstream();
      return;
    }
    const passwordCanSucceed =
      user !== undefined && user.auth !== 'certificate' && (user.auth === 'password' || certOk);
    if (user && user.auth === 'both') this.authMethod = 'cert+scram-sha-256';
    this.certificateMissing = user !== undefined && !passwordCanSucceed;
    this.scram = new ScramServerSession({
      verifier: passwordCanSucceed ? user.verifier : null,
      username: this.userName,
      mockSecret: rt.mockSecret,
      channelBinding: this.tlsActive && rt.tls ? rt.tls.endPointHash : null,
    });
    const request = writer.authenticationSASL(this.scram.mechanisms());
    this.io.write(this.negotiate ? Buffer.concat([this.negotiate, request]) : request);
  }
  /** The user exists but lacks the certificate its config asks for (logged as such; the client sees 28P01). */
  private certificateMissing = false;

  // ---- authentication -----------------------------------------------------------------------------------------

  private onAuthMessage(code: number, msg: Buffer): void {
    if (code !== FrontendCode.Password) {
      // Includes a second StartupMessage: it is not a fresh login but a protocol violation.
      throw new ProtocolError(`expected SASL response, got message type ${describeCode(code)}`);
    }
    const scram = this.scram!;
    try {
      if (this.scramFinal === null && !this.scramStarted) {
        const { mechanism, data } = decodeSASLInitialResponse(msg);
        this.scramStarted = true;
        this.io.write(writer.authenticationSASLContinue(scram.clientFirst(mechanism, data)));
        return;
      }
      this.scramFinal = scram.clientFinal(msg.subarray(5));
    } catch (e) {
      if (!(e instanceof ScramError)) throw e;
      if (e.reason === 'bad-proof') {
        this.authFailed(
          this.certificateMissing ? 'certificate' : this.user ? 'bad_password' : 'unknown_user',
          pgwError('PGW_ERR_AUTH_FAILED', this.userName),
        );
      } else if (e.reason === 'channel-binding') {
        this.authFailed('channel_binding', pgwErrorWithDetail('PGW_ERR_CHANNEL_BINDING', e.message));
      } else {
        this.authFailed(
          'malformed',
          pgwErrorWithDetail('PGW_ERR_PROTOCOL_VIOLATION', e.message, 'invalid SCRAM exchange'),
        );
      }
      return;
    }
    this.phase = 'connecting';
    this.io.pause();
    void this.connectUpstream();
  }
  private scramStarted = false;

  private authFailed(reason: AuthFailureReason, error: PgwardenError): void {
    stats.authFailures[reason]++;
    this.audit?.loginFailure(this.userName, reason, this.tlsInfo());
    log.info('client authentication failed', { reason, worker: this.ctx.workerIndex });
    if (this.userName && reason !== 'tls_required' && reason !== 'database_not_allowed') {
      void this.ctx.lockoutStore()?.recordFailure(lockoutKeys(this.userName, this.clientAddress), Date.now());
    }
    this.fail(error);
  }

  private async connectUpstream(): Promise<void> {
    const rt = this.ctx.runtime;
    const db: DatabaseEntry | undefined = rt.databases.get(this.databaseName);
    if (!db) return this.fail(pgwError('PGW_ERR_UNKNOWN_DATABASE', this.databaseName));
    if (this.user!.databases && !this.user!.databases.has(db.name)) {
      stats.authFailures.database_not_allowed++;
      this.audit?.loginFailure(this.userName, 'database_not_allowed', this.tlsInfo());
      return this.fail(pgwError('PGW_ERR_DATABASE_NOT_ALLOWED', this.userName, db.name));
    }
    if (this.audit && !this.audit.available && this.ctx.audit!.refuseWhenUnavailable) {
      return this.fail(pgwError('PGW_ERR_AUDIT_UNAVAILABLE_SESSION'));
    }
    const user = this.user!;
    // Checked after authentication, so an address rule says nothing to someone who does not hold the credentials.
    if (user.cidrs && (this.clientAddress === null || !user.cidrs.has(this.clientAddress))) {
      stats.addressRefusals++;
      this.audit?.loginFailure(this.userName, 'address_not_allowed', this.tlsInfo());
      return this.fail(pgwError('PGW_ERR_ADDRESS_DENIED'));
    }
    // Only the name is cleared: one valid account must not reset its address's count between guesses at others.
    void this.ctx.lockoutStore()?.recordSuccess(lockoutKeys(this.userName, null), Date.now());
    if (rt.policy.enforce) {
      const refusal = this.preparePolicy(db.name);
      if (refusal) return this.fail(refusal);
    }
    const pool = this.ctx.poolFor(db);
    let server: ServerConnection;
    try {
      server = await pool.acquire(this.upstreamParams, rt.poolAcquireMs);
    } catch (e) {
      return this.upstreamFailed(db, e);
    }
    if (this.phase !== 'connecting') {
      pool.release(server, true); // the client left while we waited
      return;
    }
    if (this.gate && this.maySeeMasks()) {
      // Masked sessions need the mask catalog before their first row; it is read on this idle connection.
      try {
        const catalog = await this.ctx.maskCatalog(db, server);
        const audit = this.audit;
        this.masker = new SessionMasker(
          catalog,
          rt.policy.redaction,
          rt.policy.hashKey,
          rt.framing,
          audit ? (columns) => audit.maskingDecision(columns) : null,
          rt.policy.identifierFormats,
        );
        this.tracker = new ResultTracker();
      } catch (e) {
        pool.release(server, false);
        log.error('could not read the mask catalog', { database: db.name, error: describeError(e) });
        return this.fail(pgwError('PGW_ERR_MASK_CATALOG', db.name));
      }
      if (this.phase !== 'connecting') {
        pool.release(server, true);
        return;
      }
    }
    this.pool = pool;
    this.server = server;
    const key = this.ctx.keys.next((pid) => this.ctx.sessions.has(pid));
    this.processId = key.processId;
    this.cancelSecret = key.secret;
    this.ctx.sessions.set(this.processId, this);
    if (this.startupTimer) clearTimeout(this.startupTimer);
    this.startupTimer = null;
    this.txStatus = server.txStatus;
    const parts: Buffer[] = this.scramFinal
      ? [writer.authenticationSASLFinal(this.scramFinal), writer.authenticationOk()]
      : [writer.authenticationOk()];
    for (const [name, value] of server.params) parts.push(writer.parameterStatus(name, value));
    parts.push(
      writer.backendKeyData(key.processId, key.secret.readInt32BE(0)),
      writer.readyForQuery(server.txStatus),
    );
    this.io.write(Buffer.concat(parts));
    this.phase = 'active';
    this.stream.want = this.gate ? GATED_WANTS : this.audit ? AUDITED_WANTS : ACTIVE_WANTS;
    // Statements are read whole only when audited or judged; their size is bounded by max_message_size.
    this.stream.maxAssembly = Number.POSITIVE_INFINITY;
    if (this.audit) {
      this.audit.loginSuccess(
        this.userName,
        db.name,
        this.tlsInfo(),
        this.authMethod,
        this.clientCert?.subject ?? null,
      );
      server.trackOutcomes(true);
    }
    if (this.gate) {
      for (const [name, value] of server.params) this.gate.serverSetting(name, value);
      server.setRewriting(true);
    }
    this.lastActivity = Date.now();
    server.attach(this);
    this.io.resume();
    log.debug('session started', { worker: this.ctx.workerIndex, database: db.name, server: server.id });
  }

  /**
   * Sets up the statement gate. search_path is pinned when any role the session could take on (its own, an
   * actor's, its break-glass role) has table or column rules: unqualified names must resolve where the rules
   * expect them, so the client may not choose the path, neither at startup nor later.
   */
  private preparePolicy(database: string): PgwardenError | null {
    const rt = this.ctx.runtime;
    const user = this.user!;
    const pinned = this.possibleRoles().some((role) => role.restrictsNames);
    for (const [name, value] of this.upstreamParams) {
      if (/pgwarden\./i.test(name) || (name === 'options' && /pgwarden\./i.test(value))) {
        return pgwError('PGW_ERR_PGWARDEN_SETTING', 'in the startup packet');
      }
      const textRisk = statementTextRisk(name, value, false);
      if (
        textRisk !== null ||
        (name === 'options' && /standard_conforming_strings|client_encoding/i.test(value))
      ) {
        return pgwErrorWithDetail(
          'PGW_ERR_POLICY_DENIED',
          'Rule: guardrail statement_text.',
          textRisk ?? 'standard_conforming_strings and client_encoding cannot be set in options',
        );
      }
      if (pinned && (name === 'search_path' || (name === 'options' && /search_path/i.test(value)))) {
        return pgwErrorWithDetail(
          'PGW_ERR_POLICY_DENIED',
          'Rule: access.search_path.',
          'search_path is pinned for this user and cannot be set at startup',
        );
      }
    }
    if (pinned) this.upstreamParams.push(['search_path', rt.policy.searchPath.map(quoteIdent).join(', ')]);
    const policy = new SessionPolicy(this.userName, user, database, this.clientAddress);
    this.gate = new StatementGate(policy, pinned, {
      policy: () => this.ctx.runtime.policy,
      audit: this.audit,
      transactionFailed: () => this.txStatus === TxStatus.Failed,
      ddlAllowed: () => this.ctx.invalidateMaskCatalogs(),
      maskedViews: (masks) => this.maskedViews(masks),
    });
    return null;
  }

  /** The views that read a column of `masks`, by name (cached per masks map: roles change rarely). */
  private maskedViews(masks: ReadonlyMap<string, MaskRule>): readonly MaskedViewColumn[] {
    if (!this.masker || masks.size === 0) return NO_VIEW_COLUMNS;
    if (this.maskedViewsFor !== masks) {
      this.maskedViewsCache = maskedViewColumns(this.masker.catalog, masks);
      this.maskedViewsFor = masks;
    }
    return this.maskedViewsCache;
  }
  private maskedViewsFor: ReadonlyMap<string, MaskRule> | null = null;
  private maskedViewsCache: readonly MaskedViewColumn[] = [];

  /** Whether any role this session could take on masks columns, accounts for subjects or detects PHI. */
  private maySeeMasks(): boolean {
    return this.possibleRoles().some((r) => r.masks.length > 0 || r.subjectColumn !== null || r.safeHarbor);
  }

  /** Every role this session could take on: its own, an actor's, its break-glass role. */
  private possibleRoles(): CompiledRole[] {
    const user = this.user!;
    const names = [
      ...user.roles,
      ...(user.actorRoles ?? []),
      ...(user.breakGlass ? [user.breakGlass.role] : []),
    ];
    const roles = this.ctx.runtime.policy.roles;
    return names.flatMap((name) => roles.get(name) ?? []);
  }

  private upstreamFailed(db: DatabaseEntry, e: unknown): void {
    if (e instanceof PoolTimeoutError) {
      stats.clientsRefused++;
      this.fail(pgwError('PGW_ERR_POOL_TIMEOUT', db.name, this.ctx.runtime.poolAcquireMs));
      return;
    }
    if (e instanceof UpstreamStartupError) {
      log.warn('upstream login failed', { database: db.name, kind: e.kind, reason: e.message });
      if (e.kind === 'startup' && e.errorResponse) {
        // Not about credentials (e.g. a bad startup option): PostgreSQL's own error helps the client most.
        this.sendAndClose(e.errorResponse);
      } else if (e.kind === 'auth') {
        this.fail(pgwError('PGW_ERR_UPSTREAM_AUTH', db.name, e.message));
      } else {
        this.fail(pgwError('PGW_ERR_UPSTREAM_UNAVAILABLE', db.name, e.message));
      }
      return;
    }
    this.internalError(e);
  }

  // ---- forwarding ---------------------------------------------------------------------------------------------

  private forwardClientChunk(chunk: Buffer): void {
    this.lastActivity = Date.now();
    stats.bytesFromClients += chunk.length;
    this.terminateAt = -1;
    this.auditedInChunk = 0;
    this.queriesInChunk = 0;
    this.auditedOnlySimple = true;
    if (this.gate) this.out = [];
    const error = this.stream.push(chunk);
    if (error !== FrameError.None) {
      this.frameError(error);
      return;
    }
    // Under policy what leaves is the judged messages (and replacements), not the read as it came.
    if (this.gate) chunk = this.takeOut();
    if (chunk.length === 0 && this.terminateAt < 0) return;
    let durable: Promise<void> | null = null;
    if (this.audit) {
      if (!this.audit.available && this.ctx.audit!.refuseWhenUnavailable && this.auditedInChunk > 0) {
        this.refuseUnaudited(chunk);
        return;
      }
      durable = this.audit.takeDurable();
    }
    // Durable audit: the statement leaves for PostgreSQL only once its record is on disk. A max_rows cancel on its
    // way: PostgreSQL ignores it while the backend waits for a command, but would cancel the next statement if
    // that one got there first.
    const cancel = this.cancelInFlight;
    if (durable || cancel) {
      this.io.pause();
      Promise.all([durable, cancel]).then(
        () => {
          if (this.phase !== 'active') return;
          this.sendToServer(chunk);
          if (this.phase === 'active' && !this.clientPaused) this.io.resume();
        },
        () => this.refuseUnaudited(chunk),
      );
      return;
    }
    this.sendToServer(chunk);
  }
  /** The CancelRequest sent when a result hit max_rows, until the postmaster has taken it. */
  private cancelInFlight: Promise<void> | null = null;

  private sendToServer(chunk: Buffer): void {
    const server = this.server!;
    if (this.terminateAt >= 0) {
      if (this.terminateAt > 0) server.socket.write(chunk.subarray(0, this.terminateAt));
      this.close();
      return;
    }
    if (!server.socket.write(chunk) && !this.clientPaused && server.socket.writableLength >= this.highWater) {
      // Backpressure: the upstream reads slower than the client writes; stop reading the client until it drains.
      this.clientPaused = true;
      this.io.pause();
      server.socket.once('drain', () => {
        this.clientPaused = false;
        if (this.phase === 'active') this.io.resume();
      });
    }
  }

  /**
   * The audit log cannot be written and audit.on_failure is refuse: nothing in this read reaches PostgreSQL.
   * A read of simple Queries gets one ErrorResponse + ReadyForQuery per Query (the session stays usable); an
   * extended-protocol pipeline cannot be answered message by message here, so that session ends.
   */
  private refuseUnaudited(chunk: Buffer): void {
    void chunk;
    const error = pgwError('PGW_ERR_AUDIT_UNAVAILABLE');
    this.audit?.refusal(error.sqlstate, 'audit log unavailable');
    if (this.auditedOnlySimple && this.queriesInChunk > 0) {
      // None of these Queries reaches PostgreSQL: their round trips (and any refusal the gate queued for them)
      // are answered here.
      this.sentRoundTrips -= this.queriesInChunk;
      this.gate?.forgetAfter(this.sentRoundTrips);
      const parts: Buffer[] = [];
      for (let i = 0; i < this.queriesInChunk; i++)
        parts.push(writer.errorResponse(error), writer.readyForQuery(this.txStatus));
      this.outstanding = Math.max(0, this.outstanding - this.queriesInChunk);
      this.io.write(Buffer.concat(parts));
      if (this.phase === 'active' && !this.clientPaused) this.io.resume();
      return;
    }
    this.fail(pgwError('PGW_ERR_AUDIT_UNAVAILABLE_SESSION'));
  }

  private onActiveMessage(code: number, start: number, bytes: Buffer | null): void {
    if (this.gate) {
      if (this.terminateAt >= 0) return; // nothing after Terminate is forwarded
      this.noteActiveMessage(code, start, bytes);
      this.gateMessage(code, bytes!);
      return;
    }
    this.noteActiveMessage(code, start, bytes);
  }

  /** Policy: each message goes out as itself or as the gate's replacement; contiguous views stay one slice. */
  private gateMessage(code: number, msg: Buffer): void {
    const gate = this.gate!;
    let forward = msg;
    switch (code) {
      case FrontendCode.Query:
        forward = gate.query(msg, this.sentRoundTrips);
        break;
      case FrontendCode.Parse:
        forward = gate.parse(msg, this.sentRoundTrips + 1);
        break;
      case FrontendCode.Bind:
        forward = gate.bind(msg, this.sentRoundTrips + 1);
        break;
      case FrontendCode.Execute:
        forward = gate.execute(msg, this.sentRoundTrips + 1);
        break;
      case FrontendCode.Close:
        gate.close(msg);
        break;
      case FrontendCode.FunctionCall:
        forward = gate.functionCall(msg, this.sentRoundTrips);
        break;
      case FrontendCode.Terminate:
        // sendToServer closes after what was gathered before the Terminate.
        this.terminateAt = this.out.reduce((n, b) => n + b.length, 0);
        return;
    }
    if (
      gate.lastReadsMasked &&
      (code === FrontendCode.Query || code === FrontendCode.Parse || code === FrontendCode.Bind)
    ) {
      gate.lastReadsMasked = false;
      const roundTrip = code === FrontendCode.Query ? this.sentRoundTrips : this.sentRoundTrips + 1;
      this.maskedReadsUntil = Math.max(this.maskedReadsUntil, roundTrip);
    }
    if (this.tracker) this.trackRequest(forward);
    const last = this.out.length - 1;
    const prev = last >= 0 ? this.out[last] : null;
    if (prev && prev.buffer === forward.buffer && prev.byteOffset + prev.length === forward.byteOffset) {
      this.out[last] = Buffer.from(prev.buffer, prev.byteOffset, prev.length + forward.length);
    } else {
      this.out.push(forward);
    }
  }

  /** Tells the result tracker what goes upstream (after the gate: replacements included), in order. */
  private trackRequest(msg: Buffer): void {
    const tracker = this.tracker!;
    switch (msg[0]) {
      case FrontendCode.Query:
        tracker.query();
        return;
      case FrontendCode.Parse:
        tracker.parse(decodeParse(msg).name);
        return;
      case FrontendCode.Bind: {
        const { portal, statement } = decodeBind(msg, false);
        tracker.bind(portal, statement, decodeBindResultFormats(msg));
        return;
      }
      case FrontendCode.Describe: {
        const { kind, name } = decodeClose(msg); // same layout: a kind byte, then a name
        if (kind === 0x53) tracker.describeStatement(name);
        else tracker.describePortal(name);
        return;
      }
      case FrontendCode.Execute:
        tracker.execute(decodeExecute(msg));
        return;
      case FrontendCode.Close: {
        const { kind, name } = decodeClose(msg);
        tracker.close(kind, name);
        return;
      }
      case FrontendCode.Sync:
        tracker.sync();
        return;
      case FrontendCode.FunctionCall:
        tracker.functionCall();
        return;
    }
  }

  private takeOut(): Buffer {
    const out = this.out;
    this.out = [];
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }

  private noteActiveMessage(code: number, start: number, bytes: Buffer | null): void {
    switch (code) {
      case FrontendCode.Query:
      case FrontendCode.Sync:
      case FrontendCode.FunctionCall:
        this.sentRoundTrips++;
        if (this.outstanding++ === 0) this.roundTripStart = performance.now();
        if (code === FrontendCode.Query) {
          stats.statements++;
          if (this.audit) {
            const text = decodeQuery(bytes!);
            this.audit.query(this.gate ? this.gate.auditText(text) : text);
            this.auditedInChunk++;
            this.queriesInChunk++;
          }
        } else if (this.audit) {
          this.auditedOnlySimple = false;
        }
        return;
      case FrontendCode.Parse:
        if (this.audit) {
          const { name, text } = decodeParse(bytes!);
          this.audit.parse(name, this.gate ? this.gate.auditText(text) : text);
          this.auditedInChunk++;
          this.auditedOnlySimple = false;
        }
        return;
      case FrontendCode.Bind:
        if (this.audit) {
          const b = decodeBind(bytes!, this.ctx.audit!.params !== 'none');
          this.audit.bind(b.portal, b.statement, b.values);
          this.auditedInChunk++;
          this.auditedOnlySimple = false;
        }
        return;
      case FrontendCode.Execute:
        stats.statements++;
        if (this.audit) {
          this.audit.execute(decodeExecute(bytes!));
          this.auditedInChunk++;
          this.auditedOnlySimple = false;
        }
        return;
      case FrontendCode.Terminate:
        if (this.terminateAt < 0) this.terminateAt = Math.max(start, 0);
        return;
    }
  }

  /** Policy sessions: the server's messages one by one, to be forwarded, replaced or held back. */
  serverMessage(code: number, msg: Buffer): void {
    const gate = this.gate!;
    if (this.tracker) msg = this.maskMessage(code, msg);
    if (code === BackendCode.ReadyForQuery) {
      this.rowStop = false;
      this.rowCount = 0;
      gate.roundTripEnded(++this.doneRoundTrips);
      this.out.push(msg);
      this.serverReady(msg[5]);
      if (msg[5] === TxStatus.Idle) gate.transactionEnded();
      return;
    }
    if (this.rowStop) return; // the rest of a result stopped at max_rows, up to ReadyForQuery
    switch (code) {
      case BackendCode.ParameterStatus: {
        const [name, value] = decodeParameterStatus(msg);
        gate.serverSetting(name, value);
        break;
      }
      case BackendCode.ErrorResponse: {
        this.rowCount = 0;
        const refusal = gate.takeRefusal(decodeErrorFields(msg).get('M'));
        const forward = refusal ?? (this.masksInForce() ? scrubErrorFields(msg, code) : msg);
        if (this.audit) this.serverOutcome(code, forward);
        this.out.push(forward);
        return;
      }
      case BackendCode.CommandComplete:
        this.rowCount = 0;
        if (this.audit) this.serverOutcome(code, msg);
        break;
      case BackendCode.DataRow:
      case BackendCode.CopyData:
        if (++this.rowCount > (gate.policy.roles(this.ctx.runtime.policy).maxRows ?? Infinity)) {
          this.stopRows();
          return;
        }
        break;
    }
    this.out.push(msg);
  }

  /**
   * Masked sessions: a DataRow goes out masked; an upstream ErrorResponse or NoticeResponse keeps its severity,
   * code, message and position only (DETAIL such as `Key (ssn)=(123-45-6789) already exists`, hints and context
   * can carry values).
   */
  private masksInForce(): boolean {
    return this.tracker !== null && this.gate!.policy.roles(this.ctx.runtime.policy).masks.size > 0;
  }

  private maskMessage(code: number, msg: Buffer): Buffer {
    const desc = this.tracker!.response(code, msg);
    const roles = this.gate!.policy.roles(this.ctx.runtime.policy);
    if (roles.subjectColumns.size > 0) this.accountSubjects(code, msg, desc, roles.subjectColumns);
    const masks = roles.masks;
    if (masks.size === 0 && !roles.safeHarbor) return msg;
    const expressionsReadMasked = this.gate!.readsMaskedLater || this.doneRoundTrips < this.maskedReadsUntil;
    if (code === BackendCode.DataRow)
      return this.masker!.mask(msg, desc, masks, expressionsReadMasked, roles.safeHarbor);
    if (code === BackendCode.CopyOutResponse) this.startCopyOut(msg);
    else if (code === BackendCode.CopyData && this.copyOut) return this.maskCopyRow(msg, masks);
    else if (code === BackendCode.CopyDone || code === BackendCode.ReadyForQuery) this.copyOut = null;
    if (code === BackendCode.ReadyForQuery) this.gate!.copyOuts.length = 0;
    // An ErrorResponse is scrubbed after the gate had its look at it (a refusal's poison is recognised by text).
    if (code === BackendCode.NoticeResponse) return scrubErrorFields(msg, code);
    return msg;
  }

  /**
   * Accounting of disclosures: the subject column's values of each row returned, as keyed hashes, recorded once
   * per statement (at its CommandComplete, or its error, or the end of the round trip).
   */
  private accountSubjects(
    code: number,
    msg: Buffer,
    desc: ResultDescription | null,
    subjectColumns: ReadonlySet<string>,
  ): void {
    if (code === BackendCode.DataRow && desc !== null && this.audit) {
      let indexes = this.subjectIndexes.get(desc);
      if (!indexes) {
        indexes = desc.flatMap((f, i) => {
          const key = this.masker!.catalog.columns.get(f.tableOid)?.get(f.attnum);
          return key !== undefined && subjectColumns.has(key) ? [{ i, key }] : [];
        });
        this.subjectIndexes.set(desc, indexes);
      }
      for (const { i, key } of indexes) {
        const raw = dataRowValue(msg, i);
        if (raw === null) continue;
        // Keyed by the value's text, so that "who saw patient 1" finds binary clients too (an int4 1 is 4 bytes);
        // a binary value of a type no codec reads is keyed by its bytes.
        const value = canonicalText(desc[i].typeOid, desc[i].format, raw) ?? raw;
        let seen = this.subjects.get(key);
        if (!seen) this.subjects.set(key, (seen = new Set()));
        if (seen.size >= MAX_SUBJECTS_PER_STATEMENT) {
          this.subjectsTruncated = true;
          continue;
        }
        const hashKey = this.ctx.runtime.policy.hashKey!;
        seen.add(crypto.createHmac('sha256', hashKey).update(value).digest('hex').slice(0, 32));
      }
      return;
    }
    if (
      (code === BackendCode.CommandComplete ||
        code === BackendCode.ErrorResponse ||
        code === BackendCode.ReadyForQuery ||
        code === BackendCode.PortalSuspended) &&
      this.subjects.size > 0
    ) {
      for (const [column, seen] of this.subjects)
        this.audit?.disclosure(column, [...seen], this.subjectsTruncated);
      this.subjects.clear();
      this.subjectsTruncated = false;
    }
  }
  private readonly subjectIndexes = new WeakMap<ResultDescription, Array<{ i: number; key: string }>>();
  private readonly subjects = new Map<string, Set<string>>();
  private subjectsTruncated = false;

  /**
   * COPY TO for a masked session: the statement said which relation and columns (or a query) and which format;
   * rows are masked like DataRows. A relation without masked columns streams untouched. A binary COPY, which the
   * rules refuse, is stopped here too should PostgreSQL ever start one.
   */
  private startCopyOut(msg: Buffer): void {
    const next = this.gate!.copyOuts.shift();
    this.copyOut = null;
    if (msg[5] !== 0 || next === undefined || next.copy.format === 'binary') {
      this.stopRows(
        pgwErrorWithDetail(
          'PGW_ERR_POLICY_DENIED',
          'Rule: roles.*.masks.',
          'COPY TO of this form cannot be masked',
        ),
      );
      return;
    }
    const { copy, readsMasked } = next;
    const catalog = this.masker!.catalog;
    let fields: ResultField[] | null = null;
    if (copy.relation) {
      const rel = copy.relation;
      const candidates = rel.schema
        ? [`${rel.schema}.${rel.name}`]
        : this.ctx.runtime.policy.searchPath.map((s) => `${s}.${rel.name}`);
      const table = candidates.map((c) => catalog.tables.get(c)).find((t) => t !== undefined);
      if (!table) return; // no masked column in it: the rows stream as they are
      const cols = copy.columns ?? table.columns.map((c) => c.name);
      fields = cols.map((name) => {
        const col = table.columns.find((c) => c.name === name);
        return { name, tableOid: col ? table.oid : 0, attnum: col?.attnum ?? 0, typeOid: 25, format: 0 };
      });
    }
    const format = copy.format === 'csv' ? 'csv' : 'text';
    this.copyOut = { format, headerPending: copy.header, fields, readsMasked, desc: null };
  }

  private maskCopyRow(msg: Buffer, masks: ReadonlyMap<string, MaskRule>): Buffer {
    const copy = this.copyOut!;
    const data = msg.subarray(5);
    if (copy.headerPending) {
      copy.headerPending = false; // column names
      return msg;
    }
    const values = copy.format === 'csv' ? parseCopyCsv(data) : parseCopyText(data);
    let desc = copy.desc;
    if (desc === null || desc.length !== values.length) {
      desc =
        copy.fields ??
        values.map((_, i) => ({ name: `column${i + 1}`, tableOid: 0, attnum: 0, typeOid: 25, format: 0 }));
      copy.desc = desc;
    }
    const masked = decodeDataRow(
      this.masker!.mask(
        writer.dataRow(values),
        desc,
        masks,
        copy.readsMasked,
        this.gate!.policy.roles(this.ctx.runtime.policy).safeHarbor,
      ),
    );
    const line = copy.format === 'csv' ? formatCopyCsv(masked) : formatCopyText(masked);
    const out = Buffer.allocUnsafe(5 + line.length);
    out[0] = BackendCode.CopyData;
    out.writeInt32BE(4 + line.length, 1);
    line.copy(out, 5);
    return out;
  }
  private copyOut: {
    format: 'text' | 'csv';
    headerPending: boolean;
    fields: ResultField[] | null;
    readsMasked: boolean;
    desc: ResultDescription | null;
  } | null = null;

  /** max_rows reached: the client gets an error now, PostgreSQL is asked to stop, and the rest is dropped. */
  private stopRows(refusal: PgwardenError | null = null): void {
    this.rowStop = true;
    let error = refusal;
    if (error === null) {
      stats.rowLimitStops++;
      error = pgwError('PGW_ERR_MAX_ROWS', this.gate!.policy.roles(this.ctx.runtime.policy).maxRows!);
    }
    this.audit?.refusal(error.sqlstate, error.message);
    this.out.push(writer.errorResponse(error));
    const server = this.server;
    if (server && !this.cancelInFlight) {
      const inFlight: Promise<void> = sendCancel(server.settings, server.processId, server.secret)
        .catch(() => {
          // The result is dropped either way; the cancel only saves PostgreSQL the work.
        })
        .finally(() => {
          if (this.cancelInFlight === inFlight) this.cancelInFlight = null;
        });
      this.cancelInFlight = inFlight;
    }
  }

  serverChunkEnd(): void {
    if (this.out.length === 0) return;
    this.serverData(this.takeOut());
  }

  serverData(chunk: Buffer): void {
    stats.bytesToClients += chunk.length;
    if (!this.io.write(chunk) && !this.serverPaused && this.io.writableLength >= this.highWater) {
      this.serverPaused = true;
      const socket = this.server!.socket;
      socket.pause();
      this.io.once('drain', () => {
        this.serverPaused = false;
        if (!socket.destroyed) socket.resume();
      });
    }
    if (this.closeWhenForwarded) this.shutdown();
  }

  serverOutcome(code: number, msg: Buffer): void {
    if (code === BackendCode.CommandComplete) {
      const tag = decodeCommandComplete(msg);
      this.outcome.tags.push(tag);
      const count = /(\d+)$/.exec(tag);
      if (count) this.outcome.rows += Number(count[1]);
    } else if (code === BackendCode.ErrorResponse) {
      this.outcome.sqlstate = decodeErrorFields(msg).get('C') ?? null;
    }
  }

  serverReady(status: number): void {
    this.txStatus = status;
    if (this.outstanding > 0) {
      const now = performance.now();
      stats.observeDuration((now - this.roundTripStart) / 1000);
      if (this.audit) {
        this.audit.roundTripEnd(this.outcome, now - this.roundTripStart);
        this.outcome = { tags: [], rows: 0, sqlstate: null };
      }
      if (--this.outstanding > 0) this.roundTripStart = now;
      // Idle timeouts count from the moment the session went idle, as PostgreSQL's do, not from the last
      // client message: otherwise a statement longer than idle_client is logged off as soon as it returns.
      else this.lastActivity = Date.now();
    }
    if (this.ctx.draining && this.isIdle()) this.closeWhenForwarded = true;
  }

  serverClosed(): void {
    if (this.phase !== 'active') return;
    this.server = null;
    this.fail(pgwError('PGW_ERR_UPSTREAM_CLOSED'));
  }

  private tlsInfo(): { version: string | null; cipher: string | null } {
    if (!this.tlsActive) return { version: null, cipher: null };
    const socket = this.io as tls.TLSSocket;
    return { version: socket.getProtocol?.() ?? null, cipher: socket.getCipher?.()?.name ?? null };
  }

  /** The upstream backend running this session's query, when one is running (for CancelRequest). */
  cancellableServer(): ServerConnection | null {
    return this.phase === 'active' && this.outstanding > 0 ? this.server : null;
  }

  private isIdle(): boolean {
    return this.outstanding === 0 && this.txStatus === TxStatus.Idle && atMessageBoundary(this.stream);
  }

  // ---- timers and shutdown ------------------------------------------------------------------------------------

  /** Called by the worker's sweeper once a second: automatic logoff of idle clients. */
  checkIdle(now: number): void {
    if (this.phase !== 'active' || this.outstanding > 0) return;
    const rt = this.ctx.runtime;
    const idleFor = now - this.lastActivity;
    if (this.txStatus === TxStatus.Idle) {
      const limit = this.idleLimitMs();
      if (limit > 0 && idleFor > limit) this.fail(pgwError('PGW_ERR_IDLE_TIMEOUT', limit));
    } else if (rt.idleInTransactionMs > 0 && idleFor > rt.idleInTransactionMs) {
      this.fail(pgwError('PGW_ERR_IDLE_IN_TRANSACTION_TIMEOUT', rt.idleInTransactionMs));
    }
  }

  /** timeouts.idle_client, or a role's shorter idle_timeout (0 = no limit). */
  private idleLimitMs(): number {
    const global = this.ctx.runtime.idleClientMs;
    const role = this.gate?.policy.roles(this.ctx.runtime.policy).idleTimeoutMs ?? null;
    if (role === null) return global;
    return global > 0 ? Math.min(global, role) : role;
  }

  /** Draining: a session with nothing in flight ends now; one mid-transaction ends at its next idle moment. */
  drainIfIdle(): void {
    if (this.phase !== 'active' || this.isIdle()) this.shutdown();
  }

  shutdown(): void {
    this.fail(pgwError('PGW_ERR_SHUTTING_DOWN'));
  }

  /** Sends the error as an ErrorResponse, then closes. */
  private fail(error: PgwardenError): void {
    if (this.phase === 'closed') return;
    if (error.code !== ('PGW_ERR_SHUTTING_DOWN' satisfies ErrorCode) || this.phase === 'active') {
      log.debug('closing client session', {
        sqlstate: error.sqlstate,
        code: error.code,
        worker: this.ctx.workerIndex,
      });
    }
    this.sendAndClose(writer.errorResponse(error));
  }

  private sendAndClose(bytes: Buffer): void {
    if (this.phase === 'closed') return;
    if (!this.io.destroyed && this.io.writable && !this.io.writableEnded) this.io.write(bytes);
    this.close();
  }

  private internalError(e: unknown): void {
    log.error('internal error in client session', { error: describeError(e), worker: this.ctx.workerIndex });
    this.fail(pgwError('PGW_ERR_INTERNAL'));
  }

  /** Releases everything the session holds. Idempotent. */
  close(): void {
    if (this.phase === 'closed') return;
    const wasActive = this.phase === 'active';
    this.phase = 'closed';
    this.audit?.connectionClose(wasActive ? 'session ended' : 'closed before login completed');
    if (this.startupTimer) clearTimeout(this.startupTimer);
    this.ctx.allSessions.delete(this);
    if (this.processId !== 0) this.ctx.sessions.delete(this.processId);
    stats.clientConnectionsActive--;
    const server = this.server;
    this.server = null;
    if (server && this.pool) {
      server.owner = null;
      // Reuse needs a server with nothing in flight, outside a transaction, not cut in the middle of a message.
      this.pool.release(server, wasActive && this.isIdle());
    }
    // end() flushes what is queued (an ErrorResponse, a TLS close_notify); a peer that never reads must not keep
    // the socket and its buffers alive, hence the hard stop.
    const io = this.io;
    const raw = this.raw;
    if (!io.destroyed) {
      if (!io.writableEnded) io.end();
      setTimeout(() => {
        io.destroy();
        raw.destroy();
      }, 2000).unref();
    }
  }
}

const NO_VIEW_COLUMNS: readonly MaskedViewColumn[] = [];

/** Distinct subjects recorded per statement; beyond it the record says it was cut. */
const MAX_SUBJECTS_PER_STATEMENT = 10_000;

/** ErrorResponse / NoticeResponse fields a masked session may see: nothing that quotes data. */
const SAFE_ERROR_FIELDS = new Set(['S', 'V', 'C', 'M', 'P', 'F', 'L', 'R'].map((c) => c.charCodeAt(0)));

/**
 * The message itself may quote a value (`invalid input syntax for type integer: "123-45-6789"`) and a function's
 * RAISE can say anything: quoted parts and digit runs are hidden, and messages a function raised (SQLSTATE class
 * P0, or any notice) are replaced whole.
 */
function scrubMessage(message: string, sqlstate: string, notice: boolean): string {
  if (notice || sqlstate.startsWith('P0')) return 'message hidden: the session sees masked data';
  return message
    .replace(/"(?:[^"]|"")*"/g, '"…"')
    .replace(/'(?:[^']|'')*'/g, "'…'")
    .replace(/\d{3,}/g, '…');
}

function scrubErrorFields(msg: Buffer, code: number): Buffer {
  const kept: Buffer[] = [];
  let sqlstate = '';
  let message: string | null = null;
  let at = 5;
  while (at < msg.length && msg[at] !== 0) {
    const end = msg.indexOf(0, at + 1);
    if (end < 0) break;
    const field = msg[at];
    if (field === 0x43) sqlstate = msg.toString('utf8', at + 1, end);
    if (field === 0x4d) message = msg.toString('utf8', at + 1, end);
    else if (SAFE_ERROR_FIELDS.has(field)) kept.push(msg.subarray(at, end + 1));
    at = end + 1;
  }
  if (message !== null) {
    const scrubbed = scrubMessage(message, sqlstate, code === BackendCode.NoticeResponse);
    kept.push(Buffer.from('M' + scrubbed + '\0', 'utf8'));
  }
  const body = Buffer.concat([...kept, Buffer.from([0])]);
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = msg[0];
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** A schema name as a quoted identifier, for the pinned search_path. */
function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

function describeCode(code: number): string {
  return code >= 0x20 && code < 0x7f ? `'${String.fromCharCode(code)}'` : `0x${code.toString(16)}`;
}
