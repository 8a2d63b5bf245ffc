// Judges one parsed statement (StatementFacts) against the roles in force for a session. Roles combine the way a
// reviewer would expect: a statement is allowed when ONE role grants everything it does (its kinds, relations and
// functions) — grants never mix across roles — and NO role denies anything it touches. The default guardrails bind
// every non-admin role set; an admin role lifts them, but never another role's explicit denials.

import type { RoleConfig } from '../config/schema.js';
import { CidrSet } from '../net/cidr.js';
import type { ColumnRef, RelationRef, StatementFacts, StatementKind } from './facts.js';
import { parseRoleMasks, strictest, type MaskRule } from '../masking/mask-spec.js';

/** Server file, large-object, dynamic-SQL and server-control functions: denied to non-admin roles by default. */
export const GUARDED_FUNCTIONS: readonly string[] = [
  // server files
  'pg_read_file',
  'pg_read_binary_file',
  'pg_ls_dir',
  'pg_stat_file',
  'pg_ls_logdir',
  'pg_ls_waldir',
  'pg_ls_tmpdir',
  'pg_ls_archive_statusdir',
  'pg_ls_logicalmapdir',
  'pg_ls_logicalsnapdir',
  'pg_ls_replslotdir',
  'pg_file_write',
  'pg_file_rename',
  'pg_file_unlink',
  'pg_file_sync',
  // large objects (lo_import / lo_export read and write server files)
  'lo_import',
  'lo_export',
  'lo_open',
  'lo_close',
  'loread',
  'lowrite',
  'lo_get',
  'lo_put',
  'lo_create',
  'lo_creat',
  'lo_unlink',
  'lo_from_bytea',
  'lo_lseek',
  'lo_lseek64',
  'lo_tell',
  'lo_tell64',
  'lo_truncate',
  'lo_truncate64',
  // other databases and dynamic SQL that the parser cannot see into
  'dblink*',
  'postgres_fdw*',
  'query_to_xml*',
  'query_to_xmlschema',
  'table_to_xml*',
  'table_to_xmlschema',
  'cursor_to_xml*',
  'cursor_to_xmlschema',
  'schema_to_xml*',
  'schema_to_xmlschema',
  'database_to_xml*',
  'database_to_xmlschema',
  'ts_stat',
  // settings and server control
  'set_config',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_promote',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_backup_start',
  'pg_backup_stop',
  'pg_create_physical_replication_slot',
  'pg_create_logical_replication_slot',
  'pg_drop_replication_slot',
  'pg_logical_emit_message',
  'pg_replication_origin_*',
  'pg_import_system_collations',
  'binary_upgrade_*',
];

/** A glob (`*` = any run of characters) compiled to an anchored, case-sensitive test. */
export class Globs {
  private readonly exact = new Set<string>();
  private readonly patterns: RegExp[] = [];
  /** For schema.table globs: the schema part of each, to judge statements on a whole schema. */
  private readonly schemas: Globs | null;

  constructor(globs: readonly string[], withSchemas = false) {
    this.schemas = withSchemas ? new Globs(globs.map((g) => g.split('.')[0])) : null;
    for (const g of globs) {
      if (g.includes('*'))
        this.patterns.push(new RegExp('^' + g.split('*').map(escapeRegExp).join('.*') + '$', 's'));
      else this.exact.add(g);
    }
  }

  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (const p of this.patterns) if (p.test(name)) return true;
    return false;
  }

  /** Whether any schema.table glob can match a relation of `schema` (DROP SCHEMA reaches every one of them). */
  touchesSchema(schema: string): boolean {
    return this.schemas !== null && this.schemas.matches(schema);
  }
}

/**
 * Client encodings whose multibyte characters may end in an ASCII byte such as a backslash or a quote: PostgreSQL
 * would read statement text differently from pgwarden's UTF-8 view of it. PostgreSQL's spellings and aliases,
 * normalised as it does (lower case, letters and digits only).
 */
const UNSAFE_CLIENT_ENCODINGS: ReadonlySet<string> = new Set([
  'sjis',
  'shiftjis',
  'mskanji',
  'win932',
  'windows932',
  'shiftjis2004',
  'big5',
  'win950',
  'windows950',
  'gbk',
  'win936',
  'windows936',
  'cp936',
  'uhc',
  'win949',
  'windows949',
  'cp949',
  'gb18030',
  'johab',
]);

export function isUnsafeClientEncoding(value: string): boolean {
  return UNSAFE_CLIENT_ENCODINGS.has(value.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

const ON_WORDS = new Set(['on', 'true', 'yes', '1', 't', 'y']);

/**
 * Settings that change how PostgreSQL reads statement text, refused whatever the role: pgwarden judges the text as
 * PostgreSQL reads it with standard_conforming_strings on and a client encoding that keeps ASCII bytes ASCII.
 * Otherwise a backslash before a quote is part of one string to pgwarden and ends it for PostgreSQL.
 */
export function statementTextRisk(name: string, value: string | null, reset: boolean): string | null {
  if (
    name === 'standard_conforming_strings' &&
    !reset &&
    (value === null || !ON_WORDS.has(value.toLowerCase()))
  )
    return 'standard_conforming_strings must stay on';
  if (name === 'client_encoding' && !reset && (value === null || isUnsafeClientEncoding(value)))
    return `client_encoding ${value === null ? '(not a literal)' : value} is not allowed`;
  return null;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A rule on columns: which tables, which columns, and the config entry that says so. */
interface ColumnRule {
  readonly table: Globs;
  readonly column: Globs;
  readonly rule: string;
}

/** A masked column of a role, as a column rule with its mask. */
export interface MaskColumnRule extends ColumnRule {
  readonly key: string;
  readonly mask: MaskRule;
}

/** A column of a view that shows a masked column (`*`: every column of the view). */
export interface MaskedViewColumn {
  readonly relation: string;
  readonly column: string;
}

const NO_VIEWS: readonly MaskedViewColumn[] = [];
const ALL_COLUMNS = new Globs(['*']);
/**
 * Statements that may not read a masked column for a masked role: the value would be copied where it is not masked
 * (INSERT ... SELECT ssn, SELECT ssn INTO t, CREATE TABLE t AS ...), or DDL would evaluate it (a CHECK constraint or
 * an expression index on ssn fails, or not, on the real values: an oracle).
 */
const WRITE_KINDS: readonly StatementKind[] = ['insert', 'update', 'delete', 'merge', 'copy_in', 'ddl'];

/** Planner statistics hold column values (most common values, histograms). */
const STATISTICS_RELATIONS: ReadonlySet<string> = new Set([
  'pg_catalog.pg_stats',
  'pg_catalog.pg_statistic',
  'pg_catalog.pg_stats_ext',
  'pg_catalog.pg_stats_ext_exprs',
  'pg_catalog.pg_statistic_ext_data',
]);

/** A role's config, ready to be checked against on the hot path. */
export interface CompiledRole {
  readonly name: string;
  readonly admin: boolean;
  readonly databases: ReadonlySet<string> | null;
  readonly statements: ReadonlySet<StatementKind>;
  readonly tableAllow: Globs | null;
  readonly tableDeny: Globs | null;
  readonly columnDeny: readonly ColumnRule[];
  readonly masks: readonly MaskColumnRule[];
  readonly allowMaskedPredicates: boolean;
  /** subject_column as schema.table.column, or null. */
  readonly subjectColumn: string | null;
  readonly safeHarbor: boolean;
  readonly functionAllow: Globs | null;
  readonly functionDeny: Globs | null;
  readonly requireWhere: boolean;
  readonly maxRows: number | null;
  readonly idleTimeoutMs: number | null;
  readonly cidrs: CidrSet | null;
  /** Table or column rules: unqualified names must not be redirected, so search_path is pinned. */
  readonly restrictsNames: boolean;
}

export function compileRole(name: string, c: RoleConfig): CompiledRole {
  const columnDeny = (c.columns?.deny ?? []).map((pattern) => {
    const [schema, table, column] = pattern.split('.');
    return {
      table: new Globs([`${schema}.${table}`]),
      column: new Globs([column]),
      rule: `roles.${name}.columns.deny "${pattern}"`,
    };
  });
  return {
    name,
    admin: c.admin,
    databases: c.databases ? new Set(c.databases) : null,
    statements: new Set(c.statements ?? []),
    tableAllow: c.tables?.allow ? new Globs(c.tables.allow) : null,
    tableDeny: c.tables?.deny ? new Globs(c.tables.deny, true) : null,
    columnDeny,
    functionAllow: c.functions?.allow ? new Globs(c.functions.allow) : null,
    functionDeny: c.functions?.deny ? new Globs(c.functions.deny) : null,
    requireWhere: c.require_where,
    maxRows: c.max_rows ?? null,
    idleTimeoutMs: c.idle_timeout ?? null,
    cidrs: c.cidrs ? new CidrSet(c.cidrs) : null,
    masks: parseRoleMasks(name, c.masks, c.json_masks).map((m) => ({
      table: new Globs([`${m.schema}.${m.table}`]),
      column: new Globs([m.column]),
      rule: m.rule.source,
      key: `${m.schema}.${m.table}.${m.column}`,
      mask: m.rule,
    })),
    allowMaskedPredicates: c.allow_masked_predicates,
    subjectColumn: c.subject_column ?? null,
    safeHarbor: c.safe_harbor,
    restrictsNames:
      c.tables !== undefined ||
      columnDeny.length > 0 ||
      Object.keys(c.masks ?? {}).length > 0 ||
      Object.keys(c.json_masks ?? {}).length > 0,
  };
}

/** Why a statement is refused: a sentence for the client and the config rule that decided it. */
export interface Refusal {
  readonly reason: string;
  readonly rule: string;
}

const GUARDED = new Globs(GUARDED_FUNCTIONS);

/** The roles in force for a session (or for its current actor, or its break-glass window). */
export class RoleSet {
  readonly admin: boolean;
  readonly maxRows: number | null;
  readonly idleTimeoutMs: number | null;
  readonly names: readonly string[];
  /** Masked columns (`schema.table.column` → mask) of this role set. */
  readonly masks: ReadonlyMap<string, MaskRule>;
  /** Subject columns whose returned values are accounted for in the audit trail. */
  readonly subjectColumns: ReadonlySet<string>;
  /** Safe Harbor preset: unmasked text columns go through the content detectors too. */
  readonly safeHarbor: boolean;
  private readonly maskRules: readonly MaskColumnRule[];
  private readonly maskedPredicatesAllowed: boolean;

  constructor(
    readonly roles: readonly CompiledRole[],
    /** The pinned search_path: unqualified relation names are checked against each of its schemas. */
    private readonly searchPath: readonly string[],
  ) {
    this.names = roles.map((r) => r.name);
    // Masks combine like denials: a column masked by any role is masked, by the strictest mask among them.
    const masks = new Map<string, MaskColumnRule>();
    for (const role of roles) {
      for (const m of role.masks) {
        const seen = masks.get(m.key);
        masks.set(m.key, seen ? { ...m, mask: strictest(seen.mask, m.mask) } : m);
      }
    }
    this.maskRules = [...masks.values()];
    this.subjectColumns = new Set(roles.flatMap((r) => (r.subjectColumn ? [r.subjectColumn] : [])));
    this.safeHarbor = roles.some((r) => r.safeHarbor);
    this.masks = new Map([...masks].map(([key, m]) => [key, m.mask]));
    this.maskedPredicatesAllowed = roles.every((r) => r.masks.length === 0 || r.allowMaskedPredicates);
    this.admin = roles.some((r) => r.admin);
    this.maxRows = minOf(roles.map((r) => r.maxRows));
    this.idleTimeoutMs = minOf(roles.map((r) => r.idleTimeoutMs));
  }

  /** null when allowed; otherwise the first reason found. */
  /** `pinned`: the session's search_path is pinned (decided at login from every role it could take on). */
  check(
    facts: StatementFacts,
    pinned: boolean,
    maskedViews: readonly MaskedViewColumn[] = NO_VIEWS,
  ): Refusal | null {
    if (this.roles.length === 0) {
      return { reason: 'the session has no roles in force here', rule: 'users.*.roles' };
    }
    return (
      this.checkGuardrails(facts, pinned) ??
      this.checkDenials(facts) ??
      this.checkMasked(facts, maskedViews) ??
      this.checkGrants(facts)
    );
  }

  private checkGuardrails(f: StatementFacts, pinned: boolean): Refusal | null {
    const setting = f.setting;
    if (setting) {
      const risk = statementTextRisk(setting.name, setting.value, setting.reset);
      if (risk) return { reason: risk, rule: 'guardrail statement_text' };
    }
    // set_config() can change any setting, those above included, and takes effect before a pipelined statement
    // that pgwarden has already judged is parsed: refused for every role.
    if (f.functions.some((x) => x.name === 'set_config'))
      return { reason: 'set_config() is not allowed', rule: 'guardrail statement_text' };
    if (pinned && setting && (setting.name === 'search_path' || setting.name === 'all')) {
      return {
        reason: `${setting.reset ? 'RESET' : 'SET'} ${setting.name}: search_path is pinned for these roles`,
        rule: 'access.search_path',
      };
    }
    if (this.admin) return null;
    const g = f.guard;
    const guard = (what: string, name: string): Refusal => ({ reason: what, rule: `guardrail ${name}` });
    if (g.alterSystem) return guard('ALTER SYSTEM is not allowed', 'alter_system');
    if (g.truncate) return guard('TRUNCATE is not allowed', 'truncate');
    if (g.copyProgram) return guard('COPY to or from a program is not allowed', 'copy_program');
    if (g.copyFile) return guard('COPY to or from a server file is not allowed', 'copy_file');
    if (g.doBlock) return guard('DO blocks are not allowed', 'do');
    if (g.setRole) return guard('SET ROLE and SET SESSION AUTHORIZATION are not allowed', 'set_role');
    if (g.ddl) return guard('DDL is not allowed', 'ddl');
    if (this.roles.some((r) => r.requireWhere)) {
      if (g.updateWithoutWhere) return guard('UPDATE without WHERE is not allowed', 'require_where');
      if (g.deleteWithoutWhere) return guard('DELETE without WHERE is not allowed', 'require_where');
    }
    for (const fn of f.functions) {
      if (GUARDED.matches(fn.name))
        return guard(`function ${qualified(fn.schema, fn.name)}() is not allowed`, 'functions');
    }
    return null;
  }

  /** Explicit denials of any role hold whatever the other roles grant. */
  private checkDenials(f: StatementFacts): Refusal | null {
    for (const role of this.roles) {
      if (role.tableDeny) {
        for (const rel of f.relations) {
          if (rel.name === '*' && rel.schema !== null && role.tableDeny.touchesSchema(rel.schema))
            return {
              reason: `schema ${rel.schema} holds denied relations`,
              rule: `roles.${role.name}.tables.deny`,
            };
          const hit = this.candidates(rel).find((name) => role.tableDeny!.matches(name));
          if (hit) return { reason: `relation ${hit} is denied`, rule: `roles.${role.name}.tables.deny` };
        }
      }
      if (role.functionDeny) {
        for (const fn of f.functions) {
          if (
            role.functionDeny.matches(fn.name) ||
            (fn.schema && role.functionDeny.matches(`${fn.schema}.${fn.name}`))
          )
            return {
              reason: `function ${qualified(fn.schema, fn.name)}() is denied`,
              rule: `roles.${role.name}.functions.deny`,
            };
        }
      }
      if (role.columnDeny.length > 0) {
        const refusal = this.checkColumns(role, f);
        if (refusal) return refusal;
      }
    }
    return null;
  }

  /** Grants: some single role must allow every kind, relation and function of the statement. */
  private checkGrants(f: StatementFacts): Refusal | null {
    let first: Refusal | null = null;
    for (const role of this.roles) {
      const refusal = this.grantedBy(role, f);
      if (refusal === null) return null;
      first ??= refusal;
    }
    return first;
  }

  private grantedBy(role: CompiledRole, f: StatementFacts): Refusal | null {
    for (const kind of f.kinds) {
      if (!role.statements.has(kind))
        return { reason: `${kind} statements are not allowed`, rule: `roles.${role.name}.statements` };
    }
    if (role.tableAllow) {
      for (const rel of f.relations) {
        const outside = this.candidates(rel).find((name) => !role.tableAllow!.matches(name));
        if (outside)
          return { reason: `relation ${outside} is not allowed`, rule: `roles.${role.name}.tables.allow` };
      }
    }
    if (role.functionAllow) {
      for (const fn of f.functions) {
        if (
          !role.functionAllow.matches(fn.name) &&
          !(fn.schema && role.functionAllow.matches(`${fn.schema}.${fn.name}`))
        )
          return {
            reason: `function ${qualified(fn.schema, fn.name)}() is not allowed`,
            rule: `roles.${role.name}.functions.allow`,
          };
      }
    }
    return null;
  }

  /**
   * Columns that may not be referenced. Without the catalog a reference is resolved conservatively: a bare name
   * may belong to any relation of the statement, `*` and whole-row references take every column.
   */
  private checkColumns(role: CompiledRole, f: StatementFacts): Refusal | null {
    const hit = this.columnHit(f.columns, f.relations, role.columnDeny);
    if (!hit) return null;
    return hit.wholeRow
      ? { reason: `whole-row reference to ${hit.table} includes denied columns`, rule: hit.rule.rule }
      : { reason: `column ${hit.column} is denied`, rule: hit.rule.rule };
  }

  /**
   * The first reference among `refs` that may name a column matched by `rules`. Without the catalog a reference is
   * resolved conservatively: a bare name may belong to any relation of the statement, and `*` and whole-row
   * references take every column.
   */
  private columnHit<R extends ColumnRule, C extends ColumnRef>(
    refs: readonly C[],
    relations: readonly RelationRef[],
    rules: readonly R[],
  ): { rule: R; ref: C; table: string; column: string; wholeRow: boolean } | null {
    if (rules.length === 0) return null;
    for (const ref of refs) {
      for (const rel of relationsFor(ref, relations)) {
        for (const name of this.candidates(rel)) {
          for (const rule of rules) {
            if (!rule.table.matches(name)) continue;
            if (ref.name === '*' || rule.column.matches(ref.name))
              return { rule, ref, table: name, column: describeColumn(ref, name), wholeRow: false };
          }
        }
      }
      // A lone name that is a relation's alias or name is a whole-row reference: every column of it.
      if (ref.qualifier.length === 0) {
        for (const rel of relations) {
          if ((rel.alias ?? rel.name) !== ref.name) continue;
          for (const name of this.candidates(rel)) {
            const rule = rules.find((d) => d.table.matches(name));
            if (rule) return { rule, ref, table: name, column: `${name}.*`, wholeRow: true };
          }
        }
      }
    }
    return null;
  }

  /** Whether the statement may read a column this role set sees masked (its derived columns are then masked). */
  readsMasked(f: StatementFacts): boolean {
    return this.columnHit(f.columns, f.relations, this.maskRules) !== null;
  }

  /** The mask rules plus the masked view columns, compiled once per list (sessions keep their list while roles hold). */
  private withViewRules(maskedViews: readonly MaskedViewColumn[]): readonly ColumnRule[] {
    let rules = this.viewRules.get(maskedViews);
    if (!rules) {
      rules = [
        ...this.maskRules,
        ...maskedViews.map((v) => ({
          table: new Globs([v.relation]),
          column: v.column === '*' ? ALL_COLUMNS : new Globs([v.column]),
          rule: 'masked view column',
        })),
      ];
      this.viewRules.set(maskedViews, rules);
    }
    return rules;
  }
  private readonly viewRules = new WeakMap<readonly MaskedViewColumn[], readonly ColumnRule[]>();

  /**
   * Masked sessions: what would expose a masked value outside the masked result columns — the masked column in a
   * predicate or comparison (`WHERE ssn LIKE '123%'` reveals it digit by digit, `INTERSECT SELECT '...'` answers a
   * guess) or in a computation that may raise an error (`1/(length(ssn)-11)` answers one by failing), planner
   * statistics, EXPLAIN output, and COPY TO (whose rows are not masked by this version).
   */
  private checkMasked(f: StatementFacts, maskedViews: readonly MaskedViewColumn[]): Refusal | null {
    if (this.maskRules.length === 0) return null;
    // View columns that show a masked column count as masked (every column of a view not resolved column by
    // column).
    const rules = maskedViews.length === 0 ? this.maskRules : this.withViewRules(maskedViews);
    // Values that leave outside result rows: a notification's payload.
    if (
      (f.command === 'NotifyStmt' || f.functions.some((fn) => fn.name === 'pg_notify')) &&
      this.columnHit(f.expressionColumns, f.relations, rules)
    )
      return { reason: 'a notification may not carry masked columns', rule: 'roles.*.masks' };
    if (WRITE_KINDS.some((k) => f.kinds.includes(k)) && this.columnHit(f.columns, f.relations, rules))
      return {
        reason:
          'a statement that writes may not read masked columns (the value would be copied where it is not masked)',
        rule: 'roles.*.masks',
      };
    if (!this.maskedPredicatesAllowed) {
      const compared = this.columnHit(f.predicateColumns, f.relations, rules);
      if (compared)
        return {
          reason: `masked column ${compared.column} may not be used in ${compared.ref.use}: which rows come back, in what order, or what a comparison returns would answer guesses about its value`,
          rule: 'roles.*.allow_masked_predicates',
        };
      const failable = this.columnHit(f.failableColumns, f.relations, rules);
      if (failable)
        return {
          reason: `masked column ${failable.column} may not flow into ${failable.ref.construct}: only constructs that accept every value without an error (returning it, ||, casts to text, lower, length, concat, format, row_to_json, json_build_object, count, array_agg, string_agg, ...) may compute with it, since whether the statement fails would answer guesses about its value`,
          rule: 'roles.*.allow_masked_predicates',
        };
    }
    if (f.command === 'ExplainStmt')
      return {
        reason: 'EXPLAIN is not allowed for roles with masks (plans show values)',
        rule: 'roles.*.masks',
      };
    if (f.kinds.includes('copy_out')) {
      // Rows of COPY TO are masked as text or CSV with the default delimiters; other forms cannot be read here.
      const c = f.copyOut;
      if (c === null || c.format === 'binary' || c.otherOptions)
        return {
          reason: 'COPY TO is allowed for roles with masks only in text or CSV format with default options',
          rule: 'roles.*.masks',
        };
    }
    for (const rel of f.relations) {
      const stats = this.candidates(rel).find((name) => STATISTICS_RELATIONS.has(name));
      if (stats)
        return {
          reason: `${stats} is not allowed for roles with masks (statistics hold values)`,
          rule: 'roles.*.masks',
        };
    }
    return null;
  }

  /**
   * The schema-qualified names an unqualified relation may resolve to. PostgreSQL searches pg_catalog first (only
   * system relations live there, and they are all named pg_*), then the pinned search_path; the name must pass the
   * rules under every schema it could land in.
   */
  private candidates(rel: RelationRef): string[] {
    if (rel.schema !== null) return [`${rel.schema}.${rel.name}`];
    const names = this.searchPath.map((s) => `${s}.${rel.name}`);
    if (rel.name.startsWith('pg_')) names.unshift(`pg_catalog.${rel.name}`);
    return names;
  }
}

/** The relations a column reference may belong to. */
function relationsFor(ref: ColumnRef, relations: readonly RelationRef[]): RelationRef[] {
  const q = ref.qualifier;
  if (q.length === 0) return [...relations];
  const relName = q[q.length - 1];
  const schema = q.length >= 2 ? q[q.length - 2] : null;
  return relations.filter((r) => {
    if (schema !== null) return r.name === relName && (r.schema === null || r.schema === schema);
    return r.alias !== null ? r.alias === relName : r.name === relName;
  });
}

function describeColumn(ref: ColumnRef, table: string): string {
  return ref.name === '*' ? `${table}.*` : `${table}.${ref.name}`;
}

function qualified(schema: string | null, name: string): string {
  return schema ? `${schema}.${name}` : name;
}

function minOf(values: ReadonlyArray<number | null>): number | null {
  let min: number | null = null;
  for (const v of values) if (v !== null && (min === null || v < min)) min = v;
  return min;
}
