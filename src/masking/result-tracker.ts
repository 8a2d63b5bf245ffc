// Which result description each DataRow belongs to. In the simple protocol a RowDescription precedes its rows; in
// the extended protocol drivers often Describe a statement once and then Bind/Execute it many times, so the rows
// of an Execute arrive with no RowDescription in front of them. The tracker follows the requests a session sends
// and the responses PostgreSQL returns, in order (the protocol answers requests in the order they were sent), and
// keeps descriptions with their prepared statements and portals.

import { BackendCode } from '../protocol/codes.js';

export interface ResultField {
  readonly name: string;
  /** OID of the table the column comes from; 0 for an expression. */
  readonly tableOid: number;
  readonly attnum: number;
  readonly typeOid: number;
  /** 0 text, 1 binary (as RowDescription says, or as the Bind asked for). */
  readonly format: number;
}

export type ResultDescription = readonly ResultField[];

interface PortalState {
  readonly statement: string;
  readonly formats: number[];
  /** From a Describe of the portal itself. */
  desc: ResultDescription | null;
  /** The description its rows get (formats applied), made once: the masker caches its work per description. */
  rows: ResultDescription | null;
}

type Pending =
  | { readonly kind: 'query' }
  | { readonly kind: 'parse'; readonly statement: string }
  | { readonly kind: 'bind'; readonly portal: string; readonly statement: string; readonly formats: number[] }
  | { readonly kind: 'describe-statement'; readonly statement: string }
  | { readonly kind: 'describe-portal'; readonly portal: string }
  | { readonly kind: 'execute'; readonly portal: string }
  | { readonly kind: 'close' }
  | { readonly kind: 'sync' }
  | { readonly kind: 'function' };

/** Requests in flight are bounded by what the client may pipeline before reading; this caps a hostile one. */
const MAX_PENDING = 100_000;

export class ResultTracker {
  private readonly pending: Pending[] = [];
  private head = 0;
  private readonly statements = new Map<string, ResultDescription>();
  private readonly portals = new Map<string, PortalState>();
  /** The description of the simple-protocol statement whose rows are arriving. */
  private current: ResultDescription | null = null;

  // ---- requests, in the order they are sent upstream --------------------------------------------------------

  query(): void {
    this.push({ kind: 'query' });
  }
  parse(statement: string): void {
    // A new statement under this name: its old description no longer holds.
    this.statements.delete(statement);
    this.push({ kind: 'parse', statement });
  }
  bind(portal: string, statement: string, formats: number[]): void {
    this.push({ kind: 'bind', portal, statement, formats });
  }
  describeStatement(statement: string): void {
    this.push({ kind: 'describe-statement', statement });
  }
  describePortal(portal: string): void {
    this.push({ kind: 'describe-portal', portal });
  }
  execute(portal: string): void {
    this.push({ kind: 'execute', portal });
  }
  close(kind: number, name: string): void {
    if (kind === 0x53) this.statements.delete(name);
    else this.portals.delete(name);
    this.push({ kind: 'close' });
  }
  sync(): void {
    this.push({ kind: 'sync' });
  }
  functionCall(): void {
    this.push({ kind: 'function' });
  }

  /** Too many requests in flight: the caller treats the session as broken (fail closed). */
  get overflowed(): boolean {
    return this.pending.length - this.head > MAX_PENDING;
  }

  private push(p: Pending): void {
    this.pending.push(p);
  }

  private peek(): Pending | undefined {
    return this.pending[this.head];
  }

  private shift(): Pending | undefined {
    const p = this.pending[this.head];
    if (p === undefined) return undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    return p;
  }

  // ---- responses --------------------------------------------------------------------------------------------

  /**
   * Follows one backend message. For a DataRow, returns the description its columns are described by, or null
   * when none is known (the caller then masks every column).
   */
  response(code: number, msg: Buffer): ResultDescription | null {
    switch (code) {
      case BackendCode.DataRow:
        return this.rowDescription();
      case BackendCode.RowDescription: {
        const desc = decodeRowDescription(msg);
        const head = this.peek();
        if (head?.kind === 'describe-statement') {
          this.statements.set(head.statement, desc);
          this.shift();
        } else if (head?.kind === 'describe-portal') {
          const portal = this.portals.get(head.portal);
          if (portal) {
            portal.desc = desc;
            portal.rows = null;
          }
          this.shift();
        } else {
          this.current = desc;
        }
        return null;
      }
      case BackendCode.NoData:
        if (this.peek()?.kind.startsWith('describe')) this.shift();
        return null;
      case BackendCode.ParseComplete:
      case BackendCode.CloseComplete:
        this.shift();
        return null;
      case BackendCode.BindComplete: {
        const head = this.shift();
        if (head?.kind === 'bind') {
          this.portals.set(head.portal, {
            statement: head.statement,
            formats: head.formats,
            desc: null,
            rows: null,
          });
        }
        return null;
      }
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended:
        if (this.peek()?.kind === 'execute') this.shift();
        else this.current = null;
        return null;
      case BackendCode.ErrorResponse:
        this.current = null;
        // PostgreSQL skips every extended message up to Sync after an error; a simple Query ends at its Z.
        while (this.peek() !== undefined && !isRoundTripEnd(this.peek()!)) this.shift();
        return null;
      case BackendCode.ReadyForQuery:
        this.current = null;
        while (this.peek() !== undefined) {
          const p = this.shift()!;
          if (isRoundTripEnd(p)) break;
        }
        return null;
      default:
        return null;
    }
  }

  private rowDescription(): ResultDescription | null {
    const head = this.peek();
    if (head?.kind !== 'execute') return this.current;
    const portal = this.portals.get(head.portal);
    if (!portal) return null;
    if (portal.rows !== null) return portal.rows;
    const desc = portal.desc ?? this.statements.get(portal.statement) ?? null;
    if (desc === null) return null;
    // Describe of a statement reports text formats; the Bind said which columns come back in binary.
    const formats = portal.formats;
    portal.rows =
      formats.length === 0
        ? desc
        : desc.map((f, i) => ({ ...f, format: formats.length === 1 ? formats[0] : (formats[i] ?? 0) }));
    return portal.rows;
  }
}

function isRoundTripEnd(p: Pending): boolean {
  return p.kind === 'sync' || p.kind === 'query' || p.kind === 'function';
}

/** RowDescription ('T'): per field name, table OID, attribute number, type OID, type size, modifier, format. */
export function decodeRowDescription(msg: Buffer): ResultDescription {
  let at = 5;
  const count = msg.readInt16BE(at);
  at += 2;
  const fields: ResultField[] = [];
  for (let i = 0; i < count; i++) {
    const end = msg.indexOf(0, at);
    if (end < 0 || end + 19 > msg.length) throw new Error('malformed RowDescription');
    const name = msg.toString('utf8', at, end);
    at = end + 1;
    const tableOid = msg.readUInt32BE(at);
    const attnum = msg.readInt16BE(at + 4);
    const typeOid = msg.readUInt32BE(at + 6);
    const format = msg.readInt16BE(at + 16);
    at += 18;
    fields.push({ name, tableOid, attnum, typeOid, format });
  }
  return fields;
}

/** The result-column format codes of a Bind message (after its parameters). */
export function decodeBindResultFormats(msg: Buffer): number[] {
  let at = msg.indexOf(0, 5) + 1; // portal
  at = msg.indexOf(0, at) + 1; // statement
  const paramFormats = msg.readInt16BE(at);
  at += 2 + 2 * paramFormats;
  const params = msg.readInt16BE(at);
  at += 2;
  for (let i = 0; i < params; i++) {
    const len = msg.readInt32BE(at);
    at += 4 + (len > 0 ? len : 0);
  }
  const count = msg.readInt16BE(at);
  at += 2;
  const formats: number[] = [];
  for (let i = 0; i < count; i++) formats.push(msg.readInt16BE(at + 2 * i));
  return formats;
}
