// The postgres audit sink's pure parts: COPY text escaping, table-name validation, timestamps, rows; and the
// config rules for a postgres sink (required keys, keys of another sink type, defaults, password_file).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  copyRow,
  copyTextField,
  parseTableName,
  timestampText,
} from '../../src/audit/sinks/postgres-sink.js';
import { ConfigError, loadConfigText, type ConfigIssue } from '../../src/config/load.js';

describe('COPY text format', () => {
  it('escapes backslash, tab, newline and carriage return, and nothing else', () => {
    expect(copyTextField('plain "json" ü')).toBe('plain "json" ü');
    expect(copyTextField('a\\b')).toBe('a\\\\b');
    expect(copyTextField('a\tb\nc\rd')).toBe('a\\tb\\nc\\rd');
    // JSON's own escapes are backslashes: \n inside a JSON string must reach the table as backslash + n.
    expect(copyTextField(JSON.stringify('x\ny'))).toBe('"x\\\\ny"');
    expect(copyTextField('\\\\\t')).toBe('\\\\\\\\\\t');
  });

  it('round-trips through the COPY text decoding rules', () => {
    // The decoder of PostgreSQL's text format for these four escapes, applied to arbitrary strings.
    const decode = (s: string) =>
      s.replace(/\\(.)/g, (_m, c: string) => ({ t: '\t', n: '\n', r: '\r', '\\': '\\' })[c] ?? c);
    for (const v of ['', '\\', '\\t', 'a\\nb', '\t\t\n\r\\', 'x\\\\y', 'end\\']) {
      const e = copyTextField(v);
      expect(e).not.toMatch(/[\t\n\r]/);
      expect(decode(e)).toBe(v);
    }
  });

  it('formats microsecond timestamps with six fractional digits in UTC', () => {
    expect(timestampText(0)).toBe('1970-01-01 00:00:00.000000+00');
    expect(timestampText(1_700_000_000_123_456)).toBe('2023-11-14 22:13:20.123456+00');
    expect(timestampText(1_700_000_000_000_007)).toBe('2023-11-14 22:13:20.000007+00');
  });

  it('makes one row of six tab-separated fields from a line, the line itself twice', () => {
    const line = JSON.stringify({
      v: 1,
      seq: 7,
      ts: 1_700_000_000_000_001,
      stream: 'n-0-1',
      event: 'statement',
      data: { sql: "select 'a\tb'\n" },
    });
    const row = copyRow(line);
    expect(row.seq).toBe(7);
    expect(row.text.endsWith('\n')).toBe(true);
    const fields = row.text.slice(0, -1).split('\t');
    expect(fields).toEqual([
      'n-0-1',
      '7',
      '2023-11-14 22:13:20.000001+00',
      'statement',
      copyTextField(line),
      copyTextField(line),
    ]);
    expect(() => copyRow('{"seq":1}')).toThrow(/without seq/);
  });
});

describe('audit table name', () => {
  it('accepts an identifier or schema.identifier and quotes each part', () => {
    expect(parseTableName('pgwarden_audit')).toBe('"pgwarden_audit"');
    expect(parseTableName('audit.Events$2')).toBe('"audit"."Events$2"');
  });

  it.each(['', 'a.b.c', 'bad-name', '1abc', 'x"; drop table t; --', 'a b', 'a.', '.a', 'x'.repeat(64)])(
    'refuses %j',
    (name) => {
      expect(() => parseTableName(name)).toThrow(/identifier/);
    },
  );
});

describe('postgres sink config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-pgsink-config-'));
  writeFileSync(join(dir, 'audit.key'), 'key\n');
  writeFileSync(join(dir, 'audit-db.pass'), 'audit-secret-Qw3\n');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const text = (sinks: string) =>
    [
      'allow_plaintext: true',
      'databases: { ehr: { upstream: { host: 127.0.0.1, user: app } } }',
      'audit:',
      '  signing_key_file: audit.key',
      `  sinks: ${sinks}`,
    ].join('\n');
  const load = (sinks: string, env: NodeJS.ProcessEnv = {}) =>
    loadConfigText(text(sinks), { baseDir: dir, env });
  const issues = (sinks: string): Array<[string, string]> => {
    try {
      load(sinks);
    } catch (e) {
      return (e as ConfigError).issues.map((i: ConfigIssue) => [i.path, i.message]);
    }
    throw new Error('the config loaded');
  };

  it('fills port and table for a postgres sink only, takes the password from ${ENV}, and leaves file sinks alone', () => {
    const c = load(
      '[{ type: file, path: logs }, { type: postgres, host: db, database: audit, user: auditor, password: ${AUDIT_PW} }]',
      { AUDIT_PW: 'audit-secret-Zz1' },
    );
    expect(c.audit!.sinks[0]).toEqual({ type: 'file', path: join(dir, 'logs') });
    expect(c.audit!.sinks[1]).toEqual({
      type: 'postgres',
      host: 'db',
      port: 5432,
      database: 'audit',
      user: 'auditor',
      password: 'audit-secret-Zz1',
      table: 'pgwarden_audit',
    });
  });

  it('reads password_file and keeps TLS settings', () => {
    const c = load(
      '[{ type: postgres, host: db, port: 6543, database: audit, user: auditor, password_file: audit-db.pass, table: a.log, tls: { mode: verify-full, ca_file: audit.key, server_name: db.example } }]',
    );
    expect(c.audit!.sinks[0]).toMatchObject({
      port: 6543,
      password: 'audit-secret-Qw3',
      table: 'a.log',
      tls: { mode: 'verify-full', ca: 'key', server_name: 'db.example' },
    });
  });

  it('names missing keys, keys of another sink type, and conflicts, without echoing secrets', () => {
    expect(issues('[{ type: postgres, host: db }]')).toEqual([
      ['audit.sinks[0].database', 'required for a postgres sink'],
      ['audit.sinks[0].user', 'required for a postgres sink'],
    ]);
    expect(issues('[{ type: file, path: logs, host: db, tls: { mode: disable } }]')).toEqual([
      ['audit.sinks[0].host', 'only a postgres sink takes host'],
      ['audit.sinks[0].tls', 'only a postgres sink takes tls'],
    ]);
    expect(issues('[{ type: postgres, host: db, database: a, user: u, path: logs }]')).toEqual([
      ['audit.sinks[0].path', 'only a file sink takes path'],
    ]);
    const both = issues(
      '[{ type: postgres, host: db, database: a, user: u, password: hunter2-secret, password_file: audit-db.pass, tls: { mode: verify-ca } }]',
    );
    expect(both).toEqual([
      ['audit.sinks[0].password_file', 'cannot be used together with password: set only one'],
      ['audit.sinks[0].tls.ca_file', 'required when mode is verify-ca'],
    ]);
    expect(JSON.stringify(both)).not.toContain('hunter2');
    expect(issues('[{ type: postgres, host: db, database: a, user: u, table: "x; drop" }]')).toEqual([
      ['audit.sinks[0].table', 'must be an identifier or schema.identifier (letters, digits, _ and $)'],
    ]);
    expect(
      issues(
        '[{ type: postgres, host: a, database: a, user: u }, { type: postgres, host: b, database: b, user: u }]',
      ),
    ).toEqual([['audit.sinks', 'at most one postgres sink']]);
  });
});
