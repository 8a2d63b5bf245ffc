// The session side of masking without a server: mask specs, column plans from origins, the result tracker that
// ties extended-protocol rows to descriptions sent earlier, and the hash mask.
import { describe, expect, it } from 'vitest';
import { planColumns, REDACT } from '../../src/masking/column-plan.js';
import type { MaskCatalog } from '../../src/masking/mask-catalog.js';
import { parseMaskFunction, parseRoleMasks, strictest } from '../../src/masking/mask-spec.js';
import {
  decodeBindResultFormats,
  decodeRowDescription,
  ResultTracker,
} from '../../src/masking/result-tracker.js';
import { SessionMasker } from '../../src/masking/session-masker.js';
import { CODECS, encodeValue } from '../../src/masking/typed-values.js';
import { BackendCode } from '../../src/protocol/codes.js';
import { decodeDataRow } from '../../src/protocol/decode.js';
import * as writer from '../../src/protocol/writer.js';

function tagged(code: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = code.charCodeAt(0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function rowDescription(
  fields: Array<{ name: string; table: number; attnum: number; type?: number; format?: number }>,
) {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  parts[0].writeInt16BE(fields.length);
  for (const f of fields) {
    const b = Buffer.alloc(18);
    b.writeUInt32BE(f.table, 0);
    b.writeInt16BE(f.attnum, 4);
    b.writeUInt32BE(f.type ?? 25, 6);
    b.writeInt16BE(-1, 10);
    b.writeInt32BE(-1, 12);
    b.writeInt16BE(f.format ?? 0, 16);
    parts.push(Buffer.from(f.name + '\0'), b);
  }
  return tagged('T', Buffer.concat(parts));
}

/** A DataRow of text values (NULL for null). */
function dataRow(values: Array<string | null>): Buffer {
  return writer.dataRow(values.map((v) => (v === null ? null : Buffer.from(v))));
}

/** A DataRow's values as text (null for NULL). */
function rowValues(row: Buffer): Array<string | null> {
  return decodeDataRow(row).map((v) => (v === null ? null : v.toString('utf8')));
}

const PATIENTS = 16400;
const VIEW = 16500;
const catalog: MaskCatalog = {
  columns: new Map([
    [
      PATIENTS,
      new Map([
        [3, 'public.patients.ssn'],
        [2, 'public.patients.name'],
        [4, 'public.patients.dob'],
      ]),
    ],
  ]),
  views: new Map([
    [VIEW, new Set(['public.patients.ssn'])],
    [VIEW + 1, new Set(['public.patients.ssn'])],
  ]),
  viewNames: new Map([
    [VIEW, 'public.patient_view'],
    [VIEW + 1, 'public.patient_names'],
  ]),
  viewColumns: new Map([
    [
      VIEW + 1,
      new Map([
        [1, { name: 'id', keys: new Set<string>(), direct: true }],
        [2, { name: 'ssn', keys: new Set(['public.patients.ssn']), direct: true }],
        [3, { name: 'lower', keys: new Set(['public.patients.ssn']), direct: false }],
      ]),
    ],
  ]),
  tables: new Map([
    [
      'public.patients',
      {
        oid: PATIENTS,
        columns: [
          { attnum: 1, name: 'id' },
          { attnum: 2, name: 'name' },
          { attnum: 3, name: 'ssn' },
          { attnum: 4, name: 'dob' },
        ],
      },
    ],
  ]),
  maxOid: 17000,
  loadedAt: Date.now(),
};

describe('mask specs', () => {
  it('reads every function of the config schema', () => {
    expect(parseMaskFunction('partial_last4', 's')).toMatchObject({
      fn: 'partial',
      keepFirst: 0,
      keepLast: 4,
    });
    expect(parseMaskFunction('partial(2,3)', 's')).toMatchObject({
      fn: 'partial',
      keepFirst: 2,
      keepLast: 3,
    });
    expect(parseMaskFunction("fixed('n/a')", 's')).toMatchObject({ fn: 'fixed', fixed: 'n/a' });
    for (const fn of ['redact', 'null', 'year_only', 'month_year', 'zip3', 'email', 'hash'])
      expect(parseMaskFunction(fn, 's').fn).toBe(fn);
    expect(() => parseMaskFunction('rot13', 's')).toThrow(/unknown masking function/);
    expect(parseRoleMasks('analyst', { 'public.patients.ssn': 'redact' })).toEqual([
      expect.objectContaining({ schema: 'public', table: 'patients', column: 'ssn' }),
    ]);
  });

  it('combines two masks of one value into the stricter one', () => {
    const a = parseMaskFunction('partial_last4', 'a');
    expect(strictest(a, a)).toBe(a);
    expect(strictest(a, parseMaskFunction('year_only', 'b')).fn).toBe('redact');
    expect(strictest(a, parseMaskFunction('null', 'b')).fn).toBe('null');
  });
});

describe('column plans', () => {
  const masks = new Map([
    ['public.patients.ssn', parseMaskFunction('partial_last4', 'ssn')],
    ['public.patients.name', parseMaskFunction('redact', 'name')],
  ]);
  const plan = (fields: Parameters<typeof rowDescription>[0], expressionsReadMasked = false) =>
    planColumns(decodeRowDescription(rowDescription(fields)), { catalog, masks, expressionsReadMasked });

  it('masks by origin, whatever the column is called', () => {
    const p = plan([
      { name: 'whatever', table: PATIENTS, attnum: 3 },
      { name: 'id', table: PATIENTS, attnum: 1 },
      { name: 'dob', table: PATIENTS, attnum: 4 }, // in the catalog, but not masked for this session
    ]);
    expect(p.map((a) => a.kind)).toEqual(['mask', 'pass', 'pass']);
  });

  it('masks the columns of a resolved view by the base column behind each (computed ones are redacted)', () => {
    const p = plan([
      { name: 'id', table: VIEW + 1, attnum: 1 },
      { name: 'ssn', table: VIEW + 1, attnum: 2 },
      { name: 'lower', table: VIEW + 1, attnum: 3 },
    ]);
    expect(p[0].kind).toBe('pass');
    expect(p[1]).toMatchObject({ kind: 'mask', rule: { fn: 'partial' } });
    expect(p[2]).toEqual({ kind: 'mask', rule: REDACT });
  });

  it('redacts views over masked columns and relations newer than the catalog', () => {
    expect(plan([{ name: 'id', table: VIEW, attnum: 1 }])[0]).toEqual({ kind: 'mask', rule: REDACT });
    expect(plan([{ name: 'x', table: 99999, attnum: 1 }])[0]).toEqual({ kind: 'mask', rule: REDACT });
  });

  it('builds masked values of typed columns in either format; NULL where the mask has no value of the type', () => {
    const dated = new Map([...masks, ['public.patients.dob', parseMaskFunction('year_only', 'dob')]]);
    const typed = (type: number, format: number, attnum = 4) =>
      planColumns(
        decodeRowDescription(rowDescription([{ name: 'c', table: PATIENTS, attnum, type, format }])),
        { catalog, masks: dated, expressionsReadMasked: false },
      )[0];
    // binary text is the text itself: masked by the kernel the same way
    expect(typed(25, 1, 3)).toMatchObject({ kind: 'mask', rule: { fn: 'partial' } });
    for (const format of [0, 1]) {
      expect(typed(1082, format)).toMatchObject({
        kind: 'typed',
        type: 'date',
        format,
        rule: { fn: 'year_only' },
      });
      expect(typed(1184, format)).toMatchObject({ kind: 'typed', type: 'timestamptz' });
      // a partial SSN or a redacted name is no date, no integer: NULL, in text format too
      expect(typed(1082, format, 3)).toMatchObject({ kind: 'null', reason: 'partial has no date value' });
      expect(typed(23, format, 2)).toMatchObject({ kind: 'null', reason: 'redact has no int4 value' });
    }
    // year_only on a type with no year; a type no codec reads: NULL in binary, masked as text in text format
    expect(typed(2950, 1)).toMatchObject({ kind: 'null', reason: 'year_only has no uuid value' });
    expect(typed(1083, 1)).toMatchObject({ kind: 'null', reason: 'no binary value of type 1083 is built' });
    expect(typed(1083, 0)).toMatchObject({ kind: 'mask', rule: { fn: 'year_only' } });
  });

  it('with the Safe Harbor preset, sends table columns no mask covers through the detectors', () => {
    const p = planColumns(
      decodeRowDescription(
        rowDescription([
          { name: 'id', table: PATIENTS, attnum: 1 },
          { name: 'ssn', table: PATIENTS, attnum: 3 },
          { name: 'n', table: PATIENTS, attnum: 9, type: 20, format: 1 },
          { name: 't', table: PATIENTS, attnum: 9, type: 1083, format: 1 },
          { name: 'photo', table: PATIENTS, attnum: 9, type: 17 },
          { name: 'photo', table: PATIENTS, attnum: 9, type: 17, format: 1 },
        ]),
      ),
      { catalog, masks, expressionsReadMasked: false, safeHarbor: true },
    );
    // a binary int8 is read as its number (a phone number in an int8 is found as in text); a binary time no codec
    // reads cannot be judged and becomes NULL; bytea (biometrics, photographs) is NULL in either format
    expect(p.map((a) => a.kind)).toEqual(['detect', 'mask', 'detect', 'null', 'null', 'null']);
    expect(p[2]).toEqual({ kind: 'detect', type: 'int8', format: 1 });
    expect(p[4]).toMatchObject({ reason: 'Safe Harbor: binary content (biometrics, photographs)' });
  });

  it('detects on expressions, and redacts them when the statement reads a masked column', () => {
    expect(plan([{ name: 'lower', table: 0, attnum: 0 }])[0].kind).toBe('detect');
    expect(plan([{ name: 'lower', table: 0, attnum: 0 }], true)[0]).toEqual({ kind: 'mask', rule: REDACT });
    // binary expressions: types that cannot carry an identifier's text pass, types a codec reads are detected,
    // other types become NULL
    expect(plan([{ name: 'b', table: 0, attnum: 0, type: 16, format: 1 }])[0].kind).toBe('pass');
    // an int2 holds a ZIP, a float8 a phone number: read and detected like other typed values
    expect(plan([{ name: 'n', table: 0, attnum: 0, type: 21, format: 1 }])[0]).toEqual({
      kind: 'detect',
      type: 'int2',
      format: 1,
    });
    expect(plan([{ name: 'f', table: 0, attnum: 0, type: 701, format: 1 }])[0]).toEqual({
      kind: 'detect',
      type: 'float8',
      format: 1,
    });
    expect(plan([{ name: 'n', table: 0, attnum: 0, type: 20, format: 1 }])[0]).toEqual({
      kind: 'detect',
      type: 'int8',
      format: 1,
    });
    expect(plan([{ name: 't', table: 0, attnum: 0, type: 1083, format: 1 }])[0].kind).toBe('null');
    // expressions over masked columns: a typed one is NULL, not a redaction text in a number or a date
    expect(plan([{ name: 'n', table: 0, attnum: 0, type: 20 }], true)[0]).toMatchObject({
      kind: 'null',
      reason: 'redact has no int8 value',
    });
    expect(plan([{ name: 'j', table: 0, attnum: 0, type: 3802, format: 1 }], true)[0]).toMatchObject({
      kind: 'typed',
      type: 'jsonb',
    });
  });
});

describe('ResultTracker', () => {
  const desc = rowDescription([{ name: 'ssn', table: PATIENTS, attnum: 3 }]);
  const Z = tagged('Z', Buffer.from('I'));
  const C = tagged('C', Buffer.from('SELECT 1\0'));

  it('simple protocol: rows take the RowDescription in front of them', () => {
    const t = new ResultTracker();
    t.query();
    expect(t.response(BackendCode.RowDescription, desc)).toBeNull();
    expect(t.response(BackendCode.DataRow, dataRow(['x']))?.[0].tableOid).toBe(PATIENTS);
    t.response(BackendCode.CommandComplete, C);
    expect(t.response(BackendCode.DataRow, dataRow(['x']))).toBeNull();
    t.response(BackendCode.ReadyForQuery, Z);
  });

  it('extended protocol: a statement described once describes the rows of later executions, with Bind formats', () => {
    const t = new ResultTracker();
    t.parse('s1');
    t.describeStatement('s1');
    t.sync();
    t.response(BackendCode.ParseComplete, tagged('1', Buffer.alloc(0)));
    t.response(BackendCode.ParameterDescription, tagged('t', Buffer.from([0, 0])));
    t.response(BackendCode.RowDescription, desc);
    t.response(BackendCode.ReadyForQuery, Z);
    for (const formats of [[], [1]]) {
      t.bind('', 's1', formats);
      t.execute('');
      t.sync();
      t.response(BackendCode.BindComplete, tagged('2', Buffer.alloc(0)));
      const d = t.response(BackendCode.DataRow, dataRow(['x']));
      expect(d?.[0]).toMatchObject({ tableOid: PATIENTS, attnum: 3, format: formats[0] ?? 0 });
      t.response(BackendCode.CommandComplete, C);
      t.response(BackendCode.ReadyForQuery, Z);
    }
  });

  it('after an error, skips to Sync as PostgreSQL does; an unknown statement gives no description', () => {
    const t = new ResultTracker();
    t.parse('bad');
    t.bind('', 'bad', []);
    t.execute('');
    t.sync();
    t.bind('', 'never-described', []);
    t.execute('');
    t.sync();
    t.response(BackendCode.ErrorResponse, tagged('E', Buffer.from('SERROR\0\0')));
    t.response(BackendCode.ReadyForQuery, Z);
    t.response(BackendCode.BindComplete, tagged('2', Buffer.alloc(0)));
    expect(t.response(BackendCode.DataRow, dataRow(['x']))).toBeNull();
  });

  it('reads the result formats of a Bind', () => {
    // portal "", statement "s", 1 param format (0), 1 param 'ab', 2 result formats (1, 0)
    const body = Buffer.concat([
      Buffer.from('\0s\0'),
      Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 2]),
      Buffer.from('ab'),
      Buffer.from([0, 2, 0, 1, 0, 0]),
    ]);
    expect(decodeBindResultFormats(tagged('B', body))).toEqual([1, 0]);
  });
});

describe('SessionMasker', () => {
  const key = Buffer.alloc(32, 7);
  const masks = new Map([
    ['public.patients.ssn', parseMaskFunction('hash', 'ssn')],
    ['public.patients.name', parseMaskFunction('redact', 'name')],
  ]);
  const desc = decodeRowDescription(
    rowDescription([
      { name: 'id', table: PATIENTS, attnum: 1 },
      { name: 'ssn', table: PATIENTS, attnum: 3 },
      { name: 'name', table: PATIENTS, attnum: 2 },
    ]),
  );

  for (const impl of ['typescript', 'wasm'] as const) {
    it(`masks rows (${impl}): hash gives a stable keyed token, redact the redaction text`, () => {
      const masker = new SessionMasker(catalog, '***', key, impl);
      const a = rowValues(masker.mask(dataRow(['1', '123-45-6789', 'Ada']), desc, masks, false));
      const b = rowValues(masker.mask(dataRow(['2', '123-45-6789', null]), desc, masks, false));
      expect(a[0]).toBe('1');
      expect(a[1]).toMatch(/^[0-9a-f]{32}$/);
      expect(a[1]).toBe(b[1]);
      expect(a[2]).toBe('***');
      expect(b[2]).toBeNull();
      // a row with no known description is masked whole
      expect(rowValues(masker.mask(dataRow(['1', 'x']), null, masks, false))).toEqual(['***', '***']);
    });
  }
});

describe('SessionMasker on typed columns', () => {
  const key = Buffer.alloc(32, 7);
  const masks = new Map([
    ['public.patients.dob', parseMaskFunction('year_only', 'dob')],
    ['public.patients.ssn', parseMaskFunction('hash', 'ssn')],
    ['public.patients.name', parseMaskFunction('redact', 'name')],
  ]);
  // id int4, dob date, ssn int8 (binary), name int4 in text format: a redaction is no integer
  const desc = decodeRowDescription(
    rowDescription([
      { name: 'id', table: PATIENTS, attnum: 1, type: 23, format: 1 },
      { name: 'dob', table: PATIENTS, attnum: 4, type: 1082, format: 1 },
      { name: 'ssn', table: PATIENTS, attnum: 3, type: 20, format: 1 },
      { name: 'name', table: PATIENTS, attnum: 2, type: 23, format: 0 },
    ]),
  );
  const date = (text: string) => encodeValue('date', 1, CODECS.date.fromText(text)!);

  for (const impl of ['typescript', 'wasm'] as const) {
    it(`builds binary values of the column's type (${impl}); NULL where none exists, in text format too`, () => {
      const planned: Array<{ column: string; rule: string }> = [];
      const masker = new SessionMasker(catalog, '***', key, impl, (c) => planned.push(...c));
      const row = writer.dataRow([
        encodeValue('int4', 1, 1n),
        date('1984-07-02'),
        encodeValue('int8', 1, 123456789n),
        Buffer.from('7'),
      ]);
      const out = decodeDataRow(masker.mask(row, desc, masks, false));
      expect(out[0]).toEqual(encodeValue('int4', 1, 1n));
      expect(out[1]).toEqual(date('1984-01-01'));
      expect(out[3]).toBeNull();
      // the hash token of the int8 is the one the same value gets in text format
      const textDesc = decodeRowDescription(
        rowDescription([{ name: 'ssn', table: PATIENTS, attnum: 3, type: 20 }]),
      );
      const asText = rowValues(masker.mask(dataRow(['123456789']), textDesc, masks, false))[0]!;
      expect(out[2]).toEqual(encodeValue('int8', 1, BigInt(asText)));
      expect(BigInt(asText)).not.toBe(123456789n);
      expect(planned).toEqual([
        { column: 'public.patients.dob', rule: 'dob: year_only' },
        { column: 'public.patients.ssn', rule: 'ssn: hash' },
        { column: 'public.patients.name', rule: 'name: redact → NULL (redact has no int4 value)' },
        { column: 'public.patients.ssn', rule: 'ssn: hash' },
      ]);
    });

    it(`writes fixed values of the type whatever their bytes (${impl})`, () => {
      const masker = new SessionMasker(catalog, '***', key, impl);
      const fixedDesc = decodeRowDescription(
        rowDescription([
          { name: 'name', table: PATIENTS, attnum: 2, type: 23, format: 1 },
          { name: 'ssn', table: PATIENTS, attnum: 3, type: 23, format: 1 },
        ]),
      );
      const fixed = new Map([
        ['public.patients.name', parseMaskFunction("fixed('42')", 'name')], // 00 00 00 2a: the kernel writes it
        ['public.patients.ssn', parseMaskFunction("fixed('200')", 'ssn')], // 00 00 00 c8: not UTF-8, written here
      ]);
      const row = writer.dataRow([encodeValue('int4', 1, 5n), encodeValue('int4', 1, 6n)]);
      expect(decodeDataRow(masker.mask(row, fixedDesc, fixed, false))).toEqual([
        encodeValue('int4', 1, 42n),
        encodeValue('int4', 1, 200n),
      ]);
    });
  }

  it('forwards the row itself when the detectors find nothing in a typed value', () => {
    const masker = new SessionMasker(catalog, '***', key, 'typescript');
    const harbor = decodeRowDescription(
      rowDescription([{ name: 'n', table: PATIENTS, attnum: 9, type: 20, format: 1 }]),
    );
    const clean = writer.dataRow([encodeValue('int8', 1, 42n)]);
    expect(masker.mask(clean, harbor, masks, false, true)).toBe(clean);
    const phone = writer.dataRow([encodeValue('int8', 1, 6175550142n)]);
    expect(decodeDataRow(masker.mask(phone, harbor, masks, false, true))).toEqual([null]);
  });
});

describe('identifier formats (masking.mrn_formats, identifier_formats)', () => {
  it('go into the plan of results with a detect column, where the kernel redacts values that hold one', () => {
    for (const impl of ['wasm', 'typescript'] as const) {
      const masker = new SessionMasker(catalog, '***', null, impl, null, ['MRN-######', 'HP#####-##']);
      const desc = decodeRowDescription(rowDescription([{ name: 'note', table: 0, attnum: 0 }]));
      const masks = new Map([['public.patients.ssn', parseMaskFunction('redact', 'ssn')]]);
      expect(rowValues(masker.mask(dataRow(['chart mrn-004213']), desc, masks, false))).toEqual(['***']);
      expect(rowValues(masker.mask(dataRow(['plan HP12345-67']), desc, masks, false))).toEqual(['***']);
      expect(rowValues(masker.mask(dataRow(['chart MRN-4213']), desc, masks, false))).toEqual([
        'chart MRN-4213',
      ]);
    }
  });
});
