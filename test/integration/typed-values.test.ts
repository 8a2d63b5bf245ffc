// The typed-value codecs and truncations (src/masking/typed-values.ts) against PostgreSQL itself: random values of
// every type (fast-check, seeded), written as text here, read by PostgreSQL and printed and sent back by its own
// output and send functions; year_only and month_year against date_trunc. The whole range of each type, BC dates
// and years past JavaScript's calendar included.
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { truncateDate, truncateTimestamp, USECS_PER_DAY } from '../../src/masking/pg-calendar.js';
import { CODECS, type Codec, type ValueType } from '../../src/masking/typed-values.js';
import { FIRST_DAY, LAST_TIMESTAMP, MIN_TIMESTAMP, same, VALUES } from '../fixtures/typed-values.js';
import { directClient } from './support.js';

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

  for (const type of Object.keys(SEND) as ValueType[]) {
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
