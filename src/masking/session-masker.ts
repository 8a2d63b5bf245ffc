// Masks the DataRows of one session: the column plan of each result (column-plan.ts) is turned into a kernel plan
// once per result description and roles, and every row goes through the WASM kernel (or its twin). The hash mask
// needs a keyed HMAC, which the kernel does not compute: those columns pass the kernel and are replaced here.

import crypto from 'node:crypto';
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
import { maskJsonDocument } from './json-paths.js';
import type { MaskCatalog } from './mask-catalog.js';
import type { MaskRule } from './mask-spec.js';
import type { ResultDescription } from './result-tracker.js';

interface Prepared {
  readonly masks: ReadonlyMap<string, MaskRule>;
  readonly safeHarbor?: boolean;
  readonly expressionsReadMasked: boolean;
  readonly masker: RowMasker;
  /** Columns the kernel passes through and this module rewrites: hash tokens and masks inside JSON documents. */
  readonly rewrites: ReadonlyMap<number, (value: Buffer) => Buffer | null>;
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
        a.kind === 'mask' || a.kind === 'null'
          ? [
              {
                column: this.columnName(desc[i]),
                rule: a.rule ? `${a.rule.source}: ${a.rule.fn}` : 'binary: null',
              },
            ]
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
    const rewrites = new Map<number, (value: Buffer) => Buffer | null>();
    const ruleOfColumn: Array<string | null> = actions.map(() => null);
    const detectColumns: number[] = [];
    const specs = actions.map((a, i): MaskColumnSpec => {
      if (a.kind === 'pass') return { action: MaskAction.Pass };
      if (a.kind === 'detect') {
        detectColumns.push(i);
        return { action: MaskAction.Detect };
      }
      ruleOfColumn[i] = a.rule?.source ?? 'binary value';
      if (a.kind === 'null') return { action: MaskAction.Null };
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
          rewrites.set(i, (v) =>
            Buffer.from(crypto.createHmac('sha256', key).update(v).digest('hex').slice(0, 32)),
          );
          return { action: MaskAction.Pass };
        }
        case 'json': {
          const paths = r.jsonPaths ?? [];
          const redaction = this.redaction;
          rewrites.set(i, (v) => {
            const masked = maskJsonDocument(v.toString('utf8'), paths, redaction);
            return Buffer.from(masked ?? JSON.stringify(redaction));
          });
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
 * Replaces the values of some columns (NULLs stay NULL). Hash tokens are keyed HMAC-SHA-256 (hex, 32 characters):
 * deterministic, so joins and counts over the token still work, and without the key the value cannot be
 * recovered or guessed.
 */
function rewriteColumns(
  row: Buffer,
  rewrites: ReadonlyMap<number, (value: Buffer) => Buffer | null>,
): Buffer {
  const count = row.readInt16BE(5);
  const parts: Buffer[] = [];
  let at = 7;
  let from = 0;
  let delta = 0;
  for (let i = 0; i < count; i++) {
    const len = row.readInt32BE(at);
    const valueAt = at + 4;
    const rewrite = rewrites.get(i);
    if (rewrite && len >= 0) {
      const value = rewrite(row.subarray(valueAt, valueAt + len));
      const header = Buffer.allocUnsafe(4);
      header.writeInt32BE(value === null ? -1 : value.length);
      parts.push(row.subarray(from, at), header, ...(value === null ? [] : [value]));
      from = valueAt + len;
      delta += (value === null ? 0 : value.length) - len;
    }
    at = valueAt + Math.max(len, 0);
  }
  parts.push(row.subarray(from));
  const out = Buffer.concat(parts);
  out.writeInt32BE(row.readInt32BE(1) + delta, 1);
  return out;
}
