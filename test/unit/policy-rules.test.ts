// The rules on their own, against facts written by hand: how roles combine, how unqualified names are judged,
// which guardrails bind whom. The parser's side is covered by policy-analyze.test.ts, the wire by guardrails.test.ts.
import { describe, expect, it } from 'vitest';
import type { RoleConfig } from '../../src/config/schema.js';
import type { GuardFlags, StatementFacts, StatementKind } from '../../src/policy/facts.js';
import { compileRole, Globs, RoleSet } from '../../src/policy/rules.js';

const NO_GUARD: GuardFlags = {
  ddl: false,
  truncate: false,
  alterSystem: false,
  copyFile: false,
  copyProgram: false,
  doBlock: false,
  setRole: false,
  updateWithoutWhere: false,
  deleteWithoutWhere: false,
};

function facts(over: Partial<StatementFacts> & { kind?: StatementKind }): StatementFacts {
  const kind = over.kind ?? 'select';
  return {
    kind,
    kinds: over.kinds ?? [kind],
    command: 'SelectStmt',
    relations: [],
    columns: [],
    predicateColumns: [],
    expressionColumns: [],
    failableColumns: [],
    functions: [],
    guard: NO_GUARD,
    setting: null,
    copyOut: null,
    outputs: null,
    location: 0,
    length: 0,
    ...over,
  };
}

const rel = (name: string, schema: string | null = null, alias: string | null = null) => ({
  schema,
  name,
  alias,
  target: false,
});

function role(name: string, c: Partial<RoleConfig>) {
  return compileRole(name, {
    admin: false,
    require_where: true,
    allow_masked_predicates: false,
    safe_harbor: false,
    ...c,
  } as RoleConfig);
}

const clinician = role('clinician', {
  statements: ['select', 'insert', 'update', 'transaction'],
  tables: { allow: ['public.*'], deny: ['public.audit_*'] },
  columns: { deny: ['public.patients.ssn'] },
  functions: { deny: ['purge_*'] },
  max_rows: 100,
  idle_timeout: 60_000,
});
const analyst = role('analyst', {
  statements: ['select', 'delete'],
  tables: { allow: ['reports.*'] },
  max_rows: 10,
});
const admin = role('ops', {
  admin: true,
  statements: ['select', 'ddl', 'delete'],
  tables: { deny: ['vault.*'] },
});

describe('Globs', () => {
  it('matches exact names and * patterns, case-sensitively and anchored', () => {
    const g = new Globs(['public.*', 'app.user_?', 'x.a*b']);
    expect(g.matches('public.patients')).toBe(true);
    expect(g.matches('Public.patients')).toBe(false);
    expect(g.matches('app.user_?')).toBe(true);
    expect(g.matches('app.user_1')).toBe(false); // ? is not a wildcard
    expect(g.matches('x.ab')).toBe(true);
    expect(g.matches('x.a-long-b')).toBe(true);
    expect(g.matches('y.x.ab')).toBe(false);
  });
});

describe('RoleSet.check', () => {
  const only = (r = clinician) => new RoleSet([r], ['public']);

  it('refuses everything when no role is in force', () => {
    expect(new RoleSet([], ['public']).check(facts({}), false)?.rule).toBe('users.*.roles');
  });

  it('allows granted kinds on allowed relations, refuses other kinds naming the rule', () => {
    expect(only().check(facts({ relations: [rel('patients')] }), true)).toBeNull();
    const r = only().check(facts({ kind: 'delete', relations: [rel('patients')] }), true);
    expect(r).toEqual({ reason: 'delete statements are not allowed', rule: 'roles.clinician.statements' });
  });

  it('needs every kind of a statement granted (a DELETE inside a CTE)', () => {
    const r = only().check(facts({ kinds: ['select', 'delete'], relations: [rel('patients')] }), true);
    expect(r?.rule).toBe('roles.clinician.statements');
  });

  it('judges unqualified names under every pinned schema, and pg_* names under pg_catalog too', () => {
    expect(only().check(facts({ relations: [rel('visits')] }), true)).toBeNull();
    const two = new RoleSet([clinician], ['public', 'other']);
    expect(two.check(facts({ relations: [rel('visits')] }), true)?.reason).toBe(
      'relation other.visits is not allowed',
    );
    expect(only().check(facts({ relations: [rel('pg_authid')] }), true)?.reason).toBe(
      'relation pg_catalog.pg_authid is not allowed',
    );
    expect(only().check(facts({ relations: [rel('keys', 'vault')] }), true)?.rule).toBe(
      'roles.clinician.tables.allow',
    );
  });

  it('applies table denials whatever another role grants', () => {
    expect(only().check(facts({ relations: [rel('audit_log')] }), true)?.rule).toBe(
      'roles.clinician.tables.deny',
    );
    const both = new RoleSet([clinician, role('wide', { statements: ['select'] })], ['public']);
    expect(both.check(facts({ relations: [rel('audit_log')] }), true)?.rule).toBe(
      'roles.clinician.tables.deny',
    );
    expect(both.check(facts({ relations: [rel('keys', 'vault')] }), true)).toBeNull(); // wide grants any table
  });

  it('does not mix grants across roles: one role must grant the kind and the relation together', () => {
    const both = new RoleSet([clinician, analyst], ['public']);
    // analyst may delete, but only in reports; clinician may touch public, but not delete.
    expect(both.check(facts({ kind: 'delete', relations: [rel('patients')] }), true)).not.toBeNull();
    expect(both.check(facts({ kind: 'delete', relations: [rel('daily', 'reports')] }), true)).toBeNull();
    expect(both.maxRows).toBe(10);
    expect(both.idleTimeoutMs).toBe(60_000);
  });

  it('refuses denied columns by name, by qualified name, by star and by whole-row reference', () => {
    const patients = [rel('patients', null, 'p')];
    const check = (columns: StatementFacts['columns'], relations = patients) =>
      only().check(facts({ relations, columns }), true);
    expect(check([{ qualifier: [], name: 'ssn' }])?.rule).toBe(
      'roles.clinician.columns.deny "public.patients.ssn"',
    );
    expect(check([{ qualifier: ['p'], name: 'ssn' }])).not.toBeNull();
    expect(check([{ qualifier: ['public', 'patients'], name: 'ssn' }])).not.toBeNull();
    expect(check([{ qualifier: [], name: '*' }])).not.toBeNull();
    expect(check([{ qualifier: ['p'], name: '*' }])).not.toBeNull();
    expect(check([{ qualifier: [], name: 'p' }])?.reason).toMatch(/whole-row reference/);
    expect(check([{ qualifier: ['p'], name: 'name' }])).toBeNull();
    // ssn of another table is not the denied column
    expect(check([{ qualifier: ['v'], name: 'ssn' }], [rel('visits', null, 'v')])).toBeNull();
    expect(check([{ qualifier: [], name: 'ssn' }], [rel('visits')])).toBeNull();
  });

  it('applies the guardrails to non-admin role sets only, and require_where unless every role waives it', () => {
    const guarded = (g: Partial<GuardFlags>) => facts({ guard: { ...NO_GUARD, ...g } });
    expect(only().check(guarded({ ddl: true }), true)?.rule).toBe('guardrail ddl');
    expect(only().check(guarded({ truncate: true }), true)?.rule).toBe('guardrail truncate');
    expect(only().check(guarded({ copyProgram: true }), true)?.rule).toBe('guardrail copy_program');
    expect(only().check(guarded({ setRole: true }), true)?.rule).toBe('guardrail set_role');
    expect(only().check(guarded({ deleteWithoutWhere: true }), true)?.rule).toBe('guardrail require_where');
    const lax = role('lax', { statements: ['delete'], require_where: false });
    const unbounded = facts({ kind: 'delete', guard: { ...NO_GUARD, deleteWithoutWhere: true } });
    expect(new RoleSet([lax], ['public']).check(unbounded, false)).toBeNull();
    expect(
      new RoleSet([lax, role('strict', { statements: ['delete'] })], ['public']).check(unbounded, false)
        ?.rule,
    ).toBe('guardrail require_where');
    const adminSet = new RoleSet([admin], ['public']);
    expect(adminSet.check(facts({ kind: 'ddl', guard: { ...NO_GUARD, ddl: true } }), false)).toBeNull();
    // an admin role lifts guardrails, never another role's explicit denial
    expect(adminSet.check(facts({ relations: [rel('keys', 'vault')] }), false)?.rule).toBe(
      'roles.ops.tables.deny',
    );
  });

  it('refuses guarded functions (by bare name, qualified or not) and role-denied functions', () => {
    const fn = (name: string, schema: string | null = null) => facts({ functions: [{ schema, name }] });
    expect(only().check(fn('pg_read_file'), true)?.rule).toBe('guardrail functions');
    expect(only().check(fn('pg_read_file', 'pg_catalog'), true)?.rule).toBe('guardrail functions');
    expect(only().check(fn('dblink_exec'), true)?.rule).toBe('guardrail functions');
    expect(only().check(fn('purge_patients', 'public'), true)?.rule).toBe('roles.clinician.functions.deny');
    expect(only().check(fn('lower'), true)).toBeNull();
    const allowList = role('narrow', {
      statements: ['select'],
      functions: { allow: ['lower', 'pg_catalog.*'] },
    });
    const narrow = new RoleSet([allowList], ['public']);
    expect(narrow.check(fn('upper'), false)?.rule).toBe('roles.narrow.functions.allow');
    expect(narrow.check(fn('upper', 'pg_catalog'), false)).toBeNull();
  });

  it('keeps search_path pinned: SET, RESET ALL and set_config are refused in a pinned session', () => {
    const set = (name: string, reset = false) =>
      facts({ kind: 'set', setting: { name, value: 'x', local: false, reset } });
    const withSet = role('s', { statements: ['set'], admin: true });
    const rs = new RoleSet([withSet], ['public']);
    expect(rs.check(set('search_path'), true)?.rule).toBe('access.search_path');
    expect(rs.check(set('all', true), true)?.rule).toBe('access.search_path');
    expect(rs.check(set('search_path'), false)).toBeNull();
    expect(rs.check(set('statement_timeout'), true)).toBeNull();
    expect(
      rs.check(facts({ kind: 'set', functions: [{ schema: null, name: 'set_config' }] }), false)?.rule,
    ).toBe('guardrail statement_text');
  });

  it('keeps statement text read one way: standard_conforming_strings on, no client-only multibyte encodings', () => {
    const rs = new RoleSet([role('s', { statements: ['set'], admin: true })], ['public']);
    const set = (name: string, value: string | null, reset = false) =>
      rs.check(facts({ kind: 'set', setting: { name, value, local: false, reset } }), false);
    expect(set('standard_conforming_strings', 'off')?.rule).toBe('guardrail statement_text');
    expect(set('standard_conforming_strings', 'on')).toBeNull();
    expect(set('client_encoding', 'SJIS')?.rule).toBe('guardrail statement_text');
    expect(set('client_encoding', 'Shift_JIS')?.rule).toBe('guardrail statement_text');
    expect(set('client_encoding', 'win950')?.rule).toBe('guardrail statement_text');
    expect(set('client_encoding', 'UTF8')).toBeNull();
    expect(set('client_encoding', 'LATIN1')).toBeNull();
    expect(set('client_encoding', null, true)).toBeNull();
  });
});

describe('RoleSet with masks', () => {
  const masked = role('analyst', {
    statements: ['select', 'copy_out', 'utility'],
    masks: { 'public.patients.ssn': 'partial_last4', 'public.patients.name': 'redact' },
  });
  const rs = new RoleSet([masked], ['public']);
  const patients = [rel('patients', null, 'p')];

  it('combines masks of several roles, strictest first', () => {
    const other = role('other', { statements: ['select'], masks: { 'public.patients.ssn': 'null' } });
    const both = new RoleSet([masked, other], ['public']);
    expect(both.masks.get('public.patients.ssn')?.fn).toBe('null');
    expect(both.masks.get('public.patients.name')?.fn).toBe('redact');
  });

  it('knows when a statement reads a masked column (its expressions are then masked)', () => {
    expect(rs.readsMasked(facts({ relations: patients, columns: [{ qualifier: [], name: 'ssn' }] }))).toBe(
      true,
    );
    expect(rs.readsMasked(facts({ relations: patients, columns: [{ qualifier: ['p'], name: '*' }] }))).toBe(
      true,
    );
    expect(rs.readsMasked(facts({ relations: patients, columns: [{ qualifier: [], name: 'p' }] }))).toBe(
      true,
    );
    expect(rs.readsMasked(facts({ relations: patients, columns: [{ qualifier: [], name: 'id' }] }))).toBe(
      false,
    );
  });

  it('refuses a masked column in a predicate unless every masking role allows it', () => {
    const where = facts({
      relations: patients,
      columns: [{ qualifier: [], name: 'ssn' }],
      predicateColumns: [{ qualifier: [], name: 'ssn', use: 'WHERE' }],
    });
    expect(rs.check(where, true)?.rule).toBe('roles.*.allow_masked_predicates');
    const lax = role('lax', {
      ...{ statements: ['select'] },
      allow_masked_predicates: true,
      masks: { 'public.patients.ssn': 'redact' },
    });
    expect(new RoleSet([lax], ['public']).check(where, true)).toBeNull();
    const byId = facts({
      relations: patients,
      predicateColumns: [{ qualifier: [], name: 'id', use: 'WHERE' }],
    });
    expect(rs.check(byId, true)).toBeNull();
  });

  it('names the masked column and the clause or construct that compares it', () => {
    const intersect = facts({
      relations: patients,
      columns: [{ qualifier: ['p'], name: 'ssn' }],
      predicateColumns: [{ qualifier: ['p'], name: 'ssn', use: 'INTERSECT' }],
    });
    expect(rs.check(intersect, true)?.reason).toMatch(
      /^masked column public\.patients\.ssn may not be used in INTERSECT: /,
    );
  });

  it('refuses a masked column flowing into a construct that may fail, unless every masking role allows it', () => {
    const divided = facts({
      relations: patients,
      columns: [{ qualifier: [], name: 'ssn' }],
      failableColumns: [{ qualifier: [], name: 'ssn', construct: 'the operator /' }],
    });
    const refusal = rs.check(divided, true);
    expect(refusal?.rule).toBe('roles.*.allow_masked_predicates');
    expect(refusal?.reason).toMatch(
      /^masked column public\.patients\.ssn may not flow into the operator \/: /,
    );
    // A whole-row reference computed with carries every masked column of the row.
    const row = facts({
      relations: patients,
      failableColumns: [{ qualifier: [], name: 'p', construct: 'a cast to int4' }],
    });
    expect(rs.check(row, true)?.reason).toMatch(
      /^masked column public\.patients\.\* may not flow into a cast to int4/,
    );
    const lax = role('lax', {
      statements: ['select'],
      allow_masked_predicates: true,
      masks: { 'public.patients.ssn': 'redact' },
    });
    expect(new RoleSet([lax], ['public']).check(divided, true)).toBeNull();
    const unmasked = facts({
      relations: patients,
      failableColumns: [{ qualifier: ['p'], name: 'id', construct: 'the operator /' }],
    });
    expect(rs.check(unmasked, true)).toBeNull();
  });

  it('refuses writes and DDL that read a masked column: they would copy or evaluate the real value', () => {
    const writer = new RoleSet(
      [
        role('writer', {
          statements: ['select', 'insert', 'ddl'],
          masks: { 'public.patients.ssn': 'redact' },
        }),
      ],
      ['public'],
    );
    const ssn = [{ qualifier: [], name: 'ssn' }];
    const selectInto = facts({ kind: 'ddl', kinds: ['ddl', 'select'], relations: patients, columns: ssn });
    expect(writer.check(selectInto, true)?.reason).toMatch(/may not read masked columns/);
    const checkConstraint = facts({ kind: 'ddl', relations: patients, columns: ssn });
    expect(writer.check(checkConstraint, true)?.reason).toMatch(/may not read masked columns/);
    const insertSelect = facts({
      kind: 'insert',
      kinds: ['insert', 'select'],
      relations: patients,
      columns: ssn,
    });
    expect(writer.check(insertSelect, true)?.reason).toMatch(/may not read masked columns/);
    // DDL that reads no masked column is the role's to run.
    expect(writer.check(facts({ kind: 'ddl', relations: [rel('notes')] }), true)).toBeNull();
  });

  it('refuses EXPLAIN, COPY TO and planner statistics to masked roles', () => {
    expect(rs.check(facts({ kind: 'utility', command: 'ExplainStmt' }), true)?.reason).toMatch(/EXPLAIN/);
    expect(rs.check(facts({ kind: 'copy_out', relations: patients }), true)?.reason).toMatch(/COPY TO/);
    expect(rs.check(facts({ relations: [rel('pg_stats')] }), true)?.reason).toMatch(/pg_catalog.pg_stats/);
  });
});
