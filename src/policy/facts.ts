// What the SQL guardrails need to know about one statement, read off PostgreSQL's own parse tree (libpg-query).
// The analyser (sql-analyze.ts) produces these; the rules (rules.ts) judge them. Nothing here depends on roles.

import type { StatementKind } from '../config/schema.js';

export type { StatementKind };

/** A table, view, sequence or other relation named by the statement (a RangeVar that is not a CTE in scope). */
export interface RelationRef {
  /** As written, after the parser's case folding and de-quoting; null when unqualified. */
  readonly schema: string | null;
  readonly name: string;
  /** The alias it is known by in its query level, if any. */
  readonly alias: string | null;
  /** True when the statement writes it: INSERT/UPDATE/DELETE/MERGE target, COPY FROM target, TRUNCATE, LOCK. */
  readonly target: boolean;
}

/** A column reference: `ssn`, `p.ssn`, `public.patients.ssn`, `*`, `p.*`. A lone name may also be a whole-row reference. */
export interface ColumnRef {
  /** Qualifier parts before the column name: [] | [rel] | [schema, rel] | [db, schema, rel]. */
  readonly qualifier: readonly string[];
  /** Column name, or '*' for a star. */
  readonly name: string;
}

/** A column reference that filters, orders, groups or compares (see StatementFacts.predicateColumns). */
export interface PredicateRef extends ColumnRef {
  /** The clause or construct that makes it a predicate, for a person: 'WHERE', 'INTERSECT', 'a comparison (=)'. */
  readonly use: string;
}

/** A column reference whose value flows into a construct that may raise an error (see failableColumns). */
export interface FailableRef extends ColumnRef {
  /** The innermost such construct, for a person: 'the operator /', 'a cast to int4', 'sum()'. */
  readonly construct: string;
}

export interface FunctionRef {
  readonly schema: string | null;
  readonly name: string;
}

/** Constructs denied by default for non-admin roles (each true when present anywhere in the statement). */
export interface GuardFlags {
  readonly ddl: boolean;
  readonly truncate: boolean;
  readonly alterSystem: boolean;
  readonly copyFile: boolean;
  readonly copyProgram: boolean;
  readonly doBlock: boolean;
  /** SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE / SESSION AUTHORIZATION, and SET/RESET of role via set_config are functions. */
  readonly setRole: boolean;
  readonly updateWithoutWhere: boolean;
  readonly deleteWithoutWhere: boolean;
}

/** A SET / RESET of a run-time parameter (VariableSetStmt). */
export interface SettingChange {
  /** Parameter name, lower-cased as PostgreSQL does (e.g. 'search_path', 'pgwarden.actor'). */
  readonly name: string;
  /** The literal value as text; null for RESET, SET ... TO DEFAULT, or a value that is not a single literal. */
  readonly value: string | null;
  readonly local: boolean;
  /** RESET name, or SET name TO DEFAULT. */
  readonly reset: boolean;
}

export interface StatementFacts {
  /** The statement's own class (top level). */
  readonly kind: StatementKind;
  /** Every class the statement involves, its own included: data-modifying CTEs, EXPLAIN ANALYZE, COPY (query). */
  readonly kinds: readonly StatementKind[];
  /** The parse node's name, e.g. 'SelectStmt', 'CopyStmt' (for messages and audit). */
  readonly command: string;
  readonly relations: readonly RelationRef[];
  readonly columns: readonly ColumnRef[];
  /**
   * The column references (as in `columns`) that decide which rows come back, in what order or grouping, or that
   * are compared, rather than what they contain: a role that sees a column masked could still infer it from these
   * (`WHERE ssn LIKE '1%'`, `SELECT ssn ... INTERSECT SELECT '123-45-6789'`). At any query level: WHERE (SELECT,
   * UPDATE, DELETE, ON CONFLICT, COPY FROM), JOIN ... ON and USING (a NATURAL join as '*'), ORDER BY, GROUP BY and
   * grouping sets, HAVING, window PARTITION BY / ORDER BY (WINDOW and OVER), DISTINCT ON, LIMIT / OFFSET, aggregate
   * FILTER (WHERE), ORDER BY and WITHIN GROUP (ORDER BY), CASE conditions anywhere, MERGE's ON and WHEN ... AND, CTE
   * SEARCH / CYCLE columns; any comparison, LIKE, IN, BETWEEN, NULLIF, null or boolean test, JSON key lookup,
   * GREATEST / LEAST, comparing function (`strpos`, `regexp_match`, `min`, ...) or aggregate DISTINCT, the select
   * list included; every output column of a SELECT DISTINCT, of each branch of a set operation other than UNION
   * ALL, and of an IN / ANY / ALL subquery. An output column named by ORDER BY, GROUP BY or DISTINCT ON (by
   * position or by name) adds the references of its select-list expression. Everything under such a clause counts,
   * subqueries included. A reference to a column of a subquery, CTE, VALUES list or join alias in FROM (or a
   * renamed column) adds the references behind that column, transitively.
   */
  readonly predicateColumns: readonly PredicateRef[];
  /**
   * Column references used in a computation: everywhere except as the whole value of a select-list or RETURNING
   * entry (`SELECT ssn` returns it; `SELECT lower(ssn)`, `1/(ssn = 'x')::int`, `row_to_json(p)` compute with it).
   * Derived columns add the references behind them, as in predicateColumns.
   */
  readonly expressionColumns: readonly ColumnRef[];
  /**
   * Column references, outside predicates, whose value does not reach an output column through total constructs
   * only (ones that raise no error and return NULL only for NULL, for every value: returning it, `||`, casts to
   * text, varchar and char, CASE results, COALESCE, ROW, ARRAY, and listed functions such as lower, length, concat,
   * format, row_to_json, json_build_object, count, array_agg, string_agg): `1/(length(ssn)-11)`, `ssn::int`,
   * `sum(...)`, a function in FROM, a user-defined function. Whether such a statement fails answers guesses about
   * the value. Derived columns add the references behind them, as in predicateColumns.
   */
  readonly failableColumns: readonly FailableRef[];
  readonly functions: readonly FunctionRef[];
  readonly guard: GuardFlags;
  /** Set when the statement is a SET/RESET of a parameter; null otherwise. */
  readonly setting: SettingChange | null;
  /** Set when the statement is a COPY ... TO; null otherwise. */
  readonly copyOut: CopyOut | null;
  /**
   * A SELECT: the column references behind each output column, in order (for a set operation, those of every
   * branch at that position) — what a view defined by it shows in each of its columns. Null for anything else, and
   * when the branches of a set operation differ in length or a star is left in a select list.
   */
  readonly outputs: ReadonlyArray<SelectOutput> | null;
  /** Byte offset and length of this statement in the UTF-8 query text (libpg-query's stmt_location / stmt_len; length 0 = to the end). */
  readonly location: number;
  readonly length: number;
}

/** One output column of a plain SELECT. */
export interface SelectOutput {
  /** Every column reference in its expression. */
  readonly refs: readonly ColumnRef[];
  /** The expression is one column reference: the column is returned as it is. */
  readonly direct: boolean;
}

/** A top-level COPY ... TO: what masking needs to read its rows. */
export interface CopyOut {
  readonly format: 'text' | 'csv' | 'binary';
  readonly header: boolean;
  /** Options other than format and header (delimiter, null, quote, escape, force_quote, encoding, ...). */
  readonly otherOptions: boolean;
  /** COPY table: the relation and its column list (null = every column); COPY (query): null. */
  readonly relation: { readonly schema: string | null; readonly name: string } | null;
  readonly columns: readonly string[] | null;
}

/** The text did not parse: PostgreSQL's message and the 1-based character position, as an ErrorResponse carries it. */
export interface ParseFailure {
  readonly message: string;
  /** 1-based position in characters, or 0 when the parser gave none. */
  readonly position: number;
}

export type ParseResult =
  | { readonly ok: true; readonly statements: readonly StatementFacts[] }
  | { readonly ok: false; readonly error: ParseFailure };
