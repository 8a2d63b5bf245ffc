import { parseJsonPath, type JsonPathMask } from './json-paths.js';

// A role's masks as written in the config (`public.patients.ssn: partial_last4`), read into rules: which column,
// which function, with which parameters. The config schema already restricts the spelling; this gives it meaning.

export type MaskFunction =
  'json' | 'redact' | 'null' | 'partial' | 'year_only' | 'month_year' | 'zip3' | 'email' | 'hash' | 'fixed';

export interface MaskRule {
  readonly fn: MaskFunction;
  /** partial: alphanumerics kept at the start and at the end. */
  readonly keepFirst: number;
  readonly keepLast: number;
  /** fixed: the replacement text. */
  readonly fixed: string;
  /** json: the masks inside the document. */
  readonly jsonPaths?: readonly JsonPathMask[];
  /** The config entry, for messages, metrics and audit: `roles.analyst.masks["public.patients.ssn"]`. */
  readonly source: string;
}

/** A column as the config names it. */
export interface ColumnKey {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
}

export interface ColumnMask extends ColumnKey {
  readonly rule: MaskRule;
}

export function columnKeyOf(text: string): ColumnKey {
  const [schema, table, column] = text.split('.');
  return { schema, table, column };
}

/** Reads one mask function; throws on a spelling the schema would have refused. */
export function parseMaskFunction(text: string, source: string): MaskRule {
  const base = { keepFirst: 0, keepLast: 0, fixed: '', source };
  switch (text) {
    case 'redact':
    case 'null':
    case 'year_only':
    case 'month_year':
    case 'zip3':
    case 'email':
    case 'hash':
      return { ...base, fn: text };
    case 'partial_last4':
      return { ...base, fn: 'partial', keepLast: 4 };
  }
  const partial = /^partial\((\d{1,2}),(\d{1,2})\)$/.exec(text);
  if (partial) return { ...base, fn: 'partial', keepFirst: Number(partial[1]), keepLast: Number(partial[2]) };
  const fixed = /^fixed\('([^']{0,256})'\)$/.exec(text);
  if (fixed) return { ...base, fn: 'fixed', fixed: fixed[1] };
  throw new Error(`${source}: unknown masking function '${text}'`);
}

/** The masks of one role, by column: whole-column masks and masks inside JSON documents. */
export function parseRoleMasks(
  role: string,
  masks: Readonly<Record<string, string>> | undefined,
  jsonMasks: Readonly<Record<string, Readonly<Record<string, string>>>> | undefined = undefined,
): ColumnMask[] {
  const whole = Object.entries(masks ?? {}).map(([key, fn]) => {
    const [schema, table, column] = key.split('.');
    return { schema, table, column, rule: parseMaskFunction(fn, `roles.${role}.masks["${key}"]`) };
  });
  const inside = Object.entries(jsonMasks ?? {}).map(([key, paths]): ColumnMask => {
    const [schema, table, column] = key.split('.');
    const source = `roles.${role}.json_masks["${key}"]`;
    const jsonPaths = Object.entries(paths).map(([path, fn]) => ({
      path,
      steps: parseJsonPath(path),
      rule: parseMaskFunction(fn, `${source}["${path}"]`),
    }));
    return {
      schema,
      table,
      column,
      rule: { fn: 'json', keepFirst: 0, keepLast: 0, fixed: '', source, jsonPaths },
    };
  });
  return [...whole, ...inside];
}

/** When several masks apply to one value (a derived column over two masked columns), the strictest wins. */
export function strictest(a: MaskRule, b: MaskRule): MaskRule {
  // Masks inside a document add up; a whole-column mask is stricter than any of them.
  if (a.fn === 'json' && b.fn === 'json')
    return {
      ...a,
      source: `${a.source} + ${b.source}`,
      jsonPaths: [...(a.jsonPaths ?? []), ...(b.jsonPaths ?? [])],
    };
  if (a.fn === 'json') return b;
  if (b.fn === 'json') return a;
  if (a.fn === 'null' || b.fn === 'null') return a.fn === 'null' ? a : b;
  if (a.fn === b.fn && a.keepFirst === b.keepFirst && a.keepLast === b.keepLast && a.fixed === b.fixed)
    return a;
  return { fn: 'redact', keepFirst: 0, keepLast: 0, fixed: '', source: `${a.source} + ${b.source}` };
}
