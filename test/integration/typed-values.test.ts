// The typed-value codecs and truncations (src/masking/typed-values.ts) against PostgreSQL itself: random values of
// every type (fast-check, seeded), written as text here, read by PostgreSQL and printed and sent back by its own
// output and send functions; year_only and month_year against date_trunc. The whole range of each type, BC dates
// and years past JavaScript's calendar included.
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DATE_NOBEGIN,
  DATE_NOEND,
  POSTGRES_EPOCH_JDATE,
  TIMESTAMP_NOBEGIN,
  TIMESTAMP_NOEND,
  truncateDate,
  truncateTimestamp,
  USECS_PER_DAY,
} from '../../src/masking/pg-calendar.js';
import { CODECS, type Codec, type ValueType } from '../../src/masking/typed-values.js';
import { directClient } from './support.js';

const FIRST_DAY = -POSTGRES_EPOCH_JDATE;
const LAST_DAY = 2147483493 - POSTGRES_EPOCH_JDATE;
const MIN_TIMESTAMP = -211813488000000000n;
const LAST_TIMESTAMP = 9223371331200000000n - 1n;

const VALUES: Partial<Record<ValueType, fc.Arbitrary<unknown>>> = {
  bool: fc.boolean(),
  int2: fc.bigInt({ min: -(2n ** 15n), max: 2n ** 15n - 1n }),
  int4: fc.bigInt({ min: -(2n ** 31n), max: 2n ** 31n - 1n }),
  int8: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  numeric: fc.oneof(
    fc
      .tuple(
        fc.boolean(),
        fc.bigInt({ min: 0n, max: 10n ** 40n }),
        fc.option(fc.stringMatching(/^\d{1,24}$/)),
      )
      .map(([negative, whole, fraction]) => {
        const zero = whole === 0n && !/[1-9]/.test(fraction ?? '');
        return `${negative && !zero ? '-' : ''}${whole}${fraction === null ? '' : '.' + fraction}`;
      }),
    fc.constantFrom('NaN', 'Infinity', '-Infinity'),
  ),
  float4: fc.float(),
  float8: fc.double(),
  date: fc.oneof(fc.integer({ min: FIRST_DAY, max: LAST_DAY }), fc.constantFrom(DATE_NOBEGIN, DATE_NOEND)),
  timestamp: fc.oneof(
    fc.bigInt({ min: MIN_TIMESTAMP, max: LAST_TIMESTAMP }),
    fc.constantFrom(TIMESTAMP_NOBEGIN, TIMESTAMP_NOEND),
  ),
  timestamptz: fc.oneof(
    fc.bigInt({ min: MIN_TIMESTAMP, max: LAST_TIMESTAMP }),
    fc.constantFrom(TIMESTAMP_NOBEGIN, TIMESTAMP_NOEND),
  ),
  uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
  bytea: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
};

const SEND: Partial<Record<ValueType, string>> = {
  bool: 'boolsend',
  int2: 'int2send',
  int4: 'int4send',
  int8: 'int8send',
  numeric: 'numeric_send',
  float4: 'float4send',
  float8: 'float8send',
  date: 'date_send',
  timestamp: 'timestamp_send',
  timestamptz: 'timestamptz_send',
  uuid: 'uuid_send',
  bytea: 'byteasend',
};

/** Floats print differently here and in float8out ('1e-05' / '0.00001'): equal when they read as the same value. */
const PRINTED_ALIKE = (type: ValueType): boolean => type !== 'float4' && type !== 'float8';

function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b);
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

const sample = <T>(arbitrary: fc.Arbitrary<T>, seed: number): T[] =>
  fc.sample(arbitrary, { numRuns: 400, seed });

describe('typed values agree with PostgreSQL', () => {
  let db: pg.Client;

  beforeAll(async () => {
    db = await directClient();
    await db.query("set time zone 'UTC'"); // timestamptz prints as +00, as the codec writes it
  });

  afterAll(async () => {
    await db?.end();
  });

  for (const type of Object.keys(VALUES) as ValueType[]) {
    it(`${type}: PostgreSQL reads the text written here as the value, and sends the bytes written here`, async () => {
      const codec = CODECS[type] as Codec<unknown>;
      const values = sample(VALUES[type]!, 5);
      const texts = values.map((v) => codec.toText(v));
      const { rows } = await db.query<{ t: string; b: Buffer }>(
        `select format('%s', x::${type}) as t, ${SEND[type]}(x::${type}) as b
           from unnest($1::text[]) with ordinality as u(x, n) order by n`,
        [texts],
      );
      rows.forEach((row, i) => {
        const label = `${type} ${texts[i]}`;
        // PostgreSQL 15 sends ±Infinity numerics with a stray display scale (32, from its header bits); numeric_recv
        // ignores the scale of special values, so 0 is written here.
        const strayScale = type === 'numeric' && texts[i].endsWith('Infinity');
        if (!strayScale) expect(codec.toBinary(values[i]).toString('hex'), label).toBe(row.b.toString('hex'));
        expect(same(codec.fromBinary(row.b), values[i]), label).toBe(true);
        if (PRINTED_ALIKE(type)) expect(row.t, label).toBe(texts[i]);
        else expect(same(codec.fromText(row.t), values[i]), `${label} printed ${row.t}`).toBe(true);
      });
    });
  }

  it('year_only and month_year of dates are what date_trunc gives', async () => {
    // date_trunc works on timestamps: dates within their range
    const lastTimestampDay = Number(LAST_TIMESTAMP / USECS_PER_DAY) - 1;
    const days = sample(fc.integer({ min: FIRST_DAY, max: lastTimestampDay }), 6);
    // The first weeks (4714-11-24 BC on) have no January 1st in range; date_trunc fails on them.
    const inRange = days.filter((d) => truncateDate(d, false) !== null);
    for (const d of days.filter((d) => truncateDate(d, false) === null))
      expect(CODECS.date.toText(d)).toMatch(/^4714-1[12]-\d\d BC$/);
    const { rows } = await db.query<{ y: string; m: string }>(
      `select date_trunc('year', x::date)::date::text as y, date_trunc('month', x::date)::date::text as m
         from unnest($1::text[]) with ordinality as u(x, n) order by n`,
      [inRange.map((d) => CODECS.date.toText(d))],
    );
    rows.forEach((row, i) => {
      expect(CODECS.date.toText(truncateDate(inRange[i], false)!)).toBe(row.y);
      expect(CODECS.date.toText(truncateDate(inRange[i], true)!)).toBe(row.m);
    });
  });

  for (const type of ['timestamp', 'timestamptz'] as const) {
    it(`year_only and month_year of ${type} are what date_trunc gives${type === 'timestamptz' ? ' in UTC' : ''}`, async () => {
      const codec = CODECS[type];
      const usecs = sample(
        fc.bigInt({ min: MIN_TIMESTAMP + 366n * USECS_PER_DAY, max: LAST_TIMESTAMP }),
        type === 'timestamp' ? 7 : 8,
      );
      const zone = type === 'timestamptz' ? ", 'UTC'" : '';
      const { rows } = await db.query<{ y: string; m: string }>(
        `select date_trunc('year', x::${type}${zone})::text as y, date_trunc('month', x::${type}${zone})::text as m
           from unnest($1::text[]) with ordinality as u(x, n) order by n`,
        [usecs.map((v) => codec.toText(v))],
      );
      rows.forEach((row, i) => {
        expect(codec.toText(truncateTimestamp(usecs[i], false)!)).toBe(row.y);
        expect(codec.toText(truncateTimestamp(usecs[i], true)!)).toBe(row.m);
      });
    });
  }
});
