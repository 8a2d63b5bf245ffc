// Builds the few messages pgwarden itself originates (errors, authentication, startup replies). Everything a peer
// sent that needs no change is forwarded as its original bytes and never passes through here.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import { AuthCode, BackendCode, RequestCode } from './codes.js';
import type { PgwardenError } from '../core/errors.js';

/** A tagged message: type byte, int32 length, body. */
function tagged(code: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = code;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstrings(values: readonly string[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.from(v + '\0', 'utf8')));
}

/** ErrorResponse / NoticeResponse fields: S (localised severity), V (severity), C (SQLSTATE), M, D, H. */
export function errorResponse(
  e: Pick<PgwardenError, 'severity' | 'sqlstate' | 'message' | 'detail' | 'hint'> & { position?: number },
): Buffer {
  const fields = ['S' + e.severity, 'V' + e.severity, 'C' + e.sqlstate, 'M' + e.message];
  if (e.detail) fields.push('D' + e.detail);
  if (e.hint) fields.push('H' + e.hint);
  if (e.position) fields.push('P' + String(e.position));
  return tagged(BackendCode.ErrorResponse, Buffer.concat([cstrings(fields), Buffer.from([0])]));
}

export function authenticationOk(): Buffer {
  return authWithInt(AuthCode.Ok);
}

function authWithInt(kind: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.allocUnsafe(4 + extra.length);
  body.writeInt32BE(kind, 0);
  extra.copy(body, 4);
  return tagged(BackendCode.Authentication, body);
}

/** AuthenticationSASL: the mechanism list, each NUL-terminated, then an empty string. */
export function authenticationSASL(mechanisms: readonly string[]): Buffer {
  return authWithInt(AuthCode.SASL, Buffer.concat([cstrings(mechanisms), Buffer.from([0])]));
}

export function authenticationSASLContinue(data: Buffer): Buffer {
  return authWithInt(AuthCode.SASLContinue, data);
}

export function authenticationSASLFinal(data: Buffer): Buffer {
  return authWithInt(AuthCode.SASLFinal, data);
}

export function parameterStatus(name: string, value: string): Buffer {
  return tagged(BackendCode.ParameterStatus, cstrings([name, value]));
}

export function backendKeyData(processId: number, secretKey: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(processId | 0, 0);
  body.writeInt32BE(secretKey | 0, 4);
  return tagged(BackendCode.BackendKeyData, body);
}

export function readyForQuery(status: number): Buffer {
  return tagged(BackendCode.ReadyForQuery, Buffer.from([status]));
}

/** NegotiateProtocolVersion: newest minor version we support, and the _pq_ options we did not recognise. */
export function negotiateProtocolVersion(newestMinor: number, unrecognised: readonly string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeInt32BE(newestMinor, 0);
  head.writeInt32BE(unrecognised.length, 4);
  return tagged(BackendCode.NegotiateProtocolVersion, Buffer.concat([head, cstrings(unrecognised)]));
}

/** StartupMessage for protocol 3.0 with the given parameters, in order. */
export function startupMessage(params: ReadonlyArray<readonly [string, string]>): Buffer {
  const body = Buffer.concat([cstrings(params.flatMap(([k, v]) => [k, v])), Buffer.from([0])]);
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE(RequestCode.Protocol30, 4);
  body.copy(out, 8);
  return out;
}

export function sslRequest(): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(RequestCode.SSLRequest, 4);
  return out;
}

export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + secretKey.length); // length, code, process id, then the whole secret
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(RequestCode.CancelRequest, 4);
  out.writeInt32BE(processId | 0, 8);
  secretKey.copy(out, 12);
  return out;
}

/** Simple Query (frontend 'Q'); used for the reset query when a server connection returns to the pool. */
export function query(text: string): Buffer {
  return tagged(0x51, Buffer.from(text + '\0', 'utf8'));
}

/** DataRow (backend 'D') of the given values, NULL for null. */
export function dataRow(values: ReadonlyArray<Buffer | null>): Buffer {
  const size = 7 + values.reduce((n, v) => n + 4 + (v === null ? 0 : v.length), 0);
  const row = Buffer.allocUnsafe(size);
  row[0] = 0x44;
  row.writeInt32BE(size - 1, 1);
  row.writeInt16BE(values.length, 5);
  let at = 7;
  for (const v of values) {
    row.writeInt32BE(v === null ? -1 : v.length, at);
    at += 4;
    if (v !== null) at += v.copy(row, at);
  }
  return row;
}

/** Parse (frontend 'P') with no declared parameter types. */
export function parse(name: string, text: string): Buffer {
  return tagged(0x50, Buffer.concat([Buffer.from(name + '\0' + text + '\0', 'utf8'), Buffer.from([0, 0])]));
}

/** Bind (frontend 'B') of a statement with no parameters and default result formats. */
export function bind(portal: string, statement: string): Buffer {
  return tagged(
    0x42,
    Buffer.concat([Buffer.from(portal + '\0' + statement + '\0', 'utf8'), Buffer.from([0, 0, 0, 0, 0, 0])]),
  );
}

/** CopyData (frontend 'd'): a piece of COPY FROM STDIN input (the audit table sink). */
export function copyData(data: Buffer): Buffer {
  return tagged(0x64, data);
}

/** CopyDone (frontend 'c'): the end of COPY FROM STDIN input. */
export function copyDone(): Buffer {
  return Buffer.from([0x63, 0, 0, 0, 4]);
}

/** 'p' messages to the upstream: PasswordMessage, SASLInitialResponse, SASLResponse. */
export function passwordMessage(password: string): Buffer {
  return tagged(0x70, Buffer.from(password + '\0', 'utf8'));
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const mech = Buffer.from(mechanism + '\0', 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeInt32BE(data.length, 0);
  return tagged(0x70, Buffer.concat([mech, len, data]));
}

export function saslResponse(data: Buffer): Buffer {
  return tagged(0x70, data);
}

export function terminate(): Buffer {
  return Buffer.from([0x58, 0, 0, 0, 4]);
}
