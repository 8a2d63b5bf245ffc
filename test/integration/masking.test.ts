// PHI masking end to end: a bypass corpus sent by a masked role (`analyst`) through pgwarden to the harness
// PostgreSQL, over every way a driver talks (simple and extended protocol, named statements executed many times,
// binary results, postgres.js, cursors, RETURNING) and every trick SQL offers (aliases, casts, string functions,
// row and JSON constructors, aggregates, CTEs, subqueries, set operations, views, SQL functions, predicates,
// EXPLAIN, COPY, statistics, errors, notices, notifications, settings). Each attempt must leave no real value of a
// masked column anywhere the client can see it: every returned value, every error and notice field, every
// notification and parameter report. Inference is refused too: comparisons without a comparison operator (set
// operations other than UNION ALL, DISTINCT, comparing functions, min/max) and value-dependent errors (`ssn::int`,
// `1/(length(ssn)-11)`), which would answer a guess by which rows come back or whether the statement fails; the
// forms that cannot (returning a column, `||`, text casts, lower, row_to_json, count, ...) still run. The same
// statements under an unmasked role (`doctor`) return the real values, and the simple cases return exactly the
// configured masked forms.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateScramVerifier } from '../../src/auth/scram-verifier.js';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { directClient, metric, startProxy } from './support.js';
import {
  connectTls,
  dataRowValues,
  errorFields,
  frontend,
  rowDescriptionTypes,
  scramLogin,
  verifiedTls,
} from './wire.js';

// ---- who -------------------------------------------------------------------------------------------------------

/** pgwarden client identities of this file (not PostgreSQL roles); passwords are test fixtures. */
const PASSWORDS = {
  analyst: 'mk-analyst-pw',
  doctor: 'mk-doctor-pw',
  harbor: 'mk-harbor-pw',
} as const;

type MaskUser = keyof typeof PASSWORDS;

/**
 * Both roles may write too (insert, update), so that RETURNING and the error leaks of writes can be attempted; every
 * write of the corpus runs inside a transaction it rolls back. copy_out is granted so that a COPY refusal comes
 * from the masking rule, not from the missing statement kind.
 */
const STATEMENTS = ['select', 'insert', 'update', 'transaction', 'set', 'utility', 'copy_out'];
const TABLES = { allow: ['public.mk_*', 'pg_catalog.pg_type'] };

const ANALYST_MASKS = {
  'public.mk_patients.ssn': 'partial_last4',
  'public.mk_patients.name': 'redact',
  'public.mk_patients.dob': 'year_only',
  'public.mk_patients.zip': 'zip3',
  'public.mk_patients.email': 'email',
  'public.mk_patients.phone': 'hash',
  'public.mk_patients.diagnosis': "fixed('[hidden]')",
  // Typed columns: masked values of their own type, in text and in binary.
  'public.mk_encounters.admitted': 'year_only',
  'public.mk_encounters.admitted_tz': 'month_year',
  'public.mk_encounters.discharged': 'month_year',
  'public.mk_encounters.mrn': 'hash',
  'public.mk_encounters.account': 'redact',
  'public.mk_encounters.visit_id': 'hash',
  'public.mk_encounters.scan': 'hash',
  'public.mk_encounters.vitals': 'redact',
  'public.mk_encounters.weight': "fixed('0')",
  'public.mk_encounters.consented': "fixed('false')",
  'public.mk_encounters.zip_code': 'zip3',
  'public.mk_encounters.charge': 'hash',
};

const ROLES = {
  analyst: {
    statements: STATEMENTS,
    tables: TABLES,
    masks: ANALYST_MASKS,
    json_masks: {
      'public.mk_resources.body': { '$.identifier[*].value': 'partial_last4', '$.name[*].family': 'redact' },
    },
  },
  doctor: { statements: STATEMENTS, tables: TABLES },
};

/** The HMAC key of the hash mask: fixed, so the expected tokens can be computed here. */
const HASH_KEY = 'mk-test-hash-key-0123456789abcdef-0123456789abcdef';

// ---- the database ----------------------------------------------------------------------------------------------

interface Patient {
  readonly id: number;
  readonly name: string;
  readonly ssn: string;
  readonly dob: string;
  readonly zip: string;
  readonly email: string;
  readonly phone: string;
  readonly diagnosis: string;
}

/** Synthetic patients; no dob falls on January 1st (year_only would then equal the real date). */
const PATIENTS: readonly Patient[] = [
  {
    id: 1,
    name: 'Margaret Holloway',
    ssn: '123-45-6789',
    dob: '1980-03-14',
    zip: '02139',
    email: 'margaret.holloway@example.org',
    phone: '617-555-0142',
    diagnosis: 'Type 2 diabetes mellitus',
  },
  {
    id: 2,
    name: 'Desmond Okafor',
    ssn: '234-56-7890',
    dob: '1975-11-02',
    zip: '60614',
    email: 'dokafor@mailhost.net',
    phone: '312-555-0199',
    diagnosis: 'Essential hypertension',
  },
  {
    id: 3,
    name: 'Priya Raman',
    ssn: '345-67-8901',
    dob: '1992-07-21',
    zip: '94110',
    email: 'priya.raman@clinicmail.com',
    phone: '415-555-0123',
    diagnosis: 'Major depressive disorder',
  },
  {
    id: 4,
    name: 'Tomasz Wierzbicki',
    ssn: '456-78-9012',
    dob: '1968-06-30',
    zip: '73301',
    email: 'tomasz.w@postbox.io',
    phone: '512-555-0177',
    diagnosis: 'Chronic kidney disease stage 3',
  },
  {
    id: 5,
    name: 'Aiko Tanaka',
    ssn: '567-89-0123',
    dob: '2001-12-05',
    zip: '98101',
    email: 'aiko.tanaka@example.com',
    phone: '206-555-0164',
    diagnosis: 'Asthma, moderate persistent',
  },
];

const FIRST = PATIENTS[0];

/**
 * Encounters: one column of each typed kind, masked for analyst (ANALYST_MASKS). Values as PostgreSQL prints them
 * (DateStyle ISO, bytea hex), so hash tokens can be computed here from the text. Patient 1's SSN sits in a jsonb
 * document, so the leak check has something to find.
 */
const ENCOUNTERS = [
  {
    id: 1,
    admitted: '2019-08-14 09:30:00',
    admitted_tz: '2019-08-14 09:30:00+02',
    discharged: '2019-08-17',
    mrn: '880012345678',
    account: '55012345',
    visit_id: 'c3a1f5e2-7b4d-4e8a-9f10-2b3c4d5e6f70',
    scan: '\\xdeadbeef01',
    vitals: `{"bp": "120/80", "ssn": "${FIRST.ssn}"}`,
    weight: '72.5',
    consented: 't',
    zip_code: '2139',
    charge: '1234.50',
  },
  {
    // before 2000, and a timestamptz whose UTC month is another year than its local one
    id: 2,
    admitted: '1969-12-31 23:59:59.5',
    admitted_tz: '1970-01-01 00:30:00+01',
    discharged: 'infinity',
    mrn: '-42',
    account: '-7',
    visit_id: '00000000-0000-0000-0000-000000000001',
    scan: '\\x',
    vitals: '[]',
    weight: '-0.5',
    consented: 't',
    zip_code: '60614',
    charge: '-0.001',
  },
  {
    // BC, and the extremes of the types
    id: 3,
    admitted: '0044-03-15 10:00:00 BC',
    admitted_tz: '2000-02-29 12:00:00+00',
    discharged: '0044-03-15 BC',
    mrn: '9223372036854775807',
    account: '2147483647',
    visit_id: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    scan: '\\x00ff',
    vitals: '{"weight": 72}',
    weight: '1e+300',
    consented: 't',
    zip_code: '0',
    charge: 'NaN',
  },
] as const;

type EncounterColumn = Exclude<keyof (typeof ENCOUNTERS)[number], 'id'>;

/** Each typed column's SQL type and the function that writes its binary form (PostgreSQL's own reference). */
const ENCOUNTER_TYPES: Readonly<Record<EncounterColumn, { type: string; send: string }>> = {
  admitted: { type: 'timestamp', send: 'timestamp_send' },
  admitted_tz: { type: 'timestamptz', send: 'timestamptz_send' },
  discharged: { type: 'date', send: 'date_send' },
  mrn: { type: 'int8', send: 'int8send' },
  account: { type: 'int4', send: 'int4send' },
  visit_id: { type: 'uuid', send: 'uuid_send' },
  scan: { type: 'bytea', send: 'byteasend' },
  vitals: { type: 'jsonb', send: 'jsonb_send' },
  weight: { type: 'float8', send: 'float8send' },
  consented: { type: 'bool', send: 'boolsend' },
  zip_code: { type: 'int4', send: 'int4send' },
  charge: { type: 'numeric', send: 'numeric_send' },
};
const ENCOUNTER_COLUMNS = Object.keys(ENCOUNTER_TYPES) as EncounterColumn[];

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Everything this file creates, all named mk_*; dropped first too, in case an earlier run was cut short. */
const FIXTURE_DROP = `
  drop view if exists public.mk_patient_union;
  drop view if exists public.mk_patient_view_2;
  drop view if exists public.mk_patient_view;
  drop function if exists public.mk_ssn_of(int);
  drop function if exists public.mk_note(int, text);
  drop table if exists public.mk_encounters, public.mk_visits, public.mk_patients, public.mk_resources;
`;

const FIXTURE_CREATE = `
  create table public.mk_patients (
    id int primary key, name text, ssn text unique, dob date, zip text, email text, phone text, diagnosis text
  );
  create table public.mk_visits (id int primary key, patient_id int references public.mk_patients, note text);
  create table public.mk_resources (id int primary key, body jsonb);
  insert into public.mk_resources values (1, '{"resourceType": "Patient", "identifier": [{"system": "urn:ssn",
    "value": "123-45-6789"}], "name": [{"family": "Holloway", "given": ["Margaret"]}], "gender": "female"}');
  create view public.mk_patient_view as select * from public.mk_patients;
  create view public.mk_patient_view_2 as select id, name, ssn from public.mk_patient_view;
  create view public.mk_patient_union as select id, ssn, 'current'::text as src from public.mk_patients
    union all select id + 1000, ssn, 'archived' from public.mk_patients;
  create function public.mk_ssn_of(int) returns text language sql stable as
    $$ select ssn from public.mk_patients where id = $1 $$;
  -- Raises a notice carrying the patient's SSN in the message, or in DETAIL and HINT only.
  create function public.mk_note(pid int, place text) returns int language plpgsql as $$
    declare s text;
    begin
      select ssn into s from public.mk_patients where id = pid;
      if place = 'message' then
        raise notice 'patient ssn %', s;
      elsif place = 'detail' then
        raise notice 'patient found' using detail = 'ssn ' || s, hint = 'ssn ' || s;
      elsif place = 'error' then
        raise exception 'no such patient' using detail = 'ssn ' || s, hint = 'ssn ' || s;
      end if;
      return pid;
    end
  $$;
  insert into public.mk_patients values
    ${PATIENTS.map(
      (p) =>
        `(${p.id}, ${[p.name, p.ssn, p.dob, p.zip, p.email, p.phone, p.diagnosis].map(literal).join(', ')})`,
    ).join(',\n    ')};
  insert into public.mk_visits values
    (1, 1, 'follow-up'), (2, 1, 'lab review'), (3, 2, 'annual'), (4, 3, 'referral'), (5, 5, 'vaccination');
  create table public.mk_encounters (id int primary key,
    ${ENCOUNTER_COLUMNS.map((c) => `${c} ${ENCOUNTER_TYPES[c].type}`).join(', ')});
  insert into public.mk_encounters values
    ${ENCOUNTERS.map((e) => `(${e.id}, ${ENCOUNTER_COLUMNS.map((c) => literal(e[c])).join(', ')})`).join(',\n    ')};
`;

// ---- what must not leak ----------------------------------------------------------------------------------------

type Field = 'name' | 'ssn' | 'dob' | 'zip' | 'email' | 'phone' | 'diagnosis';

interface Secret {
  readonly patient: number;
  readonly field: Field;
  readonly value: string;
  /** Searched for in each value the client received, folded to lower case. */
  readonly forms: readonly string[];
  /** Digit identifiers: also searched for in each received value with everything but digits removed. */
  readonly digits: string | null;
}

/** The dob as DateStyle could print it (ISO, SQL, German, Postgres), so a changed DateStyle does not hide it. */
function dateForms(iso: string): string[] {
  const [y, m, d] = iso.split('-');
  return [iso, `${m}/${d}/${y}`, `${d}/${m}/${y}`, `${d}.${m}.${y}`];
}

const SECRETS: readonly Secret[] = PATIENTS.flatMap((p) =>
  (['name', 'ssn', 'dob', 'zip', 'email', 'phone', 'diagnosis'] as const).map((field) => {
    const value = p[field];
    const forms = field === 'dob' ? dateForms(value) : [value];
    const digits = field === 'ssn' || field === 'phone' ? value.replace(/\D/g, '') : null;
    return { patient: p.id, field, value, forms: forms.map((f) => f.toLowerCase()), digits };
  }),
);

/** Every text a value can show: strings, numbers, dates (both calendars), buffers (as text), nested values. */
function texts(value: unknown, out: string[] = [], seen = new Set<object>()): string[] {
  if (value === null || value === undefined) return out;
  if (typeof value === 'string') out.push(value);
  else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    out.push(String(value));
  else if (value instanceof Date) {
    if (!Number.isNaN(value.getTime())) {
      out.push(value.toISOString());
      const local = [value.getFullYear(), value.getMonth() + 1, value.getDate()];
      out.push(local.map((n, i) => String(n).padStart(i === 0 ? 4 : 2, '0')).join('-'));
    }
  } else if (Buffer.isBuffer(value)) out.push(value.toString('latin1'));
  else if (typeof value === 'object') {
    if (seen.has(value)) return out;
    seen.add(value);
    if (value instanceof Error) {
      out.push(value.message);
      if (value.stack) out.push(value.stack);
    }
    for (const key of Object.getOwnPropertyNames(value)) {
      texts((value as Record<string, unknown>)[key], out, seen);
    }
  }
  return out;
}

/** The real values found in what the client received, as `field of patient N in "text"`. */
function leaks(received: unknown): string[] {
  const found: string[] = [];
  for (const text of texts(received)) {
    const folded = text.toLowerCase();
    const digits = text.replace(/\D/g, '');
    for (const s of SECRETS) {
      const hit = s.forms.some((f) => folded.includes(f)) || (s.digits !== null && digits.includes(s.digits));
      if (hit)
        found.push(
          `${s.field} of patient ${s.patient} (${s.value}) in ${JSON.stringify(text.slice(0, 200))}`,
        );
    }
  }
  return [...new Set(found)];
}

// ---- sessions --------------------------------------------------------------------------------------------------

type Outcome =
  | { readonly ok: true; readonly rows: readonly unknown[] }
  | { readonly ok: false; readonly code: string | undefined; readonly message: string };

/**
 * Dates, timestamps and JSON stay text (as PostgreSQL sent them), so what the mask wrote is what the test reads;
 * whether masked JSON still parses is a test of its own.
 */
const KEPT_AS_TEXT: ReadonlySet<number> = new Set([1082, 1083, 1114, 1184, 114, 3802]);
const pgTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    format !== 'binary' && KEPT_AS_TEXT.has(oid)
      ? (value: string) => value
      : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

/**
 * An error as an outcome: PostgreSQL's (or pgwarden's) SQLSTATE, or 'client' when the driver could not read what it
 * received (e.g. a masked value where JSON was due).
 */
function failed(e: unknown): Outcome {
  if (e instanceof pg.DatabaseError || e instanceof postgres.PostgresError) {
    return { ok: false, code: e.code, message: e.message };
  }
  return { ok: false, code: 'client', message: e instanceof Error ? e.message : String(e) };
}

/**
 * One user's connections for one attempt: node-postgres (opened up front) and postgres.js (opened when used).
 * Everything either driver hands the application is kept in `received`: results, errors, notices,
 * notifications and the parameter reports PostgreSQL sends (application_name, custom settings).
 */
class Session {
  readonly received: unknown[] = [];
  private js: postgres.Sql | null = null;

  private constructor(
    private readonly proxy: PgwardenProcess,
    readonly user: MaskUser,
    readonly client: pg.Client,
  ) {}

  static async open(proxy: PgwardenProcess, user: MaskUser): Promise<Session> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: proxy.port,
      user,
      password: PASSWORDS[user],
      database: 'ehr',
      ssl: verifiedTls(),
      types: pgTypes,
    });
    const session = new Session(proxy, user, client);
    client.on('notice', (n) => session.received.push({ notice: n }));
    client.on('notification', (n) => session.received.push({ notification: n }));
    client.connection.on('parameterStatus', (m: unknown) => session.received.push({ parameterStatus: m }));
    await client.connect();
    return session;
  }

  private async record(run: () => Promise<pg.QueryResult | pg.QueryResult[]>): Promise<Outcome> {
    try {
      const result = await run();
      this.received.push(result);
      const last = Array.isArray(result) ? result[result.length - 1] : result;
      return { ok: true, rows: last.rows };
    } catch (e) {
      this.received.push(e);
      return failed(e);
    }
  }

  /** The simple protocol (several statements allowed; the last result's rows). */
  simple(sql: string): Promise<Outcome> {
    return this.record(() => this.client.query(sql) as Promise<pg.QueryResult | pg.QueryResult[]>);
  }

  /** The extended protocol with parameters, unnamed statement. */
  ext(sql: string, values: unknown[]): Promise<Outcome> {
    return this.record(() => this.client.query(sql, values));
  }

  /** A named prepared statement, executed `times` times (parsed once, bound and executed each time). */
  async named(name: string, sql: string, values: unknown[], times: number): Promise<Outcome> {
    let outcome: Outcome = { ok: false, code: undefined, message: 'not run' };
    for (let i = 0; i < times; i++)
      outcome = await this.record(() => this.client.query({ name, text: sql, values }));
    return outcome;
  }

  /** The extended protocol with every result column in binary format. */
  binary(sql: string, values: unknown[]): Promise<Outcome> {
    const config = { text: sql, values, binary: true } as pg.QueryConfig;
    return this.record(() => this.client.query(config));
  }

  /** postgres.js: statements prepared, described once and executed many times, `times` runs of the same text. */
  async postgresJs(sql: string, values: unknown[], times = 1): Promise<Outcome> {
    const js = this.postgresJsClient();
    let outcome: Outcome = { ok: false, code: undefined, message: 'not run' };
    for (let i = 0; i < times; i++) {
      try {
        const rows = await js.unsafe(sql, values as never[], { prepare: true });
        this.received.push([...rows]);
        outcome = { ok: true, rows: [...rows] };
      } catch (e) {
        this.received.push(e);
        outcome = failed(e);
      }
    }
    return outcome;
  }

  private postgresJsClient(): postgres.Sql {
    if (!this.js) {
      this.js = postgres({
        host: '127.0.0.1',
        port: this.proxy.port,
        user: this.user,
        password: PASSWORDS[this.user],
        database: 'ehr',
        ssl: verifiedTls(),
        max: 1,
        onnotice: (n) => this.received.push({ notice: n }),
        onparameter: (key, value) => this.received.push({ parameter: { key, value } }),
      });
    }
    return this.js;
  }

  /**
   * postgres.js cursors: the portal is executed `batch` rows at a time (Execute with a row limit, PortalSuspended
   * in between), the rows of later batches arriving with no description in front of them.
   */
  async postgresJsCursor(sql: string, batch: number): Promise<Outcome> {
    const js = this.postgresJsClient();
    const rows: unknown[] = [];
    try {
      for await (const part of js.unsafe(sql, [], { prepare: true }).cursor(batch)) rows.push(...part);
      this.received.push(rows);
      return { ok: true, rows };
    } catch (e) {
      this.received.push(rows, e);
      return failed(e);
    }
  }

  /** postgres.js pipelines these statements on its one connection; all of them are run, in parallel. */
  async postgresJsPipeline(sqls: readonly string[]): Promise<Outcome> {
    const js = this.postgresJsClient();
    const settled = await Promise.allSettled(sqls.map((q) => js.unsafe(q, [], { prepare: true })));
    let outcome: Outcome = { ok: true, rows: [] };
    for (const r of settled) {
      if (r.status === 'fulfilled') {
        this.received.push([...r.value]);
        if (outcome.ok) outcome = { ok: true, rows: [...r.value] };
      } else {
        this.received.push(r.reason);
        outcome = failed(r.reason);
      }
    }
    return outcome;
  }

  async close(): Promise<void> {
    await this.client.end();
    if (this.js) await this.js.end({ timeout: 5 });
  }
}

// ---- the corpus ------------------------------------------------------------------------------------------------

interface Attempt {
  readonly note: string;
  /** Runs the attempt; resolves the outcome that decides the expectation (other steps are recorded too). */
  readonly run: (s: Session) => Promise<Outcome>;
  /** What analyst must get: the statement runs (no over-refusal), or is refused with 42501 by pgwarden. */
  readonly analyst: 'ok' | 'refused' | 'either';
  /** For doctor: the fields whose real value (of patient 1) must reach the client; null: not run for doctor. */
  readonly doctorSees: readonly Field[] | null;
}

function simple(
  sql: string,
  analyst: Attempt['analyst'],
  doctorSees: readonly Field[] | null,
  note = '',
): Attempt {
  return { note: note || sql, run: (s) => s.simple(sql), analyst, doctorSees };
}

/** A SELECT over the simple protocol that analyst may run and whose columns doctor sees in full. */
function select(sql: string, doctorSees: readonly Field[], note = ''): Attempt {
  return simple(sql, 'ok', doctorSees, note);
}

/** A statement pgwarden refuses for a masked role (doctor is not asked). */
function refused(sql: string, note = ''): Attempt {
  return simple(sql, 'refused', null, note);
}

/** Steps over the simple protocol, one round trip each; the last step's outcome decides. */
function steps(
  note: string,
  sqls: readonly string[],
  analyst: Attempt['analyst'],
  doctorSees: readonly Field[] | null,
): Attempt {
  return {
    note,
    analyst,
    doctorSees,
    run: async (s) => {
      let outcome: Outcome = { ok: false, code: undefined, message: 'no step' };
      for (const sql of sqls) outcome = await s.simple(sql);
      return outcome;
    },
  };
}

const P1 = 'where id = 1';

const CORPUS: readonly Attempt[] = [
  // -- plain reads and aliases
  select(`select ssn from mk_patients ${P1}`, ['ssn']),
  select(
    `select name as label, ssn as x, dob as d from mk_patients ${P1}`,
    ['name', 'ssn', 'dob'],
    'aliases',
  ),
  select(
    `select p.ssn "not_ssn", p.email "harmless" from mk_patients p ${P1}`,
    ['ssn', 'email'],
    'quoted aliases',
  ),
  select(
    `select * from mk_patients ${P1}`,
    ['name', 'ssn', 'dob', 'zip', 'email', 'phone', 'diagnosis'],
    'select *',
  ),
  select('table mk_patients', ['name', 'ssn', 'dob', 'zip', 'email', 'phone', 'diagnosis'], 'TABLE'),
  select(
    `select p from mk_patients p ${P1}`,
    ['name', 'ssn', 'email', 'phone', 'diagnosis'],
    'whole-row reference',
  ),
  select(`select (p).ssn, (p).name from mk_patients p ${P1}`, ['ssn', 'name'], '(p).ssn'),
  select(`select public.mk_patients.ssn from public.mk_patients ${P1}`, ['ssn'], 'fully qualified'),
  select(`select phone from mk_patients ${P1}`, ['phone'], 'a hash-masked column alone'),
  select('select id, phone as contact from mk_patients order by id', ['phone'], 'hash-masked column with id'),
  select(`select p.* from mk_patients p ${P1}`, ['name', 'ssn', 'phone'], 'p.*'),
  // View columns are resolved to the base columns behind them: a filter on an unmasked one runs, one on a masked
  // one is a masked predicate.
  select(`select v from mk_patient_view v ${P1}`, ['name', 'ssn'], 'whole-row reference to a view, filtered'),
  refused(`select id from mk_patient_view where ssn like '1%'`, 'view, filtered on a masked column'),
  select('select v from mk_patient_view v', ['name', 'ssn'], 'whole-row reference to a view'),

  // -- casts
  select(`select ssn::varchar as s from mk_patients ${P1}`, ['ssn']),
  select(`select ssn::text || '' as s from mk_patients ${P1}`, ['ssn']),
  select(`select cast(name as varchar(40)) as n, dob::text as d from mk_patients ${P1}`, ['name', 'dob']),
  select(`select ssn::char(11) as s, ssn::varchar(5) as t from mk_patients ${P1}`, ['ssn']),
  select(`select ssn collate "C" as s from mk_patients ${P1}`, ['ssn']),
  // A cast that parses its input fails on some values: whether it fails answers a guess (an error oracle).
  refused(`select zip::int as z from mk_patients ${P1}`, 'cast to integer (fails unless all digits)'),
  refused(`select ssn::bytea as b from mk_patients ${P1}`, 'cast to bytea (fails on a stray backslash)'),

  // -- concatenation and string functions
  select(`select 'x' || ssn || 'y' as s, name || '' as n from mk_patients ${P1}`, ['ssn', 'name']),
  select(`select lower(name) as a, upper(email) as b, initcap(diagnosis) as c from mk_patients ${P1}`, [
    'name',
    'email',
    'diagnosis',
  ]),
  select(`select substring(ssn from 1 for 11) as a, substr(name, 1) as b from mk_patients ${P1}`, [
    'ssn',
    'name',
  ]),
  select(`select left(ssn, 20) as a, right(phone, 20) as b from mk_patients ${P1}`, ['ssn', 'phone']),
  select(`select overlay(ssn placing '1' from 1 for 1) as a from mk_patients ${P1}`, ['ssn']),
  select(`select split_part(email, ',', 1) as a, split_part(ssn, '-', 1) as b from mk_patients ${P1}`, [
    'email',
  ]),
  select(`select regexp_replace(ssn, '-', '', 'g') as a from mk_patients ${P1}`, ['ssn']),
  // NULL back means the pattern did not match: a comparison, as NULLIF is.
  refused(`select regexp_match(name, '.*') as a from mk_patients ${P1}`, 'regexp_match (NULL when no match)'),
  select(`select translate(ssn, '-', '.') as a, replace(phone, '-', ' ') as b from mk_patients ${P1}`, [
    'ssn',
    'phone',
  ]),
  select(`select reverse(reverse(name)) as a, initcap(diagnosis) as b from mk_patients ${P1}`, [
    'name',
    'diagnosis',
  ]),
  // repeat(x, n) fails ("requested length too large") exactly when length(x) * n passes 1 GB: a length oracle.
  refused(`select repeat(diagnosis, 1) as b from mk_patients ${P1}`, 'repeat'),
  refused(
    `select replace(replace(replace(ssn, '1', repeat('1', 1100)), '1', repeat('1', 1100)), '1', repeat('1', 1100)) as r from mk_patients ${P1}`,
    'nested growing replace ("out of memory" when the value holds a 1)',
  ),
  select(`select format('%s / %s', name, ssn) as a from mk_patients ${P1}`, ['name', 'ssn']),
  select(`select concat(ssn, '') as a, concat_ws('|', name, email) as b from mk_patients ${P1}`, [
    'ssn',
    'name',
    'email',
  ]),
  select(`select coalesce(ssn, '') as a, coalesce(name, '') as b from mk_patients ${P1}`, ['ssn', 'name']),
  // NULLIF compares: NULL back means the guess was right.
  refused(`select nullif(name, 'Margaret Holloway') as b from mk_patients ${P1}`, 'NULLIF against a guess'),
  refused(
    `select greatest(ssn, '') as a, least(email, 'zzz') as b from mk_patients ${P1}`,
    'GREATEST / LEAST',
  ),
  // `date + n` fails past 5874897 AD; to_char(date) casts to timestamp, which fails past 294276 AD.
  refused(`select dob + 0 as b from mk_patients ${P1}`, 'date arithmetic (out of range for a large offset)'),
  refused(`select to_char(dob, 'YYYY-MM-DD') as a from mk_patients ${P1}`, 'to_char of a date'),

  // -- row and JSON constructors, aggregates
  select(`select row(ssn, name) as r from mk_patients ${P1}`, ['ssn', 'name']),
  select(`select row_to_json(p) as j from mk_patients p ${P1}`, [
    'name',
    'ssn',
    'dob',
    'zip',
    'email',
    'diagnosis',
  ]),
  select(`select to_json(p.ssn) as a, to_jsonb(p) as b from mk_patients p ${P1}`, ['ssn', 'name']),
  select(`select json_build_object('s', ssn, 'n', name) as j from mk_patients ${P1}`, ['ssn', 'name']),
  // A key lookup returns NULL when the key is absent: like `?`, it tests the document.
  refused(`select to_jsonb(p) ->> 'ssn' as s from mk_patients p ${P1}`, 'JSON path out of a row'),
  select(
    'select id, lag(ssn) over (order by id) as prev from mk_patients',
    ['ssn'],
    'window function over it',
  ),
  select('select json_agg(p) as j from mk_patients p', ['name', 'ssn', 'diagnosis']),
  select('select array_agg(ssn) as a, array_agg(dob) as b from mk_patients', ['ssn', 'dob']),
  select("select string_agg(name, ', ') as a, string_agg(email, ' ') as b from mk_patients", [
    'name',
    'email',
  ]),
  // min and max return the value that compares lowest or highest: its masked form tells which one that was.
  refused('select min(ssn) as a, max(name) as b from mk_patients', 'min / max'),
  select(
    'select count(ssn) as n, count(distinct id) as ids from mk_patients',
    [],
    'count of a masked column',
  ),

  // -- CTEs, subqueries, set operations, VALUES
  select(`with x as (select ssn as s, name as n from mk_patients ${P1}) select s, n from x`, ['ssn', 'name']),
  select(
    `with x as (select ssn || '' as s from mk_patients ${P1}) select s from x`,
    ['ssn'],
    'CTE expression',
  ),
  select(`select (select ssn from mk_patients ${P1}) as s`, ['ssn'], 'scalar subquery in the select list'),
  select(`select t.s from (select name as s from mk_patients ${P1}) t`, ['name'], 'subquery in FROM'),
  // UNION removes duplicates, INTERSECT and EXCEPT match rows: each compares its branches' columns. UNION ALL
  // only appends, and its masked columns come back masked.
  refused(`select ssn from mk_patients ${P1} union select 'x'`, 'UNION (compares to remove duplicates)'),
  select(`select name from mk_patients ${P1} union all select diagnosis from mk_patients ${P1}`, [
    'name',
    'diagnosis',
  ]),
  select(
    `select ssn from mk_patients ${P1} union all select ssn from mk_patients where id = 2`,
    ['ssn'],
    'UNION ALL of a masked column',
  ),
  refused(`select ssn from mk_patients intersect select ssn from mk_patients ${P1}`),
  refused(`select email from mk_patients ${P1} except select 'x'`),
  select(
    'select t.s from (select id, ssn as s from mk_patients) t where t.id = 1',
    ['ssn'],
    'subquery in FROM filtered on an unmasked column',
  ),
  select(
    'select v.tag, p.ssn from (values (1, $$a$$)) v(id, tag) cross join lateral (select ssn from mk_patients where id = v.id) p',
    ['ssn'],
    'VALUES joined laterally',
  ),
  select(
    'select v.id, v.note, (select name from mk_patients p where p.id = v.patient_id) as who from mk_visits v',
    ['name'],
    'correlated subquery',
  ),

  // -- views and SQL functions
  select(`select * from mk_patient_view ${P1}`, ['name', 'ssn', 'dob', 'diagnosis'], 'view, filtered'),
  select('select * from mk_patient_view', ['name', 'ssn', 'dob', 'diagnosis'], 'view'),
  select(`select ssn as s from mk_patient_view_2 ${P1}`, ['ssn'], 'view of a view, filtered'),
  select('select name, ssn from mk_patient_view_2', ['name', 'ssn'], 'view of a view, no filter'),
  select(
    `select * from mk_patient_union ${P1}`,
    ['ssn'],
    'view with UNION ALL, filtered on an unmasked column',
  ),
  refused(
    `select id from mk_patient_union where ssn like '1%'`,
    'view with UNION ALL, filtered on a masked column',
  ),
  select('select mk_ssn_of(1) as s', ['ssn'], 'SQL function'),
  select("select replace(mk_ssn_of(1), '-', '.') as s", ['ssn'], 'SQL function, SSN reshaped'),
  select('select v.id, mk_ssn_of(v.patient_id) as s from mk_visits v', ['ssn'], 'SQL function per row'),

  // -- several statements in one round trip, settings
  select(
    `select 1 as a; select upper(name) as n from mk_patients ${P1}`,
    ['name'],
    'second of two statements',
  ),
  {
    note: 'DateStyle changed (dates no longer ISO)',
    run: async (s) => {
      const set = await s.simple("set datestyle = 'SQL, DMY'");
      return set.ok ? s.simple(`select dob, dob::text as t from mk_patients ${P1}`) : set;
    },
    analyst: 'ok',
    doctorSees: ['dob'],
  },
  refused(
    `select set_config('mk.x', name, false) as v from mk_patients ${P1}`,
    'laundered through a custom setting (set_config with a computed value)',
  ),
  refused(
    `select set_config('application_name', ssn, false) as v from mk_patients ${P1}`,
    'laundered through application_name (ParameterStatus)',
  ),
  steps(
    'laundered through LISTEN/NOTIFY',
    ['listen mk_chan', `select pg_notify('mk_chan', name) from mk_patients ${P1}`, 'select 1 as one'],
    'ok',
    ['name'],
  ),
  steps(
    'laundered through LISTEN/NOTIFY from a scalar subquery',
    ['listen mk_chan', `select pg_notify('mk_chan', (select name from mk_patients ${P1}))`],
    'refused',
    null,
  ),

  // -- cursors and SQL-level prepared statements across round trips
  steps(
    'cursor over a masked column',
    [
      'begin',
      `declare mk_c1 cursor for select ssn, name from mk_patients ${P1}`,
      'fetch all from mk_c1',
      'commit',
    ],
    'ok',
    ['ssn', 'name'],
  ),
  steps(
    'cursor over an expression, fetched in a later round trip',
    [
      'begin',
      `declare mk_c2 cursor for select name || '' as n, diagnosis || '' as d from mk_patients ${P1}`,
      'fetch all from mk_c2',
      'commit',
    ],
    'ok',
    ['name', 'diagnosis'],
  ),
  steps(
    'PREPARE / EXECUTE in later round trips',
    [
      `prepare mk_p1 as select name || '' as n, email || '' as e from mk_patients ${P1}`,
      'execute mk_p1',
      'execute mk_p1',
    ],
    'ok',
    ['name', 'email'],
  ),

  // -- the extended protocol, binary results, postgres.js
  {
    note: 'extended protocol with a parameter',
    run: (s) => s.ext('select ssn, name, dob, zip from mk_patients where id = $1', [1]),
    analyst: 'ok',
    doctorSees: ['ssn', 'name', 'dob', 'zip'],
  },
  {
    note: 'extended protocol, expression with a parameter',
    run: (s) =>
      s.ext('select $1::text || ssn as s, lower(name) as n from mk_patients where id = $2', ['', 1]),
    analyst: 'ok',
    doctorSees: ['ssn', 'name'],
  },
  {
    note: 'named prepared statement executed five times',
    run: (s) => s.named('mk_named_1', 'select name, ssn, email from mk_patients where id = $1', [1], 5),
    analyst: 'ok',
    doctorSees: ['name', 'ssn', 'email'],
  },
  {
    note: 'named prepared expression executed five times',
    run: (s) =>
      s.named('mk_named_2', "select name || '' as n, ssn || '' as s from mk_patients where id = $1", [1], 5),
    analyst: 'ok',
    doctorSees: ['name', 'ssn'],
  },
  {
    note: 'binary result format',
    run: (s) => s.binary('select id, name, ssn, email, diagnosis from mk_patients where id = $1', [1]),
    analyst: 'ok',
    doctorSees: ['name', 'ssn', 'email', 'diagnosis'],
  },
  {
    note: 'binary result format, expressions',
    run: (s) => s.binary("select name || '' as n, upper(ssn) as s from mk_patients where id = $1", [1]),
    analyst: 'ok',
    doctorSees: ['name', 'ssn'],
  },
  {
    note: 'binary result format, SQL function',
    run: (s) => s.binary('select mk_ssn_of($1) as s', [1]),
    analyst: 'ok',
    doctorSees: ['ssn'],
  },
  {
    note: 'binary result format, typed columns and a jsonb document holding an SSN',
    run: (s) =>
      s.binary(
        'select e.*, p.dob from mk_encounters e join mk_patients p on p.id = e.id where e.id = $1',
        [1],
      ),
    analyst: 'ok',
    doctorSees: ['ssn'],
  },
  {
    note: 'text result format, typed columns and a jsonb document holding an SSN',
    run: (s) => s.ext('select * from mk_encounters where id = $1', [1]),
    analyst: 'ok',
    doctorSees: ['ssn'],
  },
  {
    note: 'postgres.js, executed four times',
    run: (s) => s.postgresJs('select id, name, ssn, email, phone from mk_patients where id = $1', [1], 4),
    analyst: 'ok',
    doctorSees: ['name', 'ssn', 'email', 'phone'],
  },
  {
    note: 'postgres.js, expressions executed four times',
    run: (s) =>
      s.postgresJs("select concat(name, '') as n, ssn || $1 as s from mk_patients where id = 1", [''], 4),
    analyst: 'ok',
    doctorSees: ['name', 'ssn'],
  },
  {
    note: 'postgres.js, a hash-masked column alone',
    run: (s) => s.postgresJs('select phone from mk_patients where id = $1', [1], 3),
    analyst: 'ok',
    doctorSees: ['phone'],
  },
  {
    note: 'postgres.js cursor, two rows per Execute',
    run: (s) => s.postgresJsCursor('select id, name, ssn, phone from mk_patients', 2),
    analyst: 'ok',
    doctorSees: ['name', 'ssn', 'phone'],
  },
  {
    note: 'postgres.js cursor over expressions, two rows per Execute',
    run: (s) => s.postgresJsCursor("select name || '' as n, ssn || '' as s from mk_patients", 2),
    analyst: 'ok',
    doctorSees: ['name', 'ssn'],
  },
  {
    note: 'postgres.js pipeline: a masked read between unmasked ones',
    run: (s) =>
      s.postgresJsPipeline([
        'select id, note from mk_visits',
        "select upper(name) as n, diagnosis || '' as d from mk_patients where id = 1",
        'select mk_ssn_of(1) as s',
        'select v.id, p.name from mk_visits v join mk_patients p on p.id = v.patient_id',
      ]),
    analyst: 'ok',
    doctorSees: ['name', 'diagnosis'],
  },
  {
    note: 'postgres.js, json_build_object',
    run: (s) =>
      s.postgresJs(
        "select json_build_object('n', name, 'd', diagnosis) as j from mk_patients where id = 1",
        [],
      ),
    analyst: 'ok',
    doctorSees: ['name', 'diagnosis'],
  },

  // -- RETURNING, writes (rolled back)
  steps(
    'UPDATE ... RETURNING a masked column',
    ['begin', `update mk_patients set zip = zip ${P1} returning ssn, name, zip`, 'rollback'],
    'ok',
    ['ssn', 'name', 'zip'],
  ),
  steps(
    'UPDATE ... RETURNING an expression',
    [
      'begin',
      `update mk_patients set zip = zip ${P1} returning ssn || '' as s, lower(name) as n`,
      'rollback',
    ],
    'ok',
    ['ssn', 'name'],
  ),
  steps(
    'INSERT ... RETURNING a subquery over a masked column',
    [
      'begin',
      "insert into mk_visits values (100, 1, 'x') returning (select name from mk_patients where id = 1) as n",
      'rollback',
    ],
    'ok',
    ['name'],
  ),
  steps(
    'copied into an unmasked column, read back by RETURNING',
    [
      'begin',
      'update mk_visits v set note = (select name from mk_patients p where p.id = v.patient_id) where v.id = 1 returning v.note',
      'rollback',
    ],
    'either',
    ['name'],
  ),
  steps(
    'INSERT ... SELECT into an unmasked column, then read',
    [
      'begin',
      "insert into mk_visits select 100 + id, id, diagnosis || ' / ' || ssn from mk_patients",
      'select note from mk_visits where id > 100',
      'rollback',
    ],
    'either',
    ['ssn', 'diagnosis'],
  ),
  steps(
    'SELECT INTO a temporary table, then read',
    ['select name, ssn into temp mk_tmp from mk_patients', 'select * from mk_tmp'],
    'either',
    null,
  ),

  // -- predicates: refused
  refused("select id from mk_patients where ssn like '123%'"),
  refused("select id from mk_patients p where p.name = 'x'", 'qualified predicate'),
  refused('select id from mk_patients order by ssn'),
  refused('select id, ssn from mk_patients order by 2', 'ORDER BY position of a masked column'),
  refused('select count(*) from mk_patients group by zip'),
  refused('select count(*) from mk_patients having max(dob) > current_date'),
  refused('select a.id from mk_patients a join mk_patients b on a.ssn = b.ssn'),
  refused('select id, row_number() over (partition by ssn) from mk_patients'),
  refused("select case when ssn like '1%' then 1 else 0 end from mk_patients"),
  refused("select id from mk_patients where id in (select id from mk_patients where email like '%example%')"),
  refused("select count(*) filter (where diagnosis ilike '%diabetes%') from mk_patients"),
  refused('select distinct on (phone) id from mk_patients'),
  // A column of a subquery, CTE or renamed relation is the column behind it.
  refused(
    "select s from (select ssn as s from mk_patients) t where s like '1%'",
    'predicate on a renamed column of a subquery',
  ),
  refused(
    "with c as (select ssn from mk_patients) select 1 as one from c x where x.ssn like '1%'",
    'predicate on a column of an aliased CTE',
  ),
  refused(
    "select 1 as one from mk_patients p(a, b, c) where c like '1%'",
    'predicate on a renamed table column',
  ),
  refused("select id from mk_patient_view where name like 'M%'", 'predicate through a view'),
  refused('select id from mk_patient_view_2 order by ssn', 'ORDER BY through a view of a view'),
  refused(
    'select a.id from mk_patients a natural join mk_patient_view b',
    'NATURAL JOIN (every column compared)',
  ),
  {
    note: 'predicate in the extended protocol',
    run: (s) => s.ext('select id from mk_patients where ssn = $1', [FIRST.ssn]),
    analyst: 'refused',
    doctorSees: null,
  },

  // -- inference without a comparison operator: refused
  refused(`select ssn from mk_patients ${P1} intersect select ${literal(FIRST.ssn)}`, 'INTERSECT a guess'),
  refused(`select ssn from mk_patients ${P1} except select ${literal(FIRST.ssn)}`, 'EXCEPT a guess'),
  refused(`select ssn from mk_patients ${P1} union select ${literal(FIRST.ssn)}`, 'UNION a guess'),
  refused(`select ssn from mk_patients ${P1} intersect all select ${literal(FIRST.ssn)}`, 'INTERSECT ALL'),
  refused(
    `select 'x' union all (select lower(ssn) from mk_patients ${P1} intersect select ${literal(FIRST.ssn)})`,
    'a comparing set operation nested in UNION ALL, over an expression',
  ),
  refused(
    `with g as (select ssn from mk_patients intersect select ${literal(FIRST.ssn)}) select count(*) as n from g`,
    'INTERSECT inside a CTE, counted',
  ),
  refused(
    `select exists (select ssn from mk_patients ${P1} except select ${literal(FIRST.ssn)}) as differs`,
    'EXCEPT inside a subquery',
  ),
  refused(
    `select ${literal(FIRST.ssn)} in (select ssn from mk_patients) as hit`,
    'IN (subquery) in the select list',
  ),
  refused('select distinct ssn from mk_patients', 'DISTINCT'),
  refused('select count(distinct ssn) as n from mk_patients where id in (1, 2)', 'count(DISTINCT)'),
  refused('select percentile_disc(0.5) within group (order by ssn) as m from mk_patients', 'WITHIN GROUP'),
  refused(`select strpos(ssn, '12') as s from mk_patients ${P1}`, 'strpos'),
  refused(`select position('45' in ssn) as s from mk_patients ${P1}`, 'position'),
  refused(`select starts_with(ssn, '1') as s from mk_patients ${P1}`, 'starts_with'),
  refused(`select regexp_like(ssn, '^1') as s from mk_patients ${P1}`, 'regexp_like'),
  refused(`select greatest(ssn, '5') as s from mk_patients ${P1}`, 'greatest against a guess'),
  refused('select min(ssn) as s from mk_patients where id in (1, 2)', 'min of two'),

  // -- error oracles: a computation that fails for some values answers a guess, one row at a time
  refused(`select 1 / (length(ssn) - 11) as r from mk_patients ${P1}`, 'division by a length'),
  refused(`select substr(ssn, 1, 1)::int / 0 as r from mk_patients ${P1}`, 'first digit: cast, then divide'),
  refused(`select 1 / strpos(ssn, '12') as r from mk_patients ${P1}`, 'division by a position'),
  refused(`select to_date(ssn, 'YYYY') as r from mk_patients ${P1}`, 'to_date'),
  refused(`select (ssn)::numeric as r from mk_patients ${P1}`, 'cast to numeric'),
  refused(`select left(ssn, length(ssn) - 20) as r from mk_patients ${P1}`, 'arithmetic on a length'),
  refused(`select sum(length(name)) as r from mk_patients ${P1}`, 'sum'),
  refused(`select json_build_object(ssn, 1) as r from mk_patients ${P1}`, 'masked value as a JSON key'),
  refused(
    'select * from generate_series(1, length((select ssn from mk_patients where id = 1))) as g',
    'a subquery in the arguments of a function in FROM',
  ),
  refused(
    `with c as (select ssn as s from mk_patients ${P1}) select s::int as r from c`,
    'cast of a CTE column',
  ),
  refused(`select t::int as r from (select ssn from mk_patients ${P1}) t`, 'cast of a subquery row'),
  // What cannot fail still runs, masked.
  select(
    `select lower(ssn) as a, ssn || '' as b, ssn::text as c, length(ssn) as d from mk_patients ${P1}`,
    ['ssn'],
    'total expressions',
  ),
  select(
    `with c as (select ssn as s from mk_patients ${P1}) select upper(s) as u, s || '' as v from c`,
    ['ssn'],
    'total expressions over a CTE column',
  ),

  // -- side channels: refused
  refused(`explain select ssn from mk_patients where id = 1`),
  // COPY TO in text or CSV is masked row by row (see the psql tests); other forms are refused.
  refused('copy mk_patients to stdout (format binary)', 'COPY BINARY'),
  refused("copy mk_patients to stdout with (delimiter '|')", 'COPY with options the masker cannot read'),
  refused("select * from pg_stats where tablename = 'mk_patients'"),
  refused('select * from pg_catalog.pg_stats_ext'),

  // -- errors and notices
  steps(
    'duplicate SSN (unique violation DETAIL quotes the key)',
    ['begin', `update mk_patients set ssn = (select ssn from mk_patients where id = 2) ${P1}`, 'rollback'],
    'either',
    null,
  ),
  steps(
    'duplicate SSN by insert',
    ['begin', `insert into mk_patients (id, ssn) values (99, ${literal(FIRST.ssn)})`, 'rollback'],
    'either',
    null,
  ),
  // Casts of masked columns are refused (error oracles); a value a SQL function read still reaches a cast, and
  // PostgreSQL's error quoting it is scrubbed.
  refused(`select ssn::int from mk_patients ${P1}`, 'cast error quoting the value'),
  refused(`select name::date from mk_patients ${P1}`, 'cast error quoting a name'),
  refused(`select ('x' || diagnosis)::numeric from mk_patients ${P1}`, 'cast error quoting a diagnosis'),
  simple('select mk_ssn_of(1)::int', 'either', null, 'cast error quoting a value a SQL function read'),
  simple('select mk_ssn_of(1)::date', 'either', null, 'date cast error quoting a value a SQL function read'),
  simple("select mk_note(1, 'detail')", 'ok', null, 'notice with the value in DETAIL and HINT'),
  simple("select mk_note(1, 'message')", 'ok', null, 'notice with the value in its message'),
  simple("select mk_note(1, 'error')", 'either', null, 'error with the value in DETAIL and HINT'),
];

// ---- the tests -------------------------------------------------------------------------------------------------

function verifiers(): Record<MaskUser, string> {
  return {
    analyst: generateScramVerifier(PASSWORDS.analyst, { iterations: 4096 }),
    doctor: generateScramVerifier(PASSWORDS.doctor, { iterations: 4096 }),
    harbor: generateScramVerifier(PASSWORDS.harbor, { iterations: 4096 }),
  };
}

function describeOutcome(o: Outcome): string {
  return o.ok ? `ok, ${o.rows.length} row(s)` : `error ${o.code}: ${o.message}`;
}

/** The hash mask's token for a value: HMAC-SHA-256 under the configured key, hex, first 32 characters. */
function token(value: string): string {
  return crypto.createHmac('sha256', HASH_KEY).update(value).digest('hex').slice(0, 32);
}

// ---- typed columns: what analyst must get, computed here ------------------------------------------------------

const hmac = (text: string): Buffer => crypto.createHmac('sha256', HASH_KEY).update(text).digest();

/** hash on an integer type: the HMAC's first 8 bytes, big-endian, cut to the bits the type holds without a sign. */
const integerToken = (text: string, bits: bigint): string =>
  (hmac(text).readBigUInt64BE(0) & ((1n << bits) - 1n)).toString();

/** hash on a uuid: the HMAC's first 16 bytes with the version (4) and variant bits set. */
function uuidToken(text: string): string {
  const b = Buffer.from(hmac(text).subarray(0, 16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The first day of a date's (or timestamp's) year or month, as PostgreSQL prints it; null for infinity. */
function firstDay(text: string, keepMonth: boolean): string | null {
  const m = /^(\d{4,})-(\d\d)-\d\d.*?( BC)?$/.exec(text);
  if (m === null) return null;
  return `${m[1]}-${keepMonth ? m[2] : '01'}-01${m[3] ?? ''}`;
}

/** month_year of a timestamptz: the first of its month in UTC, with the zone written. */
function utcMonth(text: string): string {
  const instant = new Date(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
  const month = String(instant.getUTCMonth() + 1).padStart(2, '0');
  return `${instant.getUTCFullYear()}-${month}-01 00:00:00+00`;
}

/** Each masked column of an encounter as PostgreSQL would print the value analyst must get; null for NULL. */
function maskedEncounter(e: (typeof ENCOUNTERS)[number]): Record<EncounterColumn, string | null> {
  const admitted = firstDay(e.admitted, false)!;
  return {
    admitted: admitted.replace(/( BC)?$/, ' 00:00:00$1'),
    admitted_tz: utcMonth(e.admitted_tz),
    discharged: firstDay(e.discharged, true),
    mrn: integerToken(e.mrn, 63n),
    account: null, // redact: no int4 is a redaction
    visit_id: uuidToken(e.visit_id),
    scan: '\\x' + hmac(e.scan).toString('hex'),
    vitals: '"***"',
    weight: '0',
    consented: 'f',
    zip_code: null, // zip3: no int4 is a masked ZIP
    charge: integerToken(e.charge, 63n),
  };
}

/**
 * The extended protocol over a raw socket, every result column in `format`, every value's bytes as sent:
 * node-postgres reads each value as UTF-8 text before a binary parser sees it (pg-protocol's DataRow parser), so
 * binary bytes >= 0x80 do not survive it.
 */
async function rawQuery(
  proxy: PgwardenProcess,
  user: MaskUser,
  sql: string,
  params: string[],
  format: 0 | 1,
  timeZone?: string,
): Promise<{ formats: number[]; rows: Array<Array<Buffer | null>> }> {
  const wire = await connectTls(proxy.port);
  try {
    await scramLogin(wire, user, PASSWORDS[user], 'ehr');
    if (timeZone !== undefined) {
      wire.write(frontend.query(`set time zone '${timeZone}'`));
      await wire.until('Z');
    }
    wire.write(
      Buffer.concat([
        frontend.parse(sql),
        frontend.bind(params, format),
        frontend.describePortal(),
        frontend.execute(),
        frontend.sync(),
      ]),
    );
    const messages = await wire.until('Z');
    const error = messages.find((m) => m.code === 'E');
    if (error) throw new Error(`query failed: ${JSON.stringify(errorFields(error))}`);
    const description = messages.find((m) => m.code === 'T');
    return {
      formats: description ? rowDescriptionTypes(description).map((f) => f.format) : [],
      rows: messages.filter((m) => m.code === 'D').map(dataRowValues),
    };
  } finally {
    wire.write(frontend.terminate());
    wire.close();
  }
}

describe('PHI masking through pgwarden', () => {
  let proxy: PgwardenProcess;
  let direct: pg.Client;
  let keyDir: string;

  const withSession = async <T>(user: MaskUser, fn: (s: Session) => Promise<T>): Promise<T> => {
    const session = await Session.open(proxy, user);
    try {
      return await fn(session);
    } finally {
      await session.close();
    }
  };

  beforeAll(async () => {
    direct = await directClient();
    await direct.query(FIXTURE_DROP + FIXTURE_CREATE);
    // Planner statistics exist, so a pg_stats leak would have values to show.
    await direct.query('analyze public.mk_patients');
    keyDir = mkdtempSync(join(tmpdir(), 'pgwarden-mask-'));
    const keyFile = join(keyDir, 'hash.key');
    writeFileSync(keyFile, HASH_KEY, { mode: 0o600 });
    const verifier = verifiers();
    proxy = await startProxy({
      users: {
        analyst: { password: verifier.analyst, roles: ['analyst'] },
        doctor: { password: verifier.doctor, roles: ['doctor'] },
        harbor: { password: verifier.harbor, roles: ['harbor'] },
      },
      roles: { ...ROLES, harbor: { statements: STATEMENTS, tables: TABLES, safe_harbor: true } },
      masking: { hash_key_file: keyFile, mrn_formats: ['MRN-######'], identifier_formats: ['HPB-#########'] },
    });
  });

  afterAll(async () => {
    await proxy?.stop();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
    if (direct) {
      await direct.query(FIXTURE_DROP);
      await direct.end();
    }
  });

  it('has a corpus of at least 163 bypass attempts', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(163);
  });

  describe('analyst (masked): no real value reaches the client', () => {
    it.each(CORPUS)('$note', async (c) => {
      await withSession('analyst', async (s) => {
        const outcome = await c.run(s);
        expect(leaks(s.received), `real values reached the client (${describeOutcome(outcome)})`).toEqual([]);
        if (c.analyst === 'ok') expect(outcome.ok ? 'ok' : describeOutcome(outcome)).toBe('ok');
        if (c.analyst === 'refused') {
          expect(outcome.ok ? 'ran' : outcome.code, describeOutcome(outcome)).toBe('42501');
          if (!outcome.ok) expect(outcome.message).toMatch(/^permission denied by pgwarden policy: /);
        }
        // The session goes on after a refusal or an error.
        const probe = await s.simple('select 1 as one');
        if (!probe.ok && probe.code !== '25P02') throw new Error(`session broken: ${describeOutcome(probe)}`);
      });
    });

    it('cannot tell two SSNs apart through a division-by-zero error', async () => {
      // `1 / (ssn = X)::int` errs exactly when the SSN is not X: an oracle that needs no WHERE clause.
      const probe = (candidate: string) =>
        withSession('analyst', (s) =>
          s.simple(`select 1 / (ssn = ${literal(candidate)})::int as r from mk_patients ${P1}`),
        );
      const right = await probe(FIRST.ssn);
      const wrong = await probe('000-00-0000');
      expect(describeOutcome(right).replace(/\d+ row/, 'n row')).toBe(
        describeOutcome(wrong).replace(/\d+ row/, 'n row'),
      );
    });
  });

  it('counts masked values by rule, content detections and refused masked predicates in /metrics', async () => {
    // The corpus above ran first (vitest runs a file's tests in order).
    expect(await metric(proxy, 'pgwarden_masked_fields_total')).toBeGreaterThan(0);
    expect(await metric(proxy, 'pgwarden_masked_detected_fields_total')).toBeGreaterThan(0);
    expect(await metric(proxy, 'pgwarden_masked_predicate_refusals_total')).toBeGreaterThan(0);
    const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(text).toMatch(
      /pgwarden_masked_fields_total\{rule="roles\.analyst\.masks\[\\"public\.mk_patients\.ssn\\"\]"\} [1-9]/,
    );
  });

  it('counts refused comparisons and error oracles with the masked predicate refusals', async () => {
    const before = await metric(proxy, 'pgwarden_masked_predicate_refusals_total');
    const attempts = [
      `select ssn from mk_patients ${P1} intersect select ${literal(FIRST.ssn)}`,
      'select distinct ssn from mk_patients',
      `select 1 / (length(ssn) - 11) as r from mk_patients ${P1}`,
    ];
    for (const sql of attempts) {
      const outcome = await withSession('analyst', (s) => s.simple(sql));
      expect(outcome.ok ? 'ran' : outcome.message).toMatch(
        /^permission denied by pgwarden policy: masked column /,
      );
    }
    expect(await metric(proxy, 'pgwarden_masked_predicate_refusals_total')).toBe(before + attempts.length);
  });

  describe('doctor (unmasked): the same statements return the real values', () => {
    const allowed = CORPUS.filter((c) => c.doctorSees !== null);
    it.each(allowed)('$note', async (c) => {
      await withSession('doctor', async (s) => {
        const outcome = await c.run(s);
        expect(outcome.ok ? 'ok' : describeOutcome(outcome)).toBe('ok');
        const seen = leaks(s.received);
        for (const field of c.doctorSees!) {
          const value = FIRST[field];
          expect(
            seen.some((l) => l.startsWith(`${field} of patient 1 `)),
            `doctor should see ${field} ${value}`,
          ).toBe(true);
        }
      });
    });
  });

  describe('the masked forms', () => {
    const columns = 'id, name, ssn, dob, zip, email, phone, diagnosis';

    const expected = PATIENTS.map((p) => ({
      id: p.id,
      name: '***',
      ssn: `***-**-${p.ssn.slice(-4)}`,
      dob: `${p.dob.slice(0, 4)}-01-01`,
      zip: `${p.zip.slice(0, 3)}**`,
      email: `***${p.email.slice(p.email.lastIndexOf('@'))}`,
      phone: token(p.phone),
      diagnosis: '[hidden]',
    }));

    it('are exactly as configured through a view defined by a set operation, column by column', async () => {
      const outcome = await withSession('analyst', (s) =>
        s.simple('select id, ssn, src from mk_patient_union where id in (1, 1001) order by id'),
      );
      expect(outcome).toEqual({
        ok: true,
        rows: [
          { id: 1, ssn: expected[0].ssn, src: 'current' },
          { id: 1001, ssn: expected[0].ssn, src: 'archived' },
        ],
      });
    });

    it('are exactly as configured, over the simple and the extended protocol', async () => {
      await withSession('analyst', async (s) => {
        const viaSimple = await s.simple(`select ${columns} from mk_patients order by id`);
        expect(viaSimple).toEqual({ ok: true, rows: expected });
        const viaExtended = await s.ext(`select ${columns} from mk_patients where id = $1`, [3]);
        expect(viaExtended).toEqual({ ok: true, rows: [expected[2]] });
        const viaNamed = await s.named(
          'mk_forms',
          `select ${columns} from mk_patients where id = $1`,
          [5],
          3,
        );
        expect(viaNamed).toEqual({ ok: true, rows: [expected[4]] });
      });
    });

    it('hash tokens are 32 hex characters, equal for the same patient across queries, different across patients', async () => {
      const first = await withSession('analyst', (s) =>
        s.simple('select id, phone from mk_patients order by id'),
      );
      const again = await withSession('analyst', (s) =>
        s.ext('select phone from mk_patients where id = $1', [1]),
      );
      expect(first.ok && again.ok).toBe(true);
      if (!first.ok || !again.ok) return;
      const tokens = (first.rows as Array<{ phone: string }>).map((r) => r.phone);
      for (const t of tokens) expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(new Set(tokens).size).toBe(PATIENTS.length);
      expect((again.rows[0] as { phone: string }).phone).toBe(tokens[0]);
    });

    it('masked JSON values are still JSON, so drivers can read them', async () => {
      const outcome = await withSession('analyst', (s) =>
        s.simple(
          `select row_to_json(p) as a, json_build_object('s', ssn) as b, to_jsonb(p) as c from mk_patients p ${P1}`,
        ),
      );
      expect(outcome.ok).toBe(true);
      if (!outcome.ok) return;
      for (const value of Object.values(outcome.rows[0] as Record<string, string>)) {
        expect(() => JSON.parse(value), value).not.toThrow();
      }
    });

    it("in binary format (node-postgres): text columns are masked as in text, a date is its year's January 1st", async () => {
      const outcome = await withSession('analyst', (s) =>
        s.binary(
          'select id, name, ssn, dob, zip, email, phone, diagnosis from mk_patients where id = $1',
          [1],
        ),
      );
      // node-postgres has no binary date parser: it hands over the bytes read as UTF-8. The reference is what it
      // makes of PostgreSQL's own binary form of the expected date.
      const reference = await withSession('doctor', (s) =>
        s.binary('select $1::date as dob', [expected[0].dob]),
      );
      expect(reference.ok).toBe(true);
      const dob = reference.ok ? (reference.rows[0] as { dob: unknown }).dob : undefined;
      expect(dob).toEqual(expect.any(String));
      expect(outcome).toEqual({ ok: true, rows: [{ ...expected[0], dob }] });
    });

    it('are untouched for doctor', async () => {
      const outcome = await withSession('doctor', (s) =>
        s.simple(`select ${columns} from mk_patients order by id`),
      );
      expect(outcome).toEqual({ ok: true, rows: PATIENTS.map((p) => ({ ...p })) });
    });

    it('leave unmasked tables alone for analyst', async () => {
      const outcome = await withSession('analyst', (s) =>
        s.simple('select id, patient_id, note from mk_visits order by id'),
      );
      expect(outcome).toEqual({
        ok: true,
        rows: [
          { id: 1, patient_id: 1, note: 'follow-up' },
          { id: 2, patient_id: 1, note: 'lab review' },
          { id: 3, patient_id: 2, note: 'annual' },
          { id: 4, patient_id: 3, note: 'referral' },
          { id: 5, patient_id: 5, note: 'vaccination' },
        ],
      });
    });
  });

  describe('typed columns (dates, timestamps, numbers, uuid, bytea, jsonb) in text and binary format', () => {
    const select = `select ${ENCOUNTER_COLUMNS.join(', ')} from mk_encounters where id = $1`;

    /** PostgreSQL's binary form of a value given as text: its type's send function. */
    const sentByPostgres = async (column: EncounterColumn, text: string): Promise<Buffer> => {
      const { type, send } = ENCOUNTER_TYPES[column];
      const result = await direct.query(`select ${send}($1::${type}) as b`, [text]);
      return result.rows[0].b as Buffer;
    };

    it.each(ENCOUNTERS)('text format, encounter $id: each masked value is a value of its type', async (e) => {
      // Tokyo (+09): encounter 2's timestamptz is January 1970 there and December 1969 in UTC, where it is truncated
      const { formats, rows } = await rawQuery(proxy, 'analyst', select, [String(e.id)], 0, 'Asia/Tokyo');
      expect(formats).toEqual(ENCOUNTER_COLUMNS.map(() => 0));
      const received = Object.fromEntries(
        ENCOUNTER_COLUMNS.map((c, i) => [c, rows[0][i]?.toString('utf8') ?? null]),
      );
      expect(received).toEqual(maskedEncounter(e));
      expect(leaks(rows)).toEqual([]);
    });

    it.each(ENCOUNTERS)(
      'binary format, encounter $id: each masked value is what PostgreSQL sends for the expected value',
      async (e) => {
        const { formats, rows } = await rawQuery(proxy, 'analyst', select, [String(e.id)], 1);
        expect(formats).toEqual(ENCOUNTER_COLUMNS.map(() => 1));
        const expected = maskedEncounter(e);
        for (const [i, column] of ENCOUNTER_COLUMNS.entries()) {
          const text = expected[column];
          expect(rows[0][i], column).toEqual(text === null ? null : await sentByPostgres(column, text));
        }
        expect(leaks(rows)).toEqual([]);
      },
    );

    it.each(ENCOUNTERS)(
      'encounter $id: doctor gets the real binary values, analyst none of them',
      async (e) => {
        const sends = ENCOUNTER_COLUMNS.map((c) => `${ENCOUNTER_TYPES[c].send}(${c}) as ${c}`);
        const real = (
          await direct.query(`select ${sends.join(', ')} from mk_encounters where id = $1`, [e.id])
        ).rows[0] as Record<EncounterColumn, Buffer>;
        const doctor = await rawQuery(proxy, 'doctor', select, [String(e.id)], 1);
        const analyst = await rawQuery(proxy, 'analyst', select, [String(e.id)], 1);
        for (const [i, column] of ENCOUNTER_COLUMNS.entries()) {
          expect(doctor.rows[0][i], column).toEqual(real[column]);
          expect(analyst.rows[0][i], column).not.toEqual(real[column]);
        }
      },
    );

    it('node-postgres parses every masked column with its own type parsers: no error, and the values computed here', async () => {
      // Default type parsers (int4 with parseInt, dates and timestamps into Date): a '***' would be NaN or throw.
      const client = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: 'analyst',
        password: PASSWORDS.analyst,
        database: 'ehr',
        ssl: verifiedTls(),
      });
      await client.connect();
      try {
        const { rows } = await client.query(
          `select id, ${ENCOUNTER_COLUMNS.join(', ')} from mk_encounters where id < 3 order by id`,
        );
        const local = (text: string) => {
          const [y, m, d] = text.split(/[- ]/).map(Number);
          return new Date(y, m - 1, d); // node-postgres reads dates and zoneless timestamps as local time
        };
        const parsed = ENCOUNTERS.slice(0, 2).map((e) => {
          const m = maskedEncounter(e);
          return {
            id: e.id,
            admitted: local(m.admitted!),
            admitted_tz: new Date(m.admitted_tz!.replace(' ', 'T').replace('+00', 'Z')),
            discharged: m.discharged === null ? null : local(m.discharged),
            mrn: m.mrn,
            account: null,
            visit_id: m.visit_id,
            scan: hmac(e.scan),
            vitals: '***',
            weight: 0,
            consented: false,
            zip_code: null,
            charge: m.charge,
          };
        });
        expect(rows).toEqual(parsed);
        expect(leaks(rows)).toEqual([]);
      } finally {
        await client.end();
      }
    });

    it('jsonb in binary with json_masks: the version byte, then the document with its paths masked', async () => {
      const { rows } = await rawQuery(
        proxy,
        'analyst',
        'select body from mk_resources where id = $1',
        ['1'],
        1,
      );
      const body = rows[0][0]!;
      expect(body[0]).toBe(1);
      expect(JSON.parse(body.toString('utf8', 1))).toEqual({
        resourceType: 'Patient',
        identifier: [{ system: 'urn:ssn', value: '***-**-6789' }],
        name: [{ family: '***', given: ['Margaret'] }],
        gender: 'female',
      });
      expect(leaks(rows)).toEqual([]);
    });
  });

  describe('COPY TO (psql)', () => {
    const psql = (user: MaskUser, sql: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
        execFile(
          'psql',
          ['-X', '-c', sql],
          {
            env: {
              ...process.env,
              PGHOST: '127.0.0.1',
              PGPORT: String(proxy.port),
              PGUSER: user,
              PGPASSWORD: PASSWORDS[user],
              PGDATABASE: 'ehr',
              PGSSLMODE: 'verify-full',
              PGSSLROOTCERT: inject('pg').caCert,
            },
            timeout: 30_000,
          },
          (err, stdout, stderr) => {
            if (err && typeof err.code !== 'number') reject(err);
            else resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
          },
        );
      });

    for (const [label, sql] of [
      ['text, whole table', 'copy mk_patients to stdout'],
      [
        'CSV with a header, a column list',
        'copy mk_patients (id, name, ssn, email) to stdout with (format csv, header)',
      ],
      ['text, a query over masked columns', "copy (select id, ssn, name || '' from mk_patients) to stdout"],
      ['CSV, a query', 'copy (select * from mk_patients order by id) to stdout csv'],
    ] as const) {
      it(`masks every row for analyst and returns the real rows to doctor (${label})`, async () => {
        const analyst = await psql('analyst', sql);
        expect(analyst.code, analyst.stderr).toBe(0);
        expect(leaks([analyst.stdout, analyst.stderr])).toEqual([]);
        expect(analyst.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(PATIENTS.length);
        const doctor = await psql('doctor', sql);
        expect(doctor.code, doctor.stderr).toBe(0);
        expect(doctor.stdout).toContain(FIRST.ssn);
      });
    }

    it('keeps the masked forms in text COPY of the table', async () => {
      const analyst = await psql('analyst', 'copy mk_patients (id, ssn, dob) to stdout');
      expect(analyst.stdout.split('\n')[0]).toBe(
        `1\t***-**-${FIRST.ssn.slice(-4)}\t${FIRST.dob.slice(0, 4)}-01-01`,
      );
    });
  });

  describe('the Safe Harbor preset (safe_harbor: true, no masks)', () => {
    it('redacts identifiers the content detectors recognise in any column; other values pass', async () => {
      const outcome = await withSession('harbor', (s) =>
        s.simple(`select id, ssn, email, phone, zip, dob, diagnosis from mk_patients ${P1}`),
      );
      expect(outcome.ok).toBe(true);
      if (!outcome.ok) return;
      const row = outcome.rows[0] as Record<string, unknown>;
      expect(row).toMatchObject({
        id: 1,
        ssn: '***',
        email: '***',
        phone: '***',
        zip: '***',
        diagnosis: FIRST.diagnosis,
      });
      expect(JSON.stringify(row)).not.toContain(FIRST.ssn);
      expect(JSON.stringify(row)).not.toContain(FIRST.dob);
    });

    // One value per Safe Harbor category the detectors cover beyond the patients table's columns, and text that
    // only looks close: each is a column of one statement, so the kernel judges them side by side.
    const HARBOR_SAMPLES: ReadonlyArray<readonly [category: string, text: string, redacted: boolean]> = [
      ['date, US numeric', 'seen 07/02/1984 in clinic', true],
      ['date, month name', 'born July 2, 1984', true],
      ['date, day first', 'admitted 02-Jul-1984', true],
      ['street address', 'lives at 221B Baker Street', true],
      ['PO box', 'mail to P.O. Box 12', true],
      ['URL', 'portal https://portal.example.org/p/42', true],
      ['IPv4 address', 'logged in from 192.168.10.20', true],
      ['IPv6 address', 'from fe80::1ff:fe23:4567:890a', true],
      ['MAC address (device)', 'pump 00:1a:2b:3c:4d:5e', true],
      ['VIN (vehicle)', 'car 1HGCM82633A004352', true],
      ['MRN (mrn_formats)', 'chart mrn-004213', true],
      ['health plan number (identifier_formats)', 'plan HPB-123456789', true],
      ['clean note', 'Patient reports improved sleep; review in 2 weeks.', false],
      ['clean diagnosis', 'Type 2 diabetes mellitus', false],
      ['clean time', 'seen at 10:30:00', false],
    ];

    it('withholds bytea columns (biometrics, photographs): NULL in text and binary, real bytes for doctor', async () => {
      for (const user of ['harbor', 'doctor'] as const) {
        const outcome = await withSession(user, (s) =>
          s.simple('select id, scan from mk_encounters where id = 1'),
        );
        expect(outcome.ok).toBe(true);
        if (!outcome.ok) return;
        const row = outcome.rows[0] as { id: number; scan: unknown };
        expect(row.id).toBe(1);
        if (user === 'harbor') expect(row.scan).toBeNull();
        else expect(row.scan).not.toBeNull();
      }
      const binary = await withSession('harbor', (s) =>
        s.binary('select scan from mk_encounters where id = $1', [1]),
      );
      expect(binary).toEqual({ ok: true, rows: [{ scan: null }] });
    });

    it('redacts dates, addresses, URLs, IP and MAC addresses, VINs and configured formats in free text', async () => {
      const list = HARBOR_SAMPLES.map(([, text], i) => `${literal(text)}::text as c${i}`).join(', ');
      for (const user of ['harbor', 'doctor'] as const) {
        const outcome = await withSession(user, (s) => s.simple(`select ${list}`));
        expect(outcome.ok).toBe(true);
        if (!outcome.ok) return;
        const row = outcome.rows[0] as Record<string, unknown>;
        HARBOR_SAMPLES.forEach(([category, text, redacted], i) => {
          // Safe Harbor redacts; a role without it (doctor) gets every text as it is.
          expect(row[`c${i}`], `${user}: ${category}`).toBe(user === 'harbor' && redacted ? '***' : text);
        });
      }
    });
  });

  describe('masks inside JSON documents (json_masks)', () => {
    it('mask the paths and leave the rest of the document; doctor sees it whole; predicates on it are refused', async () => {
      const analyst = await withSession('analyst', (s) =>
        s.simple('select body from mk_resources where id = 1'),
      );
      expect(analyst.ok).toBe(true);
      const body = analyst.ok ? (analyst.rows[0] as { body: unknown }).body : null;
      const parsed = typeof body === 'string' ? JSON.parse(body) : body;
      expect(parsed).toEqual({
        resourceType: 'Patient',
        identifier: [{ system: 'urn:ssn', value: '***-**-6789' }],
        name: [{ family: '***', given: ['Margaret'] }],
        gender: 'female',
      });
      const doctor = await withSession('doctor', (s) =>
        s.simple('select body from mk_resources where id = 1'),
      );
      expect(JSON.stringify(doctor)).toContain('123-45-6789');
      const filtered = await withSession('analyst', (s) =>
        s.simple("select id from mk_resources where body->'identifier'->0->>'value' like '123%'"),
      );
      expect(filtered.ok ? 'ran' : filtered.code).toBe('42501');
      // A key lookup is a test of the document (NULL when the key is absent), refused like a predicate.
      const extracted = await withSession('analyst', (s) =>
        s.simple("select body->'identifier'->0->>'value' as v from mk_resources where id = 1"),
      );
      expect(extracted.ok ? 'ran' : extracted.code).toBe('42501');
      expect(JSON.stringify(extracted)).not.toContain('123-45-6789');
    });
  });

  describe('the audit trail: masking decisions and accounting of disclosures (subject_column)', () => {
    let audited: PgwardenProcess;
    let auditDir: string;

    beforeAll(async () => {
      auditDir = join(keyDir, 'audit');
      const signingKey = join(keyDir, 'audit-signing.pem');
      const { privateKey } = crypto.generateKeyPairSync('ed25519');
      writeFileSync(signingKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      const verifier = verifiers();
      audited = await startProxy({
        users: { analyst: { password: verifier.analyst, roles: ['analyst'] } },
        roles: { ...ROLES, analyst: { ...ROLES.analyst, subject_column: 'public.mk_patients.id' } },
        masking: { hash_key_file: join(keyDir, 'hash.key') },
        audit: { mode: 'durable', sinks: [{ type: 'file', path: auditDir }], signing_key_file: signingKey },
      });
    });

    afterAll(async () => {
      await audited?.stop();
    });

    it('records which columns were masked by which rule, and a keyed hash of each patient whose row was returned', async () => {
      const session = await Session.open(audited, 'analyst');
      try {
        const outcome = await session.simple('select id, name, ssn from mk_patients order by id');
        expect(outcome.ok).toBe(true);
      } finally {
        await session.close();
      }
      // Records written after the statement (its outcome, the disclosure) reach the file moments later: wait.
      const read = () =>
        readdirSync(auditDir)
          .filter((f) => f.endsWith('.jsonl'))
          .flatMap((f) => readFileSync(join(auditDir, f), 'utf8').split('\n').filter(Boolean))
          .map((line) => JSON.parse(line) as { event: string; data: Record<string, unknown> });
      let records = read();
      for (let i = 0; i < 50 && !records.some((r) => Array.isArray(r.data.subjects)); i++) {
        await new Promise((r) => setTimeout(r, 100));
        records = read();
      }
      const masking = records.filter((r) => r.event === 'masking');
      const decision = masking.find((r) => Array.isArray(r.data.columns));
      expect(decision?.data.columns).toEqual(
        expect.arrayContaining([
          {
            column: 'public.mk_patients.ssn',
            rule: 'roles.analyst.masks["public.mk_patients.ssn"]: partial',
          },
          {
            column: 'public.mk_patients.name',
            rule: 'roles.analyst.masks["public.mk_patients.name"]: redact',
          },
        ]),
      );
      const disclosure = masking.find((r) => Array.isArray(r.data.subjects));
      const expected = PATIENTS.map((p) =>
        crypto.createHmac('sha256', HASH_KEY).update(String(p.id)).digest('hex').slice(0, 32),
      );
      expect(disclosure?.data.subject_column).toBe('public.mk_patients.id');
      expect([...(disclosure?.data.subjects as string[])].sort()).toEqual([...expected].sort());
      // The ids themselves are not in the trail.
      const text = JSON.stringify(masking);
      for (const p of PATIENTS) expect(text).not.toContain(`"${p.ssn}"`);
    });

    it('keys a subject by its text for binary clients too (an int4 id is 4 bytes on the wire)', async () => {
      const session = await Session.open(audited, 'analyst');
      try {
        const outcome = await session.binary('select id, ssn from mk_patients where id = $1', [3]);
        expect(outcome.ok).toBe(true);
      } finally {
        await session.close();
      }
      const token = crypto.createHmac('sha256', HASH_KEY).update('3').digest('hex').slice(0, 32);
      const found = (): boolean =>
        readdirSync(auditDir)
          .filter((f) => f.endsWith('.jsonl'))
          .flatMap((f) => readFileSync(join(auditDir, f), 'utf8').split('\n').filter(Boolean))
          .map((line) => JSON.parse(line) as { event: string; data: Record<string, unknown> })
          .some((r) => r.event === 'masking' && JSON.stringify(r.data.subjects) === JSON.stringify([token]));
      for (let i = 0; i < 50 && !found(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(found()).toBe(true);
    });
  });
});
