// The literal shape is a cache key that lets one parse serve many texts, so it must never join two texts that
// PostgreSQL reads differently. Known answers for each lexical construct, and a property: texts built from
// identifiers, quoted identifiers, strings of every kind, dollar quotes, comments and numbers, whose literals
// are then changed, give the parser the same facts (names, aliases, qualifiers) as the original.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { literalShape } from '../../src/policy/literal-shape.js';
import { analyzeSql, loadSqlParser } from '../../src/policy/sql-analyze.js';
import type { ParseResult } from '../../src/policy/facts.js';

beforeAll(async () => {
  await loadSqlParser();
});

describe('literalShape', () => {
  it.each([
    [
      'SELECT abalance FROM pgbench_accounts WHERE aid = 48213',
      'SELECT abalance FROM pgbench_accounts WHERE aid = ?',
    ],
    ['select 1, 2.5, .5, 3.', 'select ?, ?, ?, ?'],
    ['select -7', 'select -?'],
    ['select x from t where a = 1 -- 2\n and b = 3', 'select x from t where a = ? -- 2\n and b = ?'],
    ['select /* 1 /* 2 */ 3 */ 4', 'select /* 1 /* 2 */ 3 */ ?'],
    ["select '1', 2", "select '1', ?"],
    ["select E'\\' 1', 2", "select E'\\' 1', ?"],
    ['select "a 1", 2', 'select "a 1", ?'],
    ['select U&"d\\0061t1", 2', 'select U&"d\\0061t1", ?'],
    ['select $$ 1 $$, $t1$ 2 $t1$, 3', 'select $$ 1 $$, $t1$ 2 $t1$, ?'],
    ['select $1 + 2', 'select $1 + ?'],
    ['select t1.c2 from t1', null],
    ['select 1e5, 0x1f, 1_000, 1.2.3', null],
    ["select 'unterminated 1", null],
    ['select "unterminated 1', null],
    ['select /* unterminated 1', null],
    ['select abc$1', null],
  ])('%j → %j', (text, shape) => {
    expect(literalShape(text)).toBe(shape);
  });
});

/** Facts without positions: what the rules judge. */
function judged(r: ParseResult): unknown {
  if (!r.ok) return { error: true };
  return r.statements.map((f) => ({ ...f, location: 0, length: 0 }));
}

const fragment = fc.oneof(
  fc.constantFrom('select', 'from', 'where', 'and', 'as', ',', '(', ')', '=', '+', '-', '.', ' ', '\n', ';'),
  fc.stringMatching(/^[a-z_][a-z0-9_$]{0,4}$/), // identifiers, some with digits and $
  fc.stringMatching(/^[0-9]{1,4}(\.[0-9]{0,2})?$/), // numbers
  fc.stringMatching(/^"[a-z0-9 ]{0,4}("")?[a-z0-9 ]{0,3}"$/), // quoted identifiers with digits and ""
  fc.stringMatching(/^U&"[a-z0-9 ]{0,4}"$/),
  fc.stringMatching(/^'[a-z0-9 "\\]{0,5}('')?[a-z0-9 ]{0,3}'$/), // standard strings: backslash is literal
  fc.stringMatching(/^E'[a-z0-9 "]{0,3}(\\'|\\\\)?[a-z0-9 ]{0,3}'$/), // E'' with backslash escapes
  fc.stringMatching(/^\$(t[0-9]?)?\$[a-z0-9 '"]{0,5}\$(t[0-9]?)?\$$/).filter((s) => {
    const tag = /^\$[^$]*\$/.exec(s)![0];
    return s.endsWith(tag) && s.length > tag.length * 2 - 1 && s.indexOf(tag, 1) === s.length - tag.length;
  }),
  fc.stringMatching(/^\/\*[a-z0-9 '"]{0,5}\*\/$/),
  fc.stringMatching(/^-- [a-z0-9 '"]{0,5}\n$/),
  fc.stringMatching(/^\$[1-9]$/),
);

describe('literalShape, against the parser', () => {
  it('texts with the same shape have the same facts', () => {
    fc.assert(
      fc.property(
        fc.array(fragment, { minLength: 1, maxLength: 14 }),
        fc.integer({ min: 0, max: 9 }),
        (parts, d) => {
          const text = 'select ' + parts.join(' ');
          const shape = literalShape(text);
          if (shape === null) return;
          // Every digit run the shape took out is replaced by other digits: same shape, other literals.
          const pieces = shape.split('?');
          const other = pieces
            .slice(1)
            .reduce((acc, piece, i) => acc + String((d + i) % 10) + piece, pieces[0]);
          expect(literalShape(other)).toBe(shape);
          expect(judged(analyzeSql(other))).toEqual(judged(analyzeSql(text)));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
