// Audit lines into a table of a separate PostgreSQL audit database, over pgwarden's own upstream login (TLS modes,
// SCRAM/md5) with the audit database's own credentials: one connection, one COPY ... FROM STDIN per batch (Query,
// CopyData, CopyDone in one write, one round trip), committed before the batch's promise resolves. A batch that
// fails stays queued and is retried; before a retry the rows the database already holds for this stream are
// skipped, so a COPY whose commit was lost with the connection is never inserted twice.

import { BackendCode } from '../../protocol/codes.js';
import { decodeErrorFields } from '../../protocol/decode.js';
import { Want, wantTable } from '../../protocol/message-stream.js';
import * as writer from '../../protocol/writer.js';
import { ServerConnection, UpstreamStartupError, type ServerOwner } from '../../backend/server-connection.js';
import type { UpstreamSettings } from '../../backend/upstream-settings.js';
import { AuditUnavailableError, deferred, type Deferred, type SinkListener } from '../durability.js';
import { GroupCommitSink } from './group-commit.js';

export const DEFAULT_AUDIT_TABLE = 'pgwarden_audit';

export interface PostgresSinkOptions {
  /** Where the audit database is and the account that writes to it (never a proxied database's account). */
  settings: UpstreamSettings;
  /** `name` or `schema.name`, validated by parseTableName. */
  table: string;
  /** The writer's stream id: the sink writes only this stream's rows. */
  stream: string;
  retryIntervalMs: number;
  listener: SinkListener;
  /** A request (a batch's COPY) not answered within this long fails the batch and drops the connection. */
  requestTimeoutMs?: number;
}

/** A plain identifier: what needs no thought about case folding or quoting in an operator's config. */
const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/**
 * `name` or `schema.name` with plain identifiers only, returned quoted (`"schema"."name"`). Quoting keeps the case
 * as written; anything else (quotes, spaces, three parts) is refused rather than escaped, since the name ends up
 * in SQL text.
 */
export function parseTableName(name: string): string {
  const parts = name.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new Error('audit table must be an identifier or schema.identifier (letters, digits, _ and $)');
  }
  return parts.map((p) => `"${p}"`).join('.');
}

/**
 * One field in COPY's text format: backslash, tab, newline and carriage return become escape sequences (the
 * delimiter, the row end and the escape character itself). https://www.postgresql.org/docs/current/sql-copy.html
 */
export function copyTextField(value: string): string {
  if (!/[\\\t\n\r]/.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r',
  );
}

/** A string literal that means the same whatever standard_conforming_strings is (E'' with both escapes doubled). */
function sqlLiteral(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Microseconds since the epoch as a timestamptz literal with all six fractional digits. */
export function timestampText(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const fraction = String(micros - Math.floor(micros / 1_000_000) * 1_000_000).padStart(6, '0');
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}.${fraction}+00`;
}

/** The columns of one record, taken from its line (the line itself is stored as written, for verification). */
interface Row {
  seq: number;
  text: string;
}

/** One COPY row: stream, seq, ts, event, record (jsonb from the line), line. */
export function copyRow(line: string): Row {
  const r = JSON.parse(line) as { seq: unknown; ts: unknown; stream: unknown; event: unknown };
  if (
    typeof r.seq !== 'number' ||
    typeof r.ts !== 'number' ||
    typeof r.stream !== 'string' ||
    typeof r.event !== 'string'
  ) {
    throw new Error('audit line without seq, ts, stream or event');
  }
  const escaped = copyTextField(line);
  return {
    seq: r.seq,
    text: `${copyTextField(r.stream)}\t${r.seq}\t${timestampText(r.ts)}\t${copyTextField(r.event)}\t${escaped}\t${escaped}\n`,
  };
}

/** Answer to one request: what the server said up to its ReadyForQuery. */
interface Reply {
  /** SQLSTATE of the first ErrorResponse, or null. */
  error: string | null;
  /** First column of each DataRow, as text (null for SQL NULL). */
  values: Array<string | null>;
}

const WANTS = wantTable([
  [BackendCode.ReadyForQuery, Want.Bytes],
  [BackendCode.ParameterStatus, Want.Bytes],
  [BackendCode.CommandComplete, Want.Bytes],
  [BackendCode.ErrorResponse, Want.Bytes],
  [BackendCode.DataRow, Want.Bytes],
]);

/** CopyData messages carry at most about this many characters each; a batch is one write whatever its size. */
const COPY_CHUNK_CHARS = 256 * 1024;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** The connection lost or a request unanswered: the reason the sink reports (no host names, no credentials). */
class SinkError extends Error {}

export class PostgresSink extends GroupCommitSink<{ line: string; bytes: number }> implements ServerOwner {
  readonly kind = 'postgres';

  private readonly table: string;

  private conn: ServerConnection | null = null;
  /** After a failure or a new connection: what the table already holds for this stream is not known. */
  private mustSkipKnown = true;
  private pending: { reply: Reply; done: Deferred; timer: NodeJS.Timeout } | null = null;

  constructor(private readonly o: PostgresSinkOptions) {
    super(o.retryIntervalMs, o.listener);
    this.table = parseTableName(o.table);
  }

  push(line: string, bytes: number): void {
    this.queue.push({ line, bytes });
    this.backlogBytes += bytes;
  }

  /** A table has no files. */
  rotate(): void {}

  async close(): Promise<void> {
    await this.drain();
    const unwritten = this.queue.length;
    this.conn?.close();
    this.conn = null;
    if (unwritten > 0) {
      throw new AuditUnavailableError(
        `${this.failure ?? 'write failed'}: ${unwritten} records were not written`,
      );
    }
  }

  // ServerOwner: the connection's messages, while a request is out.
  serverData(): void {}

  serverOutcome(code: number, msg: Buffer): void {
    const reply = this.pending?.reply;
    if (!reply) return;
    if (code === BackendCode.ErrorResponse) {
      reply.error ??= decodeErrorFields(msg).get('C') ?? 'XX000';
    } else if (code === BackendCode.DataRow) {
      // Int16 column count, then Int32 length (-1: NULL) and the value of the first column.
      const len = msg.readInt32BE(7);
      reply.values.push(len < 0 ? null : msg.toString('utf8', 11, 11 + len));
    }
  }

  serverReady(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    p.done.resolve();
  }

  serverClosed(): void {
    this.conn = null;
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    p.done.reject(new SinkError('audit database connection lost'));
  }

  protected batchFailed(e: unknown): string {
    // Whether the last COPY committed is unknown (a lost connection): the retry first asks the table.
    this.mustSkipKnown = true;
    return e instanceof SinkError ? e.message : 'audit database write failed';
  }

  /** One batch; on failure its rows go back in front of the queue. */
  protected async writeBatch(entries: Array<{ line: string; bytes: number }>): Promise<void> {
    try {
      await this.copyBatch(entries);
    } catch (e) {
      // Unwritten rows go back in front of anything queued since, in chain order.
      this.queue = entries.concat(this.queue);
      throw e;
    }
  }

  /** Connects when needed, skips rows already stored (after a failure), then one COPY for the rest. */
  private async copyBatch(entries: Array<{ line: string; bytes: number }>): Promise<void> {
    if (entries.length === 0) return;
    await this.connect();
    let rows = entries.map((e) => copyRow(e.line));
    let skipped = 0;
    if (this.mustSkipKnown) {
      const reply = await this.request(
        writer.query(`select max(seq) from ${this.table} where stream = ${sqlLiteral(this.o.stream)}`),
      );
      if (reply.error !== null) throw new SinkError(`audit database: SQLSTATE ${reply.error}`);
      const known = reply.values[0] == null ? 0 : Number(reply.values[0]);
      // The stream's rows go in seq order and each COPY commits whole: everything up to `known` is stored.
      while (skipped < rows.length && rows[skipped].seq <= known) skipped++;
      rows = rows.slice(skipped);
      this.mustSkipKnown = false;
    }
    if (rows.length > 0) {
      const parts: Buffer[] = [
        writer.query(`copy ${this.table} (stream, seq, ts, event, record, line) from stdin`),
      ];
      let text = '';
      for (const r of rows) {
        text += r.text;
        if (text.length >= COPY_CHUNK_CHARS) {
          parts.push(writer.copyData(Buffer.from(text, 'utf8')));
          text = '';
        }
      }
      if (text !== '') parts.push(writer.copyData(Buffer.from(text, 'utf8')));
      // If the COPY statement itself fails, the server answers ErrorResponse and ReadyForQuery and ignores the
      // CopyData and CopyDone that follow (postgres.c accepts them outside COPY "per protocol spec"), so sending
      // them before CopyInResponse costs nothing and saves a round trip.
      parts.push(writer.copyDone());
      const reply = await this.request(Buffer.concat(parts));
      if (reply.error !== null) throw new SinkError(`audit database: SQLSTATE ${reply.error}`);
    }
    let bytes = 0;
    for (const e of entries) bytes += e.bytes;
    this.backlogBytes -= bytes;
    this.counters.batches++;
    this.counters.syncs++;
    this.counters.bytes += bytes;
  }

  private async connect(): Promise<void> {
    if (this.conn !== null && !this.conn.closed) return;
    this.conn = null;
    this.mustSkipKnown = true;
    let conn: ServerConnection;
    try {
      conn = await ServerConnection.connect(
        this.o.settings,
        [['application_name', 'pgwarden-audit']],
        'audit',
      );
    } catch (e) {
      // connect and auth reasons are errno codes, TLS codes and SQLSTATEs: nothing secret.
      const why = e instanceof UpstreamStartupError ? e.message : 'connect failed';
      throw new SinkError(`audit database: ${why}`);
    }
    conn.attach(this);
    conn.stream.want = WANTS;
    this.conn = conn;
    // Once per connection: cheap, and a table dropped while pgwarden ran comes back on the next reconnect.
    const reply = await this.request(
      writer.query(
        `create table if not exists ${this.table} (stream text not null, seq bigint not null, ` +
          'ts timestamptz not null, event text not null, record jsonb not null, line text not null, ' +
          'primary key (stream, seq))',
      ),
    );
    if (reply.error !== null) throw new SinkError(`audit database: SQLSTATE ${reply.error}`);
  }

  /** Sends one request (one or more messages ending a simple-query cycle) and waits for its ReadyForQuery. */
  private async request(bytes: Buffer): Promise<Reply> {
    const conn = this.conn;
    if (conn === null || conn.closed) throw new SinkError('audit database connection lost');
    const done = deferred();
    const timeoutMs = this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const timer = setTimeout(() => {
      // An unanswered COPY may still commit: the retry on a new connection finds out through max(seq).
      if (this.pending?.done !== done) return;
      this.pending = null;
      done.reject(new SinkError(`audit database did not answer within ${timeoutMs} ms`));
      conn.close();
    }, timeoutMs);
    timer.unref();
    const reply: Reply = { error: null, values: [] };
    this.pending = { reply, done, timer };
    conn.socket.write(bytes);
    await done.promise;
    return reply;
  }
}
