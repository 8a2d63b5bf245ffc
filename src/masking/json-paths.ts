// Masks inside JSON documents (FHIR resources are often stored whole in a json/jsonb column): a role names paths
// such as `$.identifier[*].value` and a mask for each; the value at every match is masked, the rest of the
// document is returned as it is. A value that is not valid JSON is redacted whole (fail closed).
//
// Paths are a small subset of JSONPath: `$`, then `.name`, `['name']`, `[*]`, `.*` and `[N]`. Wildcards reach
// every member of an object or element of an array; `$..name` (any depth) is `..name`.

import { buildMaskPlan, MaskAction, maskDataRowTs, type MaskColumnSpec } from './kernel.js';
import type { MaskRule } from './mask-spec.js';
import { dataRowValue } from '../protocol/decode.js';
import { dataRow } from '../protocol/writer.js';

type Step =
  | { readonly kind: 'key'; readonly key: string }
  | { readonly kind: 'index'; readonly index: number }
  | { readonly kind: 'any' }
  | { readonly kind: 'deep'; readonly key: string };

export interface JsonPathMask {
  readonly path: string;
  readonly steps: readonly Step[];
  readonly rule: MaskRule;
}

/** Reads a path; throws with the position of what it cannot read. */
export function parseJsonPath(path: string): Step[] {
  if (!path.startsWith('$')) throw new Error(`JSON path ${path}: must start with $`);
  const steps: Step[] = [];
  let i = 1;
  const name = /^[A-Za-z_][A-Za-z0-9_-]*/;
  while (i < path.length) {
    const rest = path.slice(i);
    if (rest.startsWith('..')) {
      const m = name.exec(rest.slice(2));
      if (!m) throw new Error(`JSON path ${path}: a name must follow .. at ${i}`);
      steps.push({ kind: 'deep', key: m[0] });
      i += 2 + m[0].length;
    } else if (rest.startsWith('.*') || rest.startsWith('[*]')) {
      steps.push({ kind: 'any' });
      i += rest.startsWith('.*') ? 2 : 3;
    } else if (rest.startsWith('.')) {
      const m = name.exec(rest.slice(1));
      if (!m) throw new Error(`JSON path ${path}: a name must follow . at ${i}`);
      steps.push({ kind: 'key', key: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith("['")) {
      const end = rest.indexOf("']", 2);
      if (end < 0) throw new Error(`JSON path ${path}: unterminated ['...'] at ${i}`);
      steps.push({ kind: 'key', key: rest.slice(2, end) });
      i += end + 2;
    } else {
      const m = /^\[(\d{1,6})\]/.exec(rest);
      if (!m) throw new Error(`JSON path ${path}: cannot read '${rest.slice(0, 10)}' at ${i}`);
      steps.push({ kind: 'index', index: Number(m[1]) });
      i += m[0].length;
    }
  }
  if (steps.length === 0)
    throw new Error(`JSON path ${path}: names no member (mask the whole column instead)`);
  return steps;
}

/** The masked document text, or null when `text` is not JSON (the caller redacts it). */
export function maskJsonDocument(
  text: string,
  masks: readonly JsonPathMask[],
  redaction: string,
): string | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  const root = { value: doc };
  for (const m of masks) visit(root, 'value', m.steps, 0, m.rule, redaction);
  return JSON.stringify(root.value);
}

/** The masked document text; a value that is not JSON becomes the redaction text as a JSON string. */
export function maskJsonText(text: string, masks: readonly JsonPathMask[], redaction: string): string {
  return maskJsonDocument(text, masks, redaction) ?? JSON.stringify(redaction);
}

type Container = Record<string, unknown> | unknown[];

function visit(
  parent: Container,
  key: string | number,
  steps: readonly Step[],
  at: number,
  rule: MaskRule,
  redaction: string,
): void {
  const value = (parent as Record<string | number, unknown>)[key];
  if (at === steps.length) {
    (parent as Record<string | number, unknown>)[key] = maskLeaf(value, rule, redaction);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const step = steps[at];
  const container = value as Container;
  switch (step.kind) {
    case 'key':
      if (!Array.isArray(container) && Object.hasOwn(container, step.key))
        visit(container, step.key, steps, at + 1, rule, redaction);
      return;
    case 'index':
      if (Array.isArray(container) && step.index < container.length)
        visit(container, step.index, steps, at + 1, rule, redaction);
      return;
    case 'any':
      for (const k of Array.isArray(container) ? container.keys() : Object.keys(container))
        visit(container, k, steps, at + 1, rule, redaction);
      return;
    case 'deep':
      // The name at this level, and at every level below.
      if (!Array.isArray(container) && Object.hasOwn(container, step.key))
        visit(container, step.key, steps, at + 1, rule, redaction);
      for (const k of Array.isArray(container) ? container.keys() : Object.keys(container))
        visit(container, k, steps, at, rule, redaction);
      return;
  }
}

/** A leaf: strings and numbers through the column masks (same kernel twin); objects and arrays redacted whole. */
function maskLeaf(value: unknown, rule: MaskRule, redaction: string): unknown {
  if (value === null || value === undefined) return value;
  if (rule.fn === 'null') return null;
  if (typeof value === 'object' || typeof value === 'boolean') return redaction;
  const text = String(value);
  if (rule.fn === 'hash' || rule.fn === 'redact') return redaction;
  return maskText(text, rule, redaction);
}

const ACTIONS: Partial<Record<MaskRule['fn'], number>> = {
  partial: MaskAction.Partial,
  year_only: MaskAction.YearOnly,
  month_year: MaskAction.MonthYear,
  zip3: MaskAction.Zip3,
  email: MaskAction.Email,
  fixed: MaskAction.Fixed,
};

/** One value through the kernel's TypeScript twin, as a one-column DataRow. */
function maskText(text: string, rule: MaskRule, redaction: string): string {
  const action = ACTIONS[rule.fn];
  if (action === undefined) return redaction;
  const spec: MaskColumnSpec =
    rule.fn === 'partial'
      ? { action: MaskAction.Partial, keepFirst: rule.keepFirst, keepLast: rule.keepLast }
      : rule.fn === 'fixed'
        ? { action: MaskAction.Fixed, fixed: rule.fixed }
        : { action: action as MaskColumnSpec['action'] };
  const out = maskDataRowTs(dataRow([Buffer.from(text, 'utf8')]), buildMaskPlan([spec], redaction));
  const value = dataRowValue(out, 0);
  return value === null ? redaction : value.toString('utf8');
}
