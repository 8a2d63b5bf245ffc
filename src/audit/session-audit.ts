// What one client session tells the audit trail: connection, login, each statement (simple Query text; Parse
// text and each Execute for the extended protocol) before it is forwarded, and each round trip's outcome. The
// session only calls these methods; building records, chaining and durability are the writer's business.

import crypto from 'node:crypto';
import { hashParam, type AuditEvent } from './record.js';
import { stats } from '../metrics/worker-stats.js';
import type { AuditWriter } from './writer.js';

export type ParamsPolicy = 'none' | 'hash' | 'full';

/** Statement text kept in a record; longer text is cut and its SHA-256 recorded (records stay well below the
 *  verifier's 16 MiB line limit, and a bulk INSERT does not balloon the audit log). */
const MAX_TEXT_CHARS = 256 * 1024;

function textFields(text: string): Record<string, unknown> {
  if (text.length <= MAX_TEXT_CHARS) return { text };
  return {
    text: text.slice(0, MAX_TEXT_CHARS),
    text_truncated: true,
    text_sha256: crypto.createHash('sha256').update(text).digest('hex'),
  };
}

/** The outcome of one round trip (Query, or extended messages up to Sync), gathered from the server's replies. */
export interface RoundTripOutcome {
  tags: string[];
  rows: number;
  sqlstate: string | null;
}

export class SessionAudit {
  private identity: string | null = null;
  private database: string | null = null;
  /** The last record written in durable mode: forwarding waits for it. */
  private pendingDurable: Promise<void> | null = null;
  private statementSeq = 0;

  constructor(
    private readonly writer: AuditWriter,
    readonly sessionId: string,
    private readonly params: ParamsPolicy,
    private readonly paramsKey: Buffer | null,
  ) {}

  get available(): boolean {
    return this.writer.available;
  }

  /**
   * Marks carried by every statement record while set: the actor a service session acts for, and an open
   * break-glass window (HIPAA emergency access must be reviewable statement by statement).
   */
  private marks: { actor?: string; break_glass?: true } = {};

  private emitStatement(data: Record<string, unknown>): void {
    this.emit('statement', this.marks.actor || this.marks.break_glass ? { ...data, ...this.marks } : data);
  }

  private emit(event: AuditEvent['event'], data: Record<string, unknown>): void {
    const e: AuditEvent = {
      event,
      session: this.sessionId,
      identity: this.identity,
      database: this.database,
      data,
    };
    stats.auditRecords++;
    const done = this.writer.write(e);
    // Durable mode: one promise per batch, shared by its records; the writer already handles its rejection (a
    // refusal surfaces through `available` and the session's own wait), so nothing is attached per record here.
    if (done) this.pendingDurable = done;
  }

  connectionOpen(clientAddress: string | undefined, clientPort: number | undefined): void {
    this.emit('connection_open', { client_addr: clientAddress ?? null, client_port: clientPort ?? null });
  }

  loginSuccess(
    user: string,
    database: string,
    tls: { version: string | null; cipher: string | null },
    method = 'scram-sha-256',
    clientCertSubject: string | null = null,
  ): void {
    this.identity = user;
    this.database = database;
    this.emit('login_success', {
      method,
      tls_version: tls.version,
      tls_cipher: tls.cipher,
      client_cert_subject: clientCertSubject,
    });
  }

  /** Which columns of a result are masked, and by which rule (once per result description). */
  maskingDecision(columns: ReadonlyArray<{ column: string; rule: string }>): void {
    this.emit('masking', { id: this.statementSeq, columns });
  }

  /**
   * Accounting of disclosures (HIPAA 164.528): keyed hashes of the subjects (patients) whose rows a statement
   * returned, so "who saw patient X, and when" can be answered from the audit trail without it holding the id.
   */
  disclosure(subjectColumn: string, subjects: readonly string[], truncated: boolean): void {
    this.emit('masking', {
      id: this.statementSeq,
      subject_column: subjectColumn,
      subjects,
      ...(truncated ? { subjects_truncated: true } : {}),
    });
  }

  lockout(user: string, clientAddress: string | null, untilMs: number): void {
    this.emit('lockout', { user, client_addr: clientAddress, until_ms: untilMs });
  }

  actorStart(subject: string, roles: readonly string[], local: boolean): void {
    this.marks = { ...this.marks, actor: subject };
    this.emit('actor', { sub: subject, roles, scope: local ? 'transaction' : 'session' });
  }

  actorEnd(subject: string, reason: string): void {
    delete this.marks.actor;
    this.emit('actor', { sub: subject, ended: reason });
  }

  breakGlassStart(role: string, reason: string, untilMs: number): void {
    this.marks = { ...this.marks, break_glass: true };
    this.emit('break_glass_start', { role, reason, expires_ms: untilMs });
  }

  breakGlassEnd(reason: string): void {
    delete this.marks.break_glass;
    this.emit('break_glass_end', { reason });
  }

  loginFailure(user: string, reason: string, tls: { version: string | null; cipher: string | null }): void {
    // The attempted name is recorded, not promoted to identity: it was never authenticated.
    this.emit('login_failure', { user, reason, tls_version: tls.version, tls_cipher: tls.cipher });
  }

  /** A simple Query: the whole text (possibly several statements). */
  query(text: string): void {
    this.emitStatement({ protocol: 'simple', id: ++this.statementSeq, ...textFields(text) });
  }

  /** A Parse: the statement text, under its prepared-statement name ('' = unnamed). */
  parse(name: string, text: string): void {
    this.emitStatement({
      protocol: 'extended',
      phase: 'parse',
      id: ++this.statementSeq,
      name,
      ...textFields(text),
    });
  }

  /** A Bind: which statement runs in which portal; parameter values only as the policy allows. */
  bind(portal: string, statement: string, values: Array<Buffer | null>): void {
    const data: Record<string, unknown> = { protocol: 'extended', phase: 'bind', portal, name: statement };
    if (this.params === 'hash' && this.paramsKey) {
      data.params = values.map((v) => hashParam(this.paramsKey!, v));
    } else if (this.params === 'full') {
      data.params = values.map((v) => (v === null ? null : v.toString('utf8')));
    }
    this.emitStatement(data);
  }

  execute(portal: string): void {
    this.emitStatement({ protocol: 'extended', phase: 'execute', id: ++this.statementSeq, portal });
  }

  roundTripEnd(outcome: RoundTripOutcome, durationMs: number): void {
    this.emit('statement_end', {
      tags: outcome.tags,
      rows: outcome.rows,
      sqlstate: outcome.sqlstate,
      duration_ms: Math.round(durationMs * 1000) / 1000,
    });
  }

  refusal(sqlstate: string, reason: string): void {
    this.emit('refusal', { sqlstate, reason });
  }

  connectionClose(reason: string): void {
    this.emit('connection_close', { reason });
  }

  /** Durable mode: resolves when everything emitted so far is on disk (group commit keeps order). */
  takeDurable(): Promise<void> | null {
    const p = this.pendingDurable;
    this.pendingDurable = null;
    return p;
  }
}
