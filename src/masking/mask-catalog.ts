// Where masked columns live in one upstream database: a RowDescription names a column by table OID and attribute
// number, the config by schema.table.column. The catalog is read once per worker and database on an upstream
// connection about to be handed to a masked session, kept for a TTL, and dropped when DDL passes through the
// worker. Views (and views of views) that read a masked column are recorded too: every column of such a view is
// masked, since which of its columns carries the value is not known here. A relation created after the catalog
// was read (an OID above the highest one seen) is unknown, and its columns are masked until the next read.

import type { ServerConnection, ServerOwner } from '../backend/server-connection.js';
import { BackendCode } from '../protocol/codes.js';
import { decodeDataRow, decodeErrorFields } from '../protocol/decode.js';
import * as writer from '../protocol/writer.js';
import type { ColumnKey } from './mask-spec.js';
import type { ColumnRef, RelationRef } from '../policy/facts.js';
import { analyzeSql } from '../policy/sql-analyze.js';

export interface ViewColumn {
  readonly name: string;
  readonly keys: ReadonlySet<string>;
  readonly direct: boolean;
}

export interface MaskCatalog {
  /** table OID → attribute number → `schema.table.column`, for tables with a column masked by some role. */
  readonly columns: ReadonlyMap<number, ReadonlyMap<number, string>>;
  /** View OID → the masked `schema.table.column`s it reads (directly or through other views). */
  readonly views: ReadonlyMap<number, ReadonlySet<string>>;
  /** View OID → `schema.name`, for the statement rules (which see names, not OIDs). */
  readonly viewNames: ReadonlyMap<number, string>;
  /**
   * View OID → attribute number → what that view column shows: the masked base columns it is computed from, and
   * whether it is one of them as it is (then it gets that column's mask; computed, it is redacted). A view whose
   * definition could not be read column by column (branches of unknown width) has no entry: it is masked whole.
   */
  readonly viewColumns: ReadonlyMap<number, ReadonlyMap<number, ViewColumn>>;
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
  searchPath: readonly string[] = ['public'],
): Promise<MaskCatalog> {
  const columns = new Map<number, Map<number, string>>();
  const byKey = new Map<string, { oid: number; attnum: number }>();
  const maxOidRows = await runQuery(server, 'SELECT max(oid)::int8 FROM pg_catalog.pg_class', timeoutMs);
  const maxOid = Number(maxOidRows[0]?.[0] ?? 0);
  // Every column of each table with a masked column: the masked ones by attribute number, all of them in order
  // (COPY TO of the table names its columns by position).
  const tables = new Map<string, { oid: number; columns: Array<{ attnum: number; name: string }> }>();
  if (masks.length > 0) {
    const maskKeys = new Set(masks.map((m) => `${m.schema}.${m.table}.${m.column}`));
    const wanted = [...new Set(masks.map((m) => `(${literal(m.schema)}, ${literal(m.table)})`))].join(', ');
    const rows = await relationColumns(server, `(n.nspname, c.relname) IN (${wanted})`, timeoutMs);
    for (const [oid, schema, table, attnum, column] of rows) {
      const name = `${schema}.${table}`;
      let entry = tables.get(name);
      if (!entry) tables.set(name, (entry = { oid: Number(oid), columns: [] }));
      entry.columns.push({ attnum: Number(attnum), name: String(column) });
      const key = `${name}.${column}`;
      if (!maskKeys.has(key)) continue;
      let masked = columns.get(Number(oid));
      if (!masked) columns.set(Number(oid), (masked = new Map()));
      masked.set(Number(attnum), key);
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
  const { viewColumns, viewNames } =
    views.size > 0
      ? await resolveViewColumns(server, views, masks, searchPath, timeoutMs)
      : { viewColumns: new Map<number, Map<number, ViewColumn>>(), viewNames: new Map<number, string>() };
  return { columns, views, viewNames, viewColumns, tables, maxOid, loadedAt: Date.now() };
}

/**
 * Reads each view's definition (pg_get_viewdef, names as the session's pinned search_path sees them) with the
 * parser and ties every view column to the masked base columns behind it, views of views after the views they
 * read.
 */
async function resolveViewColumns(
  server: ServerConnection,
  views: ReadonlyMap<number, ReadonlySet<string>>,
  masks: readonly ColumnKey[],
  searchPath: readonly string[],
  timeoutMs: number,
): Promise<{ viewColumns: Map<number, Map<number, ViewColumn>>; viewNames: Map<number, string> }> {
  const rows = await relationColumns(
    server,
    `c.oid IN (${[...views.keys()].join(', ')})`,
    timeoutMs,
    'pg_catalog.pg_get_viewdef(c.oid)',
  );
  const defs = new Map<
    number,
    { name: string; def: string; columns: Array<{ attnum: number; name: string }> }
  >();
  for (const [oid, schema, name, attnum, column, def] of rows) {
    let d = defs.get(Number(oid));
    if (!d) defs.set(Number(oid), (d = { name: `${schema}.${name}`, def: String(def), columns: [] }));
    d.columns.push({ attnum: Number(attnum), name: String(column) });
  }
  // `schema.relation.column` → the masked base columns it carries; views are added as they are resolved.
  const carried = new Map<string, ReadonlySet<string>>();
  for (const m of masks) {
    const key = `${m.schema}.${m.table}.${m.column}`;
    carried.set(key, new Set([key]));
  }
  const resolved = new Map<number, Map<number, ViewColumn>>();
  for (let pass = 0; pass < MAX_VIEW_DEPTH && resolved.size < defs.size; pass++) {
    for (const [oid, d] of defs) {
      if (resolved.has(oid)) continue;
      const parsed = analyzeSql(d.def);
      const facts = parsed.ok && parsed.statements.length === 1 ? parsed.statements[0] : null;
      const outputs = facts?.outputs;
      if (!facts || !outputs || outputs.length !== d.columns.length) {
        resolved.set(oid, new Map()); // not readable column by column: masked whole (see column-plan.ts)
        continue;
      }
      const columns = new Map<number, ViewColumn>();
      d.columns.forEach((col, i) => {
        const keys = new Set<string>();
        for (const ref of outputs[i].refs) {
          for (const k of carriedBy(ref, facts.relations, searchPath, carried))
            for (const base of carried.get(k)!) keys.add(base);
        }
        columns.set(col.attnum, {
          name: col.name,
          keys,
          direct: outputs[i].direct && outputs[i].refs.length === 1,
        });
        carried.set(`${d.name}.${col.name}`, keys);
      });
      resolved.set(oid, columns);
    }
  }
  // Views with an empty map were not readable: dropped so that they are masked whole.
  for (const [oid, columns] of resolved) if (columns.size === 0) resolved.delete(oid);
  return { viewColumns: resolved, viewNames: new Map([...defs].map(([oid, d]) => [oid, d.name])) };
}

/** The `schema.relation.column`s among `carried` that a column reference in a view definition may name. */
function carriedBy(
  ref: ColumnRef,
  relations: readonly RelationRef[],
  searchPath: readonly string[],
  carried: ReadonlyMap<string, ReadonlySet<string>>,
): string[] {
  const q = ref.qualifier;
  const relName = q.length > 0 ? q[q.length - 1] : null;
  const schema = q.length >= 2 ? q[q.length - 2] : null;
  const out: string[] = [];
  for (const rel of relations) {
    if (relName !== null) {
      if (schema !== null ? rel.name !== relName : (rel.alias ?? rel.name) !== relName) continue;
    }
    const names =
      rel.schema !== null ? [`${rel.schema}.${rel.name}`] : searchPath.map((s) => `${s}.${rel.name}`);
    for (const name of names) {
      if (ref.name === '*') {
        for (const k of carried.keys()) if (k.startsWith(`${name}.`)) out.push(k);
      } else if (carried.has(`${name}.${ref.name}`)) {
        out.push(`${name}.${ref.name}`);
      }
    }
  }
  return out;
}

/**
 * The view columns that show a column masked by `masks`, by name (`schema.view`, column); '*' for every column
 * of a view that could not be resolved column by column. The statement rules treat them as masked columns.
 */
export function maskedViewColumns(
  catalog: MaskCatalog,
  masks: ReadonlyMap<string, unknown>,
): Array<{ relation: string; column: string }> {
  const out: Array<{ relation: string; column: string }> = [];
  for (const [oid, keys] of catalog.views) {
    const relation = catalog.viewNames.get(oid);
    if (relation === undefined || ![...keys].some((k) => masks.has(k))) continue;
    const resolved = catalog.viewColumns.get(oid);
    if (resolved === undefined) {
      out.push({ relation, column: '*' });
      continue;
    }
    for (const col of resolved.values()) {
      if ([...col.keys].some((k) => masks.has(k))) out.push({ relation, column: col.name });
    }
  }
  return out;
}

/**
 * Every column of the relations `where` picks (c: pg_class, n: pg_namespace), in attribute order, as rows of
 * [oid, schema, relation, attnum, column] and `extra` (one more expression over c) when given.
 */
function relationColumns(
  server: ServerConnection,
  where: string,
  timeoutMs: number,
  extra?: string,
): Promise<Array<Array<string | null>>> {
  return runQuery(
    server,
    `SELECT c.oid::int8, n.nspname, c.relname, a.attnum, a.attname${extra ? `, ${extra}` : ''}
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE ${where}
      ORDER BY c.oid, a.attnum`,
    timeoutMs,
  );
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
        if (code === BackendCode.DataRow)
          rows.push(decodeDataRow(msg).map((v) => (v === null ? null : v.toString('utf8'))));
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
