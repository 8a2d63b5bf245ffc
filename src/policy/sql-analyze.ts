// Reads each statement of a query string with PostgreSQL's own parser (libpg-query: the PostgreSQL 17 raw parser
// compiled to WASM) and distils what the guardrails judge: kinds, relations, columns (and which of them filter, order
// or group rows), functions, guard flags and SET/RESET. The parse tree is walked generically, so node types a later
// PostgreSQL adds are still searched, and a statement type this module does not know counts as DDL: whatever is
// unknown fails closed.

import { createRequire } from 'node:module';
import { describeError, log } from '../core/log.js';
import type {
  ColumnRef,
  CopyOut,
  FailableRef,
  SelectOutput,
  FunctionRef,
  GuardFlags,
  ParseFailure,
  ParseResult,
  PredicateRef,
  RelationRef,
  SettingChange,
  StatementFacts,
  StatementKind,
} from './facts.js';

// ---- the parser instances -------------------------------------------------------------------------------------
//
// libpg-query's own wrapper (parseSync) keeps one WASM instance for the life of the process. A statement nested
// deeply enough (a few thousand chained operators) overflows the native stack inside the WASM code; the RangeError
// unwinds straight past PostgreSQL's error handling, leaving its memory context and error stack behind. Such an
// instance leaks ~15 MB per statement and, after a few dozen, stops answering. So this module drives the
// Emscripten module itself, never calls back into an instance that threw, and swaps in a spare.

/** The raw Emscripten module: the entry points libpg-query's wrapper uses (wasm/index.js, same version). */
interface PgQueryWasm {
  _wasm_parse_query_raw(query: number): number;
  _wasm_free_parse_result(result: number): void;
  _malloc(size: number): number;
  _free(ptr: number): void;
  getValue(ptr: number, type: 'i32'): number;
  UTF8ToString(ptr: number): string;
  stringToUTF8(text: string, ptr: number, maxBytes: number): void;
  lengthBytesUTF8(text: string): number;
}

type PgQueryFactory = () => Promise<PgQueryWasm>;

const requireHere = createRequire(import.meta.url);

/** Async so that a failure to find the module is a rejection, never a throw inside analyzeSql(). */
async function instantiate(): Promise<PgQueryWasm> {
  // The package has no "exports" map; its wrapper imports this same file.
  const factory = requireHere('libpg-query/wasm/libpg-query.js') as PgQueryFactory;
  return factory();
}

let active: PgQueryWasm | null = null;
let spare: PgQueryWasm | null = null;
let loaded = false;
let loading: Promise<void> | null = null;
let refilling: Promise<void> | null = null;

/**
 * Loads the parser (two WASM instances: one in use, one spare). Idempotent and safe to call concurrently; after a
 * parser failure it also waits for the replacement instance.
 */
export async function loadSqlParser(): Promise<void> {
  loading ??= Promise.all([instantiate(), instantiate()]).then(
    ([first, second]) => {
      active = first;
      spare = second;
      loaded = true;
    },
    (e: unknown) => {
      loading = null; // a later call may try again
      throw new Error(`could not load the SQL parser (libpg-query): ${describeError(e)}`);
    },
  );
  await loading;
  if (active === null) {
    await refill();
    if (active === null) throw new Error('could not load a replacement SQL parser instance');
  }
}

/** Starts (or joins) loading a fresh instance into the empty slot: the active one first, then the spare. */
function refill(): Promise<void> {
  refilling ??= instantiate().then(
    (fresh) => {
      refilling = null;
      if (active === null) active = fresh;
      else spare = fresh;
      if (spare === null) void refill();
    },
    (e: unknown) => {
      refilling = null; // the next statement that finds no instance tries again
      log.error('could not load a replacement SQL parser instance', { error: describeError(e) });
    },
  );
  return refilling;
}

/** An instance threw mid-parse: its C state is unknown, so it is dropped (never called again) for the spare. */
function retire(broken: PgQueryWasm, e: unknown): void {
  if (active !== broken) return;
  active = spare;
  spare = null;
  log.warn('SQL parser instance discarded after it failed mid-statement', { error: describeError(e) });
  void refill();
}

type RawParse =
  | { readonly ok: true; readonly tree: string }
  | { readonly ok: false; readonly message: string; readonly cursorpos: number };

/**
 * One call of pg_query_parse through the WASM ABI. Returns null when the instance could not allocate. Throws when
 * the WASM code threw (then its C state is unknown: nothing more is freed in it) or its output could not be read;
 * the caller drops the instance either way.
 */
function rawParse(wasm: PgQueryWasm, text: string): RawParse | null {
  const size = wasm.lengthBytesUTF8(text) + 1;
  const queryPtr = wasm._malloc(size);
  if (queryPtr === 0) return null;
  wasm.stringToUTF8(text, queryPtr, size);
  const resultPtr = wasm._wasm_parse_query_raw(queryPtr);
  if (resultPtr === 0) {
    wasm._free(queryPtr);
    return null;
  }
  try {
    // struct PgQueryParseResult { char *parse_tree; char *stderr_buffer; PgQueryError *error; } (wasm32 pointers)
    const errorPtr = wasm.getValue(resultPtr + 8, 'i32');
    if (errorPtr !== 0) {
      // struct PgQueryError { char *message; char *funcname; char *filename; int lineno; int cursorpos; ... }
      const messagePtr = wasm.getValue(errorPtr, 'i32');
      return {
        ok: false,
        message: messagePtr === 0 ? 'syntax error' : wasm.UTF8ToString(messagePtr),
        // PostgreSQL's own cursor position: 1-based, in characters (not bytes), 0 when it gave none.
        cursorpos: wasm.getValue(errorPtr + 16, 'i32'),
      };
    }
    const treePtr = wasm.getValue(resultPtr, 'i32');
    return { ok: true, tree: treePtr === 0 ? '' : wasm.UTF8ToString(treePtr) };
  } finally {
    wasm._wasm_free_parse_result(resultPtr);
    wasm._free(queryPtr);
  }
}

// ---- results --------------------------------------------------------------------------------------------------

/** Failures that say nothing about the text (no parser instance, no memory): a cache must not keep them. */
const transientFailures = new WeakSet<object>();

/** True for a failure caused by the parser's state rather than the text; retrying the same text may succeed. */
export function isTransientFailure(result: ParseResult): boolean {
  return transientFailures.has(result);
}

function failure(message: string, position = 0): ParseResult {
  const error: ParseFailure = Object.freeze({ message, position });
  return Object.freeze({ ok: false as const, error });
}

function transientFailure(message: string): ParseResult {
  const result = failure(message);
  transientFailures.add(result);
  return result;
}

/** NUL ends a C string (the parser would see less than the server), and an unpaired surrogate is not UTF-8. */
function invalidCharacter(text: string): ParseResult | null {
  const bad = /\0|\p{Surrogate}/u.exec(text);
  if (bad === null) return null;
  const position = codePointLength(text, bad.index) + 1;
  return bad[0] === '\0'
    ? failure('query text contains a NUL character', position)
    : failure('invalid byte sequence for encoding "UTF8": unpaired surrogate', position);
}

function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack/i.test(e.message);
}

function codePointLength(text: string, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/**
 * Parses `text` (one or more statements) and returns one StatementFacts per statement, or PostgreSQL's syntax
 * error with its 1-based character position. Synchronous; loadSqlParser() must have completed. Never throws for
 * any input text.
 */
export function analyzeSql(text: string): ParseResult {
  if (!loaded) throw new Error('the SQL parser is not loaded: await loadSqlParser() before analyzeSql()');
  if (typeof text !== 'string') return failure('query text must be a string');
  if (text.length === 0) return Object.freeze({ ok: true as const, statements: Object.freeze([]) });
  const invalid = invalidCharacter(text);
  if (invalid) return invalid;

  const wasm = active;
  if (wasm === null) {
    void refill();
    return transientFailure('the SQL parser is restarting after a failure; retry the statement');
  }
  let raw: RawParse | null;
  try {
    raw = rawParse(wasm, text);
  } catch (e) {
    retire(wasm, e);
    // Running out of native stack on a deeply nested statement is the way PostgreSQL's parser throws; the same
    // text would do it again, so these failures may be cached like a syntax error.
    return isStackOverflow(e)
      ? failure('stack depth limit exceeded: the statement is nested too deeply')
      : failure('the SQL parser failed on this statement');
  }
  if (raw === null) return transientFailure('out of memory in the SQL parser');
  if (!raw.ok) {
    const result = failure(raw.message, Math.max(0, raw.cursorpos));
    if (raw.message === 'out of memory') transientFailures.add(result);
    return result;
  }

  let tree: unknown;
  try {
    tree = JSON.parse(raw.tree);
  } catch (e) {
    return isStackOverflow(e)
      ? failure('stack depth limit exceeded: the statement is nested too deeply')
      : failure('the SQL parser returned an unreadable tree');
  }
  if (!isObject(tree)) return failure('the SQL parser returned an unexpected tree');
  // An empty list is left out of the JSON like any default: no `stmts`, no statements.
  const stmts = tree.stmts ?? [];
  if (!Array.isArray(stmts)) return failure('the SQL parser returned an unexpected tree');
  try {
    return Object.freeze({ ok: true as const, statements: Object.freeze(stmts.map(statementFactsOf)) });
  } catch (e) {
    // A walker bug must refuse the statement, not crash the session (or let it through).
    log.error('could not analyse a parsed statement', { error: describeError(e) });
    return failure('the statement could not be analysed');
  }
}

// ---- the tree -------------------------------------------------------------------------------------------------
//
// libpg-query's JSON writes a node of a Node-typed field as { "NodeName": { ...fields } } (a "wrapped" node) and a
// field typed as one specific struct bare: InsertStmt.relation is { "relname": ... }, not { "RangeVar": ... }.
// Fields equal to their default (0, false, "", empty list) are left out.

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `{ NodeName: body }`: one key, capitalised (no struct field name is), whose value is an object. */
function unwrap(v: Json): [string, Json] | null {
  const keys = Object.keys(v);
  if (keys.length !== 1) return null;
  const only = keys[0];
  const c = only.charCodeAt(0);
  if (c < 0x41 || c > 0x5a) return null;
  const body = v[only];
  return isObject(body) ? [only, body] : null;
}

/** table[key] for the table's own keys only: names from the tree never reach Object.prototype. */
function lookup<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/**
 * Struct-typed fields whose type the walker acts on (from @pgsql/types for PostgreSQL 17). A bare struct in any
 * other field is still descended; one that carries `relname` is taken for a RangeVar.
 */
const STRUCT_FIELDS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  SelectStmt: { larg: 'SelectStmt', rarg: 'SelectStmt', intoClause: 'IntoClause' },
  FuncCall: { over: 'WindowDef' },
  PLAssignStmt: { val: 'SelectStmt' },
  InsertStmt: { relation: 'RangeVar', onConflictClause: 'OnConflictClause' },
  UpdateStmt: { relation: 'RangeVar' },
  DeleteStmt: { relation: 'RangeVar' },
  MergeStmt: { relation: 'RangeVar' },
  OnConflictClause: { infer: 'InferClause' },
  IntoClause: { rel: 'RangeVar' },
  CreateTableAsStmt: { into: 'IntoClause' },
  CallStmt: { funccall: 'FuncCall' },
  AlterSystemStmt: { setstmt: 'VariableSetStmt' },
  AlterRoleSetStmt: { setstmt: 'VariableSetStmt' },
  AlterDatabaseSetStmt: { setstmt: 'VariableSetStmt' },
  AlterDefaultPrivilegesStmt: { action: 'GrantStmt' },
  CreateForeignTableStmt: { base: 'CreateStmt' },
  CopyStmt: { relation: 'RangeVar' },
  ColumnDef: { identitySequence: 'RangeVar' },
  TableLikeClause: { relation: 'RangeVar' },
  PartitionCmd: { name: 'RangeVar' },
  AlterTableStmt: { relation: 'RangeVar' },
  CreateStmt: { relation: 'RangeVar' },
  Constraint: { pktable: 'RangeVar' },
  CreatePolicyStmt: { table: 'RangeVar' },
  AlterPolicyStmt: { table: 'RangeVar' },
  CreateTrigStmt: { relation: 'RangeVar', constrrel: 'RangeVar' },
  CreateSeqStmt: { sequence: 'RangeVar' },
  AlterSeqStmt: { sequence: 'RangeVar' },
  IndexStmt: { relation: 'RangeVar' },
  RenameStmt: { relation: 'RangeVar' },
  AlterObjectDependsStmt: { relation: 'RangeVar' },
  AlterObjectSchemaStmt: { relation: 'RangeVar' },
  AlterOwnerStmt: { relation: 'RangeVar' },
  RuleStmt: { relation: 'RangeVar' },
  CompositeTypeStmt: { typevar: 'RangeVar' },
  ViewStmt: { view: 'RangeVar' },
  ClusterStmt: { relation: 'RangeVar' },
  VacuumRelation: { relation: 'RangeVar' },
  RefreshMatViewStmt: { relation: 'RangeVar' },
  ReindexStmt: { relation: 'RangeVar' },
  PublicationTable: { relation: 'RangeVar' },
};

/**
 * Fields not walked. FOR UPDATE OF names relations (or aliases) already in FROM, and PostgreSQL refuses any other,
 * so its RangeVars add nothing but false relations named after aliases.
 */
const SKIPPED_FIELDS: Readonly<Record<string, string>> = { LockingClause: 'lockedRels' };

/**
 * Fields whose expressions choose, order or group rows, or compare values, instead of producing values: a column
 * used here can be inferred from which rows come back (or what a comparison returns) even when its values are
 * masked. Everything under such a field counts, so an unknown node (or a subquery) inside a WHERE is searched like
 * the rest. Each field names the clause for the refusal message ("may not be used in ...").
 */
const PREDICATE_FIELDS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  SelectStmt: {
    whereClause: 'WHERE',
    groupClause: 'GROUP BY',
    havingClause: 'HAVING',
    windowClause: 'a WINDOW clause',
    sortClause: 'ORDER BY',
    distinctClause: 'DISTINCT ON',
    limitOffset: 'OFFSET',
    limitCount: 'LIMIT',
  },
  JoinExpr: { quals: 'a JOIN condition' },
  MergeStmt: { joinCondition: 'a MERGE condition' },
  MergeWhenClause: { condition: 'a MERGE condition' },
  WindowDef: { partitionClause: 'PARTITION BY', orderClause: 'a window ORDER BY' },
  FuncCall: { agg_filter: 'an aggregate FILTER' },
  // A simple CASE compares its operand with each WHEN value; a searched CASE tests each WHEN condition. Either way
  // the result chosen tells the condition, in the select list too.
  CaseExpr: { arg: 'a CASE comparison' },
  CaseWhen: { expr: 'a CASE condition' },
  // A comparison anywhere, the select list included, tells something about its operands: `(ssn = '...')::int`
  // as a value, or as a division by zero, answers a guess as surely as a WHERE does.
  BoolExpr: { args: 'AND / OR / NOT' },
  NullTest: { arg: 'IS NULL' },
  BooleanTest: { arg: 'IS TRUE / IS FALSE' },
  SubLink: { testexpr: 'IN / ANY / ALL (subquery)' },
  // GREATEST and LEAST return whichever operand compares highest or lowest: `greatest(ssn, '5')` answers a guess.
  MinMaxExpr: { args: 'GREATEST / LEAST' },
};

/** Operators that compare, match or test containment: their operands are predicates wherever they stand. */
const COMPARISON_OPERATORS: ReadonlySet<string> = new Set([
  '=',
  '<>',
  '!=',
  '<',
  '>',
  '<=',
  '>=',
  '~~',
  '!~~',
  '~~*',
  '!~~*',
  '~',
  '!~',
  '~*',
  '!~*',
  '@@',
  '@>',
  '<@',
  '?',
  '?|',
  '?&',
  '&&',
  '<<',
  '>>',
  '<<=',
  '>>=',
  '^@',
  // A JSON key or path lookup returns NULL when the key is absent: like `?`, it answers whether a masked document
  // has the key, and with the masked value as the key (`'{"123-45-6789": 1}' -> ssn`) it is an equality test.
  '->',
  '->>',
  '#>',
  '#>>',
]);

/**
 * Functions whose only use on a masked value is to compare it: their result (a position, a match, a distance, the
 * smaller or larger value, an array element found) answers a guess, and masked output keeps NULLs and the masked
 * form of the value chosen (`min(ssn)` shows the last four digits of the smallest SSN). Their arguments are
 * predicates. A function not listed here is still refused unless it is known total (TOTAL_FUNCTIONS).
 */
const COMPARING_FUNCTIONS: ReadonlySet<string> = new Set([
  'strpos',
  'position',
  'starts_with',
  'regexp_like',
  'regexp_match',
  'regexp_matches',
  'regexp_count',
  'regexp_instr',
  'regexp_substr',
  'similar_escape',
  'similar_to_escape',
  'like',
  'ilike',
  'notlike',
  'notilike',
  'texteq',
  'textne',
  'text_lt',
  'text_le',
  'text_gt',
  'text_ge',
  'bttextcmp',
  'textlike',
  'textnlike',
  'texticlike',
  'texticnlike',
  'textregexeq',
  'textregexne',
  'texticregexeq',
  'texticregexne',
  'levenshtein',
  'levenshtein_less_equal',
  'similarity',
  'word_similarity',
  'strict_word_similarity',
  'difference',
  'min',
  'max',
  'array_position',
  'array_positions',
  'array_remove',
  'array_replace',
  'json_extract_path',
  'json_extract_path_text',
  'jsonb_extract_path',
  'jsonb_extract_path_text',
]);

/**
 * The comparison an A_Expr makes, or null: its kinds other than a plain operator (IN, LIKE, BETWEEN, DISTINCT,
 * NULLIF, ANY/ALL) all compare.
 */
function comparisonOf(body: Json): string | null {
  const kind = str(body.kind) ?? 'AEXPR_OP';
  if (kind !== 'AEXPR_OP') return `a comparison (${kind.replace(/^AEXPR_/, '').replace(/_/g, ' ')})`;
  const op = operatorName(body);
  return op !== null && COMPARISON_OPERATORS.has(op.name) ? `a comparison (${op.name})` : null;
}

/** An operator's name and schema (null when unqualified), or null when it has none. */
function operatorName(body: Json): { readonly schema: string | null; readonly name: string } | null {
  const parts = list(body.name)
    .map((n) => stringNode(n))
    .filter((n): n is string => n !== null);
  if (parts.length === 0) return null;
  return { schema: parts.length >= 2 ? parts[parts.length - 2] : null, name: parts[parts.length - 1] };
}

/** A function call's name and schema (null when unqualified), as written after the parser's case folding. */
function functionName(body: Json): { readonly schema: string | null; readonly name: string } | null {
  const parts = list(body.funcname)
    .map((n) => stringNode(n))
    .filter((n): n is string => n !== null);
  if (parts.length === 0) return null;
  return { schema: parts.length >= 2 ? parts[parts.length - 2] : null, name: parts[parts.length - 1] };
}

/** A FuncCall's arguments compare: DISTINCT inside an aggregate, or a comparing function. */
function comparingCall(body: Json): string | null {
  if (body.agg_distinct === true) return 'an aggregate DISTINCT';
  const fn = functionName(body);
  return fn !== null && COMPARING_FUNCTIONS.has(fn.name)
    ? `${fn.name}(), which compares its arguments`
    : null;
}

/**
 * What makes `field` of a `type` node a predicate (for the refusal message), or null. `comparedOutputs` is set for
 * a SELECT whose output columns are compared (see outputComparison).
 */
function predicateUse(
  type: string | null,
  field: string,
  body: Json,
  comparedOutputs: string | null,
): string | null {
  // Any node's WHERE, a node type this module does not know included (UPDATE, DELETE, ON CONFLICT, COPY FROM, ...).
  if (field === 'whereClause') return 'WHERE';
  if (type === null) return null;
  switch (type) {
    case 'SelectStmt':
      if (field === 'targetList' || field === 'valuesLists') return comparedOutputs;
      break;
    case 'FuncCall':
      if (field === 'args') return comparingCall(body);
      // WITHIN GROUP (ORDER BY x) sorts x to pick the value returned (percentile_disc, mode), as min and max do.
      if (field === 'agg_order')
        return body.agg_within_group === true ? 'WITHIN GROUP (ORDER BY)' : 'an aggregate ORDER BY';
      break;
    case 'A_Expr':
      return field === 'lexpr' || field === 'rexpr' ? comparisonOf(body) : null;
    default:
      break;
  }
  return lookup(PREDICATE_FIELDS, type)?.[field] ?? null;
}

/**
 * Why the output columns of a SELECT are compared with each other, or null: a plain DISTINCT compares every output
 * column, and so does every set operation but UNION ALL (UNION removes duplicates; INTERSECT and EXCEPT, ALL or
 * not, match rows): `SELECT ssn ... INTERSECT SELECT '123-45-6789'` answers a guess. An operation this module does
 * not know compares.
 */
function outputComparison(select: Json): string | null {
  const distinct = list(select.distinctClause);
  // Plain DISTINCT is a list holding one empty node; DISTINCT ON lists expressions (predicates of their own).
  if (distinct.some((item) => isObject(item) && Object.keys(item).length === 0)) return 'SELECT DISTINCT';
  const op = str(select.op);
  if (op === null || op === 'SETOP_NONE') return null;
  if (op === 'SETOP_UNION' && select.all === true) return null;
  return op.replace(/^SETOP_/, '') + (select.all === true ? ' ALL' : '');
}

/**
 * What compares the output columns of the SELECT in `field`, or null: the branches of a set operation that
 * compares (`comparedOutputs`, see outputComparison), the subquery of IN / ANY / ALL or a row comparison. A
 * scalar, ARRAY or EXISTS subquery compares nothing; a kind this module does not know compares.
 */
function comparedByField(
  type: string | null,
  field: string,
  body: Json,
  comparedOutputs: string | null,
): string | null {
  if (type === 'SelectStmt') return field === 'larg' || field === 'rarg' ? comparedOutputs : null;
  if (type !== 'SubLink' || field !== 'subselect') return null;
  const kind = str(body.subLinkType);
  return kind === 'EXPR_SUBLINK' || kind === 'ARRAY_SUBLINK' || kind === 'EXISTS_SUBLINK'
    ? null
    : 'IN / ANY / ALL (subquery)';
}

/** Relations the statement writes: the contract's list (DML targets, COPY FROM, TRUNCATE, LOCK). */
function isTargetField(type: string, field: string, body: Json): boolean {
  switch (type) {
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      return field === 'relation';
    case 'CopyStmt':
      return field === 'relation' && body.is_from === true;
    case 'TruncateStmt':
    case 'LockStmt':
      return field === 'relations';
    default:
      return false;
  }
}

/** Top-level statement classes; anything not here (every Create/Alter/Drop/Grant/..., and unknown) is DDL. */
const STATEMENT_KINDS: Readonly<Record<string, StatementKind>> = {
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  CallStmt: 'call',
  VariableSetStmt: 'set',
  VariableShowStmt: 'set',
  TransactionStmt: 'transaction',
  DeclareCursorStmt: 'select',
  FetchStmt: 'select',
  ClosePortalStmt: 'select',
  ExplainStmt: 'utility',
  PrepareStmt: 'utility',
  ExecuteStmt: 'utility',
  DeallocateStmt: 'utility',
  DiscardStmt: 'utility',
  ListenStmt: 'utility',
  NotifyStmt: 'utility',
  UnlistenStmt: 'utility',
  LockStmt: 'utility',
  VacuumStmt: 'utility',
  CheckPointStmt: 'utility',
  LoadStmt: 'utility',
  DoStmt: 'utility',
  ReindexStmt: 'utility',
  ClusterStmt: 'utility',
  ConstraintsSetStmt: 'utility',
};

function ownKind(type: string, body: Json): StatementKind {
  if (type === 'SelectStmt') return body.intoClause !== undefined ? 'ddl' : 'select';
  if (type === 'CopyStmt') return body.is_from === true ? 'copy_in' : 'copy_out';
  return lookup(STATEMENT_KINDS, type) ?? 'ddl';
}

/** The kinds a node adds wherever it appears (null: it is not a statement or an action). */
function nestedKinds(type: string, body: Json): readonly StatementKind[] | null {
  switch (type) {
    case 'SelectStmt': {
      if (body.intoClause !== undefined) return ['ddl', 'select'];
      // A UNION's branches count for themselves; a bare VALUES list (INSERT ... VALUES) reads nothing.
      const setOperation = body.op !== undefined && body.op !== 'SETOP_NONE';
      const valuesOnly = body.valuesLists !== undefined && body.targetList === undefined;
      return setOperation || valuesOnly ? null : ['select'];
    }
    case 'CopyStmt':
      return [ownKind(type, body)];
    case 'OnConflictClause':
      return body.action === 'ONCONFLICT_UPDATE' ? ['update'] : null;
    case 'MergeWhenClause':
      switch (body.commandType) {
        case 'CMD_INSERT':
          return ['insert'];
        case 'CMD_UPDATE':
          return ['update'];
        case 'CMD_DELETE':
          return ['delete'];
        default:
          return null;
      }
    default: {
      const kind = lookup(STATEMENT_KINDS, type);
      if (kind !== undefined) return [kind];
      return type.endsWith('Stmt') ? ['ddl'] : null;
    }
  }
}

/** The CTE names visible at a point of the tree: this query level's WITH, then the enclosing ones. */
interface CteScope {
  readonly names: ReadonlySet<string>;
  readonly parent: CteScope | null;
}

function cteVisible(scope: CteScope | null, name: string): boolean {
  for (let s = scope; s !== null; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

const WITH_OWNERS: ReadonlySet<string> = new Set([
  'SelectStmt',
  'InsertStmt',
  'UpdateStmt',
  'DeleteStmt',
  'MergeStmt',
]);

interface Frame {
  readonly value: unknown;
  /** The struct type when `value` is bare (a struct-typed field), or null when unknown or wrapped. */
  readonly bareType: string | null;
  readonly scope: CteScope | null;
  /** The relation(s) at this point are written by the statement. */
  readonly target: boolean;
  /**
   * Inside a clause or construct that filters, orders, groups or compares (see predicateUse): what it is, for the
   * refusal message; null outside. Children inherit it.
   */
  readonly predicate: string | null;
  /** Where the value computed here goes (see Flow). */
  readonly flow: Flow;
  /** On a SELECT whose output columns an enclosing set operation or IN (subquery) compares: what compares them. */
  readonly comparedBy?: string | null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function list(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The body of a wrapped node of the given type, or null. */
function nodeOf(v: unknown, type: string): Json | null {
  if (!isObject(v)) return null;
  const wrapped = unwrap(v);
  return wrapped !== null && wrapped[0] === type ? wrapped[1] : null;
}

/** `{ String: { sval } }` → sval ('' when left out as the default). */
function stringNode(v: unknown): string | null {
  const s = nodeOf(v, 'String');
  if (s === null) return null;
  return str(s.sval) ?? '';
}

/** The names of a ResTarget list (INSERT columns, UPDATE SET targets). */
function resTargetNames(v: unknown): string[] {
  const names: string[] = [];
  for (const item of list(v)) {
    const name = str(nodeOf(item, 'ResTarget')?.name);
    if (name !== null) names.push(name);
  }
  return names;
}

/** Whether a WHERE clause can tell rows apart: it mentions a column (or is CURRENT OF a cursor). */
function restrictsRows(where: unknown): boolean {
  const stack: unknown[] = [where];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
      continue;
    }
    if (!isObject(v)) continue;
    const wrapped = unwrap(v);
    if (wrapped !== null && (wrapped[0] === 'ColumnRef' || wrapped[0] === 'CurrentOfExpr')) return true;
    for (const child of Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push(child);
    }
  }
  return false;
}

/** Collects the facts of one statement while its tree is walked. */
class FactCollector {
  private readonly kinds: StatementKind[];
  private readonly relations = new Map<string, RelationRef>();
  private readonly columns = new Map<string, ColumnRef>();
  private readonly predicates = new Map<string, PredicateRef>();
  private readonly expressions = new Map<string, ColumnRef>();
  private readonly failables = new Map<string, FailableRef>();
  /** Columns of subqueries and CTEs in FROM, and of renamed relations: what a reference to one stands for. */
  private readonly derived: DerivedColumn[] = [];
  private readonly functions = new Map<string, FunctionRef>();
  private readonly guard = {
    truncate: false,
    alterSystem: false,
    copyFile: false,
    copyProgram: false,
    doBlock: false,
    setRole: false,
    updateWithoutWhere: false,
    deleteWithoutWhere: false,
  };

  constructor(own: StatementKind) {
    this.kinds = [own];
  }

  /** Walks the whole tree under `root` with an explicit stack: depth costs heap, never call stack. */
  walk(root: unknown): void {
    // The statement's own rows are its result.
    const stack: Frame[] = [
      { value: root, bareType: null, scope: null, target: false, predicate: null, flow: 'returned' },
    ];
    while (stack.length > 0) {
      const frame = stack.pop()!;
      const value = frame.value;
      if (Array.isArray(value)) {
        for (let i = value.length - 1; i >= 0; i--) {
          stack.push({ ...frame, value: value[i] });
        }
        continue;
      }
      if (!isObject(value)) continue;
      const wrapped = unwrap(value);
      if (wrapped !== null) this.visit(wrapped[0], wrapped[1], true, frame, stack);
      else {
        const type = frame.bareType ?? (typeof value.relname === 'string' ? 'RangeVar' : null);
        this.visit(type, value, false, frame, stack);
      }
    }
  }

  private visit(type: string | null, body: Json, wrapped: boolean, frame: Frame, stack: Frame[]): void {
    if (type !== null) this.inspect(type, body, wrapped, frame);

    let scope = frame.scope;
    let ctes: Frame[] | null = null;
    if (type !== null && WITH_OWNERS.has(type) && isObject(body.withClause)) {
      [scope, ctes] = this.withScopes(body.withClause, frame.scope, frame.predicate);
    }
    const structFields = type === null ? undefined : lookup(STRUCT_FIELDS, type);
    const skipped = type === null ? undefined : lookup(SKIPPED_FIELDS, type);
    const comparedOutputs = type === 'SelectStmt' ? (frame.comparedBy ?? outputComparison(body)) : null;
    const keys = Object.keys(body);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i];
      const child = body[key];
      if (typeof child !== 'object' || child === null || key === skipped) continue;
      if (ctes !== null && key === 'withClause') continue; // walked below, CTE by CTE
      const base = {
        bareType: structFields === undefined ? null : (lookup(structFields, key) ?? null),
        scope,
        target: type !== null && isTargetField(type, key, body),
        predicate: frame.predicate ?? predicateUse(type, key, body, comparedOutputs),
        comparedBy: comparedByField(type, key, body, comparedOutputs),
      };
      // A list's entries one by one: a function's arguments differ in what they accept.
      if (!Array.isArray(child)) {
        stack.push({ ...base, value: child, flow: flowInto(type, key, body, frame.flow, 0) });
        continue;
      }
      for (let j = child.length - 1; j >= 0; j--) {
        stack.push({ ...base, value: child[j], flow: flowInto(type, key, body, frame.flow, j) });
      }
    }
    // Pushed last so they are walked first, in order.
    if (ctes !== null) for (let i = ctes.length - 1; i >= 0; i--) stack.push(ctes[i]);
  }

  /**
   * A WITH clause: the scope its query level's body sees, and a frame per CTE with the scope that CTE's own query
   * sees. Without RECURSIVE a CTE sees only the ones before it; with RECURSIVE every one of the list, itself too.
   */
  private withScopes(
    withClause: Json,
    outer: CteScope | null,
    predicate: string | null,
  ): [CteScope | null, Frame[]] {
    const entries = list(withClause.ctes);
    const names = entries.map((c) => str(nodeOf(c, 'CommonTableExpr')?.ctename));
    const all: CteScope = { names: new Set(names.filter((n) => n !== null)), parent: outer };
    const recursive = withClause.recursive === true;
    const frames = entries.map((cte, i): Frame => {
      const before = names.slice(0, i).filter((n) => n !== null);
      const scope = recursive ? all : before.length > 0 ? { names: new Set(before), parent: outer } : outer;
      // A CTE's rows are read by name: its outputs start as returned (see RETURNED_FIELDS).
      return { value: cte, bareType: null, scope, target: false, predicate, flow: 'returned' };
    });
    // Whatever else a WITH clause may carry is walked too, outside its own scope.
    for (const key of Object.keys(withClause)) {
      const child = withClause[key];
      if (key !== 'ctes' && typeof child === 'object' && child !== null) {
        frames.push({
          value: child,
          bareType: null,
          scope: outer,
          target: false,
          predicate,
          flow: { by: 'a WITH clause' },
        });
      }
    }
    return [all, frames];
  }

  /** What one node says about the statement, before its children are walked. */
  private inspect(type: string, body: Json, wrapped: boolean, frame: Frame): void {
    const kinds = nestedKinds(type, body);
    if (kinds !== null) for (const k of kinds) this.addKind(k);
    switch (type) {
      case 'RangeVar':
        this.addRelation(body, frame.target, wrapped && !frame.target ? frame.scope : null);
        this.addRenamedRelation(body, wrapped && !frame.target ? frame.scope : null);
        return;
      case 'ColumnRef':
        this.addColumnRef(body, frame);
        return;
      case 'RangeSubselect':
        this.addDerived(aliasName(body.alias), aliasColumns(body.alias), body.subquery);
        return;
      case 'FuncCall':
        this.addFunction(body);
        return;
      case 'JoinExpr':
        // NATURAL joins on every column the two sides share, named nowhere: any column of either may be read.
        // Either way the join compares those columns: they are predicates.
        if (body.isNatural === true) {
          this.addColumn([], '*');
          this.addPredicate([], '*', 'a JOIN condition');
        }
        for (const item of list(body.usingClause)) {
          const name = stringNode(item);
          if (name === null) continue;
          this.addColumn([], name);
          this.addPredicate([], name, 'a JOIN condition');
        }
        // `(a JOIN b ...) AS j`: j.x is the x of either side.
        if (isObject(body.alias)) this.addJoinAlias(body.alias);
        return;
      case 'SelectStmt':
        this.addOutputReferences(body);
        return;
      case 'CommonTableExpr':
        // SEARCH ... BY orders the recursion by these columns (visible in the sequence column), CYCLE compares them.
        for (const clause of [body.search_clause, body.cycle_clause]) {
          if (!isObject(clause)) continue;
          for (const item of list(clause.search_col_list ?? clause.cycle_col_list)) {
            const name = stringNode(item);
            if (name !== null) this.addPredicate([], name, 'a CTE SEARCH or CYCLE clause');
          }
        }
        this.addDerived(str(body.ctename), nameStrings(body.aliascolnames), body.ctequery);
        return;
      case 'InsertStmt': {
        const qualifier = targetQualifier(body.relation);
        const cols = resTargetNames(body.cols);
        // Without a column list every column is written.
        if (cols.length === 0) this.addColumn(qualifier, '*');
        for (const name of cols) this.addColumn(qualifier, name);
        if (isObject(body.onConflictClause)) this.onConflict(body.onConflictClause, qualifier);
        return;
      }
      case 'UpdateStmt':
        for (const name of resTargetNames(body.targetList))
          this.addColumn(targetQualifier(body.relation), name);
        if (!restrictsRows(body.whereClause)) this.guard.updateWithoutWhere = true;
        return;
      case 'DeleteStmt':
        if (!restrictsRows(body.whereClause)) this.guard.deleteWithoutWhere = true;
        return;
      case 'MergeStmt': {
        const qualifier = targetQualifier(body.relation);
        for (const item of list(body.mergeWhenClauses)) {
          const clause = nodeOf(item, 'MergeWhenClause');
          if (clause === null) continue;
          const names = resTargetNames(clause.targetList);
          if (clause.commandType === 'CMD_INSERT' && names.length === 0) this.addColumn(qualifier, '*');
          for (const name of names) this.addColumn(qualifier, name);
        }
        return;
      }
      case 'CopyStmt': {
        if (body.is_program === true) this.guard.copyProgram = true;
        else if (typeof body.filename === 'string') this.guard.copyFile = true;
        if (isObject(body.relation)) {
          const qualifier = targetQualifier(body.relation);
          const names: string[] = [];
          for (const item of list(body.attlist)) {
            const name = stringNode(item);
            if (name !== null) names.push(name);
          }
          if (names.length === 0) this.addColumn(qualifier, '*');
          for (const name of names) this.addColumn(qualifier, name);
        }
        return;
      }
      case 'VariableSetStmt': {
        const name = str(body.name)?.toLowerCase();
        if (name === 'role' || name === 'session_authorization') this.guard.setRole = true;
        return;
      }
      case 'TruncateStmt':
        this.guard.truncate = true;
        return;
      case 'AlterSystemStmt':
        this.guard.alterSystem = true;
        return;
      case 'DoStmt':
        this.guard.doBlock = true;
        return;
      case 'DropStmt':
        for (const object of list(body.objects)) this.addNamedObject(str(body.removeType), object);
        return;
      case 'CommentStmt':
      case 'SecLabelStmt':
        this.addNamedObject(str(body.objtype), body.object);
        return;
      case 'RenameStmt':
        if (body.renameType === 'OBJECT_SCHEMA' && typeof body.subname === 'string')
          this.addSchemaWide(body.subname);
        return;
      case 'GrantStmt':
        if (body.targtype === 'ACL_TARGET_ALL_IN_SCHEMA' || body.objtype === 'OBJECT_SCHEMA') {
          for (const object of list(body.objects)) {
            const schema = stringNode(object);
            if (schema !== null) this.addSchemaWide(schema);
          }
        }
        return;
      default:
        return;
    }
  }

  /**
   * DROP, COMMENT ON and SECURITY LABEL name their objects as plain name lists, not as relation references: the
   * relations (and functions) among them are reported like any other, so table and function rules bind DDL too.
   */
  private addNamedObject(objectType: string | null, object: unknown): void {
    if (objectType === null) return;
    if (objectType === 'OBJECT_SCHEMA') {
      const schema = stringNode(object);
      if (schema !== null) this.addSchemaWide(schema);
      return;
    }
    if (
      objectType === 'OBJECT_FUNCTION' ||
      objectType === 'OBJECT_PROCEDURE' ||
      objectType === 'OBJECT_ROUTINE'
    ) {
      const owa = nodeOf(object, 'ObjectWithArgs');
      if (owa !== null) this.addFunction({ funcname: owa.objname });
      return;
    }
    const names = nameList(object);
    if (names.length === 0) return;
    if (objectType === 'OBJECT_COLUMN') {
      if (names.length < 2) return;
      const relation = names.slice(0, -1);
      this.addQualifiedRelation(relation);
      this.addColumn(relation.slice(-1), names[names.length - 1]);
      return;
    }
    if (RELATION_OBJECT_TYPES.has(objectType)) this.addQualifiedRelation(names);
  }

  /** [name] or [schema, name] (or [db, schema, name]) as a written relation the statement changes. */
  private addQualifiedRelation(names: readonly string[]): void {
    const name = names[names.length - 1];
    const schema = names.length >= 2 ? names[names.length - 2] : null;
    const key = JSON.stringify([schema, name, null, true]);
    if (!this.relations.has(key))
      this.relations.set(key, Object.freeze({ schema, name, alias: null, target: true }));
  }

  /** A statement on a whole schema (DROP SCHEMA, GRANT ... ALL TABLES IN SCHEMA): reported as relation `schema.*`. */
  private addSchemaWide(schema: string): void {
    this.addQualifiedRelation([schema, '*']);
  }

  /** ON CONFLICT (cols) inference columns and DO UPDATE SET targets are columns of the INSERT's target. */
  private onConflict(clause: Json, qualifier: readonly string[]): void {
    const infer = isObject(clause.infer) ? clause.infer : null;
    for (const item of list(infer?.indexElems)) {
      const name = str(nodeOf(item, 'IndexElem')?.name);
      if (name !== null) this.addColumn(qualifier, name);
    }
    for (const name of resTargetNames(clause.targetList)) this.addColumn(qualifier, name);
  }

  private addKind(kind: StatementKind): void {
    if (!this.kinds.includes(kind)) this.kinds.push(kind);
  }

  private addRelation(body: Json, target: boolean, scope: CteScope | null): void {
    const name = str(body.relname);
    if (name === null) return;
    const schema = str(body.schemaname);
    // An unqualified name in FROM that a visible WITH defines is that CTE, not a relation.
    if (schema === null && str(body.catalogname) === null && cteVisible(scope, name)) return;
    const alias = isObject(body.alias) ? str(body.alias.aliasname) : null;
    const key = JSON.stringify([schema, name, alias, target]);
    if (!this.relations.has(key)) this.relations.set(key, Object.freeze({ schema, name, alias, target }));
  }

  private addColumnRef(body: Json, frame: Frame): void {
    const parts = columnRefParts(body);
    if (parts.length === 0) return;
    const ref = columnRef(parts.slice(0, -1), parts[parts.length - 1]);
    addColumnTo(this.columns, ref);
    if (frame.predicate !== null) addColumnTo(this.predicates, { ...ref, use: frame.predicate });
    if (frame.flow !== 'returned') addColumnTo(this.expressions, ref);
    if (typeof frame.flow === 'object' && frame.predicate === null)
      addColumnTo(this.failables, { ...ref, construct: frame.flow.by });
  }

  private addColumn(qualifier: readonly string[], name: string): void {
    addColumnTo(this.columns, columnRef(qualifier, name));
  }

  private addPredicate(qualifier: readonly string[], name: string, use: string): void {
    addColumnTo(this.predicates, { ...columnRef(qualifier, name), use });
  }

  /**
   * ORDER BY, GROUP BY and DISTINCT ON may name an output column instead of an input one, by position (`ORDER BY
   * 1`) or by name (`SELECT lower(ssn) AS k ... ORDER BY k`): PostgreSQL then sorts or groups by that select-list
   * expression, so its column references are predicates too. A name that may also be an input column counts both
   * ways (the reference itself is already a predicate): which one PostgreSQL picks does not matter to a guard.
   */
  private addOutputReferences(select: Json): void {
    const clauses: [string, unknown[]][] = [
      ['ORDER BY', list(select.sortClause).map((sortBy) => nodeOf(sortBy, 'SortBy')?.node)],
      ['GROUP BY', groupingItems(select.groupClause)],
      ['DISTINCT ON', [...list(select.distinctClause)]],
    ];
    if (clauses.every(([, items]) => items.length === 0)) return;
    // A set operation's ORDER BY names the columns of its first branch and sorts the values of every branch.
    const branches = setOperationBranches(select).map(selectList);
    for (const [use, items] of clauses) this.addOutputPositions(branches, items, use);
  }

  private addOutputPositions(branches: readonly SelectList[], items: readonly unknown[], use: string): void {
    if (items.length === 0) return;
    const positionsByName = branches.length > 0 ? branches[0].positionsByName : new Map<string, Position[]>();
    // Each position once, so that the work stays linear in the statement's size.
    const positions = new Set<Position>();
    for (const item of items) {
      const reference = outputReference(item);
      if (reference === null) continue;
      if (typeof reference === 'number') positions.add(reference);
      else for (const position of positionsByName.get(reference) ?? []) positions.add(position);
    }
    for (const branch of branches) {
      // A position at or after a star falls somewhere in its expansion or after it, unknown here: from the star on
      // (or, in a branch without one, for a name found after a star in the first branch: everything) counts.
      let unknownFrom: number | null = null;
      for (const position of positions) {
        if (position === AFTER_STAR) unknownFrom = Math.max(0, branch.firstStar);
        else if (branch.firstStar >= 0 && position > branch.firstStar) unknownFrom ??= branch.firstStar;
        else if (position <= branch.entries.length)
          this.addPredicatesUnder(branch.entries[position - 1], use);
      }
      if (unknownFrom === null) continue;
      for (let i = unknownFrom; i < branch.entries.length; i++)
        this.addPredicatesUnder(branch.entries[i], use);
    }
  }

  /** Every column reference under `root`, as a predicate. */
  private addPredicatesUnder(root: unknown, use: string): void {
    for (const ref of columnRefsUnder(root)) addColumnTo(this.predicates, { ...ref, use });
  }

  /** The columns of a subquery in FROM or a CTE (`source`, renamed by `renamed` when given), from its query. */
  private addDerived(source: string | null, renamed: readonly string[], query: unknown): void {
    const outputs = queryOutputs(query);
    if (outputs === null) {
      // Not a shape read here: any name of it may carry anything under it.
      this.derived.push({ source, name: null, refs: columnRefsUnder(query), star: null });
      return;
    }
    for (const column of renameOutputs(outputs, renamed)) this.derived.push({ source, ...column });
  }

  /**
   * `FROM patients p(a, b, c)` renames a table's first columns by position, and `FROM c x` (c a CTE) makes x a
   * second name for c: the new names are unknown to the relation rules, so they stand for what they may rename.
   */
  private addRenamedRelation(body: Json, scope: CteScope | null): void {
    const name = str(body.relname);
    const alias = aliasName(body.alias);
    if (name === null || alias === null) return;
    const renamed = aliasColumns(body.alias);
    const cte = str(body.schemaname) === null && str(body.catalogname) === null && cteVisible(scope, name);
    if (cte) {
      const star = columnRef([name], '*');
      // Renamed by position: any of c's columns; otherwise x.n is c.n.
      if (renamed.length > 0) this.derived.push({ source: alias, name: null, refs: [star], star: null });
      else this.derived.push({ source: alias, name: null, refs: [star], star });
      return;
    }
    for (const column of renamed)
      this.derived.push({ source: alias, name: column, refs: [columnRef([alias], '*')], star: null });
  }

  /** `(a JOIN b ...) AS j`: j.n is the n of either side (renamed by position: any column of either). */
  private addJoinAlias(alias: Json): void {
    const source = aliasName(alias);
    if (source === null) return;
    const star = columnRef([], '*');
    const renamed = aliasColumns(alias).length > 0;
    this.derived.push({ source, name: null, refs: [star], star: renamed ? null : star });
  }

  private addFunction(body: Json): void {
    const fn = functionName(body);
    if (fn === null) return;
    const key = JSON.stringify([fn.schema, fn.name]);
    if (!this.functions.has(key)) this.functions.set(key, Object.freeze(fn));
  }

  facts(
    command: string,
    setting: SettingChange | null,
    location: number,
    length: number,
    copyOut: CopyOut | null = null,
    outputs: ReadonlyArray<SelectOutput> | null = null,
  ): StatementFacts {
    const guard: GuardFlags = Object.freeze({ ddl: this.kinds.includes('ddl'), ...this.guard });
    const derived = new DerivedColumns(this.derived);
    return Object.freeze({
      kind: this.kinds[0],
      kinds: Object.freeze([...this.kinds]),
      command,
      relations: Object.freeze([...this.relations.values()]),
      columns: Object.freeze([...this.columns.values()]),
      predicateColumns: Object.freeze(derived.addBehind(this.predicates)),
      expressionColumns: Object.freeze(derived.addBehind(this.expressions)),
      failableColumns: Object.freeze(derived.addBehind(this.failables)),
      functions: Object.freeze([...this.functions.values()]),
      guard,
      setting,
      copyOut,
      outputs,
      location,
      length,
    });
  }
}

/** A ColumnRef's names; a part that is not a String (A_Star, or a later PostgreSQL's) is taken for a star. */
function columnRefParts(body: Json): string[] {
  const parts: string[] = [];
  for (const field of list(body.fields)) {
    // Only String and A_Star occur; anything else is taken for a star, which covers every column.
    parts.push(stringNode(field) ?? '*');
  }
  return parts;
}

function columnRef(qualifier: readonly string[], name: string): ColumnRef {
  return { qualifier: Object.freeze([...qualifier]), name };
}

/** Adds a column reference to a deduplicating map (the first one of a name wins), frozen; true when it was new. */
function addColumnTo<C extends ColumnRef>(columns: Map<string, C>, ref: C): boolean {
  const key = JSON.stringify([ref.qualifier, ref.name]);
  if (columns.has(key)) return false;
  columns.set(key, Object.freeze(ref));
  return true;
}

/** A 1-based position in a select list, or AFTER_STAR: somewhere in or after a star's expansion (not in the tree). */
type Position = number;
const AFTER_STAR: Position = -1;

/** How an ORDER BY / GROUP BY / DISTINCT ON item may name an output column: a position, or a bare name. */
function outputReference(item: unknown): Position | string | null {
  const constant = nodeOf(item, 'A_Const');
  // Only an integer constant is a position (`ORDER BY 1.0` sorts by a constant); ival 0 is left out as a default.
  if (constant !== null) {
    if (!isObject(constant.ival)) return null;
    const position = typeof constant.ival.ival === 'number' ? constant.ival.ival : 0;
    return position >= 1 ? position : null;
  }
  const columnRef = nodeOf(item, 'ColumnRef');
  if (columnRef === null) return null;
  const fields = list(columnRef.fields);
  return fields.length === 1 ? stringNode(fields[0]) : null;
}

/** The items of a GROUP BY, grouping sets flattened: PostgreSQL resolves each one as it does a plain GROUP BY item. */
function groupingItems(groupClause: unknown): unknown[] {
  const items: unknown[] = [];
  const stack: { readonly item: unknown; readonly insideSet: boolean }[] = [];
  const pushAll = (v: unknown, insideSet: boolean) => {
    const entries = list(v);
    for (let i = entries.length - 1; i >= 0; i--) stack.push({ item: entries[i], insideSet });
  };
  pushAll(groupClause, false);
  while (stack.length > 0) {
    const { item, insideSet } = stack.pop()!;
    const set = nodeOf(item, 'GroupingSet');
    // Inside ROLLUP / CUBE / GROUPING SETS a parenthesised list is a row of items.
    const row = insideSet ? nodeOf(item, 'RowExpr') : null;
    if (set !== null) pushAll(set.content, true);
    else if (row !== null) pushAll(row.args, true);
    else items.push(item);
  }
  return items;
}

/** A SELECT, or every branch of a set operation (first branch first): the SELECTs that make its rows. */
function setOperationLeaves(select: Json): Json[] {
  const leaves: Json[] = [];
  const stack: unknown[] = [select];
  while (stack.length > 0) {
    const s = stack.pop();
    if (!isObject(s)) continue;
    if (s.op !== undefined && s.op !== 'SETOP_NONE') {
      stack.push(s.rarg, s.larg);
      continue;
    }
    leaves.push(s);
  }
  return leaves;
}

/** The target lists of a SELECT, or of every branch of a set operation (first branch first). */
function setOperationBranches(select: Json): (readonly unknown[])[] {
  return setOperationLeaves(select).map((s) => list(s.targetList));
}

/** A select list as ORDER BY, GROUP BY and DISTINCT ON see it. */
interface SelectList {
  readonly entries: readonly unknown[];
  /** Index of the first star entry (`*`, `p.*`), or -1. */
  readonly firstStar: number;
  /** Output name (alias, else the name PostgreSQL gives the expression) to the positions that carry it. */
  readonly positionsByName: ReadonlyMap<string, Position[]>;
}

function selectList(entries: readonly unknown[]): SelectList {
  let firstStar = -1;
  const positionsByName = new Map<string, Position[]>();
  for (let i = 0; i < entries.length; i++) {
    if (firstStar < 0 && isStarTarget(entries[i])) firstStar = i;
    const name = outputName(entries[i]);
    if (name === null) continue;
    const positions = positionsByName.get(name) ?? [];
    positions.push(firstStar >= 0 ? AFTER_STAR : i + 1);
    positionsByName.set(name, positions);
  }
  return { entries, firstStar, positionsByName };
}

function isStarTarget(entry: unknown): boolean {
  const columnRef = nodeOf(nodeOf(entry, 'ResTarget')?.val, 'ColumnRef');
  if (columnRef === null) return false;
  const fields = list(columnRef.fields);
  return fields.length > 0 && stringNode(fields[fields.length - 1]) === null;
}

/** The name of a select-list entry: its alias, else the name PostgreSQL gives it (FigureColname), else null. */
function outputName(entry: unknown): string | null {
  const target = nodeOf(entry, 'ResTarget');
  if (target === null) return null;
  return str(target.name) ?? impliedName(target.val);
}

/**
 * PostgreSQL's FigureColname for the expressions that name their column; null for '?column?'. A loop, not recursion:
 * casts and scalar subqueries may be nested thousands deep.
 */
function impliedName(v: unknown): string | null {
  // A cast names its column after its type only when what it wraps names it weakly (CASE) or not at all; the
  // outermost cast's type wins.
  let castType: string | null = null;
  let node = isObject(v) ? unwrap(v) : null;
  while (node !== null) {
    const [type, body] = node;
    switch (type) {
      case 'ColumnRef': {
        const last = list(body.fields).at(-1);
        return last === undefined ? null : stringNode(last);
      }
      case 'FuncCall': {
        const last = list(body.funcname).at(-1);
        return last === undefined ? null : stringNode(last);
      }
      case 'A_Indirection': {
        // The last field name, subscripts ignored; without one, the name of what is indirected.
        const names = list(body.indirection).map(stringNode);
        const name = names.findLast((n) => n !== null);
        if (name !== undefined && name !== null) return name;
        node = isObject(body.arg) ? unwrap(body.arg) : null;
        continue;
      }
      case 'TypeCast': {
        const typeName = isObject(body.typeName) ? list(body.typeName.names).at(-1) : undefined;
        castType ??= typeName === undefined ? null : stringNode(typeName);
        node = isObject(body.arg) ? unwrap(body.arg) : null;
        continue;
      }
      case 'CollateClause':
        node = isObject(body.arg) ? unwrap(body.arg) : null;
        continue;
      case 'SubLink': {
        if (body.subLinkType === 'EXISTS_SUBLINK') return 'exists';
        if (body.subLinkType === 'ARRAY_SUBLINK') return 'array';
        if (body.subLinkType !== 'EXPR_SUBLINK') return castType;
        // A scalar subquery is named like its first column.
        const select = nodeOf(body.subselect, 'SelectStmt');
        const first = nodeOf(select === null ? undefined : setOperationBranches(select)[0]?.[0], 'ResTarget');
        if (first === null) return castType;
        if (typeof first.name === 'string') return first.name;
        node = isObject(first.val) ? unwrap(first.val) : null;
        continue;
      }
      case 'CaseExpr':
        return castType ?? 'case';
      case 'CoalesceExpr':
        return 'coalesce';
      case 'MinMaxExpr':
        return body.op === 'IS_LEAST' ? 'least' : 'greatest';
      case 'A_Expr':
        return body.kind === 'AEXPR_NULLIF' ? 'nullif' : castType;
      case 'RowExpr':
        return 'row';
      case 'A_ArrayExpr':
        return 'array';
      case 'GroupingFunc':
        return 'grouping';
      default:
        return castType;
    }
  }
  return castType;
}

/** Object types of DROP / COMMENT / SECURITY LABEL whose names are relations. */
const RELATION_OBJECT_TYPES: ReadonlySet<string> = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_FOREIGN_TABLE',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
]);

/** The strings of a List node ({ List: { items: [String...] } }) or a bare array of String nodes. */
function nameList(v: unknown): string[] {
  const node = nodeOf(v, 'List');
  const items = node !== null ? list(node.items) : list(v);
  const names: string[] = [];
  for (const item of items) {
    const s = stringNode(item);
    if (s === null) return [];
    names.push(s);
  }
  return names;
}

/** The qualifier of a DML target's column: the name the target is known by in its statement (alias, else name). */
function targetQualifier(relation: unknown): readonly string[] {
  if (!isObject(relation)) return [];
  const alias = isObject(relation.alias) ? str(relation.alias.aliasname) : null;
  const name = alias ?? str(relation.relname);
  return name === null ? [] : [name];
}

/** A top-level VariableSetStmt as a SettingChange. */
function settingOf(body: Json): SettingChange {
  const kind = str(body.kind);
  if (kind === 'VAR_RESET_ALL') return Object.freeze({ name: 'all', value: null, local: false, reset: true });
  const reset = kind === 'VAR_RESET' || kind === 'VAR_SET_DEFAULT';
  const args = list(body.args);
  const value = !reset && kind === 'VAR_SET_VALUE' && args.length === 1 ? literalText(args[0]) : null;
  return Object.freeze({
    name: (str(body.name) ?? '').toLowerCase(),
    value,
    local: body.is_local === true,
    reset,
  });
}

/** An A_Const as the text PostgreSQL's SET would take, or null for anything else. */
function literalText(v: unknown): string | null {
  const c = nodeOf(v, 'A_Const');
  if (c === null || c.isnull === true) return null;
  if (isObject(c.sval)) return str(c.sval.sval) ?? '';
  if (isObject(c.ival)) return String(typeof c.ival.ival === 'number' ? c.ival.ival : 0);
  if (isObject(c.fval)) return str(c.fval.fval);
  if (isObject(c.boolval)) return c.boolval.boolval === true ? 'on' : 'off';
  if (isObject(c.bsval)) return str(c.bsval.bsval);
  return null;
}

/**
 * The facts of one RawStmt of libpg-query's JSON tree ({ stmt: { NodeName: {...} }, stmt_location?, stmt_len? }).
 * Exported for tests that feed trees PostgreSQL 17 cannot produce (node types of a later version).
 */
export function statementFactsOf(raw: unknown): StatementFacts {
  const rawStmt = isObject(raw) ? raw : {};
  const location = typeof rawStmt.stmt_location === 'number' ? rawStmt.stmt_location : 0;
  const length = typeof rawStmt.stmt_len === 'number' ? rawStmt.stmt_len : 0;
  const node = isObject(rawStmt.stmt) ? unwrap(rawStmt.stmt) : null;
  const [command, body] = node ?? ['unknown', {}];
  const collector = new FactCollector(ownKind(command, body));
  collector.walk(rawStmt.stmt);
  const setting = command === 'VariableSetStmt' ? settingOf(body) : null;
  const copyOut = command === 'CopyStmt' && body.is_from !== true ? copyOutOf(body) : null;
  const outputs = command === 'SelectStmt' ? selectOutputs(body) : null;
  return collector.facts(command, setting, location, length, copyOut, outputs);
}

/** Every column reference under `root` (any depth, iteratively), each once. */
function columnRefsUnder(root: unknown): ColumnRef[] {
  const into = new Map<string, ColumnRef>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
      continue;
    }
    if (!isObject(v)) continue;
    const ref = nodeOf(v, 'ColumnRef');
    if (ref !== null) {
      const parts = columnRefParts(ref);
      if (parts.length > 0) addColumnTo(into, columnRef(parts.slice(0, -1), parts[parts.length - 1]));
      continue;
    }
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push(child);
  }
  return [...into.values()];
}

/** One output column of a query, as the query that reads it by name sees it. */
interface OutputColumn {
  /** Its name (alias, else the name PostgreSQL gives the expression); null when that cannot be told here. */
  readonly name: string | null;
  /** Every column reference in its expression (of every branch, for a set operation). */
  readonly refs: readonly ColumnRef[];
  /** A star entry (`*`, `p.*`): a column of it named n is the column n behind the star. */
  readonly star: ColumnRef | null;
  /** The expression is one column reference: the column is returned as it is. */
  readonly direct: boolean;
}

/** A select-list or RETURNING entry as an output column. */
function outputColumn(entry: unknown): OutputColumn {
  const val = nodeOf(entry, 'ResTarget')?.val;
  const refs = columnRefsUnder(val);
  return {
    name: outputName(entry),
    refs,
    star: isStarTarget(entry) ? refs[0] : null,
    direct: nodeOf(val, 'ColumnRef') !== null,
  };
}

/**
 * The column references under each output column of a SELECT. A set operation's output column i carries column i of
 * every branch (what a view defined by `... UNION ALL ...` shows); it is direct when it is a plain column in every
 * branch. Null when the branches' lengths differ or a branch has a star (its columns are not known here).
 */
function selectOutputs(body: Json): ReadonlyArray<SelectOutput> | null {
  let outputs: Array<{ refs: Map<string, ColumnRef>; direct: boolean }> | null = null;
  for (const targets of setOperationBranches(body)) {
    if (outputs !== null && outputs.length !== targets.length) return null;
    const into: Array<{ refs: Map<string, ColumnRef>; direct: boolean }> =
      outputs ?? targets.map(() => ({ refs: new Map<string, ColumnRef>(), direct: true }));
    for (const [i, entry] of targets.entries()) {
      const column = outputColumn(entry);
      if (column.star !== null) return null;
      // The same column in several branches is one reference.
      for (const ref of column.refs) into[i].refs.set([...ref.qualifier, ref.name].join('.'), ref);
      into[i].direct &&= column.direct;
    }
    outputs = into;
  }
  if (outputs === null) return null;
  return Object.freeze(
    outputs.map((o) => Object.freeze({ refs: Object.freeze([...o.refs.values()]), direct: o.direct })),
  );
}

/**
 * The output columns of a query read by name (a subquery in FROM, a CTE: a SELECT, VALUES, a set operation, or a
 * data-modifying statement's RETURNING), or null for any other shape.
 */
function queryOutputs(query: unknown): OutputColumn[] | null {
  const select = nodeOf(query, 'SelectStmt');
  if (select === null) {
    for (const type of ['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']) {
      const dml = nodeOf(query, type);
      if (dml !== null) return list(dml.returningList).map(outputColumn);
    }
    return null;
  }
  const branches = setOperationLeaves(select).map(branchOutputs);
  if (branches.length === 1) return branches[0];
  // A set operation: names from the first branch, values from every branch at the same position; a star hides
  // the positions of what follows it, so with one anywhere the columns are told apart by nothing.
  if (branches.some((b) => b.some((c) => c.star !== null))) {
    const refs = new Map<string, ColumnRef>();
    for (const b of branches) for (const c of b) for (const r of c.refs) addColumnTo(refs, r);
    return [{ name: null, refs: [...refs.values()], star: null, direct: false }];
  }
  return branches[0].map((first, i) => {
    const refs = new Map<string, ColumnRef>();
    for (const b of branches) for (const r of b[i]?.refs ?? []) addColumnTo(refs, r);
    return { name: first.name, refs: [...refs.values()], star: null, direct: false };
  });
}

/** The output columns of one SELECT or VALUES list (its columns named column1, column2, ...). */
function branchOutputs(select: Json): OutputColumn[] {
  if (select.valuesLists === undefined) return list(select.targetList).map(outputColumn);
  const columns: { refs: Map<string, ColumnRef> }[] = [];
  for (const row of list(select.valuesLists)) {
    const items = list(nodeOf(row, 'List')?.items);
    items.forEach((item, i) => {
      columns[i] ??= { refs: new Map() };
      for (const r of columnRefsUnder(item)) addColumnTo(columns[i].refs, r);
    });
  }
  return columns.map((c, i) => ({
    name: `column${i + 1}`,
    refs: [...c.refs.values()],
    star: null,
    direct: false,
  }));
}

/**
 * A column alias list (`AS t(a, b)`) renames a query's columns by position. Past a star the positions are unknown:
 * from the star on, every column may carry any of the names.
 */
function renameOutputs(outputs: readonly OutputColumn[], renamed: readonly string[]): OutputColumn[] {
  if (renamed.length === 0) return [...outputs];
  const firstStar = outputs.findIndex((c) => c.star !== null);
  return outputs.map((c, i) => {
    if (firstStar >= 0 && i >= firstStar) return { ...c, name: null, star: null };
    return i < renamed.length ? { ...c, name: renamed[i] } : c;
  });
}

/** The name of an Alias struct (`AS t`), or null. */
function aliasName(alias: unknown): string | null {
  return isObject(alias) ? str(alias.aliasname) : null;
}

/** The column names of an Alias struct (`AS t(a, b)`). */
function aliasColumns(alias: unknown): string[] {
  return isObject(alias) ? nameStrings(alias.colnames) : [];
}

/** The strings of a list of String nodes. */
function nameStrings(v: unknown): string[] {
  return list(v)
    .map((n) => stringNode(n))
    .filter((n): n is string => n !== null);
}

/** A column of a subquery or CTE in FROM, or a renamed column of a relation, by the name it is read under. */
interface DerivedColumn extends Omit<OutputColumn, 'direct'> {
  /** The name its row source is known by (alias, CTE name); null for a subquery without an alias. */
  readonly source: string | null;
}

/**
 * The derived columns of a statement, to find what a reference stands for. A reference to a column of a subquery,
 * CTE, VALUES list or join alias (`SELECT s::int FROM (SELECT ssn AS s ...) t`) names no relation's column: it
 * stands for the references behind that column, and those may name derived columns in turn. Names are matched
 * across the whole statement, as relation rules match them: a name that two levels use counts for both.
 */
class DerivedColumns {
  private readonly bySource = new Map<string, DerivedColumn[]>();
  private readonly byName = new Map<string, DerivedColumn[]>();
  /** Columns any name may reach: unnamed ones and stars. */
  private readonly unnamed: DerivedColumn[] = [];

  constructor(private readonly all: readonly DerivedColumn[]) {
    for (const d of all) {
      if (d.source !== null) pushTo(this.bySource, d.source, d);
      if (d.name !== null && d.star === null) pushTo(this.byName, d.name, d);
      else this.unnamed.push(d);
    }
  }

  /**
   * The references in `refs` and, transitively, every reference behind one that may name a derived column; each
   * added one keeps what made its origin a predicate or a failable use.
   */
  addBehind<C extends ColumnRef>(refs: Map<string, C>): C[] {
    if (this.all.length > 0) {
      const pending = [...refs.values()];
      while (pending.length > 0) {
        const ref = pending.pop()!;
        for (const behind of this.behind(ref)) {
          const added = { ...ref, qualifier: behind.qualifier, name: behind.name } as C;
          if (addColumnTo(refs, added)) pending.push(added);
        }
      }
    }
    return [...refs.values()];
  }

  /** What one reference may stand for, one level down. */
  private behind(ref: ColumnRef): ColumnRef[] {
    const out: ColumnRef[] = [];
    const q = ref.qualifier;
    if (q.length > 1) return out; // schema-qualified: a relation's column
    if (q.length === 1) {
      for (const d of this.bySource.get(q[0]) ?? []) columnBehind(d, ref.name, out);
      return out;
    }
    if (ref.name === '*') {
      for (const d of this.all) columnBehind(d, '*', out);
      return out;
    }
    for (const d of this.byName.get(ref.name) ?? []) columnBehind(d, ref.name, out);
    for (const d of this.unnamed) columnBehind(d, ref.name, out);
    // A lone name that is a source's name is a whole-row reference to it.
    for (const d of this.bySource.get(ref.name) ?? []) columnBehind(d, '*', out);
    return out;
  }
}

/** What column `name` (or '*': all of them) of a derived column's source may stand for, if it may be `d`. */
function columnBehind(d: DerivedColumn, name: string, out: ColumnRef[]): void {
  if (d.star !== null) out.push(name === '*' ? d.star : columnRef(d.star.qualifier, name));
  else if (name === '*' || d.name === null || d.name === name) out.push(...d.refs);
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const values = map.get(key);
  if (values === undefined) map.set(key, [value]);
  else values.push(value);
}

/** COPY ... TO: its format, header, other options, relation and column list. */
function copyOutOf(body: Json): CopyOut {
  let format: CopyOut['format'] = 'text';
  let header = false;
  let otherOptions = false;
  for (const item of list(body.options)) {
    const opt = nodeOf(item, 'DefElem');
    if (opt === null) {
      otherOptions = true;
      continue;
    }
    const name = str(opt.defname);
    const arg = isObject(opt.arg) ? opt.arg : null;
    if (name === 'format') {
      const value = stringNode(arg)?.toLowerCase();
      format = value === 'csv' ? 'csv' : value === 'text' ? 'text' : 'binary'; // unknown: treated as unreadable
    } else if (name === 'header') {
      const b = nodeOf(arg, 'Boolean');
      const s = stringNode(arg)?.toLowerCase();
      header = arg === null || (b !== null ? b.boolval === true : s !== 'false' && s !== 'off' && s !== '0');
    } else {
      otherOptions = true;
    }
  }
  const rel = isObject(body.relation) ? body.relation : null;
  const relname = rel ? str(rel.relname) : null;
  const names = list(body.attlist).map((a) => stringNode(a));
  return Object.freeze({
    format,
    header,
    otherOptions,
    relation: relname === null ? null : Object.freeze({ schema: str(rel!.schemaname), name: relname }),
    columns: names.length > 0 && names.every((n) => n !== null) ? Object.freeze(names as string[]) : null,
  });
}

// ---- values that may raise an error ---------------------------------------------------------------------------
//
// Whether a statement fails can tell something about a value it computed with, one row at a time (a WHERE on an
// unmasked id picks the row): `1/(length(ssn)-11)` fails exactly when the SSN has 11 characters, `ssn::int` when
// it is not a number, `substr(ssn,1,1)::int/0` tells whether the first character is a digit. So a masked column
// may reach its output column only through "total" constructs: ones that raise no error for any value, and return
// NULL only for a NULL input (masked output keeps NULLs, so a NULL chosen by the value would answer a guess too).
// The list is an allow list: an operator, cast or function not in it may raise, however harmless it looks, and so
// may a user-defined function (the analyser cannot read its body). Errors from resource limits (the 1 GB value
// size, memory, statement_timeout) are modelled only where one call multiplies the value by a factor named in the
// statement (repeat, a growing replace): concatenation and quoting chained many times over, or aggregated over
// many rows, can still reach the 1 GB limit, which tells a value's length.

/**
 * The arguments of a total function that may carry any value: every one, or only some (the others decide errors
 * of their own, e.g. `substr(x, 1, -1)`, independent of the masked value).
 */
type TotalArguments = (args: readonly unknown[], index: number) => boolean;

const EVERY_ARGUMENT: TotalArguments = () => true;
const FIRST_ARGUMENT: TotalArguments = (_, i) => i === 0;
const argumentsAt =
  (...positions: number[]): TotalArguments =>
  (_, i) =>
    positions.includes(i);

/** `substring(x from 1 for 3)`; with a text pattern (`substring(x from '\d+')`) it matches, NULL when it does not. */
const STRING_WITH_INTEGER_BOUNDS: TotalArguments = (args, i) =>
  i === 0 && args.slice(1).every((a) => isObject(nodeOf(a, 'A_Const')?.ival));

/** A string constant's text, or null. */
function stringConstant(v: unknown): string | null {
  const constant = nodeOf(v, 'A_Const');
  return isObject(constant?.sval) ? (str(constant.sval.sval) ?? '') : null;
}

/**
 * `replace(x, '-', ' ')`: the string searched may be any value when the search and replacement strings are
 * constants and the replacement is no longer. A longer one grows the value by each match, and nested replacements
 * multiply that growth past PostgreSQL's 1 GB limit ("out of memory") exactly when the value holds the character
 * searched: `replace(replace(replace(x, '1', <1100 ones>), ...), ...)` fails when x contains a '1'.
 */
const NON_GROWING_REPLACE: TotalArguments = (args, i) => {
  const [search, replacement] = [stringConstant(args[1]), stringConstant(args[2])];
  return (
    i === 0 &&
    search !== null &&
    replacement !== null &&
    Buffer.byteLength(replacement) <= Buffer.byteLength(search)
  );
};

/**
 * `regexp_replace(x, '\D', '', 'g')`: removing what a constant pattern matches never grows the value; a constant
 * pattern fails or not whatever the value. A non-empty replacement grows it by each match, as in replace.
 */
const REMOVING_REGEXP: TotalArguments = (args, i) =>
  i === 0 &&
  stringConstant(args[1]) !== null &&
  stringConstant(args[2]) === '' &&
  args.slice(3).every((a) => nodeOf(a, 'A_Const') !== null);

/**
 * `format('%s / %L', a, b)`: with a constant format string that converts only with %s and %L (never NULL, never
 * failing) and takes no width from an argument, the arguments may carry any value. `%I` fails on NULL; a format
 * string read from a column may fail on any `%` it holds.
 */
const FORMAT_ARGUMENTS: TotalArguments = (args, i) => {
  if (i === 0) return false;
  const format = stringConstant(args[0]);
  return format !== null && /^(?:[^%]|%%|%(?:\d+\$)?-?\d*[sL])*$/.test(format);
};

/**
 * Built-in functions (unqualified or in pg_catalog) that raise no error and return NULL only for NULL, for any
 * value of the arguments named: case mapping, trimming, padding and slicing text, measuring it, hashing it, quoting
 * it, and building rows, arrays and JSON from it; aggregates that only collect or count. Not here, among others:
 * casts by function (`to_date`, `to_number`), arithmetic and sums (overflow, non-numeric input), `to_char` (a date
 * past 294276 AD does not fit a timestamp), anything that matches a pattern (COMPARING_FUNCTIONS).
 */
const TOTAL_FUNCTIONS: Readonly<Record<string, TotalArguments>> = {
  lower: FIRST_ARGUMENT,
  upper: FIRST_ARGUMENT,
  initcap: FIRST_ARGUMENT,
  length: FIRST_ARGUMENT,
  char_length: FIRST_ARGUMENT,
  character_length: FIRST_ARGUMENT,
  octet_length: FIRST_ARGUMENT,
  bit_length: FIRST_ARGUMENT,
  md5: FIRST_ARGUMENT,
  reverse: FIRST_ARGUMENT,
  quote_ident: FIRST_ARGUMENT,
  quote_literal: FIRST_ARGUMENT,
  quote_nullable: FIRST_ARGUMENT,
  btrim: EVERY_ARGUMENT,
  ltrim: EVERY_ARGUMENT,
  rtrim: EVERY_ARGUMENT,
  // A negative count or length counts from the end or yields '': never an error. Not repeat: its count multiplies
  // the value's length, so one call fails ("requested length too large") exactly when the value is long enough.
  left: FIRST_ARGUMENT,
  right: FIRST_ARGUMENT,
  lpad: argumentsAt(0, 2),
  rpad: argumentsAt(0, 2),
  substr: STRING_WITH_INTEGER_BOUNDS,
  substring: STRING_WITH_INTEGER_BOUNDS,
  overlay: argumentsAt(0, 1),
  split_part: argumentsAt(0, 1),
  translate: EVERY_ARGUMENT,
  replace: NON_GROWING_REPLACE,
  regexp_replace: REMOVING_REGEXP,
  concat: EVERY_ARGUMENT,
  concat_ws: EVERY_ARGUMENT,
  format: FORMAT_ARGUMENTS,
  to_json: FIRST_ARGUMENT,
  to_jsonb: FIRST_ARGUMENT,
  row_to_json: FIRST_ARGUMENT,
  json_build_array: EVERY_ARGUMENT,
  jsonb_build_array: EVERY_ARGUMENT,
  // A NULL key raises an error: values only.
  json_build_object: (_, i) => i % 2 === 1,
  jsonb_build_object: (_, i) => i % 2 === 1,
  count: EVERY_ARGUMENT,
  array_agg: EVERY_ARGUMENT,
  string_agg: EVERY_ARGUMENT,
  json_agg: EVERY_ARGUMENT,
  jsonb_agg: EVERY_ARGUMENT,
  // The value carried, not the offset (`nth_value(x, 0)` fails) nor anything ordered (a predicate).
  lag: argumentsAt(0, 2),
  lead: argumentsAt(0, 2),
  first_value: FIRST_ARGUMENT,
  last_value: FIRST_ARGUMENT,
  nth_value: FIRST_ARGUMENT,
};

/** Operators (unqualified or in pg_catalog) total in both operands: concatenation. */
const TOTAL_OPERATORS: ReadonlySet<string> = new Set(['||']);

/**
 * Casts total for any input: to text, varchar and char(n). Every type's output function succeeds, and an explicit
 * cast to varchar(n) or char(n) truncates or pads without an error. A cast to anything else parses its input and
 * may fail (`ssn::int`, `ssn::bytea` on a backslash, `ssn::json`), an array type included.
 */
const TEXT_TYPES: ReadonlySet<string> = new Set(['text', 'varchar', 'bpchar']);

/** Expression fields that hand their value on unchanged or inside a row, array or choice: never failing. */
const TOTAL_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  CollateClause: new Set(['arg']),
  CaseExpr: new Set(['defresult']),
  CaseWhen: new Set(['result']),
  CoalesceExpr: new Set(['args']),
  RowExpr: new Set(['args']),
  A_ArrayExpr: new Set(['elements']),
};

/**
 * Fields that hold the rows a query returns and pass their flow on: a SELECT's outputs, the branches of a set
 * operation, FROM (whose subqueries and functions decide for themselves), VALUES rows, the entries of a list, the
 * WHEN branches of a CASE.
 */
const ROW_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  SelectStmt: new Set(['targetList', 'valuesLists', 'larg', 'rarg', 'fromClause']),
  JoinExpr: new Set(['larg', 'rarg']),
  ResTarget: new Set(['val']),
  List: new Set(['items']),
  CaseExpr: new Set(['args']),
};

/**
 * Fields whose rows are read by name elsewhere in the statement, or are the statement's result: their outputs
 * start as returned. A reference to a column of a subquery in FROM or a CTE is judged where it is used, standing
 * for the references behind it (see DerivedColumns).
 */
const RETURNED_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  RangeSubselect: new Set(['subquery']),
  CommonTableExpr: new Set(['ctequery']),
  InsertStmt: new Set(['returningList']),
  UpdateStmt: new Set(['returningList']),
  DeleteStmt: new Set(['returningList']),
  MergeStmt: new Set(['returningList']),
  DeclareCursorStmt: new Set(['query']),
  CopyStmt: new Set(['query']),
  PrepareStmt: new Set(['query']),
  ExplainStmt: new Set(['query']),
  ViewStmt: new Set(['query']),
};

/**
 * Where a value computed at a point of the tree goes. 'returned': into an output column as it is (masked there by
 * its column's mask). 'derived': into an output column through total constructs only (the column is then redacted
 * whole). Otherwise `by` names the innermost construct it reaches that is not known total, or the place that is
 * not an output column (a function in FROM, a SET list): whether that raises an error depends on the value.
 */
type Flow = 'returned' | 'derived' | { readonly by: string };

/** The flow into `field` (argument `index` of a list) of a `type` node whose own value flows as `flow`. */
function flowInto(type: string | null, field: string, body: Json, flow: Flow, index: number): Flow {
  if (type !== null) {
    if (lookup(ROW_FIELDS, type)?.has(field) === true) return flow;
    if (lookup(RETURNED_FIELDS, type)?.has(field) === true) return 'returned';
    if (type === 'SubLink' && field === 'subselect') {
      // A scalar subquery returns its value as it is; ARRAY(...) wraps it; EXISTS discards it; IN / ANY / ALL
      // compare it (a predicate).
      return body.subLinkType === 'ARRAY_SUBLINK' ? derive(flow) : flow;
    }
    if (isTotalField(type, field, body, index)) return derive(flow);
  }
  return { by: constructName(type, body) };
}

function derive(flow: Flow): Flow {
  return flow === 'returned' ? 'derived' : flow;
}

function isTotalField(type: string, field: string, body: Json, index: number): boolean {
  switch (type) {
    case 'FuncCall': {
      if (field !== 'args') return false;
      const fn = builtinFunction(body);
      const args = fn === null ? undefined : lookup(TOTAL_FUNCTIONS, fn);
      return args !== undefined && args(list(body.args), index);
    }
    case 'A_Expr': {
      const op = body.kind === 'AEXPR_OP' ? operatorName(body) : null;
      return op !== null && isBuiltin(op.schema) && TOTAL_OPERATORS.has(op.name);
    }
    case 'TypeCast':
      return field === 'arg' && castsToText(body.typeName);
    case 'A_Indirection':
      // A field of a row (`(p).ssn`) or all of them; a subscript returns NULL past the end of an array.
      return (
        field === 'arg' &&
        list(body.indirection).every((i) => stringNode(i) !== null || nodeOf(i, 'A_Star') !== null)
      );
    default:
      return lookup(TOTAL_FIELDS, type)?.has(field) === true;
  }
}

/** A function's name when it is a built-in one (unqualified, or in pg_catalog), else null. */
function builtinFunction(body: Json): string | null {
  const fn = functionName(body);
  return fn !== null && isBuiltin(fn.schema) ? fn.name : null;
}

function isBuiltin(schema: string | null): boolean {
  return schema === null || schema === 'pg_catalog';
}

function castsToText(typeName: unknown): boolean {
  if (!isObject(typeName) || typeName.arrayBounds !== undefined || typeName.pct_type === true) return false;
  const names = list(typeName.names).map((n) => stringNode(n));
  const name = names.at(-1);
  const schema = names.length >= 2 ? names[names.length - 2] : null;
  return names.length <= 2 && typeof name === 'string' && isBuiltin(schema) && TEXT_TYPES.has(name);
}

/** Node types as a refusal message names them; others by their parse-node name. */
const CONSTRUCT_NAMES: Readonly<Record<string, string>> = {
  RangeFunction: 'a function in FROM',
  RangeTableFunc: 'XMLTABLE',
  RangeTableSample: 'TABLESAMPLE',
  JsonTable: 'JSON_TABLE',
  A_Indirection: 'a subscript',
  WindowDef: 'a window frame offset',
  NamedArgExpr: 'a named argument',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  MergeStmt: 'MERGE',
  CallStmt: 'CALL',
  ExecuteStmt: 'EXECUTE',
};

/** A construct a value flows into, named for a refusal message. */
function constructName(type: string | null, body: Json): string {
  switch (type) {
    case null:
      return 'a construct this version does not know';
    case 'FuncCall':
      return `${functionName(body)?.name ?? 'a function'}()`;
    case 'TypeCast': {
      const typeName = isObject(body.typeName) ? body.typeName : {};
      const name = stringNode(list(typeName.names).at(-1)) ?? 'a type';
      return `a cast to ${name}${typeName.arrayBounds !== undefined ? '[]' : ''}`;
    }
    case 'A_Expr': {
      const op = operatorName(body);
      return op === null ? 'an operator' : `the operator ${op.name}`;
    }
    default:
      return lookup(CONSTRUCT_NAMES, type) ?? type;
  }
}
