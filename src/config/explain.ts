// Human-readable text about the config: the summary `pgwarden check` prints, and the key reference in docs/configuration.md.
import { Kind, type TSchema } from '@sinclair/typebox';
import { formatDuration, formatSize } from './duration.js';
import { ConfigSchema, schemaMeta, type PasswordSource, type PgwardenConfig } from './schema.js';

const PASSWORD_SHOWN: Record<PasswordSource, string> = {
  env: '<from env>',
  file: '<from file>',
  config: '<in config>',
  none: '<none>',
};

/** What a loaded config will do, for `pgwarden check`. Never prints a secret: passwords appear as their source. */
export function explainConfig(c: PgwardenConfig): string {
  const out: string[] = [];
  const off = (ms: number) => (ms === 0 ? 'off' : formatDuration(ms));
  const list = (items: readonly string[] | undefined, none: string) =>
    items === undefined || items.length === 0 ? none : items.join(', ');

  const tls =
    c.tls === undefined
      ? 'no TLS'
      : `TLS (minimum ${c.tls.min_version}${c.tls.ciphers === undefined ? '' : ', custom ciphers'})`;
  const plaintext = c.allow_plaintext ? 'plaintext clients ALLOWED' : 'plaintext clients refused (28000)';
  out.push(`listen     ${hostPort(c.listen.host, c.listen.port)}, ${tls}, ${plaintext}`);
  if (c.tls !== undefined) out.push(`           certificate ${c.tls.cert}, key ${c.tls.key}`);
  out.push(
    c.admin.enabled
      ? `admin      http://${hostPort(c.admin.host, c.admin.port)} (/metrics /healthz /readyz)`
      : 'admin      disabled',
  );
  out.push(
    `workers    ${c.workers} worker thread${c.workers === 1 ? '' : 's'}, framing ${c.framing}, node id ${c.node_id}`,
  );
  out.push(
    `limits     ${c.limits.max_client_connections} client connections; messages up to ${formatSize(c.limits.max_message_size)}; ` +
      `startup packets up to ${formatSize(c.limits.max_startup_size)}; write buffer ${formatSize(c.limits.write_buffer_high_water)}`,
  );
  const t = c.timeouts;
  out.push(
    `timeouts   startup ${off(t.startup)}, idle client ${off(t.idle_client)}, idle in transaction ${off(t.idle_in_transaction)}, ` +
      `upstream connect ${off(t.upstream_connect)}, pool acquire ${off(t.pool_acquire)}, server idle ${off(t.server_idle)}, ` +
      `server lifetime ${off(t.server_lifetime)}, drain ${off(t.drain)}`,
  );
  out.push(`log        ${c.log.level}, ${c.log.format}`);

  out.push(`databases  ${count(c.databases, 'database')}`);
  for (const [name, db] of Object.entries(c.databases)) {
    const up = db.upstream;
    out.push(
      `  ${name}: ${hostPort(up.host, up.port)}/${up.database} as ${up.user}, password ${PASSWORD_SHOWN[up.password_source]}, ` +
        `TLS ${up.tls.mode}${up.tls.ca_file === undefined ? '' : ` (CA ${up.tls.ca_file})`}, connect timeout ${formatDuration(up.connect_timeout)}; ` +
        `${db.pool.mode} pool of ${db.pool.size}, min idle ${db.pool.min_idle}`,
    );
  }
  out.push(
    `users      ${count(c.users, 'user')}${Object.keys(c.users).length === 0 ? ' (every login will be refused)' : ''}`,
  );
  for (const [name, user] of Object.entries(c.users)) {
    out.push(`  ${name}: roles ${list(user.roles, 'none')}; databases ${list(user.databases, 'all')}`);
  }
  out.push(`roles      ${count(c.roles, 'role')}`);
  for (const [name, role] of Object.entries(c.roles)) {
    const masks = Object.entries(role.masks ?? {}).map(([column, fn]) => `${column} ${fn}`);
    out.push(
      `  ${name}: statements ${list(role.statements, 'not restricted')}` +
        (masks.length === 0 ? '' : `; masks ${masks.join(', ')}`),
    );
  }
  if (c.audit) {
    const sinks = c.audit.sinks.map((sink) =>
      sink.type === 'file'
        ? `file ${sink.path}`
        : sink.type === 'postgres'
          ? `postgres ${sink.user}@${sink.host}:${sink.port}/${sink.database} table ${sink.table} (password <${sink.password_file ? 'from file' : sink.password ? 'set' : 'none'}>)`
          : 'stdout',
    );
    out.push(
      `audit      ${c.audit.mode}; sinks: ${sinks.join(', ')}; params ${c.audit.params}; on failure ${c.audit.on_failure}`,
    );
  } else {
    out.push('audit      off (no audit: section): statements are not recorded');
  }
  const a = c.access;
  out.push(
    a.enforce
      ? `access     SQL policy on (${count(c.roles, 'role')}; search_path pinned to ${a.search_path.join(', ')} for roles with table or column rules); lockout ${a.lockout.max_failures > 0 ? `after ${a.lockout.max_failures} failures` : 'off'}`
      : 'access     SQL policy OFF (access.enforce: false)',
  );
  for (const warning of unenforcedRoleRules(c)) out.push(`WARNING: ${warning}`);
  return out.join('\n');
}

/**
 * Settings that leave data less protected than a reader of the file might assume: said loudly at check and at
 * start.
 */
export function unenforcedRoleRules(c: PgwardenConfig): string[] {
  const out: string[] = [];
  const masked = Object.entries(c.roles).filter(([, role]) => Object.keys(role.masks ?? {}).length > 0);
  if (!c.access.enforce) {
    out.push('access.enforce is false: statements are NOT checked against any role');
    for (const [name] of masked) out.push(`roles.${name}.masks is NOT applied: masking needs access.enforce`);
  }
  return out;
}

function hostPort(host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `${h}:${port === 0 ? '<any free port>' : port}`;
}

function count(map: object, noun: string): string {
  const n = Object.keys(map).length;
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The key reference, generated from the schema's descriptions into docs/configuration.md.

interface ReferenceRow {
  key: string;
  type: string;
  required: boolean;
  defaultText: string;
  description: string;
}

/** A markdown table of every key: path, type, whether required, default and description. */
export function renderConfigReference(): string {
  const rows: ReferenceRow[] = [];
  collectRows(ConfigSchema, '', rows);
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  // Descriptions spell placeholders as <name>; markdown would take them for HTML tags.
  const prose = (s: string) => cell(s).replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const lines = ['| key | type | required | default | description |', '|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(
      `| \`${r.key}\` | ${cell(r.type)} | ${r.required ? 'yes' : 'no'} | ${cell(r.defaultText)} | ${prose(r.description)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

function collectRows(schema: TSchema, prefix: string, rows: ReferenceRow[]): void {
  if (schema[Kind] === 'Object') {
    const props = schema.properties as Record<string, TSchema>;
    const required = new Set((schema.required as string[] | undefined) ?? []);
    for (const [key, prop] of Object.entries(props)) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      rows.push({
        key: path,
        type: typeText(prop),
        required: required.has(key),
        defaultText: defaultText(prop),
        description: String(prop.description ?? ''),
      });
      collectRows(prop, path, rows);
    }
  } else if (schema[Kind] === 'Record') {
    const value = Object.values(schema.patternProperties as Record<string, TSchema>)[0];
    const path = `${prefix}.<${schemaMeta(schema)?.keyLabel ?? 'name'}>`;
    // Entries that are mappings are described key by key below; a scalar entry gets a row of its own.
    if (value[Kind] !== 'Object') {
      rows.push({
        key: path,
        type: typeText(value),
        required: false,
        defaultText: defaultText(value),
        description: String(value.description ?? ''),
      });
    }
    collectRows(value, path, rows);
  } else if (schema[Kind] === 'Array') {
    collectRows(schema.items as TSchema, `${prefix}[]`, rows);
  }
}

function typeText(s: TSchema): string {
  const meta = schemaMeta(s);
  if (meta?.docType !== undefined) return meta.docType;
  switch (s[Kind]) {
    case 'Object':
      return 'mapping';
    case 'Record':
      return `mapping by ${meta?.keyLabel ?? 'name'}${s.minProperties === undefined ? '' : ` (at least ${String(s.minProperties)})`}`;
    case 'Array':
      return `list of ${typeText(s.items as TSchema)}`;
    case 'Union': {
      const branches = s.anyOf as TSchema[];
      if (branches.every((b) => b.const !== undefined))
        return `one of ${branches.map((b) => `\`${String(b.const)}\``).join(', ')}`;
      return branches
        .map((b) => (b.const !== undefined ? `\`${String(b.const)}\`` : typeText(b)))
        .join(' or ');
    }
    case 'Literal':
      return `\`${String(s.const)}\``;
    case 'Integer': {
      const { minimum: min, maximum: max } = s as { minimum?: number; maximum?: number };
      if (min !== undefined && max !== undefined) return `integer ${min}–${max}`;
      if (min !== undefined) return `integer ≥ ${min}`;
      return 'integer';
    }
    default:
      return String(s.type ?? s[Kind]).toLowerCase();
  }
}

function defaultText(s: TSchema): string {
  const computed = schemaMeta(s)?.computedDefault;
  if (computed !== undefined) return computed;
  if (s.default === undefined) return '';
  // An empty mapping default only means "the keys below take their defaults".
  if (typeof s.default === 'object' && s.default !== null && Object.keys(s.default).length === 0) {
    return Array.isArray(s.default) ? '`[]`' : '';
  }
  return `\`${JSON.stringify(s.default)}\``;
}
