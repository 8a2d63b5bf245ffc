// What happens to each column of a result for a masked session: decided from the column's origin (table OID and
// attribute number, resolved through the mask catalog), from the statement when the column has no origin, and
// from the result format. Unknown means masked: a column of a relation the catalog has not seen, rows with no
// known description, and expressions over masked columns are all masked.

import type { MaskCatalog } from './mask-catalog.js';
import type { MaskRule } from './mask-spec.js';
import type { ResultDescription } from './result-tracker.js';

export type ColumnAction =
  | { readonly kind: 'pass' }
  /** A configured mask (text format). */
  | { readonly kind: 'mask'; readonly rule: MaskRule }
  /** No origin and no masked column read: the content detectors decide. */
  | { readonly kind: 'detect' }
  /** Masked, but in binary format: no masked binary value is built; the value becomes NULL. */
  | { readonly kind: 'null'; readonly rule: MaskRule | null };

/** The mask used where no configured mask applies but the value must not pass (unknown origin, several masks). */
export const REDACT: MaskRule = {
  fn: 'redact',
  keepFirst: 0,
  keepLast: 0,
  fixed: '',
  source: 'unknown origin',
};

/** Binary values a content detector can judge without decoding: types that cannot hold an identifier's text. */
const BINARY_CLEAN_TYPES: ReadonlySet<number> = new Set([
  16, // bool
  21, // int2
  700, // float4
  701, // float8
]);

export interface PlanContext {
  readonly catalog: MaskCatalog;
  /** The session's masked columns, `schema.table.column` → mask. */
  readonly masks: ReadonlyMap<string, MaskRule>;
  /** A statement in flight reads a masked column: expressions (no origin) are masked, not only detected. */
  readonly expressionsReadMasked: boolean;
  /** Safe Harbor preset: table columns no mask covers go through the content detectors too. */
  readonly safeHarbor?: boolean;
}

export function planColumns(desc: ResultDescription, ctx: PlanContext): ColumnAction[] {
  return desc.map((field) => {
    const rule = ruleFor(field.tableOid, field.attnum, ctx);
    if (rule === null) {
      if (field.tableOid !== 0) {
        if (!ctx.safeHarbor) return PASS;
        return field.format === 0 || TEXT_LIKE_TYPES.has(field.typeOid) ? DETECT : PASS;
      }
      if (ctx.expressionsReadMasked) return masked(REDACT, field.format, field.typeOid);
      if (field.format === 0) return DETECT;
      return BINARY_CLEAN_TYPES.has(field.typeOid) ? PASS : { kind: 'null', rule: null };
    }
    return masked(rule, field.format, field.typeOid);
  });
}

/** Every column masked: rows whose description is not known. */
export function planUnknown(columns: number): ColumnAction[] {
  return Array.from({ length: columns }, () => ({ kind: 'mask', rule: REDACT }) as const);
}

const PASS: ColumnAction = { kind: 'pass' };
const DETECT: ColumnAction = { kind: 'detect' };

/** json and jsonb: a masked value is written as a JSON string, so drivers that parse JSON still can. */
const JSON_TYPES: ReadonlySet<number> = new Set([114, 3802]);

/**
 * Types whose binary form is their text (the UTF-8 bytes): a masked value is built the same way in either format.
 * For every other type a masked binary value is not built: it becomes NULL.
 */
const TEXT_LIKE_TYPES: ReadonlySet<number> = new Set([
  25, // text
  1043, // varchar
  1042, // bpchar
  19, // name
  18, // "char"
]);

function masked(rule: MaskRule, format: number, typeOid: number): ColumnAction {
  if (format !== 0 && !(TEXT_LIKE_TYPES.has(typeOid) && rule.fn !== 'json')) return { kind: 'null', rule };
  if (rule.fn === 'null') return { kind: 'null', rule };
  if (rule.fn === 'json') return { kind: 'mask', rule };
  if (JSON_TYPES.has(typeOid)) return { kind: 'mask', rule: { ...JSON_REDACT, source: rule.source } };
  return { kind: 'mask', rule };
}

const JSON_REDACT: MaskRule = { fn: 'fixed', keepFirst: 0, keepLast: 0, fixed: '"***"', source: 'json' };

/** The mask of a column of a relation, null when it is not masked for this session. */
function ruleFor(tableOid: number, attnum: number, ctx: PlanContext): MaskRule | null {
  if (tableOid === 0) return null;
  const catalog = ctx.catalog;
  // A relation newer than the catalog: which of its columns carry PHI is not known yet.
  if (tableOid > catalog.maxOid) return REDACT;
  const table = catalog.columns.get(tableOid);
  if (table !== undefined && attnum <= 0) {
    // attnum 0: the whole row as one value (`SELECT p FROM patients p`); masked if any column of it is.
    for (const key of table.values()) if (ctx.masks.has(key)) return REDACT;
    return null;
  }
  const column = table?.get(attnum);
  if (column !== undefined) return ctx.masks.get(column) ?? null;
  const viewReads = catalog.views.get(tableOid);
  if (viewReads === undefined) return null;
  const resolved = catalog.viewColumns.get(tableOid);
  if (resolved !== undefined && attnum > 0) {
    // A view column shows the base columns behind it: as it is, it gets that column's mask; computed, redacted.
    const col = resolved.get(attnum);
    if (col === undefined) return REDACT;
    const masked = [...col.keys].filter((k) => ctx.masks.has(k));
    if (masked.length === 0) return null;
    return col.direct && masked.length === 1 ? ctx.masks.get(masked[0])! : REDACT;
  }
  for (const key of viewReads) if (ctx.masks.has(key)) return REDACT;
  return null;
}
