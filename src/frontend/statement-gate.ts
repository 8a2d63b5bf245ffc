// The policy gate between a client and PostgreSQL: every Query, Parse and Bind is judged before it leaves, and
// pgwarden's own settings (SET pgwarden.actor / pgwarden.break_glass) are taken out of the stream.
//
// A refused message is not answered by pgwarden directly. It is replaced by a "poison" message that PostgreSQL
// rejects at exactly that point, and PostgreSQL's rejection is then swapped for pgwarden's ErrorResponse on the
// way back (ResponseFilter). PostgreSQL itself thereby does what it would do for a failing statement: it keeps
// the responses of pipelined messages in order, skips the rest of an extended-protocol batch up to Sync, rolls
// back the implicit transaction, marks an explicit transaction block failed, and reports the right status in
// ReadyForQuery. Drivers that pipeline (postgres.js, pgjdbc) stay in step without pgwarden modelling any of it.

import { isUtf8 } from 'node:buffer';
import { pgwError, pgwErrorWithDetail, type PgwardenError } from '../core/errors.js';
import { statementTextRisk, type MaskedViewColumn } from '../policy/rules.js';
import { log } from '../core/log.js';
import { decodeBind, decodeClose, decodeExecute, decodeParse, decodeQuery } from '../protocol/decode.js';
import * as writer from '../protocol/writer.js';
import { stats } from '../metrics/worker-stats.js';
import type { SessionAudit } from '../audit/session-audit.js';
import type { PolicyRuntime } from '../policy/policy-runtime.js';
import type { SessionPolicy } from '../policy/session-policy.js';
import type { CopyOut, StatementFacts } from '../policy/facts.js';
import type { MaskRule } from '../masking/mask-spec.js';

/** Statement text PostgreSQL answers with `syntax error at or near "pgwarden_refused"` (42601). */
const POISON_SQL = 'pgwarden_refused';
const POISON_SQL_MESSAGE = `syntax error at or near "${POISON_SQL}"`;
/** A prepared statement name that never exists: PostgreSQL answers 26000 to a Bind of it. */
const POISON_STATEMENT = 'pgwarden_refused';
const POISON_BIND_MESSAGE = `prepared statement "${POISON_STATEMENT}" does not exist`;

/** A refusal on its way: the upstream error it rides on, and the ErrorResponse the client gets instead. */
export interface PendingRefusal {
  /** The round trip (Query, or batch up to Sync) it belongs to; dropped unseen if that round trip errs earlier. */
  readonly roundTrip: number;
  readonly upstreamMessage: string;
  readonly response: Buffer;
}

/** What a prepared statement was, so a later Bind can be judged again under the roles then in force. */
interface PreparedInfo {
  readonly text: string;
  /** An intercepted pgwarden setting, applied when a portal of this statement is executed. */
  readonly intercept: StatementFacts | null;
}

export interface GateEvents {
  /** The current runtime's policy part (a reload swaps it). */
  policy(): PolicyRuntime;
  readonly audit: SessionAudit | null;
  /** Whether the upstream transaction is known to have failed (then pgwarden's settings are not applied). */
  transactionFailed(): boolean;
  /** A DDL statement is about to go upstream: relations may change under the mask catalogs. */
  ddlAllowed(): void;
  /** View columns that show a column masked by `masks`. */
  maskedViews(masks: ReadonlyMap<string, MaskRule>): readonly MaskedViewColumn[];
}

export class StatementGate {
  readonly refusals: PendingRefusal[] = [];
  private readonly prepared = new Map<string, PreparedInfo>();
  private readonly portals = new Map<string, string>();

  constructor(
    readonly policy: SessionPolicy,
    /** search_path is pinned for this session: it may not be changed, whatever roles are in force. */
    private readonly pinned: boolean,
    private readonly events: GateEvents,
  ) {}

  // ---- client messages ---------------------------------------------------------------------------------------

  /** A simple Query: the bytes to forward (the message itself, a rewrite, or a poison). */
  query(msg: Buffer, roundTrip: number): Buffer {
    if (!isUtf8(msg.subarray(5, msg.length - 1))) return this.refuseQuery(invalidText(), roundTrip);
    const text = decodeQuery(msg);
    const verdict = this.judgeText(text);
    if (verdict.kind === 'refuse') return this.refuseQuery(verdict.error, roundTrip);
    if (verdict.kind === 'intercept') {
      const error = this.applySetting(verdict.facts);
      if (error) return this.refuseQuery(error, roundTrip);
      return writer.query(neutralSetting(verdict.facts));
    }
    return msg;
  }

  parse(msg: Buffer, roundTrip: number): Buffer {
    const { name, text } = decodeParse(msg);
    const verdict = parseTextIsUtf8(msg)
      ? this.judgeText(text)
      : { kind: 'refuse' as const, error: invalidText() };
    if (verdict.kind === 'refuse') {
      this.prepared.delete(name);
      return this.refuse(verdict.error, roundTrip, POISON_SQL_MESSAGE, writer.parse('', POISON_SQL));
    }
    if (verdict.kind === 'intercept') {
      this.prepared.set(name, { text, intercept: verdict.facts });
      return writer.parse(name, neutralSetting(verdict.facts));
    }
    this.prepared.set(name, { text, intercept: null });
    return msg;
  }

  /** A Bind is judged again: the roles may have changed since its Parse (an actor, break glass, a reload). */
  bind(msg: Buffer, roundTrip: number): Buffer {
    const { portal, statement } = decodeBind(msg, false);
    const info = this.prepared.get(statement);
    // A statement pgwarden did not see prepared (none can exist) fails upstream on its own.
    if (info && info.intercept === null) {
      const verdict = this.judgeText(info.text);
      if (verdict.kind === 'refuse') {
        this.portals.delete(portal);
        return this.refuse(verdict.error, roundTrip, POISON_BIND_MESSAGE, writer.bind('', POISON_STATEMENT));
      }
    }
    this.portals.set(portal, statement);
    return msg;
  }

  /** Execute of a portal whose statement is an intercepted setting: the setting takes effect now. */
  execute(msg: Buffer, roundTrip: number): Buffer {
    const statement = this.portals.get(decodeExecute(msg));
    const info = statement === undefined ? undefined : this.prepared.get(statement);
    if (info?.intercept) {
      const error = this.applySetting(info.intercept);
      if (error) {
        // Execute of the neutral SET is replaced by a Bind that fails: the batch errs at this point.
        return this.refuse(error, roundTrip, POISON_BIND_MESSAGE, writer.bind('', POISON_STATEMENT));
      }
    }
    return msg;
  }

  close(msg: Buffer): void {
    const { kind, name } = decodeClose(msg);
    if (kind === 0x53) this.prepared.delete(name);
    else this.portals.delete(name);
  }

  /** FunctionCall names a function by OID, past every rule: refused unless a role is admin. */
  functionCall(msg: Buffer, roundTrip: number): Buffer {
    const roles = this.policy.roles(this.events.policy());
    if (roles.admin) return msg;
    const error = pgwErrorWithDetail(
      'PGW_ERR_POLICY_DENIED',
      'Rule: guardrail function_call.',
      'the FunctionCall protocol message is not allowed',
    );
    return this.refuseQuery(error, roundTrip);
  }

  /** The transaction ended (ReadyForQuery outside a block): a SET LOCAL actor ends with it. */
  transactionEnded(): void {
    const actor = this.policy.clearActor(true);
    if (actor) this.events.audit?.actorEnd(actor.subject, 'transaction ended');
  }

  /**
   * The statement text as the audit trail records it: the value of a pgwarden setting (an actor token is a
   * bearer credential) is blanked. Also closes an elapsed break-glass window first, so the record is not marked
   * as emergency access when the statement no longer is.
   */
  auditText(text: string): string {
    this.closeElapsedBreakGlass();
    // Parsed (the gate parses it next anyway: a cache hit then), not searched: U&"..." escapes hide the name.
    const parsed = this.events.policy().parseCache.analyze(text);
    if (!parsed.ok) return text;
    const own = parsed.statements.filter((f) => f.setting?.name.startsWith('pgwarden.'));
    if (own.length === 0) return text;
    const bytes = Buffer.from(text, 'utf8');
    const parts: Buffer[] = [];
    let at = 0;
    for (const f of own) {
      const start = f.location;
      const end = f.length > 0 ? f.location + f.length : bytes.length;
      parts.push(bytes.subarray(at, start), Buffer.from(redactedSetting(f)));
      at = end;
    }
    parts.push(bytes.subarray(at));
    return Buffer.concat(parts).toString('utf8');
  }

  // ---- judging -----------------------------------------------------------------------------------------------

  /**
   * PostgreSQL reported (ParameterStatus) a setting under which it reads statement text differently from pgwarden
   * (standard_conforming_strings off, a client-only multibyte encoding): nothing more can be judged safely.
   */
  serverSetting(name: string, value: string): void {
    const risk = statementTextRisk(name, value, false);
    if (risk !== null && this.textUnsafe === null) {
      this.textUnsafe = risk;
      log.warn('statements refused: the server reads statement text differently', { setting: name });
    }
  }
  private textUnsafe: string | null = null;

  private judgeText(
    text: string,
  ):
    | { kind: 'allow' }
    | { kind: 'refuse'; error: PgwardenError }
    | { kind: 'intercept'; facts: StatementFacts } {
    this.lastReadsMasked = false;
    if (this.textUnsafe !== null) {
      stats.policyRefusals++;
      return {
        kind: 'refuse',
        error: pgwErrorWithDetail(
          'PGW_ERR_POLICY_DENIED',
          'Rule: guardrail statement_text.',
          this.textUnsafe,
        ),
      };
    }
    const rt = this.events.policy();
    const parsed = rt.parseCache.analyze(text);
    if (!parsed.ok) {
      stats.policyRefusals++;
      const error = pgwError('PGW_ERR_SQL_UNPARSABLE', parsed.error.message);
      if (parsed.error.position > 0) error.position = parsed.error.position;
      return { kind: 'refuse', error };
    }
    const statements = parsed.statements;
    const own = statements.findIndex((f) => f.setting?.name.startsWith('pgwarden.'));
    if (own >= 0) {
      const setting = statements[own].setting!;
      if (
        statements.length > 1 ||
        (setting.name !== 'pgwarden.actor' && setting.name !== 'pgwarden.break_glass')
      ) {
        return { kind: 'refuse', error: pgwError('PGW_ERR_PGWARDEN_SETTING', setting.name) };
      }
      return { kind: 'intercept', facts: statements[own] };
    }
    this.closeElapsedBreakGlass();
    const roles = this.policy.roles(rt);
    let readsMasked = false;
    let ddl = false;
    for (const facts of statements) {
      const refusal = roles.check(facts, this.pinned, this.events.maskedViews(roles.masks));
      if (refusal) {
        stats.policyRefusals++;
        if (refusal.rule === 'roles.*.allow_masked_predicates') stats.maskedPredicateRefusals++;
        const error = pgwErrorWithDetail(
          'PGW_ERR_POLICY_DENIED',
          `Rule: ${refusal.rule}. Roles: ${roles.names.join(', ') || '(none)'}.`,
          refusal.reason,
        );
        return { kind: 'refuse', error };
      }
      if (roles.masks.size > 0 && facts.copyOut !== null) {
        // Its rows are masked as they stream: the session takes this at the CopyOutResponse, in order.
        this.copyOuts.push({ copy: facts.copyOut, readsMasked: roles.readsMasked(facts) });
      }
      if (roles.masks.size > 0 && roles.readsMasked(facts)) {
        readsMasked = true;
        // A cursor or prepared statement may return these rows in a later round trip: from then on every
        // expression result of the session is masked.
        if (facts.command === 'DeclareCursorStmt' || facts.command === 'PrepareStmt')
          this.readsMaskedLater = true;
      }
      if (facts.kinds.includes('ddl')) ddl = true;
    }
    this.lastReadsMasked = readsMasked;
    if (ddl) this.events.ddlAllowed();
    return { kind: 'allow' };
  }
  /** The last statement judged may read a masked column (its expressions are then masked, not only detected). */
  lastReadsMasked = false;
  /** A cursor or prepared statement that reads a masked column exists: expressions stay masked for the session. */
  readsMaskedLater = false;
  /** COPY ... TO statements of masked sessions sent upstream whose CopyOutResponse has not come yet. */
  readonly copyOuts: Array<{ copy: CopyOut; readsMasked: boolean }> = [];

  private closeElapsedBreakGlass(): void {
    const ended = this.policy.breakGlassExpired();
    if (ended) {
      log.warn('break-glass access expired', { user: this.policy.userName, role: ended.role });
      this.events.audit?.breakGlassEnd('expired');
    }
  }

  /** SET/RESET pgwarden.actor or pgwarden.break_glass; null when it took effect. */
  private applySetting(facts: StatementFacts): PgwardenError | null {
    const setting = facts.setting!;
    if (this.events.transactionFailed()) return null; // PostgreSQL rejects the neutral SET itself (25P02)
    const audit = this.events.audit;
    if (setting.name === 'pgwarden.actor') {
      if (setting.reset) {
        const actor = this.policy.clearActor(false);
        if (actor) audit?.actorEnd(actor.subject, 'reset');
        return null;
      }
      if (setting.value === null)
        return pgwError('PGW_ERR_ACTOR_TOKEN', 'the token must be a string literal');
      const result = this.policy.assertActor(this.events.policy(), setting.value, setting.local);
      if (!result.ok) {
        stats.actorRefusals++;
        audit?.refusal(result.error.sqlstate, `actor token: ${result.reason}`);
        return result.error;
      }
      stats.actorAssertions++;
      audit?.actorStart(result.actor.subject, result.actor.roles, result.actor.local);
      return null;
    }
    if (setting.reset) {
      const glass = this.policy.endBreakGlass();
      if (glass) {
        log.warn('break-glass access ended', { user: this.policy.userName, role: glass.role });
        audit?.breakGlassEnd('reset');
      }
      return null;
    }
    const started = this.policy.startBreakGlass(setting.value ?? '');
    if ('sqlstate' in started) return started;
    stats.breakGlassStarts++;
    log.warn('break-glass emergency access started', {
      user: this.policy.userName,
      role: started.role,
      until: new Date(started.until).toISOString(),
    });
    audit?.breakGlassStart(started.role, started.reason, started.until);
    return null;
  }

  private refuseQuery(error: PgwardenError, roundTrip: number): Buffer {
    return this.refuse(error, roundTrip, POISON_SQL_MESSAGE, writer.query(POISON_SQL));
  }

  private refuse(error: PgwardenError, roundTrip: number, upstreamMessage: string, poison: Buffer): Buffer {
    this.events.audit?.refusal(error.sqlstate, error.message);
    this.refusals.push({ roundTrip, upstreamMessage, response: writer.errorResponse(error) });
    return poison;
  }

  // ---- responses ---------------------------------------------------------------------------------------------

  /** The client's ErrorResponse for an upstream error that is a poison's, or null when the error is genuine. */
  takeRefusal(upstreamMessage: string | undefined): Buffer | null {
    const next = this.refusals[0];
    if (!next || next.upstreamMessage !== upstreamMessage) return null;
    this.refusals.shift();
    return next.response;
  }

  /** Round trips after `roundTrip` were never sent: their refusals will not come back from PostgreSQL. */
  forgetAfter(roundTrip: number): void {
    while (this.refusals.length > 0 && this.refusals[this.refusals.length - 1].roundTrip > roundTrip)
      this.refusals.pop();
  }

  /** A round trip ended: refusals of it that PostgreSQL skipped (an earlier error in its batch) are void. */
  roundTripEnded(done: number): void {
    while (this.refusals.length > 0 && this.refusals[0].roundTrip <= done) this.refusals.shift();
  }
}

/** A pgwarden setting as the audit trail shows it: name and scope kept, value never. */
function redactedSetting(facts: StatementFacts): string {
  const s = facts.setting!;
  if (s.reset) return `RESET ${s.name}`;
  return `SET ${s.local ? 'LOCAL ' : ''}${s.name} = '[redacted]'`;
}

function invalidText(): PgwardenError {
  stats.policyRefusals++;
  return pgwError('PGW_ERR_INVALID_TEXT');
}

/** Parse: name\0 text\0 then binary parameter type OIDs; only the two strings must be UTF-8. */
function parseTextIsUtf8(msg: Buffer): boolean {
  const nameEnd = msg.indexOf(0, 5);
  const textEnd = nameEnd < 0 ? -1 : msg.indexOf(0, nameEnd + 1);
  return textEnd >= 0 && isUtf8(msg.subarray(5, textEnd));
}

/**
 * What PostgreSQL runs in place of an intercepted pgwarden setting: a harmless SET of pgwarden's own placeholder,
 * with the same command tag and the same LOCAL-outside-a-transaction warning as the original.
 */
function neutralSetting(facts: StatementFacts): string {
  const s = facts.setting!;
  if (s.reset) return 'SET pgwarden.intercepted TO DEFAULT';
  return s.local ? 'SET LOCAL pgwarden.intercepted TO DEFAULT' : 'SET pgwarden.intercepted TO DEFAULT';
}
