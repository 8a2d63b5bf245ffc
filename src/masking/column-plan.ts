// What happens to each column of a result for a masked session: decided from the column's origin (table OID and
// attribute number, resolved through the mask catalog), from the statement when the column has no origin, and
// from the result format. Unknown means masked: a column of a relation the catalog has not seen, rows with no
// known description, and expressions over masked columns are all masked.

import type { MaskCatalog } from './mask-catalog.js';
import type { MaskRule } from './mask-spec.js';
import type { ResultDescription, ResultField } from './result-tracker.js';
import { typedMaskUnavailable } from './typed-masks.js';
import { TEXT_FORMAT, TEXT_LIKE_TYPES, valueTypeOf, type ValueType } from './typed-values.js';

export type ColumnAction =
  | { readonly kind: 'pass' }
  /** A configured mask the kernel applies to the value's text (text-like types in either format; in text format
   * also types typed-values.ts does not know). */
  | { readonly kind: 'mask'; readonly rule: MaskRule }
  /** A configured mask whose masked value is a value of the column's type, in the column's format (typed-masks.ts). */
  | { readonly kind: 'typed'; readonly rule: MaskRule; readonly type: ValueType; readonly format: number }
  /** No origin and no masked column read (or the Safe Harbor preset): the content detectors decide. With a `type`,
   * on the value read as that type (typed-masks.ts), a finding giving NULL; without, the kernel on the text. */
  | { readonly kind: 'detect'; readonly type?: ValueType; readonly format?: number }
  /** Masked, and no masked value of the column's type exists (or the null mask): the value becomes NULL. */
  | { readonly kind: 'null'; readonly rule: MaskRule | null; readonly reason: string };

/** The mask used where no configured mask applies but the value must not pass (unknown origin, several masks). */
export const REDACT: MaskRule = {
  fn: 'redact',
  keepFirst: 0,
  keepLast: 0,
  fixed: '',
  source: 'unknown origin',
};

/**
 * Binary values that cannot hold an identifier: bool only. An int2 holds a 5-digit ZIP (up to 32767) and a float8 a
 * 10-digit phone number; their codecs print them for the detectors like any other typed value.
 */
const BINARY_CLEAN_TYPES: ReadonlySet<number> = new Set([
  16, // bool
]);

export interface PlanContext {
  readonly catalog: MaskCatalog;
  /** The session's masked columns, `schema.table.column` → mask. */
  readonly masks: ReadonlyMap<string, MaskRule>;
  /** A statement in flight reads a masked column: expressions (no origin) are masked, not only detected. */
  readonly expressionsReadMasked: boolean;
  /**
   * Safe Harbor preset: table columns no mask covers go through the content detectors too; bytea values, and binary
   * values the detectors cannot read, become NULL.
   */
  readonly safeHarbor?: boolean;
}

export function planColumns(desc: ResultDescription, ctx: PlanContext): ColumnAction[] {
  return desc.map((field) => {
    const rule = ruleFor(field.tableOid, field.attnum, ctx);
    if (rule === null) {
      if (field.tableOid !== 0) {
        if (!ctx.safeHarbor) return PASS;
        // Safe Harbor's biometric identifiers and full-face photographs are binary content no detector reads.
        if (field.typeOid === BYTEA) return SAFE_HARBOR_BINARY;
        return detect(field) ?? UNREADABLE;
      }
      if (ctx.expressionsReadMasked) return masked(REDACT, field);
      if (field.format !== TEXT_FORMAT && BINARY_CLEAN_TYPES.has(field.typeOid)) return PASS;
      return detect(field) ?? UNREADABLE;
    }
    return masked(rule, field);
  });
}

/** Every column masked: rows whose description is not known. */
export function planUnknown(columns: number): ColumnAction[] {
  return Array.from({ length: columns }, () => ({ kind: 'mask', rule: REDACT }) as const);
}

const PASS: ColumnAction = { kind: 'pass' };
const UNREADABLE: ColumnAction = {
  kind: 'null',
  rule: null,
  reason: 'a binary value the detectors cannot read',
};
const BYTEA = 17;
const SAFE_HARBOR_BINARY: ColumnAction = {
  kind: 'null',
  rule: null,
  reason: 'Safe Harbor: binary content (biometrics, photographs)',
};
const DETECT: ColumnAction = { kind: 'detect' };

/** How the detectors read a column, or null when they cannot (binary values of types no codec reads). */
function detect(field: ResultField): ColumnAction | null {
  const type = valueTypeOf(field.typeOid);
  if (type !== undefined) return { kind: 'detect', type, format: field.format };
  return field.format === TEXT_FORMAT || TEXT_LIKE_TYPES.has(field.typeOid) ? DETECT : null;
}

function masked(rule: MaskRule, field: ResultField): ColumnAction {
  if (rule.fn === 'null') return { kind: 'null', rule, reason: 'the null mask' };
  const type = valueTypeOf(field.typeOid);
  if (type !== undefined) {
    const unavailable = typedMaskUnavailable(rule, type);
    if (unavailable === null) return { kind: 'typed', rule, type, format: field.format };
    return { kind: 'null', rule, reason: unavailable };
  }
  if (field.format === TEXT_FORMAT || TEXT_LIKE_TYPES.has(field.typeOid)) return { kind: 'mask', rule };
  return { kind: 'null', rule, reason: `no binary value of type ${field.typeOid} is built` };
}

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
