// Masks the DataRows of one session: the column plan of each result (column-plan.ts) is turned into a kernel plan
// once per result description and roles, and every row goes through the WASM kernel (or its twin). What the kernel
// does not compute passes it and is replaced here: hash tokens (a keyed HMAC), masks inside JSON documents, and
// masked values of typed columns (typed-masks.ts: dates, numbers, uuid, bytea, json in either result format).

import { stats } from '../metrics/worker-stats.js';
import { dataRowValue } from '../protocol/decode.js';
import { planColumns, planUnknown, type ColumnAction } from './column-plan.js';
import {
  buildMaskPlan,
  createRowMasker,
  MaskAction,
  type MaskColumnSpec,
  type MaskerImpl,
  type RowMasker,
} from './kernel.js';
import { maskJsonText } from './json-paths.js';
import { TEXT_FORMAT } from './typed-values.js';
import type { MaskCatalog } from './mask-catalog.js';
import type { MaskRule } from './mask-spec.js';
import type { ResultDescription } from './result-tracker.js';
import {
  hmacOfText,
  typedColumnMask,
  typedDetector,
  type TypedColumnMask,
  type ValueRewrite,
} from './typed-masks.js';

interface Prepared {
  readonly masks: ReadonlyMap<string, MaskRule>;
  readonly safeHarbor?: boolean;
  readonly expressionsReadMasked: boolean;
  readonly masker: RowMasker;
  /** Columns the kernel passes through and this module rewrites: hash tokens, JSON documents, typed values. */
  readonly rewrites: ReadonlyMap<number, ValueRewrite>;
  /** The rule (config entry) of each column masked by one: the masked-fields metric. */
  readonly ruleOfColumn: ReadonlyArray<string | null>;
  /** Columns left to the content detectors: counted when the detectors masked them. */
  readonly detectColumns: readonly number[];
}

export class SessionMasker {
  private readonly prepared = new WeakMap<ResultDescription, Prepared>();
  private readonly unknown = new Map<number, Prepared>();

  constructor(
    readonly catalog: MaskCatalog,
    private readonly redaction: string,
    private readonly hashKey: Buffer | null,
    private readonly impl: MaskerImpl,
    /** Told once per result description which columns are masked and by which rule (for the audit trail). */
    private readonly onPlan: ((columns: Array<{ column: string; rule: string }>) => void) | null = null,
    /** masking.mrn_formats and identifier_formats: the content detectors' configurable part, in the kernel's plan. */
    private readonly identifierFormats: readonly string[] = [],
  ) {}

  /** The name of a result column for records: schema.table.column when its origin is known. */
  columnName(field: ResultDescription[number]): string {
    const known = this.catalog.columns.get(field.tableOid)?.get(field.attnum);
    if (known !== undefined) return known;
    return field.tableOid === 0
      ? `expression "${field.name}"`
      : `"${field.name}" of relation ${field.tableOid}`;
  }

  /** The masked row (or `row` itself when nothing in it is masked). Throws when the row is malformed. */
  mask(
    row: Buffer,
    desc: ResultDescription | null,
    masks: ReadonlyMap<string, MaskRule>,
    expressionsReadMasked: boolean,
    safeHarbor = false,
  ): Buffer {
    const p = desc
      ? this.forDescription(desc, masks, expressionsReadMasked, safeHarbor)
      : this.forUnknown(row.readInt16BE(5));
    if (p.masker.plan.untouched && p.rewrites.size === 0) return row;
    countRules(p.ruleOfColumn, row);
    const out = p.masker.plan.untouched ? row : p.masker.mask(row);
    if (p.detectColumns.length > 0) countDetections(p.detectColumns, row, out);
    return p.rewrites.size > 0 ? rewriteColumns(out, p.rewrites) : out;
  }

  private forDescription(
    desc: ResultDescription,
    masks: ReadonlyMap<string, MaskRule>,
    expressionsReadMasked: boolean,
    safeHarbor: boolean,
  ): Prepared {
    const seen = this.prepared.get(desc);
    if (
      seen &&
      seen.masks === masks &&
      seen.expressionsReadMasked === expressionsReadMasked &&
      seen.safeHarbor === safeHarbor
    )
      return seen;
    const actions = planColumns(desc, { catalog: this.catalog, masks, expressionsReadMasked, safeHarbor });
    const p = { ...this.prepare(actions, masks, expressionsReadMasked), safeHarbor };
    if (this.onPlan) {
      const decided = actions.flatMap((a, i) =>
        a.kind === 'mask' || a.kind === 'typed' || a.kind === 'null'
          ? [{ column: this.columnName(desc[i]), rule: auditRule(a) }]
          : [],
      );
      if (decided.length > 0) this.onPlan(decided);
    }
    this.prepared.set(desc, p);
    return p;
  }

  /** Rows with no known description: every column masked. */
  private forUnknown(columns: number): Prepared {
    let p = this.unknown.get(columns);
    if (!p) {
      p = this.prepare(planUnknown(Math.max(0, columns)), new Map(), true);
      this.unknown.set(columns, p);
    }
    return p;
  }

  private prepare(
    actions: readonly ColumnAction[],
    masks: ReadonlyMap<string, MaskRule>,
    expressionsReadMasked: boolean,
  ): Prepared {
    const rewrites = new Map<number, ValueRewrite>();
    const ruleOfColumn: Array<string | null> = actions.map(() => null);
    const detectColumns: number[] = [];
    const redaction = this.redaction;
    const specs = actions.map((a, i): MaskColumnSpec => {
      if (a.kind === 'pass') return { action: MaskAction.Pass };
      if (a.kind === 'detect') {
        if (a.type !== undefined) {
          // Read as its type, in its format (the kernel sees text only), then through the same detectors.
          const onDetected = () => void stats.detectedFields++;
          const formats = this.identifierFormats.map((f) => Buffer.from(f, 'utf8'));
          rewrites.set(i, typedDetector(a.type, a.format ?? 0, { redaction, formats, onDetected }));
          return { action: MaskAction.Pass };
        }
        detectColumns.push(i);
        return { action: MaskAction.Detect };
      }
      ruleOfColumn[i] = a.rule?.source ?? 'binary value';
      if (a.kind === 'null') return { action: MaskAction.Null };
      if (a.kind === 'typed') {
        const inKernel = kernelDateSpec(a);
        if (inKernel !== null) return inKernel;
        const typed = typedColumnMask(a.rule, a.type, a.format, { hashKey: this.hashKey, redaction });
        return typedSpec(typed, (rewrite) => rewrites.set(i, rewrite));
      }
      const r = a.rule;
      switch (r.fn) {
        case 'redact':
          return { action: MaskAction.Redact };
        case 'null':
          return { action: MaskAction.Null };
        case 'partial':
          return { action: MaskAction.Partial, keepFirst: r.keepFirst, keepLast: r.keepLast };
        case 'year_only':
          return { action: MaskAction.YearOnly };
        case 'month_year':
          return { action: MaskAction.MonthYear };
        case 'zip3':
          return { action: MaskAction.Zip3 };
        case 'email':
          return { action: MaskAction.Email };
        case 'fixed':
          return { action: MaskAction.Fixed, fixed: r.fixed };
        case 'hash': {
          const key = this.hashKey;
          if (key === null) return { action: MaskAction.Redact }; // fail closed without a key
          rewrites.set(i, (v) => Buffer.from(hmacOfText(key, v).toString('hex').slice(0, 32)));
          return { action: MaskAction.Pass };
        }
        case 'json': {
          const paths = r.jsonPaths ?? [];
          rewrites.set(i, (v) => Buffer.from(maskJsonText(v.toString('utf8'), paths, redaction)));
          return { action: MaskAction.Pass };
        }
      }
    });
    // The formats matter to Detect columns only; a plan without one leaves them out (a smaller plan to load).
    const formats = detectColumns.length > 0 ? this.identifierFormats : [];
    const masker = createRowMasker(buildMaskPlan(specs, this.redaction, formats), this.impl);
    return { masks, expressionsReadMasked, masker, rewrites, ruleOfColumn, detectColumns };
  }
}

/**
 * year_only / month_year on a date or timestamp in text format: the kernel writes the same value typed-masks.ts
 * would (`YYYY-01-01`, `YYYY-01-01 00:00:00`) in the row's one pass, and NULL for any other shape (another DateStyle,
 * BC, infinity) where typed-masks.ts would read it first. Decoding and re-encoding each row in JavaScript instead
 * cost about 1 µs per row (the masking bench). timestamptz stays typed: its value is truncated in UTC.
 */
function kernelDateSpec(a: Extract<ColumnAction, { kind: 'typed' }>): MaskColumnSpec | null {
  if (a.format !== TEXT_FORMAT || (a.type !== 'date' && a.type !== 'timestamp')) return null;
  if (a.rule.fn === 'year_only') return { action: MaskAction.YearOnly, nullOnMismatch: true };
  if (a.rule.fn === 'month_year') return { action: MaskAction.MonthYear, nullOnMismatch: true };
  return null;
}

/** The kernel's part of a typed column's mask; `rewrite` takes what the kernel cannot write. */
function typedSpec(typed: TypedColumnMask, rewrite: (r: ValueRewrite) => void): MaskColumnSpec {
  switch (typed.kind) {
    case 'null':
      return { action: MaskAction.Null };
    case 'rewrite':
      rewrite(typed.rewrite);
      return { action: MaskAction.Pass };
    case 'constant': {
      // The kernel writes fixed text as its UTF-8 bytes: constants that are such bytes (an int4 42, a jsonb "***")
      // stay in the kernel; others (an int4 200: 00 00 00 c8) are written here.
      const value = typed.value;
      const text = value.toString('utf8');
      if (Buffer.from(text, 'utf8').equals(value)) return { action: MaskAction.Fixed, fixed: text };
      rewrite(() => value);
      return { action: MaskAction.Pass };
    }
  }
}

/** Counts the non-NULL values each rule masks in one row. */
function countRules(ruleOfColumn: ReadonlyArray<string | null>, row: Buffer): void {
  let at = 7;
  const count = Math.min(row.readInt16BE(5), ruleOfColumn.length);
  for (let i = 0; i < count; i++) {
    const len = row.readInt32BE(at);
    const rule = ruleOfColumn[i];
    if (rule !== null && len >= 0) {
      stats.maskedFields++;
      stats.maskedByRule[rule] = (stats.maskedByRule[rule] ?? 0) + 1;
    }
    at += 4 + Math.max(0, len);
  }
}

/** Counts the detect columns whose value the kernel changed (the detectors found PHI in it). */
function countDetections(columns: readonly number[], before: Buffer, after: Buffer): void {
  for (const i of columns) {
    const a = dataRowValue(before, i);
    const b = dataRowValue(after, i);
    if (a !== null && (b === null || !a.equals(b))) stats.detectedFields++;
  }
}

/**
 * Replaces the values of some columns (NULLs stay NULL); the row itself when every rewrite returned its value as it
 * was. Hash tokens are keyed HMAC-SHA-256: deterministic, so joins and counts over the token still work, and
 * without the key the value cannot be recovered or guessed. Runs per row: the changed values are spliced into one
 * new buffer, with no array of every column and no second encoding of the row (2.4x faster than decoding and
 * re-encoding an 8-column row with one rewrite).
 */
function rewriteColumns(row: Buffer, rewrites: ReadonlyMap<number, ValueRewrite>): Buffer {
  const count = row.readInt16BE(5);
  let changes: Array<{ at: number; length: number; value: Buffer | null }> | null = null;
  let at = 7;
  for (let i = 0; i < count; i++) {
    const length = row.readInt32BE(at);
    const rewrite = rewrites.get(i);
    if (rewrite !== undefined && length >= 0) {
      const value = row.subarray(at + 4, at + 4 + length);
      const rewritten = rewrite(value);
      if (rewritten !== value) (changes ??= []).push({ at, length, value: rewritten });
    }
    at += 4 + Math.max(0, length);
  }
  if (changes === null) return row;
  let size = row.length;
  for (const c of changes) size += (c.value?.length ?? 0) - c.length;
  const out = Buffer.allocUnsafe(size);
  let from = 0;
  let o = 0;
  for (const c of changes) {
    o += row.copy(out, o, from, c.at);
    out.writeInt32BE(c.value === null ? -1 : c.value.length, o);
    o += 4;
    if (c.value !== null) o += c.value.copy(out, o);
    from = c.at + 4 + c.length;
  }
  row.copy(out, o, from);
  out.writeInt32BE(size - 1, 1);
  return out;
}

/** The rule of a masked column as the audit trail records it: the config entry, its mask, and NULL when no value
 * of the column's type could be built. */
function auditRule(a: Extract<ColumnAction, { kind: 'mask' | 'typed' | 'null' }>): string {
  if (a.rule === null) return `NULL (${a.kind === 'null' ? a.reason : 'unknown origin'})`;
  const rule = `${a.rule.source}: ${a.rule.fn}`;
  return a.kind === 'null' && a.rule.fn !== 'null' ? `${rule} → NULL (${a.reason})` : rule;
}
