// Config loading: the DESIGN.md example, defaults, every class of error at its key path, ${ENV}, *_file, freezing, docs.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/config/duration.js';
import { explainConfig, renderConfigReference } from '../../src/config/explain.js';
import {
  ConfigError,
  configEntry,
  formatConfigError,
  loadConfigFile,
  loadConfigText,
  type ConfigIssue,
  type PgwardenConfig,
} from '../../src/config/load.js';
import { configJsonSchema, type StatementKind, type UpstreamConfig } from '../../src/config/schema.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/config');
const ROOT = join(import.meta.dirname, '../..');

/** A verifier exactly as PostgreSQL computes it (RFC 5802 / RFC 7677). */
function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const stored = createHash('sha256')
    .update(createHmac('sha256', salted).update('Client Key').digest())
    .digest();
  const server = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${stored.toString('base64')}:${server.toString('base64')}`;
}

let dir: string;
const ENV = { EHR_DB_PASSWORD: 'upstream-secret-Zq9' };

beforeAll(() => {
  // A config directory like an operator's: certificates and secrets next to the YAML, referenced relatively.
  dir = mkdtempSync(join(tmpdir(), 'pgwarden-config-'));
  mkdirSync(join(dir, 'certs'));
  mkdirSync(join(dir, 'secrets'));
  for (const f of ['server.crt', 'server.key', 'chain.crt'])
    writeFileSync(join(dir, 'certs', f), `-----${f}-----\n`);
  writeFileSync(
    join(dir, 'certs', 'db-ca.crt'),
    '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  );
  writeFileSync(join(dir, 'secrets', 'ehr.pass'), 'file-secret-Kx7\n');
  for (const f of ['minimal.yaml', 'full.yaml', 'invalid.yaml'])
    copyFileSync(join(FIXTURES, f), join(dir, f));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small valid config as text, with `extra` appended at top level and `upstream` entries overriding. */
function cfg(parts: { extra?: string; upstream?: string; users?: string; roles?: string } = {}): string {
  return [
    'tls: { cert: certs/server.crt, key: certs/server.key }',
    'databases:',
    '  ehr:',
    `    upstream: { host: db.local, user: app${parts.upstream ?? ''} }`,
    parts.users ?? '',
    parts.roles ?? '',
    parts.extra ?? '',
  ].join('\n');
}

function load(text: string, env: NodeJS.ProcessEnv = ENV): PgwardenConfig {
  return loadConfigText(text, { baseDir: dir, env, file: 'pgwarden.yaml' });
}

function issuesOf(text: string, env: NodeJS.ProcessEnv = ENV): ConfigIssue[] {
  try {
    load(text, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).issues];
  }
  throw new Error('expected the config to be rejected');
}

function pathsAndMessages(text: string, env?: NodeJS.ProcessEnv): [string, string][] {
  return issuesOf(text, env).map((i) => [i.path, i.message]);
}

describe('the DESIGN.md minimal example', () => {
  it('validates with EHR_DB_PASSWORD set and resolves every key', () => {
    const c = loadConfigFile(join(dir, 'minimal.yaml'), ENV);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 6432 });
    expect(c.tls).toEqual({
      cert: join(dir, 'certs/server.crt'),
      key: join(dir, 'certs/server.key'),
      min_version: 'TLSv1.2',
    });
    expect(c.databases.ehr.upstream).toEqual({
      host: '127.0.0.1',
      port: 5432,
      database: 'ehr',
      user: 'app',
      password: 'upstream-secret-Zq9',
      password_source: 'env',
      tls: { mode: 'require' },
      connect_timeout: 5000,
    });
    expect(c.databases.ehr.pool).toEqual({ mode: 'session', size: 20, min_idle: 0 });
    expect(c.users.alice.roles).toEqual(['clinician']);
    expect(c.users.bob.roles).toEqual(['analyst']);
    expect(c.users.bob.password).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(c.roles.clinician.statements).toEqual(['select', 'insert', 'update']);
    expect(c.roles.analyst.masks).toEqual({
      'public.patients.ssn': 'partial_last4',
      'public.patients.dob': 'year_only',
      'public.patients.name': 'redact',
    });
  });

  it('is refused without EHR_DB_PASSWORD, naming the key and the variable', () => {
    expect(pathsAndMessages(readFileSync(join(dir, 'minimal.yaml'), 'utf8'), {})).toEqual([
      ['databases.ehr.upstream.password', 'environment variable EHR_DB_PASSWORD is not set'],
    ]);
  });
});

describe('defaults', () => {
  it('fills every omitted key', () => {
    const c = load(cfg());
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 6432 });
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9187, enabled: true });
    expect(c.workers).toBe(availableParallelism());
    expect(c.node_id).toBe(hostname());
    expect(c.framing).toBe('wasm');
    expect(c.allow_plaintext).toBe(false);
    expect(c.limits).toEqual({
      max_client_connections: 1000,
      max_message_size: 1_073_741_823,
      max_startup_size: 10_000,
      write_buffer_high_water: 1_048_576,
    });
    expect(c.timeouts).toEqual({
      startup: 10_000,
      idle_client: 0,
      idle_in_transaction: 0,
      upstream_connect: 5_000,
      pool_acquire: 10_000,
      server_idle: 600_000,
      server_lifetime: 3_600_000,
      drain: 30_000,
    });
    expect(c.log).toEqual({ level: 'info', format: 'json' });
    expect(c.users).toEqual({});
    expect(c.roles).toEqual({});
    const up: UpstreamConfig = c.databases.ehr.upstream;
    expect(up).toEqual({
      host: 'db.local',
      port: 5432,
      database: 'ehr',
      user: 'app',
      password_source: 'none',
      tls: { mode: 'require' },
      connect_timeout: 5_000,
    });
  });

  it('takes upstream connect_timeout from timeouts.upstream_connect unless the database sets one', () => {
    const c = load(cfg({ extra: 'timeouts: { upstream_connect: 1500ms }' }));
    expect(c.databases.ehr.upstream.connect_timeout).toBe(1500);
    expect(load(cfg({ upstream: ', connect_timeout: 2s' })).databases.ehr.upstream.connect_timeout).toBe(
      2000,
    );
  });

  it('accepts a plaintext-only config when allow_plaintext is true', () => {
    const c = load('allow_plaintext: true\ndatabases: { ehr: { upstream: { host: h, user: u } } }');
    expect(c.tls).toBeUndefined();
    expect(c.allow_plaintext).toBe(true);
  });
});

describe('every key set', () => {
  it('resolves durations to ms, sizes to bytes, paths against the config directory and reads *_file', () => {
    const c = loadConfigFile(join(dir, 'full.yaml'), {});
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 0, backlog: 1024 });
    expect(c.admin).toEqual({ host: '0.0.0.0', port: 0, enabled: false });
    expect([c.workers, c.node_id, c.framing, c.allow_plaintext]).toEqual([3, 'node-a', 'typescript', true]);
    expect(c.tls).toEqual({
      cert: join(dir, 'certs/server.crt'),
      key: join(dir, 'certs/server.key'),
      ca: join(dir, 'certs/chain.crt'),
      min_version: 'TLSv1.3',
      ciphers: 'ECDHE-RSA-AES256-GCM-SHA384',
    });
    expect(c.limits).toEqual({
      max_client_connections: 50,
      max_message_size: 64 * 1024 * 1024,
      max_startup_size: 8192,
      write_buffer_high_water: 262_144,
    });
    expect(c.timeouts).toEqual({
      startup: 2500,
      idle_client: 900_000,
      idle_in_transaction: 60_000,
      upstream_connect: 750,
      pool_acquire: 3000,
      server_idle: 3_600_000,
      server_lifetime: 86_400_000,
      drain: 0,
    });
    expect(c.log.level).toBe('debug');
    expect(c.databases.ehr.upstream).toEqual({
      host: 'db.internal',
      port: 6543,
      database: 'ehr_prod',
      user: 'pgwarden',
      password_file: join(dir, 'secrets/ehr.pass'),
      password: 'file-secret-Kx7',
      password_source: 'file',
      tls: {
        mode: 'verify-full',
        ca_file: join(dir, 'certs/db-ca.crt'),
        ca: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
        server_name: 'db.example.org',
      },
      connect_timeout: 2000,
    });
    expect(c.databases.ehr.pool).toEqual({ mode: 'session', size: 5, min_idle: 2 });
    expect(c.databases.reports.upstream.database).toBe('reports');
    expect(c.databases.reports.upstream.connect_timeout).toBe(750);
    expect(c.users.carol).toMatchObject({ roles: ['auditor'], databases: ['reports'] });
    expect(c.roles.auditor.statements).toEqual(['select', 'copy_out']);
  });
});

describe('durations and sizes', () => {
  it.each([
    [250, 250],
    ['250', 250],
    ['500ms', 500],
    ['10s', 10_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    [' 3 s ', 3000],
  ])('parses duration %j as %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['10', '10 sec', '-1s', 's', '1e3ms', '1.5'])(
    'parses %j as a duration only when it is one',
    (text) => {
      expect(parseDuration(text)).toBe(text === '10' ? 10 : text === '1.5' ? 2 : undefined);
    },
  );

  it.each([
    [8192, 8192],
    ['10000', 10_000],
    ['64KiB', 65_536],
    ['64 MiB', 67_108_864],
    ['1.5KiB', 1536],
    ['1GiB', 1_073_741_824],
  ])('parses size %j as %i bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['64MB', '1.3B', '0.1KiB', '-1', 'big'])('rejects size %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });

  it('formats durations and sizes exactly', () => {
    expect([0, 500, 1500, 10_000, 300_000, 3_600_000, 86_400_000].map(formatDuration)).toEqual([
      '0',
      '500ms',
      '1500ms',
      '10s',
      '5m',
      '1h',
      '1d',
    ]);
    expect([10_000, 1024, 1_048_576, 1_073_741_823].map(formatSize)).toEqual([
      '10000 B',
      '1 KiB',
      '1 MiB',
      '1 GiB - 1 B',
    ]);
  });

  it('reports a malformed or out-of-range duration or size at its key', () => {
    expect(
      pathsAndMessages(
        cfg({
          extra: [
            'timeouts: { startup: 10 sec, drain: 30d }',
            'limits: { max_message_size: 12 bytes, max_startup_size: 2MiB, write_buffer_high_water: 10 }',
          ].join('\n'),
        }),
      ),
    ).toEqual([
      [
        'timeouts.startup',
        'must be a duration: a number of milliseconds, or a string such as "500ms", "10s", "5m", "1h"',
      ],
      [
        'limits.max_message_size',
        'must be a size: a number of bytes, or a string such as "8192", "64KiB", "16MiB", "1GiB"',
      ],
      ['limits.write_buffer_high_water', 'must be at least 1024'],
    ]);
    // Shape errors come first; range checks on strings follow once the shape is right.
    expect(
      pathsAndMessages(
        cfg({
          extra: 'timeouts: { drain: 30d }\nlimits: { max_startup_size: 2MiB }',
        }),
      ),
    ).toEqual([
      ['timeouts.drain', 'must be at most 2147483647ms (about 24.8 days)'],
      ['limits.max_startup_size', 'must be at most 1 MiB'],
    ]);
    expect(pathsAndMessages(cfg({ extra: 'timeouts: { upstream_connect: 0 }' }))).toEqual([
      ['timeouts.upstream_connect', 'must be at least 1'],
    ]);
    expect(pathsAndMessages(cfg({ extra: 'timeouts: { upstream_connect: 0s }' }))).toEqual([
      ['timeouts.upstream_connect', 'must be greater than 0 (this timeout cannot be disabled)'],
    ]);
  });
});

describe('errors name the key path and say what is wrong', () => {
  it('unknown key, with a suggestion for a near miss', () => {
    expect(pathsAndMessages(cfg({ extra: 'listen: { hots: 0.0.0.0 }\nmetrics: true' }))).toEqual([
      ['listen.hots', "unknown key 'hots' (did you mean 'host'?)"],
      ['metrics', "unknown key 'metrics'"],
    ]);
  });

  it('wrong type', () => {
    expect(pathsAndMessages(cfg({ upstream: ', port: "5432x"' }))).toEqual([
      ['databases.ehr.upstream.port', 'must be an integer'],
    ]);
    expect(pathsAndMessages(cfg({ extra: 'allow_plaintext: yes\nworkers: many\nlisten: [1]' }))).toEqual([
      ['allow_plaintext', 'must be true or false'],
      ['workers', "must be 'auto' or an integer from 1 to 256"],
      ['listen', 'must be a mapping (key: value pairs)'],
    ]);
  });

  it('numbers out of range', () => {
    expect(pathsAndMessages(cfg({ upstream: ', port: 70000', extra: 'workers: 0' }))).toEqual([
      ['databases.ehr.upstream.port', 'must be at most 65535'],
      ['workers', 'must be at least 1'],
    ]);
  });

  it('missing required key', () => {
    expect(pathsAndMessages('allow_plaintext: true\ndatabases:\n  ehr:\n    upstream: { host: h }')).toEqual([
      ['databases.ehr.upstream.user', 'is required'],
    ]);
    expect(pathsAndMessages('allow_plaintext: true')).toEqual([['databases', 'is required']]);
    expect(pathsAndMessages('allow_plaintext: true\ndatabases: {}')).toEqual([
      ['databases', 'needs at least one entry'],
    ]);
  });

  it('key with no value', () => {
    expect(pathsAndMessages(cfg({ extra: 'listen:' }))).toEqual([
      ['listen', 'has no value (give it one, or remove the key)'],
    ]);
  });

  it('bad enum value', () => {
    expect(
      pathsAndMessages(cfg({ extra: 'log: { level: verbose }', upstream: ', tls: { mode: prefer }' })),
    ).toEqual([
      ['databases.ehr.upstream.tls.mode', 'must be one of: disable, require, verify-ca, verify-full'],
      ['log.level', 'must be one of: debug, info, warn, error'],
    ]);
  });

  it("transaction pooling is 'not supported yet'", () => {
    expect(
      pathsAndMessages(cfg({ extra: '    pool: { mode: transaction }' }).replace(/\n\n+/g, '\n')),
    ).toEqual([
      ['databases.ehr.pool.mode', "must be 'session' ('transaction' pooling is not supported yet)"],
    ]);
  });

  it('plaintext user password is refused without echoing it', () => {
    const issues = issuesOf(cfg({ users: 'users:\n  bob: { password: "Tr0ub4dor&3" }' }));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      [
        'users.bob.password',
        'must be a SCRAM-SHA-256 verifier, not a plaintext password: run `pgwarden passwd bob` and paste its output',
      ],
    ]);
    expect(JSON.stringify(issues)).not.toContain('Tr0ub4dor');
  });

  it('a verifier with keys of the wrong length is refused', () => {
    const short = `SCRAM-SHA-256$4096:c2FsdA==$${Buffer.alloc(20).toString('base64')}:${Buffer.alloc(32).toString('base64')}`;
    expect(pathsAndMessages(cfg({ users: `users:\n  bob: { password: "${short}" }` }))).toEqual([
      [
        'users.bob.password',
        'is not a valid SCRAM-SHA-256 verifier: StoredKey and ServerKey must be 32 bytes each',
      ],
    ]);
  });

  it('accepts verifiers made like PostgreSQL makes them', () => {
    const c = load(cfg({ users: `users:\n  dana: { password: "${scramVerifier('pw', 10_000)}" }` }));
    expect(c.users.dana).toEqual({ password: expect.stringMatching(/^SCRAM-SHA-256\$10000:/), roles: [] });
  });

  it('unknown role and unknown database in a user', () => {
    const v = scramVerifier('x');
    expect(
      pathsAndMessages(
        cfg({
          users: `users:\n  bob: { password: "${v}", roles: [analyst, x], databases: [ehr, billing] }`,
          roles: 'roles:\n  analyst: { statements: [select] }',
        }),
      ),
    ).toEqual([
      ['users.bob.roles[1]', "unknown role 'x'"],
      ['users.bob.databases[1]', "unknown database 'billing'"],
    ]);
  });

  it('tls is required unless allow_plaintext: true', () => {
    const issues = issuesOf('databases: { ehr: { upstream: { host: h, user: u } } }');
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['tls', 'required unless allow_plaintext: true'],
    ]);
  });

  it('verify-ca and verify-full need ca_file; password and password_file exclude each other', () => {
    expect(
      pathsAndMessages(
        cfg({ upstream: ', password: p, password_file: secrets/ehr.pass, tls: { mode: verify-ca }' }),
      ),
    ).toEqual([
      ['databases.ehr.upstream.password_file', 'cannot be used together with password: set only one'],
      ['databases.ehr.upstream.tls.ca_file', 'required when mode is verify-ca'],
    ]);
  });

  it('pool.min_idle cannot exceed pool.size; admin cannot share the client port', () => {
    expect(
      pathsAndMessages(
        cfg({ extra: '    pool: { size: 2, min_idle: 3 }\nadmin: { port: 6432 }' }).replace(/\n\n+/g, '\n'),
      ),
    ).toEqual([
      ['databases.ehr.pool.min_idle', 'must not exceed pool.size (2)'],
      ['admin.port', 'must differ from listen.port (6432)'],
    ]);
  });

  it('an invalid map key names what it should look like', () => {
    expect(
      pathsAndMessages(cfg({ roles: 'roles:\n  analyst: { masks: { ssn: redact } }\n  "bad role": {}' })),
    ).toEqual([
      ['roles.analyst.masks.ssn', "'ssn' is not a valid column name (written as schema.table.column)"],
      [
        'roles["bad role"]',
        "'bad role' is not a valid role name (a letter or _, then letters, digits, _ or -; at most 63 characters)",
      ],
    ]);
  });

  it('unreadable password_file says "cannot read" and not the content', () => {
    const issues = issuesOf(cfg({ upstream: ', password_file: secrets/missing.pass' }));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['databases.ehr.upstream.password_file', `cannot read ${join(dir, 'secrets/missing.pass')} (ENOENT)`],
    ]);
  });

  it('an unreadable TLS certificate is reported at load, not at the first connection', () => {
    expect(pathsAndMessages(cfg().replace('certs/server.key', 'certs/nope.key'))).toEqual([
      ['tls.key', `cannot read ${join(dir, 'certs/nope.key')} (ENOENT)`],
    ]);
  });

  it('YAML syntax error with its line and column, without quoting the source', () => {
    expect(issuesOf('listen:\n  host: 127.0.0.1\nlog: level: info\n')).toEqual([
      {
        path: '',
        message: 'YAML syntax error: Nested mappings are not allowed in compact mappings',
        line: 3,
        column: 6,
      },
    ]);
    // yaml quotes the offending token in some messages; a token may be a secret.
    const issues = issuesOf('users:\n  bob: { password: hunter2 }\n  }');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: '', line: 3 });
    expect(issues[0].message).toMatch(/^YAML syntax error: /);
    expect(JSON.stringify(issues)).not.toContain('hunter2');
    expect(JSON.stringify(issuesOf('a: 1\n  hunter2: x'))).not.toContain('hunter2');
    expect(pathsAndMessages('a: 1\na: 2')).toEqual([['', 'YAML syntax error: Map keys must be unique']]);
  });

  it('an empty file', () => {
    expect(pathsAndMessages('# nothing\n')).toEqual([['', 'the config is empty']]);
  });

  it('reports several problems at once, in file order, with line and column of each key', () => {
    const issues = issuesOf(readFileSync(join(dir, 'invalid.yaml'), 'utf8'));
    expect(issues).toEqual([
      { path: 'listen.hots', message: "unknown key 'hots' (did you mean 'host'?)", line: 2, column: 11 },
      { path: 'databases.ehr.upstream.port', message: 'must be an integer', line: 5, column: 34 },
      {
        path: 'databases.ehr.pool.mode',
        message: "must be 'session' ('transaction' pooling is not supported yet)",
        line: 6,
        column: 13,
      },
      { path: 'log.level', message: 'must be one of: debug, info, warn, error', line: 7, column: 8 },
      {
        path: 'users.bob.password',
        message:
          'must be a SCRAM-SHA-256 verifier, not a plaintext password: run `pgwarden passwd bob` and paste its output',
        line: 9,
        column: 10,
      },
    ]);
  });
});

describe('keys that are also Object.prototype names', () => {
  it("a '__proto__' key is an unknown key, not a way around validation", () => {
    expect(pathsAndMessages(cfg({ extra: 'listen: { __proto__: { host: 0.0.0.0 } }' }))).toEqual([
      ['listen.__proto__', "unknown key '__proto__'"],
    ]);
  });

  it("a database named '__proto__' or 'constructor' is an ordinary entry, and lookups never reach Object's", () => {
    const c = load(
      'allow_plaintext: true\ndatabases:\n  __proto__: { upstream: { host: a, user: u } }\n  constructor: { upstream: { host: b, user: u } }',
    );
    expect(Object.keys(c.databases)).toEqual(['__proto__', 'constructor']);
    expect(configEntry(c.databases, '__proto__')?.upstream.host).toBe('a');
    expect(configEntry(c.databases, 'constructor')?.upstream.host).toBe('b');
    expect(configEntry(c.users, 'toString')).toBeUndefined();
    expect(configEntry(c.users, '__proto__')).toBeUndefined();
  });
});

describe('formatConfigError', () => {
  it('prints one `<file>:<line>:<col>: <path>: <message>` line per issue', () => {
    let error: ConfigError | undefined;
    try {
      loadConfigFile(join(dir, 'invalid.yaml'), {});
    } catch (e) {
      error = e as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const file = join(dir, 'invalid.yaml');
    expect(error!.file).toBe(file);
    const text = formatConfigError(error!);
    expect(text.split('\n')).toEqual([
      `${file}:2:11: listen.hots: unknown key 'hots' (did you mean 'host'?)`,
      `${file}:5:34: databases.ehr.upstream.port: must be an integer`,
      `${file}:6:13: databases.ehr.pool.mode: must be 'session' ('transaction' pooling is not supported yet)`,
      `${file}:7:8: log.level: must be one of: debug, info, warn, error`,
      `${file}:9:10: users.bob.password: must be a SCRAM-SHA-256 verifier, not a plaintext password: run \`pgwarden passwd bob\` and paste its output`,
    ]);
    expect(error!.message).toBe(text);
    expect(text).not.toContain('hunter2');
  });

  it('leaves out the position and path when there are none', () => {
    let error: ConfigError | undefined;
    try {
      loadConfigFile(join(dir, 'does-not-exist.yaml'));
    } catch (e) {
      error = e as ConfigError;
    }
    expect(formatConfigError(error!)).toBe(
      `${join(dir, 'does-not-exist.yaml')}: cannot read the config file (ENOENT)`,
    );
    const missingTls = issuesOf('databases: { ehr: { upstream: { host: h, user: u } } }');
    expect(formatConfigError(new ConfigError('x.yaml', missingTls))).toBe(
      'x.yaml: tls: required unless allow_plaintext: true',
    );
  });
});

describe('${ENV} references', () => {
  it('substitutes anywhere in a string, converts whole numbers and booleans, and keeps $${ as a literal ${', () => {
    const c = load(
      [
        'allow_plaintext: ${PLAIN}',
        'node_id: node-${ZONE}-${N}',
        'databases:',
        '  ehr:',
        '    upstream:',
        '      host: "${DB_HOST}.internal"',
        '      port: ${DB_PORT}',
        '      user: app',
        '      password: "$${not-a-ref}-$HOME-${PW}"',
      ].join('\n'),
      { DB_HOST: 'pg1', DB_PORT: '6000', PW: 'pw', PLAIN: 'true', ZONE: 'eu', N: '7' },
    );
    expect(c.databases.ehr.upstream).toMatchObject({
      host: 'pg1.internal',
      port: 6000,
      password: '${not-a-ref}-$HOME-pw',
      password_source: 'env',
    });
    expect(c.allow_plaintext).toBe(true);
    expect(c.node_id).toBe('node-eu-7');
  });

  it('never reinterprets a substituted value as YAML or as another reference', () => {
    const c = load(cfg({ upstream: ', password: ${PW}' }), { PW: 'a: b, ${OTHER} }\n- x' });
    expect(c.databases.ehr.upstream.password).toBe('a: b, ${OTHER} }\n- x');
  });

  it('an inline password is reported as such', () => {
    expect(load(cfg({ upstream: ', password: literal' })).databases.ehr.upstream.password_source).toBe(
      'config',
    );
    expect(load(cfg({ upstream: ', password: "a$${b}"' })).databases.ehr.upstream.password_source).toBe(
      'config',
    );
  });

  it('a malformed reference is an error that does not quote the value', () => {
    const issues = issuesOf(cfg({ upstream: ', password: "s3cr3t${oops"' }));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      [
        'databases.ehr.upstream.password',
        "'${' must be followed by an environment variable name and '}' (write '$${' for a literal '${')",
      ],
    ]);
    expect(JSON.stringify(issues)).not.toContain('s3cr3t');
  });

  it('a substituted value that breaks the schema is reported without echoing it', () => {
    const issues = issuesOf(cfg({ upstream: ', port: ${PORT}' }), { PORT: 'secret-ish' });
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['databases.ehr.upstream.port', 'must be an integer'],
    ]);
  });
});

describe('*_file secrets', () => {
  it('trims exactly one trailing newline and refuses an empty file', () => {
    writeFileSync(join(dir, 'secrets', 'two-newlines.pass'), 'abc\n\n');
    writeFileSync(join(dir, 'secrets', 'crlf.pass'), 'abc\r\n');
    writeFileSync(join(dir, 'secrets', 'empty.pass'), '\n');
    const read = (f: string) =>
      load(cfg({ upstream: `, password_file: secrets/${f}` })).databases.ehr.upstream.password;
    expect(read('two-newlines.pass')).toBe('abc\n');
    expect(read('crlf.pass')).toBe('abc');
    expect(pathsAndMessages(cfg({ upstream: ', password_file: secrets/empty.pass' }))).toEqual([
      ['databases.ehr.upstream.password_file', `${join(dir, 'secrets/empty.pass')} is empty`],
    ]);
  });

  it('resolves against the config file directory when loaded from a file', () => {
    const sub = join(dir, 'sub');
    mkdirSync(join(sub, 'certs'), { recursive: true });
    for (const f of ['server.crt', 'server.key']) writeFileSync(join(sub, 'certs', f), 'x');
    writeFileSync(join(sub, 'p.pass'), 'sub-secret');
    writeFileSync(join(sub, 'pgwarden.yaml'), cfg({ upstream: ', password_file: p.pass' }));
    const c = loadConfigFile(join(sub, 'pgwarden.yaml'), {});
    expect(c.databases.ehr.upstream.password).toBe('sub-secret');
    expect(c.tls?.cert).toBe(join(sub, 'certs/server.crt'));
  });
});

describe('the resolved config', () => {
  it('is deep-frozen and survives a structured clone unchanged', () => {
    const c = loadConfigFile(join(dir, 'full.yaml'), {});
    const frozen: unknown[] = [];
    const visit = (v: unknown) => {
      if (typeof v === 'object' && v !== null) {
        frozen.push(Object.isFrozen(v));
        Object.values(v).forEach(visit);
      }
    };
    visit(c);
    expect(frozen.length).toBeGreaterThan(20);
    expect(frozen.every(Boolean)).toBe(true);
    expect(() => {
      (c.databases.ehr.pool as { size: number }).size = 99;
    }).toThrow(TypeError);
    expect(structuredClone(c)).toEqual(c);
  });

  it('is typed as resolved: numbers for durations and sizes, every defaulted key present, readonly', () => {
    const c = load(cfg());
    expectTypeOf(c.timeouts.startup).toEqualTypeOf<number>();
    expectTypeOf(c.limits.max_message_size).toEqualTypeOf<number>();
    expectTypeOf(c.workers).toEqualTypeOf<number>();
    expectTypeOf(c.node_id).toEqualTypeOf<string>();
    expectTypeOf(c.databases.ehr.upstream.connect_timeout).toEqualTypeOf<number>();
    expectTypeOf(c.databases.ehr.upstream.database).toEqualTypeOf<string>();
    expectTypeOf(c.databases.ehr.upstream.password).toEqualTypeOf<string | undefined>();
    expectTypeOf(c.databases.ehr.upstream.password_source).toEqualTypeOf<
      'config' | 'env' | 'file' | 'none'
    >();
    expectTypeOf(c.databases.ehr.upstream.tls.mode).toEqualTypeOf<
      'disable' | 'require' | 'verify-ca' | 'verify-full'
    >();
    expectTypeOf<PgwardenConfig['users'][string]['databases']>().toEqualTypeOf<
      readonly string[] | undefined
    >();
    expectTypeOf<PgwardenConfig['roles'][string]['statements']>().toEqualTypeOf<
      readonly StatementKind[] | undefined
    >();
    expect(() => {
      // @ts-expect-error the resolved config is readonly
      c.listen.port = 1;
    }).toThrow(TypeError);
  });

  it('is the same for the same text, so a reload can compare', () => {
    expect(load(cfg())).toEqual(load(cfg()));
    expect(load(cfg())).not.toEqual(load(cfg({ extra: 'workers: 1' })));
  });
});

describe('explainConfig', () => {
  it('summarises the config and shows where passwords come from, never the passwords', () => {
    const c = loadConfigFile(join(dir, 'minimal.yaml'), ENV);
    const text = explainConfig(c);
    expect(text).toContain(
      'listen     127.0.0.1:6432, TLS (minimum TLSv1.2), plaintext clients refused (28000)',
    );
    expect(text).toContain(
      '  ehr: 127.0.0.1:5432/ehr as app, password <from env>, TLS require, connect timeout 5s; session pool of 20, min idle 0',
    );
    expect(text).toContain('  alice: roles clinician; databases all');
    expect(text).toContain('  analyst: statements select; masks public.patients.ssn partial_last4');
    expect(text).toContain('timeouts   startup 10s, idle client off,');
    expect(text).toContain(`workers    ${availableParallelism()} worker thread`);
    expect(text).not.toContain(ENV.EHR_DB_PASSWORD);
    expect(text).not.toContain('SCRAM-SHA-256$');

    const full = explainConfig(loadConfigFile(join(dir, 'full.yaml'), {}));
    expect(full).toContain('password <from file>');
    expect(full).toContain('password <none>');
    expect(full).toContain('plaintext clients ALLOWED');
    expect(full).toContain('admin      disabled');
    expect(full).toContain('messages up to 64 MiB');
    expect(full).not.toContain('file-secret-Kx7');
  });
});

describe('the published JSON Schema and the reference', () => {
  const update = process.env.UPDATE_CONFIG_DOCS === '1';
  const regenerate =
    'regenerate with: UPDATE_CONFIG_DOCS=1 sh scripts/node24.sh vitest run --project unit test/unit/config.test.ts';

  // Formatted like `npm run format` would, so that the generated files never fail the format check.
  const pretty = async (text: string, file: string) =>
    format(text, { ...(await resolveConfig(file)), filepath: file });

  it('docs/config.schema.json matches the schema', async () => {
    const file = join(ROOT, 'docs/config.schema.json');
    const expected = await pretty(JSON.stringify(configJsonSchema(), null, 2), file);
    if (update) writeFileSync(file, expected);
    expect(readFileSync(file, 'utf8'), `docs/config.schema.json is stale; ${regenerate}`).toBe(expected);
  });

  it('docs/configuration.md carries the generated key reference', async () => {
    const file = join(ROOT, 'docs/configuration.md');
    const begin = '<!-- BEGIN GENERATED KEY REFERENCE -->\n';
    const end = '<!-- END GENERATED KEY REFERENCE -->';
    const current = readFileSync(file, 'utf8');
    const start = current.indexOf(begin);
    const stop = current.indexOf(end);
    expect(start, 'docs/configuration.md lost its generated-reference markers').toBeGreaterThanOrEqual(0);
    const expected = await pretty(
      current.slice(0, start + begin.length) + renderConfigReference() + current.slice(stop),
      file,
    );
    if (update) writeFileSync(file, expected);
    expect(readFileSync(file, 'utf8'), `docs/configuration.md is stale; ${regenerate}`).toBe(expected);
  });

  it('describes every property and closes every object', () => {
    const problems: string[] = [];
    const visit = (s: Record<string, unknown>, at: string) => {
      if (s.type === 'object') {
        if (s.additionalProperties !== false) problems.push(`${at}: additionalProperties is not false`);
        for (const [k, p] of Object.entries(
          (s.properties ?? {}) as Record<string, Record<string, unknown>>,
        )) {
          if (typeof p.description !== 'string' || p.description === '')
            problems.push(`${at}.${k}: no description`);
          visit(p, `${at}.${k}`);
        }
        for (const p of Object.values((s.patternProperties ?? {}) as Record<string, Record<string, unknown>>))
          visit(p, `${at}.*`);
      }
      if (s.type === 'array') visit(s.items as Record<string, unknown>, `${at}[]`);
    };
    const schema = configJsonSchema();
    visit(schema, '$');
    expect(problems).toEqual([]);
    expect(schema).toMatchObject({
      $schema: 'http://json-schema.org/draft-07/schema#',
      $id: 'urn:pgwarden:config',
    });
  });
});
