// Loads the YAML config: ${ENV} substitution, schema validation with key paths, cross-key checks, resolution, freezing.
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { dirname, resolve as resolvePath } from 'node:path';
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { formatDuration, formatSize, MAX_DURATION_MS, parseDuration, parseSize } from './duration.js';
import {
  AUDIT_PG_DEFAULTS,
  ConfigSchema,
  schemaMeta,
  type ConfigInput,
  type PasswordSource,
  type PgwardenConfig,
  type UserAuthMethod,
} from './schema.js';
import { isValidCidr } from '../net/cidr.js';
import { parseJsonPath } from '../masking/json-paths.js';

export type { PgwardenConfig } from './schema.js';
/** The resolved config type (defaults applied, durations in ms, sizes in bytes); same as PgwardenConfig. */
export type Config = PgwardenConfig;

export interface ConfigIssue {
  /** Key path such as 'databases.ehr.upstream.port' or 'users.bob.roles[0]'; '' for the file as a whole. */
  readonly path: string;
  readonly message: string;
  /** 1-based position in the YAML source of the key (or the nearest enclosing key that exists), when known. */
  readonly line?: number;
  readonly column?: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'PGW_ERR_CONFIG';
  readonly issues: readonly ConfigIssue[];
  readonly file: string;

  constructor(file: string, issues: readonly ConfigIssue[]) {
    super(formatIssues(file, issues));
    this.file = file;
    this.issues = Object.freeze([...issues]);
  }
}

/** One line per issue: `<file>:<line>:<col>: <path>: <message>` (position and path left out when unknown or empty). */
export function formatConfigError(e: ConfigError): string {
  return formatIssues(e.file, e.issues);
}

function formatIssues(file: string, issues: readonly ConfigIssue[]): string {
  return issues
    .map((i) => {
      const where = i.line === undefined ? file : `${file}:${i.line}:${i.column ?? 1}`;
      return i.path === '' ? `${where}: ${i.message}` : `${where}: ${i.path}: ${i.message}`;
    })
    .join('\n');
}

/** Reads, validates and resolves a config file; relative paths inside it are relative to its directory. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): PgwardenConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the config file (${errorCode(err)})` }]);
  }
  return loadConfigText(text, { baseDir: dirname(resolvePath(file)), env, file });
}

export interface LoadTextOptions {
  /** Directory relative paths in the config resolve against (normally the config file's directory). */
  readonly baseDir: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Name used in error messages. */
  readonly file?: string;
}

/** Validates and resolves config text; throws ConfigError listing every problem found. The result is deep-frozen. */
export function loadConfigText(text: string, options: LoadTextOptions): PgwardenConfig {
  const file = options.file ?? '<config>';
  const env = options.env ?? process.env;
  if (RESERVED_CHARS.test(text)) {
    throw new ConfigError(file, [
      { path: '', message: 'contains characters U+E000-U+E002, which pgwarden reserves' },
    ]);
  }
  const lines = new LineCounter();
  // prettyErrors off: the pretty form quotes the offending source line, which may hold a secret.
  const doc = parseDocument(protectEnvRefs(text), {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  if (doc.errors.length > 0) {
    // Only the first: the ones after a syntax error are mostly its echoes.
    const e = doc.errors[0];
    const pos = lines.linePos(e.pos[0]);
    throw new ConfigError(file, [
      { path: '', message: `YAML syntax error: ${yamlMessage(e.message)}`, line: pos.line, column: pos.col },
    ]);
  }
  const where = new Locator(doc, lines);
  const fail = (issues: Issue[]): never => {
    throw new ConfigError(file, where.finish(issues));
  };

  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) fail([{ segs: [], message: 'the config is empty' }]);

  // 1. ${ENV} references, before validation so that substituted values are validated like written ones.
  const envIssues: Issue[] = [];
  const envPaths = new Set<string>();
  const substituted = substituteEnv(raw, [], env, envIssues, envPaths);
  if (envIssues.length > 0) fail(envIssues);
  coerceEnvScalars(substituted, envPaths);

  // 2. Shape: defaults first (they are valid by construction), then every schema error at its key path.
  const value = applyDefaults(ConfigSchema, substituted);
  const schemaIssues = schemaErrors(value);
  if (schemaIssues.length > 0) fail(schemaIssues);
  const input = value as ConfigInput;

  // 3. Rules between keys, then resolution (durations, sizes, paths, *_file secrets).
  const issues = crossCheck(input);
  fillComputedDefaults(input);
  const ctx: ResolveContext = { baseDir: options.baseDir, issues };
  const resolved = resolveNode(ConfigSchema, input, [], ctx) as Record<string, unknown>;
  if (issues.length > 0) fail(issues);
  fillResolvedDefaults(resolved, envPaths);
  return deepFreeze(resolved) as PgwardenConfig;
}

// ---------------------------------------------------------------------------------------------------------------
// Key paths and positions.

type Seg = string | number;
interface Issue {
  segs: readonly Seg[];
  message: string;
}

/** 'users.bob.roles[0]'; keys that are not plain identifiers are quoted: roles.analyst.masks["public.patients.ssn"]. */
export function formatKeyPath(segs: readonly Seg[]): string {
  let out = '';
  for (const s of segs) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Issues sorted by position in the file, one per key path (the first found is the most basic). */
  finish(issues: readonly Issue[]): ConfigIssue[] {
    const seen = new Set<string>();
    const out: ConfigIssue[] = [];
    for (const issue of issues) {
      const path = formatKeyPath(issue.segs);
      if (seen.has(path)) continue;
      seen.add(path);
      const offset = this.offsetOf(issue.segs);
      if (offset === undefined) out.push({ path, message: issue.message });
      else {
        const pos = this.lines.linePos(offset);
        out.push({ path, message: issue.message, line: pos.line, column: pos.col });
      }
    }
    const rank = (i: ConfigIssue) =>
      i.line === undefined ? Number.MAX_SAFE_INTEGER : i.line * 1e6 + (i.column ?? 0);
    return out.sort((a, b) => rank(a) - rank(b));
  }

  /** Source offset of the key at segs, or of the deepest enclosing key present (a missing key is reported there). */
  private offsetOf(segs: readonly Seg[]): number | undefined {
    let node: unknown = this.doc.contents;
    let offset: number | undefined;
    for (const seg of segs) {
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => restoreEnvRefs(String(isScalar(p.key) ? p.key.value : p.key)) === String(seg),
        );
        if (pair === undefined) break;
        offset = (pair.key as YamlNode | null)?.range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        if (item === undefined) break;
        offset = item.range?.[0] ?? offset;
        node = item;
      } else break;
    }
    return offset;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// ${ENV} substitution.

// `${NAME}` is not valid YAML inside a flow mapping (`{ password: ${X} }` breaks on the braces), yet it is the
// documented way to write secrets. So before parsing, each well-formed reference becomes the same number of
// private-use characters around the name (positions in error messages stay exact), and values are substituted after
// parsing, so an environment value that contains YAML syntax can never change the document's structure.
const REF_OPEN = '\uE000\uE001';
const REF_CLOSE = '\uE002';
const RESERVED_CHARS = /[\uE000-\uE002]/;
const PROTECTED_REF = /\uE000\uE001([A-Za-z_][A-Za-z0-9_]*)\uE002/g;

function protectEnvRefs(text: string): string {
  return text.replace(/\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m: string, name: string | undefined) =>
    name === undefined ? m : REF_OPEN + name + REF_CLOSE,
  );
}

/** A protected reference back in its written form, for keys (never substituted) and messages. */
function restoreEnvRefs(s: string): string {
  return s.includes(REF_OPEN) ? s.replace(PROTECTED_REF, '${$1}') : s;
}

/** YAML's messages sometimes quote a source token; drop the quotes' content, it may be a secret. */
function yamlMessage(message: string): string {
  return message.replace(/:?\s*"(?:[^"\\]|\\.)*"/g, '').replace(/\s+at line \d+, column \d+.*$/s, '');
}

function substituteEnv(
  v: unknown,
  segs: Seg[],
  env: NodeJS.ProcessEnv,
  issues: Issue[],
  envPaths: Set<string>,
): unknown {
  if (typeof v === 'string') {
    if (!v.includes('$') && !v.includes(REF_OPEN)) return v;
    const out = expandEnv(v, env);
    if ('error' in out) {
      issues.push({ segs, message: out.error });
      return v;
    }
    if (out.references > 0) envPaths.add(formatKeyPath(segs));
    return out.value;
  }
  if (Array.isArray(v)) return v.map((item, i) => substituteEnv(item, [...segs, i], env, issues, envPaths));
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [rawKey, item] of Object.entries(v)) {
      const k = restoreEnvRefs(rawKey);
      setOwn(out, k, substituteEnv(item, [...segs, k], env, issues, envPaths));
    }
    return out;
  }
  return v;
}

/** Replaces ${NAME} with env.NAME; `$${` stands for a literal `${`. Errors never quote the string (it may be a secret). */
function expandEnv(
  s: string,
  env: NodeJS.ProcessEnv,
): { value: string; references: number } | { error: string } {
  let out = '';
  let i = 0;
  let references = 0;
  for (;;) {
    const dollar = s.indexOf('$', i);
    const ref = s.indexOf(REF_OPEN, i);
    const j = dollar < 0 ? ref : ref < 0 ? dollar : Math.min(dollar, ref);
    if (j < 0) break;
    if (j === ref) {
      const end = s.indexOf(REF_CLOSE, j);
      const name = s.slice(j + REF_OPEN.length, end);
      const value = env[name];
      if (value === undefined) return { error: `environment variable ${name} is not set` };
      out += s.slice(i, j) + value;
      references++;
      i = end + REF_CLOSE.length;
    } else if (s.startsWith('$${', j)) {
      out += s.slice(i, j) + '${';
      i = j + 3;
    } else if (s.startsWith('${', j)) {
      // Well-formed references were protected before parsing, so this one is malformed.
      return {
        error:
          "'${' must be followed by an environment variable name and '}' (write '$${' for a literal '${')",
      };
    } else {
      out += s.slice(i, j + 1);
      i = j + 1;
    }
  }
  return { value: out + s.slice(i), references };
}

/** `port: ${PORT}` arrives as a string; where the schema wants an integer or a boolean, take the value as one. */
function coerceEnvScalars(root: unknown, envPaths: Set<string>): void {
  if (envPaths.size === 0) return;
  const visit = (schema: TSchema | undefined, v: unknown, segs: Seg[], set: (x: unknown) => void): void => {
    if (schema === undefined) return;
    if (typeof v === 'string' && envPaths.has(formatKeyPath(segs))) {
      const t = v.trim();
      if (accepts(schema, 'integer') && /^-?\d+$/.test(t)) set(Number(t));
      else if (accepts(schema, 'boolean') && (t === 'true' || t === 'false')) set(t === 'true');
      return;
    }
    if (Array.isArray(v))
      v.forEach((item, i) => visit(childSchema(schema, i), item, [...segs, i], (x) => (v[i] = x)));
    else if (isPlainObject(v)) {
      for (const k of Object.keys(v))
        visit(childSchema(schema, k), v[k], [...segs, k], (x) => setOwn(v, k, x));
    }
  };
  visit(ConfigSchema, root, [], () => undefined);
}

function accepts(schema: TSchema, type: string): boolean {
  if (schema.type === type) return true;
  return Array.isArray(schema.anyOf) && (schema.anyOf as TSchema[]).some((s) => s.type === type);
}

function childSchema(schema: TSchema, seg: Seg): TSchema | undefined {
  switch (schema[Kind]) {
    case 'Object':
      return typeof seg === 'string' ? (schema.properties as Record<string, TSchema>)[seg] : undefined;
    case 'Record':
      return Object.values(schema.patternProperties as Record<string, TSchema>)[0];
    case 'Array':
      return schema.items as TSchema;
    default:
      return undefined;
  }
}

/**
 * Fills `default`s top-down: a missing section takes its default ({}), whose keys then take theirs. Value.Default
 * would do most of this, but it skips the entries of a map whose value schema has no default of its own.
 */
function applyDefaults(schema: TSchema, v: unknown): unknown {
  if (v === undefined && schema.default !== undefined) v = structuredClone(schema.default);
  if (!isPlainObject(v) && !Array.isArray(v)) return v;
  switch (schema[Kind]) {
    case 'Object': {
      const obj = v as Record<string, unknown>;
      for (const [key, prop] of Object.entries(schema.properties as Record<string, TSchema>)) {
        const filled = applyDefaults(prop, obj[key]);
        if (filled !== undefined) obj[key] = filled;
      }
      return obj;
    }
    case 'Record': {
      const obj = v as Record<string, unknown>;
      for (const key of Object.keys(obj))
        setOwn(obj, key, applyDefaults(childSchema(schema, key)!, obj[key]));
      return obj;
    }
    case 'Array':
      return (v as unknown[]).map((item) => applyDefaults(schema.items as TSchema, item));
    default:
      return v;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Schema errors in words a person can act on. Values are never echoed: any of them may be a secret.

function schemaErrors(value: unknown): Issue[] {
  const issues: Issue[] = [];
  for (const e of Value.Errors(ConfigSchema, value)) {
    const segs = pointerToSegs(e.path, value);
    issues.push({ segs, message: describeError(e, segs) });
  }
  return issues;
}

function pointerToSegs(pointer: string, root: unknown): Seg[] {
  const segs: Seg[] = [];
  let node: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      segs.push(Number(key));
      node = node[Number(key)];
    } else {
      segs.push(key);
      node = isPlainObject(node) ? node[key] : undefined;
    }
  }
  return segs;
}

const TYPE_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.Object,
  ValueErrorType.Array,
  ValueErrorType.String,
  ValueErrorType.Integer,
  ValueErrorType.Number,
  ValueErrorType.Boolean,
  ValueErrorType.Literal,
  ValueErrorType.Union,
]);

function describeError(e: ValueError, segs: readonly Seg[]): string {
  const s = e.schema;
  if (e.value === null && TYPE_ERRORS.has(e.type)) return 'has no value (give it one, or remove the key)';
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const key = String(segs[segs.length - 1]);
      const meta = schemaMeta(s);
      if (s[Kind] === 'Record')
        return `'${key}' is not a valid ${meta?.keyLabel ?? 'entry'} name (${meta?.keyHint ?? 'bad format'})`;
      const near = closest(key, Object.keys((s.properties as Record<string, unknown>) ?? {}));
      return `unknown key '${key}'${near === undefined ? '' : ` (did you mean '${near}'?)`}`;
    }
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.ObjectMinProperties:
      return 'needs at least one entry';
    case ValueErrorType.Object:
      return 'must be a mapping (key: value pairs)';
    case ValueErrorType.Array:
      return 'must be a list';
    case ValueErrorType.String:
      return 'must be a string';
    case ValueErrorType.Integer:
      return 'must be an integer';
    case ValueErrorType.Number:
      return 'must be a number';
    case ValueErrorType.Boolean:
      return 'must be true or false';
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${String(s.minimum)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${String(s.maximum)}`;
    case ValueErrorType.StringMinLength:
      return s.minLength === 1 ? 'must not be empty' : `must be at least ${String(s.minLength)} characters`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${String(s.maxLength)} characters`;
    case ValueErrorType.StringPattern:
      return schemaMeta(s)?.hint?.(segs) ?? 'has the wrong format';
    case ValueErrorType.Literal:
      return schemaMeta(s)?.hint?.(segs) ?? `must be '${String(s.const)}'`;
    case ValueErrorType.Union:
      return describeUnion(e, segs);
    default:
      return e.message;
  }
}

function describeUnion(e: ValueError, segs: readonly Seg[]): string {
  const s = e.schema;
  const branches = (s.anyOf ?? []) as TSchema[];
  const hint = schemaMeta(s)?.hint;
  if (branches.length > 0 && branches.every((b) => b.const !== undefined)) {
    return hint?.(segs) ?? `must be one of: ${branches.map((b) => String(b.const)).join(', ')}`;
  }
  // A number out of range: say what the numeric branch wants ("must be at least 1") rather than the union's shape.
  if (typeof e.value === 'number') {
    const numeric = branches.find((b) => b.type === 'integer' || b.type === 'number');
    const first = numeric === undefined ? undefined : Value.Errors(numeric, e.value).First();
    if (
      first !== undefined &&
      first.type !== ValueErrorType.Integer &&
      first.type !== ValueErrorType.Number
    ) {
      return describeError(first, segs);
    }
  }
  return hint?.(segs) ?? 'has the wrong type';
}

function closest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3; // suggest only near misses: a typo, not a different key
  for (const c of candidates) {
    const d = editDistance(key.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

// ---------------------------------------------------------------------------------------------------------------
// Rules that span keys. The shape is valid by now, so the input type can be trusted.

function crossCheck(c: ConfigInput): Issue[] {
  const issues: Issue[] = [];
  if (c.tls === undefined && c.allow_plaintext !== true) {
    issues.push({ segs: ['tls'], message: 'required unless allow_plaintext: true' });
  }
  const admin = c.admin!;
  const listen = c.listen!;
  if (
    admin.enabled &&
    admin.port !== 0 &&
    admin.port === listen.port &&
    hostsOverlap(admin.host!, listen.host!)
  ) {
    issues.push({
      segs: ['admin', 'port'],
      message: `must differ from listen.port (${String(listen.port)})`,
    });
  }
  const roles = c.roles ?? {};
  const databases = c.databases;
  for (const [name, db] of Object.entries(databases)) {
    const up = db.upstream;
    const at = ['databases', name, 'upstream'];
    if (up.password !== undefined && up.password_file !== undefined) {
      issues.push({
        segs: [...at, 'password_file'],
        message: 'cannot be used together with password: set only one',
      });
    }
    const mode = up.tls?.mode;
    if ((mode === 'verify-ca' || mode === 'verify-full') && up.tls?.ca_file === undefined) {
      issues.push({ segs: [...at, 'tls', 'ca_file'], message: `required when mode is ${mode}` });
    }
    const pool = db.pool!;
    if (pool.min_idle! > pool.size!) {
      issues.push({
        segs: ['databases', name, 'pool', 'min_idle'],
        message: `must not exceed pool.size (${String(pool.size)})`,
      });
    }
  }
  if (c.audit) {
    c.audit.sinks.forEach((sink, i) => {
      const at = ['audit', 'sinks', i];
      // Each key belongs to one sink type; on another it is a mistake, not something to ignore.
      const required = { file: ['path'], stdout: [], postgres: ['host', 'database', 'user'] }[sink.type];
      for (const key of required) {
        if (sink[key as keyof typeof sink] === undefined)
          issues.push({ segs: [...at, key], message: `required for a ${sink.type} sink` });
      }
      for (const [key, owner] of Object.entries(AUDIT_SINK_KEY_TYPE)) {
        if (owner !== sink.type && sink[key as keyof typeof sink] !== undefined)
          issues.push({ segs: [...at, key], message: `only a ${owner} sink takes ${key}` });
      }
      if (sink.type !== 'postgres') return;
      if (sink.password !== undefined && sink.password_file !== undefined) {
        issues.push({
          segs: [...at, 'password_file'],
          message: 'cannot be used together with password: set only one',
        });
      }
      const mode = sink.tls?.mode;
      if ((mode === 'verify-ca' || mode === 'verify-full') && sink.tls?.ca_file === undefined) {
        issues.push({ segs: [...at, 'tls', 'ca_file'], message: `required when mode is ${mode}` });
      }
    });
    if (c.audit.sinks.filter((s) => s.type === 'postgres').length > 1) {
      issues.push({ segs: ['audit', 'sinks'], message: 'at most one postgres sink' });
    }
    if (c.audit.params === 'hash' && c.audit.params_key_file === undefined) {
      issues.push({ segs: ['audit', 'params_key_file'], message: 'required when params is hash' });
    }
  }
  const roleRef = (role: string, segs: Seg[]) => {
    if (!Object.hasOwn(roles, role)) issues.push({ segs, message: `unknown role '${role}'` });
  };
  const databaseRef = (db: string, segs: Seg[]) => {
    if (!Object.hasOwn(databases, db)) issues.push({ segs, message: `unknown database '${db}'` });
  };
  for (const [name, user] of Object.entries(c.users ?? {})) {
    const at = ['users', name];
    if (user.password !== undefined) {
      const keys = scramKeyLengths(user.password);
      if (keys.stored !== 32 || keys.server !== 32) {
        issues.push({
          segs: [...at, 'password'],
          message: 'is not a valid SCRAM-SHA-256 verifier: StoredKey and ServerKey must be 32 bytes each',
        });
      }
    }
    issues.push(...userAuthIssues(c, name, user));
    (user.roles ?? []).forEach((role, i) => roleRef(role, [...at, 'roles', i]));
    (user.databases ?? []).forEach((db, i) => databaseRef(db, [...at, 'databases', i]));
    user.actor?.roles.forEach((role, i) => roleRef(role, [...at, 'actor', 'roles', i]));
    if (user.actor && c.access?.jwt === undefined) {
      issues.push({ segs: [...at, 'actor'], message: 'needs access.jwt to verify actor tokens' });
    }
    if (user.break_glass) roleRef(user.break_glass.role, [...at, 'break_glass', 'role']);
    issues.push(...cidrIssues(user.cidrs, [...at, 'cidrs']));
  }
  for (const [name, role] of Object.entries(roles)) {
    const at = ['roles', name];
    (role.databases ?? []).forEach((db, i) => databaseRef(db, [...at, 'databases', i]));
    issues.push(...cidrIssues(role.cidrs, [...at, 'cidrs']));
    for (const list of ['allow', 'deny'] as const) {
      (role.tables?.[list] ?? []).forEach((pattern, i) => {
        if (pattern.split('.').length !== 2)
          issues.push({ segs: [...at, 'tables', list, i], message: 'must be written as schema.table' });
      });
      (role.functions?.[list] ?? []).forEach((pattern, i) => {
        if (pattern.split('.').length > 2)
          issues.push({ segs: [...at, 'functions', list, i], message: 'must be name or schema.name' });
      });
    }
    for (const [column, paths] of Object.entries(role.json_masks ?? {})) {
      for (const path of Object.keys(paths)) {
        try {
          parseJsonPath(path);
        } catch (e) {
          issues.push({ segs: [...at, 'json_masks', column, path], message: (e as Error).message });
        }
      }
      if (role.masks?.[column] !== undefined) {
        issues.push({ segs: [...at, 'json_masks', column], message: 'is already masked whole in masks' });
      }
    }
    (role.columns?.deny ?? []).forEach((pattern, i) => {
      if (pattern.split('.').length !== 3)
        issues.push({
          segs: [...at, 'columns', 'deny', i],
          message: 'must be written as schema.table.column',
        });
    });
  }
  issues.push(...cidrIssues(c.listen?.proxy_protocol?.trusted, ['listen', 'proxy_protocol', 'trusted']));
  issues.push(...cidrIssues(c.access?.deny_cidrs, ['access', 'deny_cidrs']));
  c.access?.jwt?.keys?.forEach((key, i) => {
    const at = ['access', 'jwt', 'keys', i];
    const want = key.alg === 'HS256' ? 'secret_file' : 'public_key_file';
    const other = key.alg === 'HS256' ? 'public_key_file' : 'secret_file';
    if (key[want] === undefined) issues.push({ segs: [...at, want], message: `required for ${key.alg}` });
    if (key[other] !== undefined) issues.push({ segs: [...at, other], message: `not used with ${key.alg}` });
  });
  const usesHash = Object.values(roles).some(
    (r) => Object.values(r.masks ?? {}).includes('hash') || r.subject_column !== undefined,
  );
  if (usesHash && c.masking?.hash_key_file === undefined) {
    issues.push({
      segs: ['masking', 'hash_key_file'],
      message: 'required when a role masks with hash or has a subject_column',
    });
  }
  const jwt = c.access?.jwt;
  if (jwt && (jwt.keys ?? []).length === 0 && jwt.jwks_file === undefined) {
    issues.push({ segs: ['access', 'jwt'], message: 'needs keys or jwks_file' });
  }
  return issues;
}

/** The factors a user's config asks for, and that the keys they need are there. */
function userAuthIssues(
  c: ConfigInput,
  name: string,
  user: NonNullable<ConfigInput['users']>[string],
): Issue[] {
  const at = ['users', name];
  const issues: Issue[] = [];
  if (user.password === undefined && user.certificate === undefined) {
    issues.push({ segs: at, message: 'needs a password, a certificate, or both' });
    return issues;
  }
  const auth = user.auth ?? defaultAuthMethod(user);
  if (auth !== 'certificate' && user.password === undefined)
    issues.push({ segs: [...at, 'password'], message: `required when auth is ${auth}` });
  if (auth !== 'password' && user.certificate === undefined)
    issues.push({ segs: [...at, 'certificate'], message: `required when auth is ${auth}` });
  if (user.certificate !== undefined && c.tls?.client_ca === undefined)
    issues.push({
      segs: [...at, 'certificate'],
      message: 'needs tls.client_ca to verify client certificates',
    });
  return issues;
}

/** auth when unset: both factors when both are configured (the stronger reading), else the one that is. */
export function defaultAuthMethod(user: { password?: string; certificate?: object }): UserAuthMethod {
  if (user.password !== undefined && user.certificate !== undefined) return 'both';
  return user.certificate !== undefined ? 'certificate' : 'password';
}

function cidrIssues(list: readonly string[] | undefined, segs: Seg[]): Issue[] {
  const issues: Issue[] = [];
  (list ?? []).forEach((text, i) => {
    if (!isValidCidr(text))
      issues.push({ segs: [...segs, i], message: `'${text}' is not an IPv4 or IPv6 address or network` });
  });
  return issues;
}

/** The sink type each type-specific key of audit.sinks[] belongs to. */
const AUDIT_SINK_KEY_TYPE: Record<string, 'file' | 'postgres'> = {
  path: 'file',
  host: 'postgres',
  port: 'postgres',
  database: 'postgres',
  user: 'postgres',
  password: 'postgres',
  password_file: 'postgres',
  tls: 'postgres',
  table: 'postgres',
};

function hostsOverlap(a: string, b: string): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::' || h === '';
  return a === b || any(a) || any(b);
}

/** Byte lengths of StoredKey and ServerKey in a verifier already matched by SCRAM_VERIFIER_PATTERN. */
function scramKeyLengths(verifier: string): { stored: number; server: number } {
  const [stored = '', server = ''] = verifier.split('$')[2]?.split(':') ?? [];
  return { stored: Buffer.from(stored, 'base64').length, server: Buffer.from(server, 'base64').length };
}

/** Defaults that depend on the machine or on other keys; the resolution pass then treats them like written values. */
function fillComputedDefaults(c: ConfigInput): void {
  const m = c as { node_id?: string };
  m.node_id ??= hostname();
  for (const [name, db] of Object.entries(c.databases)) {
    const up = db.upstream as { database?: string };
    up.database ??= name;
  }
  for (const sink of c.audit?.sinks ?? []) {
    if (sink.type !== 'postgres') continue;
    const s = sink as { port?: number; table?: string };
    s.port ??= AUDIT_PG_DEFAULTS.port;
    s.table ??= AUDIT_PG_DEFAULTS.table;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resolution: durations to ms, sizes to bytes, 'auto' workers to a number, paths made absolute, *_file read.

interface ResolveContext {
  readonly baseDir: string;
  readonly issues: Issue[];
}

function resolveNode(schema: TSchema, v: unknown, segs: Seg[], ctx: ResolveContext): unknown {
  switch (schemaMeta(schema)?.kind) {
    case 'duration':
      return resolveDuration(schema, v as number | string, segs, ctx);
    case 'size':
      return resolveSize(schema, v as number | string, segs, ctx);
    case 'workers':
      return v === 'auto' ? availableParallelism() : v;
    case 'path': {
      const abs = resolvePath(ctx.baseDir, v as string);
      try {
        accessSync(abs, fsConstants.R_OK);
      } catch (err) {
        ctx.issues.push({ segs, message: `cannot read ${abs} (${errorCode(err)})` });
      }
      return abs;
    }
    case 'file':
    case 'directory':
      return resolvePath(ctx.baseDir, v as string);
    default:
      break;
  }
  switch (schema[Kind]) {
    case 'Object': {
      const obj = v as Record<string, unknown>;
      const props = schema.properties as Record<string, TSchema>;
      const out: Record<string, unknown> = {};
      for (const [key, propSchema] of Object.entries(props)) {
        if (!Object.hasOwn(obj, key) || obj[key] === undefined) continue;
        out[key] = resolveNode(propSchema, obj[key], [...segs, key], ctx);
        if (schemaMeta(propSchema)?.kind === 'file') {
          const content = readSecretFile(out[key] as string, [...segs, key], ctx);
          if (content !== undefined) out[key.slice(0, -'_file'.length)] = content;
        }
      }
      return out;
    }
    case 'Record': {
      const valueSchema = Object.values(schema.patternProperties as Record<string, TSchema>)[0];
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(v as Record<string, unknown>)) {
        setOwn(out, key, resolveNode(valueSchema, item, [...segs, key], ctx));
      }
      return out;
    }
    case 'Array':
      return (v as unknown[]).map((item, i) => resolveNode(schema.items as TSchema, item, [...segs, i], ctx));
    default:
      return v;
  }
}

function resolveDuration(schema: TSchema, v: number | string, segs: Seg[], ctx: ResolveContext): number {
  const min = Number((schema.anyOf as TSchema[])[0].minimum ?? 0);
  const ms = parseDuration(v);
  if (ms === undefined)
    ctx.issues.push({ segs, message: schemaMeta(schema)?.hint?.(segs) ?? 'is not a duration' });
  else if (ms > MAX_DURATION_MS)
    ctx.issues.push({
      segs,
      message: `must be at most ${formatDuration(MAX_DURATION_MS)} (about 24.8 days)`,
    });
  else if (ms < min)
    ctx.issues.push({ segs, message: 'must be greater than 0 (this timeout cannot be disabled)' });
  return ms ?? 0;
}

function resolveSize(schema: TSchema, v: number | string, segs: Seg[], ctx: ResolveContext): number {
  const numeric = (schema.anyOf as TSchema[])[0];
  const min = Number(numeric.minimum ?? 0);
  const max = Number(numeric.maximum ?? Number.MAX_SAFE_INTEGER);
  const bytes = parseSize(v);
  if (bytes === undefined)
    ctx.issues.push({ segs, message: schemaMeta(schema)?.hint?.(segs) ?? 'is not a size' });
  else if (bytes < min) ctx.issues.push({ segs, message: `must be at least ${formatSize(min)}` });
  else if (bytes > max) ctx.issues.push({ segs, message: `must be at most ${formatSize(max)}` });
  return bytes ?? 0;
}

function readSecretFile(abs: string, segs: Seg[], ctx: ResolveContext): string | undefined {
  let content: string;
  try {
    content = readFileSync(abs, 'utf8');
  } catch (err) {
    ctx.issues.push({ segs, message: `cannot read ${abs} (${errorCode(err)})` });
    return undefined;
  }
  // Editors and `echo` add one newline; it is never part of the secret.
  content = content.endsWith('\r\n')
    ? content.slice(0, -2)
    : content.endsWith('\n')
      ? content.slice(0, -1)
      : content;
  if (content === '') {
    ctx.issues.push({ segs, message: `${abs} is empty` });
    return undefined;
  }
  return content;
}

/** Keys derived from resolved values: the fallback connect_timeout (in ms already) and where each password came from. */
function fillResolvedDefaults(c: Record<string, unknown>, envPaths: ReadonlySet<string>): void {
  const timeouts = c.timeouts as { upstream_connect: number };
  for (const [name, db] of Object.entries(
    c.databases as Record<string, { upstream: Record<string, unknown> }>,
  )) {
    const up = db.upstream;
    // Filled after resolution so that a bad timeouts.upstream_connect is reported once, at its own key.
    up.connect_timeout ??= timeouts.upstream_connect;
    let source: PasswordSource = 'none';
    if (up.password_file !== undefined) source = 'file';
    else if (up.password !== undefined) {
      source = envPaths.has(formatKeyPath(['databases', name, 'upstream', 'password'])) ? 'env' : 'config';
    }
    up.password_source = source;
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * `obj[key] = value` for keys taken from the file: a plain assignment to '__proto__' would replace the object's
 * prototype, and keys inherited from it would then slip past validation.
 */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The entry `name` of a config map (databases, users, roles), or undefined. Names come from clients (the startup
 * packet's database and user), so a plain `map[name]` would answer 'constructor' or '__proto__' with Object's own.
 */
export function configEntry<T>(map: { readonly [name: string]: T }, name: string): T | undefined {
  return Object.hasOwn(map, name) ? map[name] : undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const item of Object.values(v)) deepFreeze(item);
    Object.freeze(v);
  }
  return v;
}
