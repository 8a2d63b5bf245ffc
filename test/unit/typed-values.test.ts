// Typed values and their masks without a server: the calendar against JavaScript's (both proleptic Gregorian),
// every codec's round trips and PostgreSQL's own bytes for known values (captured from PostgreSQL 15 with
// date_send, timestamp_send, numeric_send, ...), and every mask on every type in both formats: the same masked value
// in text and in binary, hash tokens equal across formats.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FIRST_DAY, LAST_DAY, same, VALUES } from '../fixtures/typed-values.js';
import { parseMaskFunction, type MaskRule } from '../../src/masking/mask-spec.js';
import { typedColumnMask, typedDetector, typedMaskUnavailable } from '../../src/masking/typed-masks.js';
import {
  DATE_NOBEGIN,
  DATE_NOEND,
  date2j,
  isValidDate,
  isValidTimestamp,
  j2date,
  POSTGRES_EPOCH_JDATE,
  TIMESTAMP_NOBEGIN,
  TIMESTAMP_NOEND,
  truncateDate,
  truncateTimestamp,
  USECS_PER_DAY,
} from '../../src/masking/pg-calendar.js';
import {
  CODECS,
  decodeValue,
  encodeValue,
  valueTypeOf,
  type Codec,
  type ValueType,
} from '../../src/masking/typed-values.js';

const hex = (h: string): Buffer => Buffer.from(h, 'hex');

// ---- the calendar -----------------------------------------------------------------------------------------------

/** Julian day of 1970-01-01: JavaScript's day 0. */
const UNIX_EPOCH_JDATE = 2440588;
const MS_PER_DAY = 86_400_000;
/** Days (since 2000-01-01) PostgreSQL has and JavaScript's Date (±8.64e15 ms around 1970) can hold too. */
const LAST_JS_DAY = 100_000_000 - (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) - 1;

/** The calendar date of a Julian day by JavaScript (years are astronomical there too: 0 is 1 BC). */
function jsDate(jd: number): { year: number; month: number; day: number } {
  const d = new Date((jd - UNIX_EPOCH_JDATE) * MS_PER_DAY);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** The Julian day of a calendar date by JavaScript (setUTCFullYear: years 0-99 are not taken as 19xx). */
function jsJulian(year: number, month: number, day: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  return d.getTime() / MS_PER_DAY + UNIX_EPOCH_JDATE;
}

const floorDiv = (a: bigint, b: bigint): bigint => (a % b < 0n ? a / b - 1n : a / b);

describe('the calendar (date2j, j2date)', () => {
  it('has 2000-01-01 as day 0 and 4714-11-24 BC as Julian day 0', () => {
    expect(date2j(2000, 1, 1)).toBe(POSTGRES_EPOCH_JDATE);
    expect(date2j(-4713, 11, 24)).toBe(0);
    expect(j2date(0)).toEqual({ year: -4713, month: 11, day: 24 });
    expect(date2j(1970, 1, 1)).toBe(UNIX_EPOCH_JDATE);
  });

  it('agrees with JavaScript on every day both can hold, BC and before 2000 included', () => {
    fc.assert(
      fc.property(fc.integer({ min: FIRST_DAY, max: LAST_JS_DAY }), (days) => {
        const jd = days + POSTGRES_EPOCH_JDATE;
        const date = j2date(jd);
        expect(date).toEqual(jsDate(jd));
        expect(date2j(date.year, date.month, date.day)).toBe(jsJulian(date.year, date.month, date.day));
      }),
      { numRuns: 5000 },
    );
  });

  it('round-trips every Julian day PostgreSQL has', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2147483493 }), (jd) => {
        const { year, month, day } = j2date(jd);
        expect(date2j(year, month, day)).toBe(jd);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('truncation (year_only, month_year)', () => {
  it('gives the first day of the year or month, as JavaScript counts it', () => {
    fc.assert(
      fc.property(fc.integer({ min: FIRST_DAY + 366, max: LAST_JS_DAY }), fc.boolean(), (days, keepMonth) => {
        const jd = days + POSTGRES_EPOCH_JDATE;
        const { year, month } = jsDate(jd);
        const expected = jsJulian(year, keepMonth ? month : 1, 1) - POSTGRES_EPOCH_JDATE;
        expect(truncateDate(days, keepMonth)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('never moves a date later, and keeps it within its year (month)', () => {
    fc.assert(
      fc.property(fc.integer({ min: FIRST_DAY, max: LAST_DAY }), (days) => {
        const year = truncateDate(days, false);
        const month = truncateDate(days, true);
        if (year === null) {
          // Only the last weeks of 4714 BC have no January 1st in range.
          expect(j2date(days + POSTGRES_EPOCH_JDATE).year).toBe(-4713);
          return;
        }
        expect(month).not.toBeNull();
        expect(year).toBeLessThanOrEqual(month!);
        expect(month).toBeLessThanOrEqual(days);
        expect(days - year).toBeLessThan(366);
        expect(days - month!).toBeLessThan(31);
        expect(j2date(year + POSTGRES_EPOCH_JDATE)).toMatchObject({ month: 1, day: 1 });
        expect(j2date(month! + POSTGRES_EPOCH_JDATE).day).toBe(1);
      }),
      { numRuns: 3000 },
    );
  });

  it('has no year for infinity, nor a January 1st for 4714 BC', () => {
    for (const keepMonth of [false, true]) {
      expect(truncateDate(DATE_NOEND, keepMonth)).toBeNull();
      expect(truncateDate(DATE_NOBEGIN, keepMonth)).toBeNull();
      expect(truncateTimestamp(TIMESTAMP_NOEND, keepMonth)).toBeNull();
      expect(truncateTimestamp(TIMESTAMP_NOBEGIN, keepMonth)).toBeNull();
    }
    // 4714-11-24 BC is the first day: neither its January 1st nor its November 1st exists
    expect(truncateDate(FIRST_DAY, false)).toBeNull();
    expect(truncateDate(FIRST_DAY, true)).toBeNull();
    const december = date2j(-4713, 12, 15) - POSTGRES_EPOCH_JDATE;
    expect(truncateDate(december, true)).toBe(date2j(-4713, 12, 1) - POSTGRES_EPOCH_JDATE);
  });

  it('truncates timestamps to midnight UTC of the first day, as JavaScript counts it', () => {
    const jsMin = -8_640_000_000_000_000n * 1000n - 946_684_800_000_000n;
    const jsMax = 8_640_000_000_000_000n * 1000n - 946_684_800_000_000n - 1n;
    const min = -211813488000000000n + 366n * USECS_PER_DAY;
    fc.assert(
      fc.property(
        fc.bigInt({ min: min > jsMin ? min : jsMin, max: jsMax }),
        fc.boolean(),
        (usecs, keepMonth) => {
          const d = new Date(Number(floorDiv(usecs, 1000n)) + 946_684_800_000);
          const first = new Date(0);
          first.setUTCFullYear(d.getUTCFullYear(), keepMonth ? d.getUTCMonth() : 0, 1);
          const expected = (BigInt(first.getTime()) - 946_684_800_000n) * 1000n;
          expect(truncateTimestamp(usecs, keepMonth)).toBe(expected);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

// ---- the codecs -------------------------------------------------------------------------------------------------

const TYPES = Object.keys(VALUES) as ValueType[];
const codecOf = (type: ValueType) => CODECS[type] as Codec<unknown>;

describe('codecs', () => {
  it('know the type OIDs of their types, and no others', () => {
    expect(valueTypeOf(1082)).toBe('date');
    expect(valueTypeOf(3802)).toBe('jsonb');
    expect(valueTypeOf(25)).toBeUndefined(); // text: masked as text by the kernel
    expect(valueTypeOf(1083)).toBeUndefined(); // time
  });

  for (const type of TYPES) {
    it(`${type}: reads back what it writes, in text and in binary`, () => {
      const codec = codecOf(type);
      fc.assert(
        fc.property(VALUES[type], (value) => {
          expect(same(codec.fromBinary(codec.toBinary(value)), value)).toBe(true);
          expect(same(codec.fromText(codec.toText(value)), value)).toBe(true);
          expect(same(decodeValue(type, 1, encodeValue(type, 1, value as never)), value)).toBe(true);
          expect(same(decodeValue(type, 0, encodeValue(type, 0, value as never)), value)).toBe(true);
        }),
        { numRuns: 500 },
      );
    });
  }

  it("write PostgreSQL's bytes and text for known values (captured from PostgreSQL 15)", () => {
    const cases: Array<[ValueType, string, string]> = [
      ['date', '1984-07-02', 'ffffe9e3'],
      ['date', '0044-03-15 BC', 'fff49d7b'],
      ['date', '4714-11-24 BC', 'ffda97a7'],
      ['date', '5874897-12-31', '7fda970c'],
      ['date', 'infinity', '7fffffff'],
      ['date', '-infinity', '80000000'],
      ['timestamp', '0044-03-15 10:00:00.25 BC', 'ff1af9e74e235890'],
      ['timestamp', '294276-12-31 23:59:59.999999', '7fffff5bb3b29fff'],
      ['timestamp', '-infinity', '8000000000000000'],
      ['timestamptz', '1984-07-02 08:00:00+00', 'fffe432ed0f74000'],
      ['numeric', '12345.6789', '0003000100000004000109291a85'],
      ['numeric', '0.0001', '0001ffff000000040001'],
      ['numeric', '100000000', '00010002000000000001'],
      ['numeric', '0.00', '0000000000000002'],
      ['numeric', '-12.5', '0002000040000001000c1388'],
      ['numeric', 'NaN', '00000000c0000000'],
      ['uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc999c0b4ef8bb6d6bb9bd380a11'],
      ['jsonb', '{"a": 1}', '017b2261223a20317d'],
      ['json', '{"a":1}', '7b2261223a317d'],
      ['float4', '0.1', '3dcccccd'],
      ['float8', '-0', '8000000000000000'],
      ['int2', '-2', 'fffe'],
      ['int8', '-9223372036854775808', '8000000000000000'],
      ['bool', 't', '01'],
      ['bytea', '\\x00015c7f80ff41', '00015c7f80ff41'],
    ];
    for (const [type, text, bytes] of cases) {
      const codec = codecOf(type);
      const value = codec.fromText(text);
      expect(value, `${type} ${text}`).not.toBeNull();
      expect(codec.toBinary(value).toString('hex'), `${type} ${text}`).toBe(bytes);
      expect(codec.toText(codec.fromBinary(hex(bytes))), `${type} ${bytes}`).toBe(text);
    }
  });

  it('read timestamptz text in any session offset, and write it in UTC', () => {
    const tz = codecOf('timestamptz');
    const utc = tz.fromText('1984-07-02 08:00:00+00');
    expect(tz.fromText('1984-07-02 10:00:00+02')).toBe(utc);
    expect(tz.fromText('1984-07-02 13:30:00+05:30')).toBe(utc);
    expect(tz.fromText('1984-07-02 00:00:00-08')).toBe(utc);
    expect(tz.toText(tz.fromText('0044-03-15 10:00:00+05:53:28 BC'))).toBe('0044-03-15 04:06:32+00 BC');
    expect(tz.fromText('1984-07-02 10:00:00')).toBeNull(); // a timestamp without a zone
    expect(codecOf('timestamp').fromText('1984-07-02 10:00:00+02')).toBeNull();
  });

  it('read bytea in escape output too', () => {
    const bytes = codecOf('bytea');
    expect(bytes.fromText('\\000\\001\\\\\\177\\200\\377A')).toEqual(hex('00015c7f80ff41'));
    expect(bytes.fromText('\\x0')).toBeNull();
    expect(bytes.fromText('a\\9')).toBeNull();
  });

  it('refuse text PostgreSQL would not print for the type', () => {
    const refused: Array<[ValueType, string]> = [
      ['date', '07/02/1984'], // DateStyle SQL
      ['date', '02.07.1984'], // DateStyle German
      ['date', '1984-02-30'],
      ['date', '0000-01-01'],
      ['date', '4714-11-23 BC'], // a day before the first
      ['date', '***'],
      ['timestamp', '1984-07-02 24:00:00'],
      ['timestamp', 'Mon Jul 02 10:00:00 1984'], // DateStyle Postgres
      ['int2', '32768'],
      ['int4', '1.5'],
      ['int8', '9223372036854775808'],
      ['numeric', '1e5'],
      ['float4', '1e39'], // out of range, as float4in says
      ['float8', 'abc'],
      ['bool', 'maybe'],
      ['uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'],
      ['uuid', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ];
    for (const [type, text] of refused) expect(codecOf(type).fromText(text), `${type} ${text}`).toBeNull();
  });

  it('refuse binary values of the wrong length or version', () => {
    expect(codecOf('date').fromBinary(hex('000000'))).toBeNull();
    expect(codecOf('timestamp').fromBinary(hex('00'))).toBeNull();
    expect(codecOf('uuid').fromBinary(hex('00'))).toBeNull();
    expect(codecOf('jsonb').fromBinary(hex('027b7d'))).toBeNull();
    expect(codecOf('numeric').fromBinary(hex('0001000000000000'))).toBeNull(); // one digit announced, none sent
    expect(codecOf('numeric').fromBinary(hex('00010000000000002710'))).toBeNull(); // digit 10000
  });

  it('keep dates and timestamps inside the range PostgreSQL has', () => {
    expect(isValidDate(FIRST_DAY)).toBe(true);
    expect(isValidDate(FIRST_DAY - 1)).toBe(false);
    expect(isValidDate(DATE_NOEND)).toBe(false);
    expect(isValidTimestamp(-211813488000000000n)).toBe(true);
    expect(isValidTimestamp(-211813488000000001n)).toBe(false);
  });
});

// ---- the masks --------------------------------------------------------------------------------------------------

const KEY = Buffer.alloc(32, 7);
const OPTIONS = { hashKey: KEY, redaction: '***' };
const rule = (text: string): MaskRule => parseMaskFunction(text, `roles.analyst.masks["x"]`);

/** The masked value of one value in one format (written the codec's way), decoded back to text; null for NULL. */
function maskedText(mask: string, type: ValueType, format: 0 | 1, text: string): string | null {
  const codec = codecOf(type);
  const value = codec.fromText(text);
  if (value === null) throw new Error(`${type} ${text} does not read`);
  const column = typedColumnMask(rule(mask), type, format, OPTIONS);
  const input = format === 0 ? Buffer.from(text) : codec.toBinary(value);
  const out =
    column.kind === 'null' ? null : column.kind === 'constant' ? column.value : column.rewrite(input);
  if (out === null) return null;
  const back = decodeValue(type, format, out);
  if (back === null)
    throw new Error(`${mask} on ${type} wrote a value that does not read: ${out.toString('hex')}`);
  return codec.toText(back);
}

/** The same value masked in text and in binary: asserts both agree, returns the text. */
function bothFormats(mask: string, type: ValueType, text: string): string | null {
  const asText = maskedText(mask, type, 0, text);
  expect(maskedText(mask, type, 1, text), `${mask} on ${type} ${text}: binary differs from text`).toBe(
    asText,
  );
  return asText;
}

describe('masks of typed values, in text and in binary', () => {
  it('year_only and month_year keep the year (month) of dates and timestamps', () => {
    expect(bothFormats('year_only', 'date', '1984-07-02')).toBe('1984-01-01');
    expect(bothFormats('month_year', 'date', '1984-07-02')).toBe('1984-07-01');
    expect(bothFormats('year_only', 'date', '1999-12-31')).toBe('1999-01-01');
    expect(bothFormats('year_only', 'date', '0044-03-15 BC')).toBe('0044-01-01 BC');
    expect(bothFormats('month_year', 'date', '12345-06-07')).toBe('12345-06-01');
    expect(bothFormats('year_only', 'timestamp', '1984-07-02 10:11:12.5')).toBe('1984-01-01 00:00:00');
    expect(bothFormats('month_year', 'timestamp', '1969-12-31 23:59:59.999999')).toBe('1969-12-01 00:00:00');
    // timestamptz: truncated in UTC, written with its zone so a driver reads the same instant in either format
    expect(bothFormats('year_only', 'timestamptz', '1984-07-02 10:00:00+02')).toBe('1984-01-01 00:00:00+00');
    expect(bothFormats('year_only', 'timestamptz', '1985-01-01 01:00:00+05')).toBe('1984-01-01 00:00:00+00');
    for (const text of ['infinity', '-infinity']) {
      expect(bothFormats('year_only', 'date', text)).toBeNull();
      expect(bothFormats('month_year', 'timestamptz', text)).toBeNull();
    }
    expect(bothFormats('year_only', 'date', '4714-12-01 BC')).toBeNull();
  });

  it('year_only never gives a later instant than the value, nor one in another year, in either format', () => {
    fc.assert(
      fc.property(
        VALUES.timestamptz,
        fc.constantFrom<'timestamp' | 'timestamptz'>('timestamp', 'timestamptz'),
        (usecs, type) => {
          const text = codecOf(type).toText(usecs);
          const masked = bothFormats('year_only', type, text);
          const expected = truncateTimestamp(usecs as bigint, false);
          expect(masked).toBe(expected === null ? null : codecOf(type).toText(expected));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('fixed writes its text read as the type, once; text that is no such value gives NULL', () => {
    const fixed: Array<[ValueType, string, string]> = [
      ['int2', '7', '7'],
      ['int4', '-42', '-42'],
      ['int8', '9223372036854775807', '9223372036854775807'],
      ['numeric', '007.50', '7.50'],
      ['float4', '0.5', '0.5'],
      ['float8', '1e300', '1e+300'],
      ['bool', 'false', 'f'],
      ['date', '1900-01-01', '1900-01-01'],
      ['timestamp', '1900-01-01 00:00:00', '1900-01-01 00:00:00'],
      ['timestamptz', '1900-01-01 00:00:00+01', '1899-12-31 23:00:00+00'],
      ['uuid', '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000'],
      ['bytea', '\\xdeadbeef', '\\xdeadbeef'],
      ['json', '{"hidden": true}', '{"hidden": true}'],
      ['jsonb', '[]', '[]'],
    ];
    for (const [type, text, expected] of fixed) {
      const sample = codecOf(type).toText(type === 'bool' ? true : codecOf(type).fromText(text));
      expect(bothFormats(`fixed('${text}')`, type, sample), `${type} fixed('${text}')`).toBe(expected);
      const column = typedColumnMask(rule(`fixed('${text}')`), type, 1, OPTIONS);
      expect(column.kind).toBe('constant');
    }
    for (const type of TYPES.filter((t) => t !== 'bytea')) {
      expect(typedMaskUnavailable(rule("fixed('[hidden]')"), type), type).toMatch(/is not/);
    }
  });

  it('hash gives integer tokens in the range of the type, equal for equal values in text and binary', () => {
    for (const [type, bits] of [
      ['int2', 15n],
      ['int4', 31n],
      ['int8', 63n],
      ['numeric', 63n],
    ] as const) {
      fc.assert(
        fc.property(VALUES[type], (value) => {
          const text = codecOf(type).toText(value);
          const token = bothFormats('hash', type, text)!;
          expect(token).toMatch(/^\d+$/);
          expect(BigInt(token) < 2n ** bits).toBe(true);
          expect(bothFormats('hash', type, text)).toBe(token); // deterministic
        }),
        { numRuns: 300 },
      );
    }
    expect(bothFormats('hash', 'int4', '42')).not.toBe(bothFormats('hash', 'int4', '43'));
    // numeric keeps its display scale: 1.5 and 1.50 print differently, so their tokens differ
    expect(bothFormats('hash', 'numeric', '1.5')).not.toBe(bothFormats('hash', 'numeric', '1.50'));
    // int8 and numeric holding the same integer print the same text: the same token
    expect(bothFormats('hash', 'numeric', '1234567')).toBe(bothFormats('hash', 'int8', '1234567'));
  });

  it('hash gives a version-4-shaped uuid for a uuid and the 32 HMAC bytes for a bytea, the same in either format', () => {
    fc.assert(
      fc.property(VALUES.uuid, VALUES.bytea, (id, bytes) => {
        const token = bothFormats('hash', 'uuid', codecOf('uuid').toText(id))!;
        expect(token).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        const digest = bothFormats('hash', 'bytea', codecOf('bytea').toText(bytes))!;
        expect(digest).toMatch(/^\\x[0-9a-f]{64}$/);
      }),
      { numRuns: 300 },
    );
    // bytea_output escape reads as the same value: the same token
    const column = typedColumnMask(rule('hash'), 'bytea', 0, OPTIONS);
    if (column.kind !== 'rewrite') throw new Error('hash on bytea is a rewrite');
    expect(column.rewrite(Buffer.from('\\000\\001\\\\A'))).toEqual(
      column.rewrite(Buffer.from('\\x00015c41')),
    );
  });

  it('hash has no value without a key; hash of dates, floats and bools has none at all', () => {
    expect(typedColumnMask(rule('hash'), 'int4', 1, { hashKey: null, redaction: '***' }).kind).toBe('null');
    for (const type of ['date', 'timestamp', 'timestamptz', 'float4', 'float8', 'bool'] as const)
      expect(typedMaskUnavailable(rule('hash'), type)).toBe(`hash has no ${type} value`);
  });

  it('redact, partial, zip3 and email have no value of a typed column: NULL in both formats', () => {
    for (const mask of ['redact', 'partial_last4', 'partial(1,1)', 'zip3', 'email']) {
      for (const type of TYPES.filter((t) => t !== 'json' && t !== 'jsonb')) {
        expect(typedMaskUnavailable(rule(mask), type), `${mask} on ${type}`).toMatch(/has no/);
        expect(typedColumnMask(rule(mask), type, 1, OPTIONS).kind).toBe('null');
      }
      expect(typedMaskUnavailable(rule(mask), 'int4')).toBe(`${rule(mask).fn} has no int4 value`);
    }
    for (const mask of ['year_only', 'month_year'])
      for (const type of ['int4', 'numeric', 'uuid', 'bytea', 'bool'] as const)
        expect(typedMaskUnavailable(rule(mask), type)).toMatch(/has no/);
  });

  it('json and jsonb: other masks give the redaction as a JSON string, json_masks mask inside; jsonb keeps its version byte', () => {
    for (const mask of ['redact', 'hash', 'zip3', 'year_only']) {
      expect(bothFormats(mask, 'jsonb', '{"ssn": "123-45-6789"}')).toBe('"***"');
      expect(bothFormats(mask, 'json', '{"ssn": "123-45-6789"}')).toBe('"***"');
    }
    const redact = typedColumnMask(rule('redact'), 'jsonb', 1, OPTIONS);
    expect(redact).toEqual({ kind: 'constant', value: Buffer.from('\x01"***"') });
    const paths: MaskRule = {
      fn: 'json',
      keepFirst: 0,
      keepLast: 0,
      fixed: '',
      source: 'json',
      jsonPaths: [{ path: '$.ssn', steps: [{ kind: 'key', key: 'ssn' }], rule: rule('partial_last4') }],
    };
    for (const type of ['json', 'jsonb'] as const) {
      const column = typedColumnMask(paths, type, 1, OPTIONS);
      if (column.kind !== 'rewrite') throw new Error('json_masks are a rewrite');
      const doc = encodeValue(type, 1, '{"ssn": "123-45-6789", "n": 1}');
      const out = column.rewrite(doc)!;
      expect(decodeValue(type, 1, out)).toBe('{"ssn":"***-**-6789","n":1}');
      expect(out[0]).toBe(type === 'jsonb' ? 1 : 0x7b);
      // not JSON: the redaction as a JSON string
      expect(decodeValue(type, 1, column.rewrite(encodeValue(type, 1, 'not json'))!)).toBe('"***"');
    }
    // a jsonb of another version is not read: NULL, never passed on
    const column = typedColumnMask(paths, 'jsonb', 1, OPTIONS);
    if (column.kind !== 'rewrite') throw new Error('json_masks are a rewrite');
    expect(column.rewrite(hex('027b7d'))).toBeNull();
  });

  it('a value that does not read (another DateStyle) becomes NULL, never the value', () => {
    const column = typedColumnMask(rule('year_only'), 'date', 0, OPTIONS);
    if (column.kind !== 'rewrite') throw new Error('year_only is a rewrite');
    expect(column.rewrite(Buffer.from('07/02/1984'))).toBeNull();
  });
});

describe('the content detectors on typed values', () => {
  const detected: string[] = [];
  const detector = (type: ValueType, format: 0 | 1, formats: readonly string[] = []) =>
    typedDetector(type, format, {
      redaction: '***',
      formats: formats.map((f) => Buffer.from(f)),
      onDetected: () => detected.push(type),
    });

  it('read binary values as their text, so a phone number in an int8 is found in either format', () => {
    detected.length = 0;
    const phone = encodeValue('int8', 1, 6175550142n);
    expect(detector('int8', 1)(phone)).toBeNull();
    expect(detector('int8', 0)(Buffer.from('6175550142'))).toBeNull();
    const count = encodeValue('int8', 1, 42n);
    expect(detector('int8', 1)(count)).toBe(count);
    expect(detected).toEqual(['int8', 'int8']);
  });

  it('find dates in dates, identifiers in JSON (answering a JSON string), MRN formats in numbers', () => {
    expect(detector('date', 1)(encodeValue('date', 1, 0))).toBeNull();
    expect(detector('date', 0)(Buffer.from('2000-01-01'))).toBeNull();
    const doc = encodeValue('jsonb', 1, '{"ssn": "123-45-6789"}');
    expect(detector('jsonb', 1)(doc)).toEqual(Buffer.from('\x01"***"'));
    expect(detector('json', 0)(Buffer.from('{"ssn": "123-45-6789"}'))).toEqual(Buffer.from('"***"'));
    expect(detector('int4', 1, ['42####'])(encodeValue('int4', 1, 421234n))).toBeNull();
    expect(detector('int4', 1, ['42####'])(encodeValue('int4', 1, 7n))).toEqual(encodeValue('int4', 1, 7n));
  });

  it('judge a value that does not read as PHI', () => {
    expect(detector('date', 0)(Buffer.from('07/02/1984'))).toBeNull();
    expect(detector('jsonb', 1)(hex('02'))).toEqual(Buffer.from('\x01"***"'));
  });
});
