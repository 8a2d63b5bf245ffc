// One registry of every refusal pgwarden sends a client: code -> SQLSTATE, severity, message template.
// Named factories build PgwardenError; protocol/writer.ts turns one into an ErrorResponse. A unit test keeps the
// registry honest (every entry well-formed and used somewhere in src/).

export type Severity = 'FATAL' | 'ERROR';

interface ErrorSpec {
  readonly sqlstate: string;
  readonly severity: Severity;
  readonly message: string; // %s placeholders, filled in order
  readonly hint?: string;
}

export const ERRORS = {
  PGW_ERR_TLS_REQUIRED: {
    sqlstate: '28000',
    severity: 'FATAL',
    message: 'pgwarden requires TLS: plaintext connections are refused',
    hint: 'Connect with sslmode=require (or verify-ca / verify-full).',
  },
  PGW_ERR_AUTH_FAILED: {
    sqlstate: '28P01',
    severity: 'FATAL',
    message: 'password authentication failed for user "%s"',
  },
  PGW_ERR_CHANNEL_BINDING: {
    sqlstate: '28000',
    severity: 'FATAL',
    message: 'SCRAM channel binding check failed',
    hint: 'The TLS connection seen by the client is not the one pgwarden terminated.',
  },
  PGW_ERR_PROTOCOL_VIOLATION: { sqlstate: '08P01', severity: 'FATAL', message: 'protocol violation: %s' },
  PGW_ERR_MESSAGE_LENGTH: { sqlstate: '08P01', severity: 'FATAL', message: 'invalid message length: %s' },
  PGW_ERR_SSL_INJECTION: {
    sqlstate: '08P01',
    severity: 'FATAL',
    message: 'received unencrypted data after SSL request',
    hint: 'This is either a client bug or evidence of an attempted man-in-the-middle attack.',
  },
  PGW_ERR_UNSUPPORTED_PROTOCOL: {
    sqlstate: '0A000',
    severity: 'FATAL',
    message: 'unsupported frontend protocol %s: pgwarden supports protocol 3.0',
  },
  PGW_ERR_REPLICATION_REFUSED: {
    sqlstate: '0A000',
    severity: 'FATAL',
    message: 'replication connections are not supported through pgwarden',
    hint: 'Connect replication clients to PostgreSQL directly.',
  },
  PGW_ERR_NO_USER: {
    sqlstate: '28000',
    severity: 'FATAL',
    message: 'no PostgreSQL user name specified in startup packet',
  },
  PGW_ERR_UNKNOWN_DATABASE: {
    sqlstate: '3D000',
    severity: 'FATAL',
    message: 'database "%s" is not configured in pgwarden',
  },
  PGW_ERR_DATABASE_NOT_ALLOWED: {
    sqlstate: '42501',
    severity: 'FATAL',
    message: 'user "%s" is not allowed to connect to database "%s"',
  },
  PGW_ERR_TOO_MANY_CONNECTIONS: {
    sqlstate: '53300',
    severity: 'FATAL',
    message: 'too many client connections (limit %s per node)',
  },
  PGW_ERR_POOL_TIMEOUT: {
    sqlstate: '53300',
    severity: 'FATAL',
    message: 'no server connection for database "%s" became free within %s ms',
    hint: 'Raise databases.<name>.pool.size or timeouts.pool_acquire.',
  },
  PGW_ERR_UPSTREAM_UNAVAILABLE: {
    sqlstate: '08001',
    severity: 'FATAL',
    message: 'could not connect to the upstream server for database "%s": %s',
  },
  PGW_ERR_UPSTREAM_AUTH: {
    sqlstate: '08001',
    severity: 'FATAL',
    message: 'the upstream server for database "%s" refused pgwarden\'s login: %s',
    hint: 'Check the upstream account configured in databases.<name>.upstream.',
  },
  PGW_ERR_UPSTREAM_CLOSED: {
    sqlstate: '08006',
    severity: 'FATAL',
    message: 'the upstream server closed the connection unexpectedly',
  },
  PGW_ERR_SHUTTING_DOWN: {
    sqlstate: '57P01',
    severity: 'FATAL',
    message: 'terminating connection because pgwarden is shutting down',
  },
  PGW_ERR_IDLE_TIMEOUT: {
    sqlstate: '57P05',
    severity: 'FATAL',
    message: 'terminating connection due to idle-session timeout (%s ms)',
  },
  PGW_ERR_IDLE_IN_TRANSACTION_TIMEOUT: {
    sqlstate: '25P03',
    severity: 'FATAL',
    message: 'terminating connection due to idle-in-transaction timeout (%s ms)',
  },
  PGW_ERR_STARTUP_TIMEOUT: {
    sqlstate: '08P01',
    severity: 'FATAL',
    message: 'canceling startup: TLS, startup and authentication did not finish within %s ms',
  },
  PGW_ERR_AUDIT_UNAVAILABLE: {
    sqlstate: '58030',
    severity: 'ERROR',
    message: 'audit log unavailable: statements are refused until it can be written again',
    hint: 'The audit sink failed (disk full, I/O or permission error); see the pgwarden log.',
  },
  PGW_ERR_AUDIT_UNAVAILABLE_SESSION: {
    sqlstate: '58030',
    severity: 'FATAL',
    message: 'audit log unavailable: ending the session because its statements cannot be recorded',
    hint: 'The audit sink failed (disk full, I/O or permission error); reconnect once it is writable again.',
  },
  PGW_ERR_POLICY_DENIED: {
    sqlstate: '42501',
    severity: 'ERROR',
    message: 'permission denied by pgwarden policy: %s',
  },
  PGW_ERR_SQL_UNPARSABLE: {
    sqlstate: '42601',
    severity: 'ERROR',
    message: 'statement refused, it does not parse: %s',
    hint: 'pgwarden refuses statements it cannot parse (PostgreSQL 17 grammar).',
  },
  PGW_ERR_INVALID_TEXT: {
    sqlstate: '22021',
    severity: 'ERROR',
    message: 'invalid byte sequence for encoding "UTF8" in the statement text',
    hint: 'pgwarden judges statements as UTF-8; send statement text in UTF-8 (client_encoding UTF8).',
  },
  PGW_ERR_MAX_ROWS: {
    sqlstate: '54000',
    severity: 'ERROR',
    message: "result stopped by pgwarden: more than %s rows (max_rows of the session's roles)",
    hint: 'Add a LIMIT or a narrower WHERE clause, or ask for a role with a higher max_rows.',
  },
  PGW_ERR_ADDRESS_DENIED: {
    sqlstate: '28000',
    severity: 'FATAL',
    message: 'connections from this client address are not allowed',
  },
  PGW_ERR_LOCKED_OUT: {
    sqlstate: '28000',
    severity: 'FATAL',
    message: 'too many failed login attempts: try again later',
  },
  PGW_ERR_PROXY_HEADER: {
    sqlstate: '08P01',
    severity: 'FATAL',
    message: 'invalid PROXY protocol header: %s',
  },
  PGW_ERR_ACTOR_TOKEN: {
    sqlstate: '28000',
    severity: 'ERROR',
    message: 'actor token refused: %s',
  },
  PGW_ERR_ACTOR_NOT_ALLOWED: {
    sqlstate: '42501',
    severity: 'ERROR',
    message: 'user "%s" may not assert an actor',
  },
  PGW_ERR_BREAK_GLASS_NOT_ALLOWED: {
    sqlstate: '42501',
    severity: 'ERROR',
    message: 'user "%s" has no emergency access (break_glass)',
  },
  PGW_ERR_BREAK_GLASS_REASON: {
    sqlstate: '22023',
    severity: 'ERROR',
    message: "break-glass access needs a reason: SET pgwarden.break_glass = '<reason>'",
  },
  PGW_ERR_PGWARDEN_SETTING: {
    sqlstate: '42501',
    severity: 'ERROR',
    message: 'pgwarden setting %s cannot be set this way',
    hint: "Use SET [LOCAL] pgwarden.actor = '<token>' or SET pgwarden.break_glass = '<reason>' as a statement of its own.",
  },
  PGW_ERR_MASK_CATALOG: {
    sqlstate: '58000',
    severity: 'FATAL',
    message:
      'could not read the mask catalog of database "%s": masked sessions are refused until it can be read',
  },
  PGW_ERR_INTERNAL: {
    sqlstate: 'XX000',
    severity: 'FATAL',
    message: 'internal error in pgwarden (see its log)',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** A refusal that reaches the client as an ErrorResponse. */
export class PgwardenError extends Error {
  readonly sqlstate: string;
  readonly severity: Severity;
  readonly hint: string | undefined;
  readonly detail: string | undefined;
  /** 1-based character position in the statement (ErrorResponse field P), when the error points into it. */
  position: number | undefined;
  constructor(
    readonly code: ErrorCode,
    args: ReadonlyArray<string | number> = [],
    detail?: string,
  ) {
    const spec: ErrorSpec = ERRORS[code];
    let i = 0;
    super(spec.message.replace(/%s/g, () => String(args[i++] ?? '')));
    this.name = 'PgwardenError';
    this.sqlstate = spec.sqlstate;
    this.severity = spec.severity;
    this.hint = spec.hint;
    this.detail = detail;
  }
}

export function pgwError(code: ErrorCode, ...args: Array<string | number>): PgwardenError {
  return new PgwardenError(code, args);
}

export function pgwErrorWithDetail(
  code: ErrorCode,
  detail: string,
  ...args: Array<string | number>
): PgwardenError {
  return new PgwardenError(code, args, detail);
}
