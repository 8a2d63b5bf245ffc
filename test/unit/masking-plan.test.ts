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
import { BackendCode } from '../../src/protocol/codes.js';

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

function dataRow(values: Array<string | null>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0].writeInt16BE(values.length);
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) len.writeInt32BE(-1);
    else len.writeInt32BE(Buffer.byteLength(v));
    parts.push(len, ...(v === null ? [] : [Buffer.from(v)]));
  }
  return tagged('D', Buffer.concat(parts));
}

function rowValues(row: Buffer): Array<string | null> {
  const n = row.readInt16BE(5);
  const out: Array<string | null> = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    const len = row.readInt32BE(at);
    at += 4;
    out.push(len < 0 ? null : row.toString('utf8', at, at + len));
    at += Math.max(0, len);
  }
  return out;
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

  it('redacts views over masked columns and relations newer than the catalog; nulls masked binary values', () => {
    expect(plan([{ name: 'id', table: VIEW, attnum: 1 }])[0]).toEqual({ kind: 'mask', rule: REDACT });
    expect(plan([{ name: 'x', table: 99999, attnum: 1 }])[0]).toEqual({ kind: 'mask', rule: REDACT });
    // binary text is the text itself: masked the same way; other binary types cannot be rebuilt masked
    expect(plan([{ name: 'ssn', table: PATIENTS, attnum: 3, format: 1 }])[0].kind).toBe('mask');
    expect(plan([{ name: 'ssn', table: PATIENTS, attnum: 3, type: 1082, format: 1 }])[0].kind).toBe('null');
  });

  it('with the Safe Harbor preset, sends table columns no mask covers through the detectors', () => {
    const p = planColumns(
      decodeRowDescription(
        rowDescription([
          { name: 'id', table: PATIENTS, attnum: 1 },
          { name: 'ssn', table: PATIENTS, attnum: 3 },
          { name: 'n', table: PATIENTS, attnum: 9, type: 20, format: 1 },
        ]),
      ),
      { catalog, masks, expressionsReadMasked: false, safeHarbor: true },
    );
    expect(p.map((a) => a.kind)).toEqual(['detect', 'mask', 'pass']);
  });

  it('detects on expressions, and redacts them when the statement reads a masked column', () => {
    expect(plan([{ name: 'lower', table: 0, attnum: 0 }])[0].kind).toBe('detect');
    expect(plan([{ name: 'lower', table: 0, attnum: 0 }], true)[0]).toEqual({ kind: 'mask', rule: REDACT });
    // binary expressions: only types that cannot carry an identifier's text pass
    expect(plan([{ name: 'n', table: 0, attnum: 0, type: 21, format: 1 }])[0].kind).toBe('pass');
    expect(plan([{ name: 'n', table: 0, attnum: 0, type: 20, format: 1 }])[0].kind).toBe('null');
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
