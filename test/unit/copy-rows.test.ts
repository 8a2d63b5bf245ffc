// COPY TO rows as values and back: PostgreSQL's text and CSV forms with their default options.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatCopyCsv,
  formatCopyText,
  parseCopyCsv,
  parseCopyText,
  type CopyValues,
} from '../../src/masking/copy-rows.js';
import { decodeDataRow as dataRowToValues } from '../../src/protocol/decode.js';
import { dataRow as valuesToDataRow } from '../../src/protocol/writer.js';

const b = (s: string) => Buffer.from(s);
const strings = (v: CopyValues) => v.map((x) => (x === null ? null : x.toString()));

describe('COPY rows', () => {
  it('reads text rows as PostgreSQL writes them: tabs, \\N, escapes', () => {
    expect(strings(parseCopyText(b('1\tAda\t\\N\n')))).toEqual(['1', 'Ada', null]);
    expect(strings(parseCopyText(b('a\\tb\\nc\\\\d\\N\t\\101\\x41\n')))).toEqual(['a\tb\nc\\d' + 'N', 'AA']);
    expect(strings(parseCopyText(b('\t\n')))).toEqual(['', '']);
    expect(formatCopyText([b('a\tb'), null, b('c\\')]).toString()).toBe('a\\tb\t\\N\tc\\\\\n');
  });

  it('reads CSV rows: quotes, doubled quotes, empty vs NULL', () => {
    expect(strings(parseCopyCsv(b('1,"a,b","say ""hi""",,""\n')))).toEqual([
      '1',
      'a,b',
      'say "hi"',
      null,
      '',
    ]);
    expect(formatCopyCsv([b('a,b'), null, b(''), b('x')]).toString()).toBe('"a,b",,"",x\n');
    expect(() => parseCopyCsv(b('"open\n'))).toThrow(/quoted field/);
  });

  it('round-trips any values through both forms and through a DataRow', () => {
    const value = fc.option(
      fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
      { nil: null },
    );
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 8 }), (values) => {
        const same = (v: CopyValues) =>
          expect(v.map((x) => x && x.toString('hex'))).toEqual(values.map((x) => x && x.toString('hex')));
        same(parseCopyText(formatCopyText(values)));
        // CSV keeps NULL (unquoted empty) apart from the empty string (quoted).
        same(parseCopyCsv(formatCopyCsv(values)));
        same(dataRowToValues(valuesToDataRow(values)));
      }),
      { numRuns: 500 },
    );
  });
});
