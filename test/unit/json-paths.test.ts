// Masks inside JSON documents: the path subset, and what each match becomes.
import { describe, expect, it } from 'vitest';
import { maskJsonDocument, parseJsonPath, type JsonPathMask } from '../../src/masking/json-paths.js';
import { parseMaskFunction } from '../../src/masking/mask-spec.js';

const mask = (path: string, fn = 'redact'): JsonPathMask => ({
  path,
  steps: parseJsonPath(path),
  rule: parseMaskFunction(fn, path),
});

const PATIENT = {
  resourceType: 'Patient',
  identifier: [
    { system: 'urn:ssn', value: '123-45-6789' },
    { system: 'urn:mrn', value: 'MRN-0042' },
  ],
  name: [{ family: 'Holloway', given: ['Margaret'] }],
  birthDate: '1961-03-14',
  contact: { telecom: { value: 'm@example.org' } },
};

describe('JSON path masks', () => {
  it('reads the path subset and refuses the rest with a position', () => {
    expect(parseJsonPath('$.identifier[*].value')).toEqual([
      { kind: 'key', key: 'identifier' },
      { kind: 'any' },
      { kind: 'key', key: 'value' },
    ]);
    expect(parseJsonPath("$['name'][0].*")).toEqual([
      { kind: 'key', key: 'name' },
      { kind: 'index', index: 0 },
      { kind: 'any' },
    ]);
    expect(parseJsonPath('$..value')).toEqual([{ kind: 'deep', key: 'value' }]);
    expect(() => parseJsonPath('identifier')).toThrow(/must start with \$/);
    expect(() => parseJsonPath('$')).toThrow(/names no member/);
    expect(() => parseJsonPath('$.a[?(@.x)]')).toThrow(/cannot read/);
  });

  it('masks every match and leaves the rest of the document as it is', () => {
    const out = JSON.parse(
      maskJsonDocument(
        JSON.stringify(PATIENT),
        [
          mask('$.identifier[*].value', 'partial_last4'),
          mask('$.name[*].family'),
          mask('$.birthDate', 'year_only'),
        ],
        '***',
      )!,
    );
    expect(out.identifier).toEqual([
      { system: 'urn:ssn', value: '***-**-6789' },
      { system: 'urn:mrn', value: '***-0042' },
    ]);
    expect(out.name).toEqual([{ family: '***', given: ['Margaret'] }]);
    expect(out.birthDate).toBe('1961-01-01');
    expect(out.contact).toEqual(PATIENT.contact);
  });

  it('reaches any depth with .., redacts objects whole, keeps nulls, and refuses what is not JSON', () => {
    const out = JSON.parse(maskJsonDocument(JSON.stringify(PATIENT), [mask('$..value')], '***')!);
    expect(out.identifier.map((i: { value: string }) => i.value)).toEqual(['***', '***']);
    expect(out.contact.telecom.value).toBe('***');
    expect(
      JSON.parse(maskJsonDocument('{"a":{"b":1},"c":null}', [mask('$.a'), mask('$.c')], '***')!),
    ).toEqual({
      a: '***',
      c: null,
    });
    expect(maskJsonDocument('{not json', [mask('$.a')], '***')).toBeNull();
  });
});
