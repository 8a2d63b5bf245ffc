// Where masked columns live in one upstream database: a RowDescription names a column by table OID and attribute
// number, the config by schema.table.column. The catalog is read once per worker and database on an upstream
// connection about to be handed to a masked session, kept for a TTL, and dropped when DDL passes through the
// worker. Views (and views of views) that read a masked column are recorded too: every column of such a view is
// masked, since which of its columns carries the value is not known here. A relation created after the catalog
// was read (an OID above the highest one seen) is unknown, and its columns are masked until the next read.

import type { ServerConnection, ServerOwner } from '../backend/server-connection.js';
import { BackendCode } from '../protocol/codes.js';
import { decodeErrorFields } from '../protocol/decode.js';
import * as writer from '../protocol/writer.js';
import type { ColumnKey } from './mask-spec.js';

export interface MaskCatalog {
  /** table OID → attribute number → `schema.table.column`, for tables with a column masked by some role. */
  readonly columns: ReadonlyMap<number, ReadonlyMap<number, string>>;
  /** View OID → the masked `schema.table.column`s it reads (directly or through other views). */
  readonly views: ReadonlyMap<number, ReadonlySet<string>>;
  /** View OID → `schema.name`, for the statement rules (which see names, not OIDs). */
  readonly viewNames: ReadonlyMap<number, string>;
  /** `schema.table` → OID and every column in attribute order, for tables with a masked column (COPY TO). */
  readonly tables: ReadonlyMap<
    string,
    { readonly oid: number; readonly columns: ReadonlyArray<{ attnum: number; name: string }> }
  >;
  /** The highest relation OID when the catalog was read. */
  readonly maxOid: number;
  readonly loadedAt: number;
}

/** Views of views are followed this deep; deeper ones are found on the next read (their OIDs are known, unmasked). */
const MAX_VIEW_DEPTH = 8;

function literal(s: string): string {
  return "'" + s.replace(/'/g, "''") + "'";
}

/**
 * Reads the catalog for `masks` (every role's masked columns, and subject columns) over `server`, which must be
 * idle.
 */
export async function loadMaskCatalog(
  server: ServerConnection,
  masks: readonly ColumnKey[],
  timeoutMs: number,
): Promise<MaskCatalog> {
  const columns = new Map<number, Map<number, string>>();
  const byKey = new Map<string, { oid: number; attnum: number }>();
  const maxOidRows = await runQuery(server, 'SELECT max(oid)::int8 FROM pg_catalog.pg_class', timeoutMs);
  const maxOid = Number(maxOidRows[0]?.[0] ?? 0);
  if (masks.length > 0) {
    const wanted = masks
      .map((m) => `(${literal(m.schema)}, ${literal(m.table)}, ${literal(m.column)})`)
      .join(', ');
    const rows = await runQuery(
      server,
      `SELECT c.oid::int8, n.nspname, c.relname, a.attnum, a.attname
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE (n.nspname, c.relname, a.attname) IN (${wanted})`,
      timeoutMs,
    );
    for (const [oid, schema, table, attnum, column] of rows) {
      const key = `${schema}.${table}.${column}`;
      let table_ = columns.get(Number(oid));
      if (!table_) columns.set(Number(oid), (table_ = new Map()));
      table_.set(Number(attnum), key);
      byKey.set(key, { oid: Number(oid), attnum: Number(attnum) });
    }
  }
  const views = new Map<number, Set<string>>();
  // Frontier: (relation OID, attnum or 0 for "every column") → the masked keys it carries.
  let frontier: Array<{ oid: number; attnum: number; keys: Set<string> }> = [...byKey].map(([key, at]) => ({
    ...at,
    keys: new Set([key]),
  }));
  for (let depth = 0; depth < MAX_VIEW_DEPTH && frontier.length > 0; depth++) {
    const refs = frontier
      .map((f) =>
        f.attnum === 0
          ? `(d.refobjid = ${f.oid})`
          : `(d.refobjid = ${f.oid} AND d.refobjsubid = ${f.attnum})`,
      )
      .join(' OR ');
    const rows = await runQuery(
      server,
      `SELECT DISTINCT r.ev_class::int8, d.refobjid::int8, d.refobjsubid
         FROM pg_catalog.pg_depend d
         JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND r.ev_class <> d.refobjid
          AND (${refs})`,
      timeoutMs,
    );
    const next = new Map<number, Set<string>>();
    for (const [view, ref] of rows) {
      const keys = new Set<string>();
      for (const f of frontier) if (f.oid === Number(ref)) for (const k of f.keys) keys.add(k);
      const viewOid = Number(view);
      const known = views.get(viewOid) ?? new Set<string>();
      let grew = false;
      for (const k of keys) {
        if (!known.has(k)) {
          known.add(k);
          grew = true;
        }
      }
      views.set(viewOid, known);
      if (grew) next.set(viewOid, new Set([...(next.get(viewOid) ?? []), ...keys]));
    }
    frontier = [...next].map(([oid, keys]) => ({ oid, attnum: 0, keys }));
  }
  const tables = new Map<string, { oid: number; columns: Array<{ attnum: number; name: string }> }>();
  if (columns.size > 0) {
    const rows = await runQuery(
      server,
      `SELECT c.oid::int8, n.nspname, c.relname, a.attnum, a.attname
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.oid IN (${[...columns.keys()].join(', ')})
        ORDER BY c.oid, a.attnum`,
      timeoutMs,
    );
    for (const [oid, schema, table, attnum, column] of rows) {
      const key = `${schema}.${table}`;
      let entry = tables.get(key);
      if (!entry) tables.set(key, (entry = { oid: Number(oid), columns: [] }));
      entry.columns.push({ attnum: Number(attnum), name: String(column) });
    }
  }
  const viewNames = new Map<number, string>();
  if (views.size > 0) {
    const rows = await runQuery(
      server,
      `SELECT c.oid::int8, n.nspname, c.relname FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid IN (${[...views.keys()].join(', ')})`,
      timeoutMs,
    );
    for (const [oid, schema, name] of rows) viewNames.set(Number(oid), `${schema}.${name}`);
  }
  return { columns, views, viewNames, tables, maxOid, loadedAt: Date.now() };
}

/** The views of `catalog` (by name) that read a column masked by `masks`. */
export function maskedViewNames(catalog: MaskCatalog, masks: ReadonlyMap<string, unknown>): Set<string> {
  const names = new Set<string>();
  for (const [oid, keys] of catalog.views) {
    for (const k of keys) {
      if (masks.has(k)) {
        const name = catalog.viewNames.get(oid);
        if (name !== undefined) names.add(name);
        break;
      }
    }
  }
  return names;
}

/**
 * One simple query on an idle server connection, rows as text. The connection is borrowed: the caller attaches
 * its own owner afterwards.
 */
function runQuery(
  server: ServerConnection,
  sql: string,
  timeoutMs: number,
): Promise<Array<Array<string | null>>> {
  return new Promise((resolve, reject) => {
    const rows: Array<Array<string | null>> = [];
    let failure: Error | null = null;
    const timer = setTimeout(
      () => finish(new Error(`catalog query timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      server.owner = null;
      if (err) reject(err);
      else resolve(rows);
    };
    const owner: ServerOwner = {
      serverData: () => undefined,
      serverReady: () => undefined,
      serverClosed: () => finish(new Error('the server closed the connection during a catalog query')),
      serverMessage: (code, msg) => {
        if (code === BackendCode.DataRow) rows.push(decodeTextRow(msg));
        else if (code === BackendCode.ErrorResponse) {
          failure = new Error(`catalog query failed: SQLSTATE ${decodeErrorFields(msg).get('C') ?? '?'}`);
        } else if (code === BackendCode.ReadyForQuery) finish(failure);
      },
      serverChunkEnd: () => undefined,
    };
    server.setRewriting(true);
    server.attach(owner);
    server.socket.write(writer.query(sql));
  });
}

function decodeTextRow(msg: Buffer): Array<string | null> {
  const count = msg.readInt16BE(5);
  const values: Array<string | null> = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const len = msg.readInt32BE(at);
    at += 4;
    if (len < 0) values.push(null);
    else {
      values.push(msg.toString('utf8', at, at + len));
      at += len;
    }
  }
  return values;
}
