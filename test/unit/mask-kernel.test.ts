// Masking kernel tests: known answers for every action and detector, malformed rows, and WASM == TypeScript properties.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildMaskPlan,
  containsPhi,
  createRowMasker,
  DataRowMaskError,
  findPhi,
  MaskAction,
  maskDataRowInto,
  maskDataRowTs,
  maskedRowBound,
  MaskPlanError,
  MaskStatus,
  TsRowMasker,
  WasmRowMasker,
  type MaskColumnSpec,
  type MaskPlan,
  type PhiKind,
} from '../../src/masking/kernel.js';
import { MASK_ABI_CONSTANTS } from '../../src/wasm/abi.js';
import { loadPgwardenWasm } from '../../src/wasm/loader.js';

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: DataRows are built and read back here, independently of the code under test.

type Value = string | Uint8Array | null;

/** 'D' + int32 length + int16 count + per column int32 length (-1 = NULL) + bytes. */
function dataRow(values: readonly Value[]): Buffer {
  const parts = values.map((v) =>
    v === null ? null : typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v),
  );
  const size = 7 + parts.reduce((sum, part) => sum + 4 + (part?.length ?? 0), 0);
  const row = Buffer.alloc(size);
  row[0] = 0x44;
  row.writeInt32BE(size - 1, 1);
  row.writeInt16BE(values.length, 5);
  let at = 7;
  for (const part of parts) {
    row.writeInt32BE(part === null ? -1 : part.length, at);
    at += 4;
    if (part !== null) {
      part.copy(row, at);
      at += part.length;
    }
  }
  return row;
}

/** The values of a well-formed DataRow; throws on anything else. */
function readDataRow(row: Buffer): Array<Buffer | null> {
  if (row.length < 7 || row[0] !== 0x44) throw new Error('not a DataRow');
  if (row.readInt32BE(1) !== row.length - 1) throw new Error('length field does not match');
  const count = row.readInt16BE(5);
  const values: Array<Buffer | null> = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const length = row.readInt32BE(at);
    at += 4;
    if (length === -1) {
      values.push(null);
      continue;
    }
    if (length < 0 || at + length > row.length) throw new Error('column past the end');
    values.push(row.subarray(at, at + length));
    at += length;
  }
  if (at !== row.length) throw new Error('trailing bytes');
  return values;
}

/** Masks with both twins; they must agree byte for byte (or on the error status). */
function maskBoth(row: Buffer, plan: MaskPlan): Buffer {
  const ts = outcome(() => maskDataRowTs(row, plan));
  const wasm = outcome(() => createRowMasker(plan, 'wasm').mask(row));
  expect(wasm).toEqual(ts);
  if (typeof ts === 'number') throw new DataRowMaskError(ts as MaskStatus);
  return ts;
}

function outcome(run: () => Buffer): Buffer | number {
  try {
    return Buffer.from(run());
  } catch (err) {
    if (err instanceof DataRowMaskError) return err.status;
    throw err;
  }
}

/** One value through one column spec, in both twins; returns the masked value as text (null for NULL). */
function maskOne(spec: MaskColumnSpec, value: Value, redaction?: string): string | null {
  const plan = redaction === undefined ? buildMaskPlan([spec]) : buildMaskPlan([spec], redaction);
  const [out] = readDataRow(maskBoth(dataRow([value]), plan));
  return out === null ? null : out.toString('utf8');
}

const A = MaskAction;

// ---------------------------------------------------------------------------------------------------------------

describe('masking ABI', () => {
  it('exports every masking constant with the value src/wasm/abi.ts mirrors', () => {
    const wasm = loadPgwardenWasm() as unknown as Record<string, { value: unknown }>;
    for (const [name, expected] of MASK_ABI_CONSTANTS)
      expect([name, wasm[name].value]).toEqual([name, expected]);
  });
});

describe('known answers per action', () => {
  it('pass copies values, empty strings and UTF-8 as they are and keeps NULL', () => {
    const plan = buildMaskPlan([
      { action: A.Pass },
      { action: A.Pass },
      { action: A.Pass },
      { action: A.Redact },
    ]);
    const out = readDataRow(maskBoth(dataRow(['abc', '', 'héllo wörld 😀', null]), plan));
    expect(out.map((v) => v?.toString('utf8') ?? null)).toEqual(['abc', '', 'héllo wörld 😀', null]);
  });

  it('null makes every value NULL', () => {
    expect(maskOne({ action: A.Null }, '123-45-6789')).toBeNull();
    expect(maskOne({ action: A.Null }, '')).toBeNull();
    expect(maskOne({ action: A.Null }, null)).toBeNull();
  });

  it('redact writes the redaction text whatever the value, and keeps NULL', () => {
    expect(maskOne({ action: A.Redact }, 'Jane Doe')).toBe('***');
    expect(maskOne({ action: A.Redact }, '')).toBe('***');
    expect(maskOne({ action: A.Redact }, 'Zoë 😀')).toBe('***');
    expect(maskOne({ action: A.Redact }, null)).toBeNull();
    expect(maskOne({ action: A.Redact }, 'Jane Doe', '[redacted]')).toBe('[redacted]');
    expect(maskOne({ action: A.Redact }, 'Jane Doe', '')).toBe('');
    expect(maskOne({ action: A.Redact }, 'x', 'caché')).toBe('caché');
  });

  it('partial keeps the first and last letters or digits and punctuation', () => {
    const last4 = { action: A.Partial, keepFirst: 0, keepLast: 4 };
    expect(maskOne(last4, '123-45-6789')).toBe('***-**-6789');
    expect(maskOne(last4, '123 45 6789')).toBe('*** ** 6789');
    expect(maskOne(last4, '4111-1111-1111-1111')).toBe('****-****-****-1111');
    expect(maskOne({ action: A.Partial, keepFirst: 2, keepLast: 2 }, 'abcdef')).toBe('ab**ef');
    expect(maskOne({ action: A.Partial, keepFirst: 1, keepLast: 0 }, 'Jane Doe')).toBe('J*** ***');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 0 }, 'a.b@c')).toBe('*.*@*');
  });

  it('partial masks every non-ASCII character as one star and never counts it', () => {
    expect(maskOne({ action: A.Partial, keepFirst: 1, keepLast: 0 }, 'Zoë Smith')).toBe('Z** *****');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 1 }, '😀a1')).toBe('**1');
    expect(maskOne({ action: A.Partial, keepFirst: 5, keepLast: 5 }, 'née')).toBe('n*e');
    // Stray continuation bytes and lone lead bytes (invalid UTF-8) still come out as stars.
    expect(
      maskOne({ action: A.Partial, keepFirst: 0, keepLast: 0 }, Buffer.from([0x41, 0x80, 0x80, 0x42])),
    ).toBe('***');
    expect(maskOne({ action: A.Partial, keepFirst: 9, keepLast: 9 }, Buffer.from([0xc3]))).toBe('*');
  });

  it('partial keeps a value with no more letters and digits than it may keep; empty stays empty', () => {
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 4 }, '12')).toBe('12');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 4 }, '1234')).toBe('1234');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 4 }, '12345')).toBe('*2345');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 4 }, '')).toBe('');
    expect(maskOne({ action: A.Partial, keepFirst: 0, keepLast: 4 }, null)).toBeNull();
  });

  it('year_only reduces dates and timestamps to January 1st and fails closed on anything else', () => {
    const year = { action: A.YearOnly };
    expect(maskOne(year, '1987-06-15')).toBe('1987-01-01');
    expect(maskOne(year, '1987-06-15 13:45:12')).toBe('1987-01-01 00:00:00');
    expect(maskOne(year, '1987-06-15 13:45:12.123456+02')).toBe('1987-01-01 00:00:00');
    expect(maskOne(year, '1987-06-15 13:45:12-05:30')).toBe('1987-01-01 00:00:00');
    // The era stays: 44 BC is not 44 AD.
    expect(maskOne(year, '0044-03-15 BC')).toBe('0044-01-01 BC');
    expect(maskOne(year, '0044-03-15 10:00:00.5 BC')).toBe('0044-01-01 00:00:00 BC');
    expect(maskOne({ action: A.MonthYear }, '0044-03-15 BC')).toBe('0044-03-01 BC');
    for (const bad of [
      'June 1987',
      '1987-06',
      '1987-06-1',
      '1987-06-15T13:45:12',
      '1987-06-15 B',
      '1987-06-15 BCE',
      '87-06-15',
    ]) {
      expect([bad, maskOne(year, bad)]).toEqual([bad, '***']);
    }
    expect(maskOne(year, '1987-06-15 13:45')).toBe('***');
    expect(maskOne(year, 'infinity')).toBe('***');
    expect(maskOne(year, '')).toBe('***');
    expect(maskOne(year, '１９８７-06-15')).toBe('***');
    expect(maskOne(year, null)).toBeNull();
    // Typed columns (a date in text format) get NULL instead of a text no driver parses as a date.
    const typed = { action: A.YearOnly, nullOnMismatch: true };
    expect(maskOne(typed, '07/02/1984')).toBeNull();
    expect(maskOne(typed, 'infinity')).toBeNull();
    expect(maskOne(typed, '1984-07-02')).toBe('1984-01-01');
    expect(maskOne({ action: A.Zip3, nullOnMismatch: true }, 'abc')).toBeNull();
    expect(maskOne({ action: A.Email, nullOnMismatch: true }, 'nobody')).toBeNull();
  });

  it('month_year keeps the month', () => {
    const month = { action: A.MonthYear };
    expect(maskOne(month, '1987-06-15')).toBe('1987-06-01');
    expect(maskOne(month, '1987-06-15 13:45:12.5')).toBe('1987-06-01 00:00:00');
    expect(maskOne(month, '15/06/1987')).toBe('***');
    expect(maskOne(month, null)).toBeNull();
  });

  it('zip3 keeps the first three digits of a five-digit ZIP and drops the rest', () => {
    const zip3 = { action: A.Zip3 };
    expect(maskOne(zip3, '90210')).toBe('902**');
    expect(maskOne(zip3, '90210-1234')).toBe('902**');
    expect(maskOne(zip3, '902101234')).toBe('902**');
    expect(maskOne(zip3, '9021')).toBe('***');
    expect(maskOne(zip3, 'A0210')).toBe('***');
    expect(maskOne(zip3, ' 90210')).toBe('***');
    expect(maskOne(zip3, '')).toBe('***');
    expect(maskOne(zip3, null)).toBeNull();
  });

  it('email keeps the domain after the last @', () => {
    const email = { action: A.Email };
    expect(maskOne(email, 'jane.doe@example.com')).toBe('***@example.com');
    expect(maskOne(email, '"a@b"@x.org')).toBe('***@x.org');
    expect(maskOne(email, 'jürgen@bücher.de')).toBe('***@bücher.de');
    expect(maskOne(email, '@x')).toBe('***@x');
    expect(maskOne(email, 'jane@')).toBe('***@');
    expect(maskOne(email, 'no-at-sign')).toBe('***');
    expect(maskOne(email, '')).toBe('***');
    expect(maskOne(email, null)).toBeNull();
  });

  it('fixed writes the column text, per column', () => {
    const plan = buildMaskPlan([
      { action: A.Fixed, fixed: 'REDACTED' },
      { action: A.Fixed, fixed: 'Ñame' },
      { action: A.Fixed, fixed: '' },
      { action: A.Fixed, fixed: 'x' },
    ]);
    const out = readDataRow(maskBoth(dataRow(['Jane', '', 'Doe', null]), plan));
    expect(out.map((v) => v?.toString('utf8') ?? null)).toEqual(['REDACTED', 'Ñame', '', null]);
  });

  it('mixes actions in one row and recomputes every length', () => {
    const plan = buildMaskPlan([
      { action: A.Pass },
      { action: A.Redact },
      { action: A.Partial, keepLast: 4 },
      { action: A.YearOnly },
      { action: A.Zip3 },
      { action: A.Email },
      { action: A.Detect },
      { action: A.Detect },
      { action: A.Null },
    ]);
    const row = dataRow([
      '42',
      'Jane Doe',
      '123-45-6789',
      '1987-06-15',
      '90210-1234',
      'jane@example.com',
      'call 555-123-4567',
      'no identifiers here',
      'diabetes',
    ]);
    const out = maskBoth(row, plan);
    expect(readDataRow(out).map((v) => v?.toString('utf8') ?? null)).toEqual([
      '42',
      '***',
      '***-**-6789',
      '1987-01-01',
      '902**',
      '***@example.com',
      '***',
      'no identifiers here',
      null,
    ]);
  });

  it('handles the row with no columns and values around the initial buffer size', () => {
    expect(maskBoth(dataRow([]), buildMaskPlan([]))).toEqual(dataRow([]));
    const plan = buildMaskPlan([{ action: A.Partial, keepLast: 4 }, { action: A.Redact }]);
    for (const size of [0, 1, 16 * 1024 - 30, 16 * 1024, 64 * 1024 + 3]) {
      const value = Buffer.alloc(size, 0x37);
      const out = readDataRow(maskBoth(dataRow([value, value]), plan));
      expect(out[0]?.length).toBe(size);
      expect(out[0]?.subarray(0, Math.max(0, size - 4)).every((b) => b === 0x2a)).toBe(true);
      expect(out[1]?.toString()).toBe('***');
    }
  });
});

describe('content detectors', () => {
  const positives: Array<[string, PhiKind]> = [
    ['123-45-6789', 'ssn'],
    ['123 45 6789', 'ssn'],
    ['123456789', 'ssn'],
    ['123-45 6789', 'ssn'],
    ['SSN:123-45-6789.', 'ssn'],
    ['ssn123456789x', 'ssn'],
    ['899-99-9999', 'ssn'],
    ['555-123-4567', 'phone'],
    ['(555) 123-4567', 'phone'],
    ['(555)123-4567', 'phone'],
    ['555.123.4567', 'phone'],
    ['555 123 4567', 'phone'],
    ['5551234567', 'phone'],
    ['+1 555 123 4567', 'phone'],
    ['+1-555-123-4567', 'phone'],
    ['+15551234567', 'phone'],
    ['1-555-123-4567', 'phone'],
    ['1 (555) 123-4567', 'phone'],
    ['(555 123-4567', 'phone'],
    ['15551234567', 'phone'],
    ['tel: 555-123-4567 (home)', 'phone'],
    ['4111 1111 1111 1111', 'card'],
    ['4111-1111-1111-1111', 'card'],
    ['4111111111111111', 'card'],
    ['378282246310005', 'card'],
    ['4222222222222', 'card'],
    ['6011 0009 9013 9424', 'card'],
    ['4111 1111 1111 1111 2024', 'card'],
    ['card 5555-5555-5555-4444 exp', 'card'],
    ['1987-06-15', 'date'],
    ['born 1987-06-15 in Ohio', 'date'],
    ['1987-06-15 13:45:12', 'date'],
    ['2000-12-31', 'date'],
    ['90210', 'zip'],
    ['90210-1234', 'zip'],
    ['Springfield, IL 62704', 'zip'],
    ['jane.doe@example.com', 'email'],
    ['a@b.co', 'email'],
    ["write to o'brien+tag@mail.example.org today", 'email'],
    ['jürgen@bücher.de', 'email'],
    ['7/2/1984', 'date'],
    ['seen 07/02/84 at noon', 'date'],
    ['02.07.1984', 'date'],
    ['12-31-1999', 'date'],
    ['31/12/99', 'date'],
    ['July 2, 1984', 'date'],
    ['born jul 2nd 1984', 'date'],
    ['Jul-02-1984', 'date'],
    ['Sept. 30 2001', 'date'],
    ['2 July 1984', 'date'],
    ['02-Jul-1984', 'date'],
    ['2nd Jul., 1984', 'date'],
    ['DOB 02JUL1984', 'date'],
    ['1 December 2024', 'date'],
    ['123 Main St', 'address'],
    ['lives at 221B Baker Street, London', 'address'],
    ['1600 Pennsylvania Avenue NW', 'address'],
    ['12 W. 5th Ave.', 'address'],
    ['350 5th Avenue', 'address'],
    ['9 Old Mill rd', 'address'],
    ['PO Box 12', 'address'],
    ['p.o. box #7', 'address'],
    ['P O Box 3', 'address'],
    ['see https://portal.example.org/me', 'url'],
    ['HTTP://x.y', 'url'],
    ['ftp://files', 'url'],
    ['www.example.org', 'url'],
    ['from 192.168.1.20 today', 'ip'],
    ['10.0.0.1', 'ip'],
    ['255.255.255.255', 'ip'],
    ['2001:db8::8a2e:370:7334', 'ip'],
    ['fe80::1', 'ip'],
    ['::1', 'ip'],
    ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'ip'],
    ['device 00:1a:2b:3c:4d:5e', 'mac'],
    ['AA-BB-CC-DD-EE-FF', 'mac'],
    ['VIN 1HGCM82633A004352', 'vin'],
    ['1HGCM82633A004352', 'vin'],
  ];

  const negatives = [
    '',
    'no identifiers here',
    '000-12-3456',
    '666-12-3456',
    '900-12-3456',
    '999-12-3456',
    '123-00-4567',
    '123-45-0000',
    '123--45-6789',
    '555-1234',
    '555-123-456',
    '55512345678',
    '4111111111111112',
    '4111  1111 1111 1111',
    '411111111111',
    '2024-13-01',
    '2024-05-32',
    '2024-00-10',
    '1234',
    '123456',
    '12-345',
    'user@localhost',
    '@example.com',
    'a@.com',
    'a@b.',
    'a @b.com',
    'price 1234.56 USD',
    '13/13/1984',
    '0/12/1984',
    '7/2/198',
    '7/2-1984',
    '1.2.3',
    'Julyish 2, 1984',
    'July 32, 1984',
    'July 2 84',
    'Mayday 2 1984',
    'may improve in 2 weeks',
    '5 patients saw Dr Smith',
    '12 main st',
    'Main St',
    'Box 12',
    'http://',
    'see www.',
    'xhttp://a.b',
    '256.1.1.1',
    '10:30:00',
    '12:30',
    'select x::int',
    'ab::int',
    '00:1a:2b:3c:4d',
    '00:1a-2b:3c:4d:5e',
    '1HGCM8263BA04B52',
    '1HGCM8263BA04B52XY',
    '1hgcm8263ba04b52x',
    'IHGCM8263BA04B52X',
    'ABCDEFGHJKLMNPRST',
  ];

  it.each(positives)('finds %s (%s)', (text, kind) => {
    expect(findPhi(Buffer.from(text))).toBe(kind);
    expect(maskOne({ action: A.Detect }, text)).toBe('***');
  });

  it.each(negatives.map((t) => [t]))('passes %j', (text) => {
    expect(findPhi(Buffer.from(text))).toBeUndefined();
    expect(maskOne({ action: A.Detect }, text)).toBe(text);
  });

  it('finds every kind at every offset from the 16-byte blocks the kernel scans, and not in clean text', () => {
    const plan = buildMaskPlan([{ action: A.Detect }]);
    for (let pad = 0; pad < 34; pad++) {
      for (const [text] of positives) {
        expect(
          maskOne({ action: A.Detect }, `${'. '.repeat(pad >> 1)}${pad & 1 ? ' ' : ''}${text} end`),
        ).toBe('***');
      }
      const clean = `${'x'.repeat(pad)} Patient reports improved sleep; continue the current dosage and review.`;
      expect(readDataRow(maskBoth(dataRow([clean]), plan))[0]?.toString()).toBe(clean);
    }
  });

  it('finds the configured identifier formats as whole words, letters in any case', () => {
    const formats = ['MRN-######', '@@#######', 'HP#####-##'].map((f) => Buffer.from(f));
    const plan = buildMaskPlan([{ action: A.Detect }], '***', ['MRN-######', '@@#######', 'HP#####-##']);
    const cases: Array<[string, boolean]> = [
      ['MRN-004213', true],
      ['chart mrn-004213.', true],
      ['AB1234567', true],
      ['plan hp12345-67 active', true],
      ['MRN-0421', false],
      ['MRN-0042135', false],
      ['XMRN-004213', false],
      ['AB12345678', false],
      ['A11234567', false],
    ];
    for (const [text, found] of cases) {
      expect(findPhi(Buffer.from(text), 0, Buffer.byteLength(text), formats), text).toBe(
        found ? 'identifier' : undefined,
      );
      const [masked] = readDataRow(maskBoth(dataRow([text]), plan));
      expect(masked?.toString('utf8'), text).toBe(found ? '***' : text);
    }
  });

  it('keeps NULL and passes non-ASCII text without identifiers', () => {
    expect(maskOne({ action: A.Detect }, null)).toBeNull();
    expect(maskOne({ action: A.Detect }, 'Zoë, née 😀')).toBe('Zoë, née 😀');
  });

  it('checks Luhn on every length from 13 to 19 and no other', () => {
    // A Luhn-valid number of each length: digits 4, then 1s, then the check digit.
    for (let length = 11; length <= 21; length++) {
      const body = '4' + '1'.repeat(length - 2);
      const check = luhnCheckDigit(body);
      const valid = body + String(check);
      const invalid = body + String((check + 1) % 10);
      // From 11 digits on (10 would be a phone) and starting with 4 (not a country code), only the card rule applies.
      const expected = length >= 13 && length <= 19 ? 'card' : undefined;
      expect([valid, findPhi(Buffer.from(valid))]).toEqual([valid, expected]);
      expect([invalid, findPhi(Buffer.from(invalid))]).toEqual([invalid, undefined]);
      expect(maskOne({ action: A.Detect }, valid)).toBe(expected === undefined ? valid : '***');
      expect(maskOne({ action: A.Detect }, invalid)).toBe(invalid);
    }
  });
});

function luhnCheckDigit(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = body.charCodeAt(body.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

describe('malformed rows', () => {
  const plan = buildMaskPlan([{ action: A.Redact }, { action: A.Pass }]);
  const good = dataRow(['abc', 'de']);
  const withLength = (row: Buffer, at: number, value: number): Buffer => {
    const copy = Buffer.from(row);
    copy.writeInt32BE(value, at);
    return copy;
  };
  const cases: Array<[string, Buffer, MaskStatus]> = [
    ['an empty buffer', Buffer.alloc(0), MaskStatus.MalformedRow],
    ['a row shorter than its header', good.subarray(0, 6), MaskStatus.MalformedRow],
    ['another message type', Buffer.concat([Buffer.from('T'), good.subarray(1)]), MaskStatus.MalformedRow],
    ['a length field that is too large', withLength(good, 1, good.length), MaskStatus.MalformedRow],
    ['a length field that is too small', withLength(good, 1, good.length - 2), MaskStatus.MalformedRow],
    ['a truncated row', good.subarray(0, good.length - 1), MaskStatus.MalformedRow],
    ['a column length past the end', withLength(good, 7 + 4 + 3, 3), MaskStatus.MalformedRow],
    ['a column length below -1', withLength(good, 7, -2), MaskStatus.MalformedRow],
    ['a column length of INT32_MIN', withLength(good, 7, -0x80000000), MaskStatus.MalformedRow],
    ['a missing column', fixLength(dataRow(['abc']), 2), MaskStatus.MalformedRow],
    ['trailing bytes', fixLength(Buffer.concat([good, Buffer.from([0])]), 2), MaskStatus.MalformedRow],
    ['a negative column count', fixLength(dataRow(['abc', 'de']), -1), MaskStatus.MalformedRow],
    ['one column too few', dataRow(['abc']), MaskStatus.ColumnCount],
    ['one column too many', dataRow(['abc', 'de', 'f']), MaskStatus.ColumnCount],
  ];

  it.each(cases)('refuses %s in both twins', (_name, row, status) => {
    let tsError: unknown;
    let wasmError: unknown;
    try {
      maskDataRowTs(row, plan);
    } catch (err) {
      tsError = err;
    }
    try {
      createRowMasker(plan, 'wasm').mask(row);
    } catch (err) {
      wasmError = err;
    }
    expect(tsError).toBeInstanceOf(DataRowMaskError);
    expect(wasmError).toBeInstanceOf(DataRowMaskError);
    expect((tsError as DataRowMaskError).status).toBe(status);
    expect((wasmError as DataRowMaskError).status).toBe(status);
    expect((wasmError as DataRowMaskError).code).toBe('PGW_MASK_ROW');
  });

  it('reports an output that is too small in both twins', () => {
    const row = dataRow(['abc', 'de']);
    const bound = maskedRowBound(row.length, plan);
    const masker = new WasmRowMasker(plan);
    for (let capacity = 0; capacity <= bound; capacity++) {
      const ts = maskDataRowInto(row, plan, Buffer.alloc(capacity));
      const wasm = masker.tryMask(row, capacity);
      const expected = capacity < 7 + 4 + 3 + 4 + 2 ? MaskStatus.OutputTooSmall : 7 + 4 + 3 + 4 + 2;
      expect([capacity, typeof wasm === 'number' ? wasm : wasm.length]).toEqual([capacity, expected]);
      expect([capacity, ts]).toEqual([capacity, expected]);
    }
  });
});

/** Rewrites the length field to match the buffer and sets the column count. */
function fixLength(row: Buffer, count: number): Buffer {
  const copy = Buffer.from(row);
  copy.writeInt32BE(copy.length - 1, 1);
  copy.writeInt16BE(count, 5);
  return copy;
}

describe('plans', () => {
  it('marks an all-pass plan untouched and forwards the row itself, without a check or a copy', () => {
    const plan = buildMaskPlan([{ action: A.Pass }, { action: A.Pass }]);
    expect(plan.untouched).toBe(true);
    const row = dataRow(['a', null]);
    expect(createRowMasker(plan, 'wasm').mask(row)).toBe(row);
    expect(createRowMasker(plan, 'typescript').mask(row)).toBe(row);
    expect(maskDataRowTs(row, plan)).toBe(row);
    expect(buildMaskPlan([{ action: A.Pass }, { action: A.Detect }]).untouched).toBe(false);
    expect(buildMaskPlan([]).untouched).toBe(true);
  });

  it('refuses specs the kernel cannot honour', () => {
    const bad: Array<[MaskColumnSpec[], string?]> = [
      [[{ action: 10 as MaskAction }]],
      [[{ action: -1 as MaskAction }]],
      [[{ action: A.Fixed }]],
      [[{ action: A.Redact, fixed: 'x' }]],
      [[{ action: A.Pass, keepLast: 4 }]],
      [[{ action: A.Partial, keepLast: -1 }]],
      [[{ action: A.Partial, keepFirst: 1.5 }]],
      [[{ action: A.Partial, keepFirst: 0x10000 }]],
      [[{ action: A.Fixed, fixed: 'x'.repeat(1025) }]],
      [[{ action: A.Redact }], 'é'.repeat(513)],
      [Array.from({ length: 0x8000 }, () => ({ action: A.Pass }))],
      [[{ action: A.Redact, nullOnMismatch: true }]],
      [[{ action: A.Partial, nullOnMismatch: true }]],
    ];
    for (const [columns, redaction] of bad) {
      expect(() => buildMaskPlan(columns, redaction)).toThrow(MaskPlanError);
    }
    expect(
      buildMaskPlan([{ action: A.Fixed, fixed: 'x'.repeat(1024) }], 'y'.repeat(1024)).growthPerColumn,
    ).toBe(1024);
  });

  it('reloads its plan after another masker ran, and survives memory growth in between', () => {
    const redact = new WasmRowMasker(buildMaskPlan([{ action: A.Redact }], 'R'));
    const fixed = new WasmRowMasker(buildMaskPlan([{ action: A.Fixed, fixed: 'F' }], 'R'));
    const row = dataRow(['secret']);
    expect(readDataRow(redact.mask(row))[0]?.toString()).toBe('R');
    expect(readDataRow(fixed.mask(row))[0]?.toString()).toBe('F');
    loadPgwardenWasm().memory.grow(1);
    expect(readDataRow(redact.mask(row))[0]?.toString()).toBe('R');
    // A row larger than every buffer so far: the region grows and the plan is copied in again.
    const big = dataRow(['x'.repeat(300 * 1024)]);
    expect(readDataRow(fixed.mask(big))[0]?.toString()).toBe('F');
    expect(readDataRow(redact.mask(row))[0]?.toString()).toBe('R');
  });

  it('masks rows above the WASM limit with the twin instead of truncating them', () => {
    const plan = buildMaskPlan([{ action: A.Partial, keepLast: 2 }, { action: A.Pass }]);
    const masker = new WasmRowMasker(plan, { maxWasmRow: 64 });
    const row = dataRow(['abcdefgh'.repeat(20), 'tail']);
    expect(masker.mask(row)).toEqual(maskDataRowTs(row, plan));
    expect(readDataRow(masker.mask(row))[0]?.toString()).toBe('*'.repeat(158) + 'gh');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Properties: random rows x random plans, WASM against the TypeScript twin.

// Detector-shaped text: digits and the separators the detectors look at, so that they fire often both ways.
const detectorText = fc
  .array(fc.constantFrom(...'0123456789012345678901234567890123456789 -.()+@ab/:é'.split('')), {
    maxLength: 30,
  })
  .map((chars) => chars.join(''));

// Text built from the pieces the word-shaped detectors (dates with month names, street addresses, URLs, IP and MAC
// addresses, VINs, identifier formats) look at, so that they fire, and nearly fire, often.
const wordyText = fc
  .array(
    fc.constantFrom(
      ...['Jul', 'july', 'Sept', 'may', '2nd', '31', '1984', '02', ' ', ' ', ',', '-', '.', '/', ':', '::'],
      ...['Main', 'St', 'avenue', '5th', '221B', 'PO', 'p.o.', 'Box', '#', 'www.', 'http://', 'ftp://', 'x'],
      ...['fe80', 'ab', '0', '192', '255', '1HGCM82633A004352', 'MRN-', '004213', 'AB', '1234567'],
    ),
    { maxLength: 12 },
  )
  .map((pieces) => pieces.join(''));

// Long enough for the kernel's 16-byte SIMD blocks, with identifiers across block boundaries.
const longText = fc
  .array(fc.oneof(wordyText, detectorText, fc.string({ maxLength: 20 })), { minLength: 2, maxLength: 8 })
  .map((parts) => parts.join(' '));

const FORMATS = ['MRN-######', '@@#######'];

const valueArb: fc.Arbitrary<Value> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }) },
  { weight: 3, arbitrary: detectorText },
  { weight: 3, arbitrary: wordyText },
  { weight: 2, arbitrary: longText },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '1987-06-15',
      '1987-06-15 13:45:12.123+02',
      '0044-03-15 BC',
      '0044-03-15 10:00:00 BC',
      '90210-1234',
      'jane@example.com',
      '123-45-6789',
      '4111 1111 1111 1111',
    ),
  },
);

const specArb: fc.Arbitrary<MaskColumnSpec> = fc.oneof(
  fc.constantFrom<MaskColumnSpec>(
    { action: A.Pass },
    { action: A.Null },
    { action: A.Redact },
    { action: A.YearOnly },
    { action: A.MonthYear },
    { action: A.Zip3 },
    { action: A.Email },
    { action: A.Detect },
    { action: A.YearOnly, nullOnMismatch: true },
    { action: A.MonthYear, nullOnMismatch: true },
    { action: A.Zip3, nullOnMismatch: true },
    { action: A.Email, nullOnMismatch: true },
  ),
  fc
    .record({ keepFirst: fc.nat({ max: 6 }), keepLast: fc.nat({ max: 6 }) })
    .map((keep): MaskColumnSpec => ({ action: A.Partial, ...keep })),
  fc.string({ unit: 'binary', maxLength: 12 }).map((fixed): MaskColumnSpec => ({ action: A.Fixed, fixed })),
);

// Identifier formats as configured: '#' digits and '@' letters among literal characters.
const formatArb = fc
  .array(fc.constantFrom(...'###@@MRN-AB(.'.split('')), { minLength: 1, maxLength: 10 })
  .map((chars) => chars.join(''));

const caseArb = fc.record({
  columns: fc.array(fc.tuple(valueArb, specArb), { maxLength: 40 }),
  redaction: fc.oneof(fc.constant('***'), fc.string({ unit: 'binary', maxLength: 8 })),
  formats: fc.oneof(
    fc.constant([]),
    fc.constant(['MRN-######', '@@#######']),
    fc.array(formatArb, { maxLength: 3 }),
  ),
});

function toCase(c: {
  columns: Array<[Value, MaskColumnSpec]>;
  redaction: string;
  formats: readonly string[];
}): {
  row: Buffer;
  plan: MaskPlan;
} {
  return {
    row: dataRow(c.columns.map(([value]) => value)),
    plan: buildMaskPlan(
      c.columns.map(([, spec]) => spec),
      c.redaction,
      c.formats,
    ),
  };
}

const RUNS = { numRuns: 400 };

describe('properties: WASM == TypeScript', () => {
  it('masks random rows with random plans byte for byte alike, into well-formed DataRows', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { row, plan } = toCase(c);
        const wasm = createRowMasker(plan, 'wasm').mask(row);
        const ts = maskDataRowTs(row, plan);
        expect(wasm).toEqual(ts);
        const values = readDataRow(wasm);
        expect(values.length).toBe(c.columns.length);
        const input = readDataRow(row);
        values.forEach((value, i) => {
          // NULL in, NULL out, whatever the action; Null makes NULL of a value, and so does a shaped action with
          // nullOnMismatch for a value of another shape (which the redaction would otherwise replace).
          const column = plan.columns[i];
          if (input[i] === null || column.action === A.Null) expect(value).toBeNull();
          else if (!column.nullOnMismatch) expect(value).not.toBeNull();
          else if (value === null) {
            const asRedacted = maskDataRowTs(
              dataRow([input[i]]),
              buildMaskPlan([{ action: column.action }], '\u0000'),
            );
            expect(readDataRow(asRedacted)[0]?.toString()).toBe('\u0000');
          }
        });
      }),
      RUNS,
    );
  });

  it('gives back the input bytes for pass-only plans, through the kernel as well', () => {
    fc.assert(
      fc.property(fc.array(valueArb, { maxLength: 40 }), (values) => {
        const row = dataRow(values);
        const plan = buildMaskPlan(values.map(() => ({ action: A.Pass })));
        expect(createRowMasker(plan, 'wasm').mask(row)).toBe(row);
        expect(maskDataRowTs(row, plan)).toBe(row);
        // Forced through the kernel and the twin's row walk: still the same bytes.
        expect(new WasmRowMasker(plan).tryMask(row)).toEqual(row);
        const out = Buffer.alloc(maskedRowBound(row.length, plan));
        expect(out.subarray(0, maskDataRowInto(row, plan, out))).toEqual(row);
      }),
      RUNS,
    );
  });

  it('never lets a redact, null or fixed column carry its original value', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { row, plan } = toCase(c);
        const input = readDataRow(row);
        const output = readDataRow(createRowMasker(plan, 'wasm').mask(row));
        plan.columns.forEach((column, i) => {
          const original = input[i];
          if (original === null || original.length < 4) return;
          let replacement: Buffer;
          if (column.action === A.Redact) replacement = plan.redaction;
          else if (column.action === A.Fixed) replacement = column.fixed ?? plan.redaction;
          else if (column.action === A.Null) replacement = Buffer.alloc(0);
          else return;
          if (replacement.includes(original)) return;
          expect(output[i]?.includes(original) ?? false).toBe(false);
        });
      }),
      RUNS,
    );
  });

  it('agrees on detection: a detect column is either redacted (PHI found) or passed unchanged', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(detectorText, longText), { minLength: 1, maxLength: 8 }), (texts) => {
        const row = dataRow(texts);
        const plan = buildMaskPlan(
          texts.map(() => ({ action: A.Detect })),
          '<phi>',
          FORMATS,
        );
        const formats = FORMATS.map((f) => Buffer.from(f));
        const wasm = readDataRow(createRowMasker(plan, 'wasm').mask(row));
        const ts = readDataRow(maskDataRowTs(row, plan));
        texts.forEach((text, i) => {
          const bytes = Buffer.from(text);
          const expected = containsPhi(bytes, 0, bytes.length, formats) ? '<phi>' : text;
          expect(wasm[i]?.toString()).toBe(expected);
          expect(ts[i]?.toString()).toBe(expected);
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('agrees on every output capacity: the same length or the same OutputTooSmall', () => {
    fc.assert(
      fc.property(caseArb, fc.double({ min: 0, max: 1, noNaN: true }), (c, fraction) => {
        const { row, plan } = toCase(c);
        const capacity = Math.floor(maskedRowBound(row.length, plan) * fraction);
        const out = Buffer.alloc(capacity);
        const ts = maskDataRowInto(row, plan, out);
        const wasm = new WasmRowMasker(plan).tryMask(row, capacity);
        if (ts < 0) expect(wasm).toBe(ts);
        else expect(wasm).toEqual(out.subarray(0, ts));
      }),
      RUNS,
    );
  });

  it('agrees on damaged rows: the same status or the same bytes', () => {
    const damage = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({
        kind: fc.constant('append' as const),
        at: fc.nat(),
        byte: fc.integer({ min: 0, max: 255 }),
      }),
    );
    fc.assert(
      fc.property(caseArb, damage, fc.boolean(), (c, d, fixHeader) => {
        const { row: intact, plan } = toCase(c);
        let row: Buffer;
        if (d.kind === 'truncate') row = intact.subarray(0, d.at % (intact.length + 1));
        else if (d.kind === 'append') row = Buffer.concat([intact, Buffer.from([d.byte])]);
        else {
          row = Buffer.from(intact);
          row[d.at % row.length] = d.byte;
        }
        // Repairing the length field reaches the column walk instead of stopping at the header.
        if (fixHeader && row.length >= 5) {
          row = Buffer.from(row);
          row.writeUInt32BE(row.length - 1, 1);
        }
        const forced = { ...plan, untouched: false };
        const ts = outcome(() => maskDataRowTs(row, forced));
        const wasm = outcome(() => new WasmRowMasker(forced).mask(row));
        expect(wasm).toEqual(ts);
      }),
      RUNS,
    );
  });

  it('writes the same bytes into a caller buffer at any offset, or refuses when they do not fit', () => {
    fc.assert(
      fc.property(caseArb, fc.nat({ max: 16 }), fc.boolean(), (c, offset, small) => {
        const { row, plan } = toCase(c);
        const expected = maskDataRowTs(row, plan);
        const size = small ? offset + Math.max(0, expected.length - 1) : offset + expected.length + 3;
        for (const masker of [
          new WasmRowMasker(plan),
          new TsRowMasker(plan),
          new WasmRowMasker(plan, { maxWasmRow: 0 }),
        ]) {
          const target = Buffer.alloc(size, 0xee);
          if (small) {
            expect(() => masker.maskInto(row, target, offset)).toThrow(DataRowMaskError);
            expect(target.every((b) => b === 0xee)).toBe(true);
          } else {
            expect(masker.maskInto(row, target, offset)).toBe(expected.length);
            expect(target.subarray(offset, offset + expected.length)).toEqual(expected);
            expect(target.subarray(0, offset).every((b) => b === 0xee)).toBe(true);
            expect(target.subarray(offset + expected.length).every((b) => b === 0xee)).toBe(true);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('matches the TypeScript masker object too', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { row, plan } = toCase(c);
        expect(new TsRowMasker(plan).mask(row)).toEqual(createRowMasker(plan).mask(row));
      }),
      { numRuns: 100 },
    );
  });
});
