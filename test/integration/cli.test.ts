// The command line: passwd prints a verifier that pgwarden accepts, usage errors exit 2, check explains a config.
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseScramVerifier, saltedPassword, clientKeyOf, sha256 } from '../../src/auth/scram-verifier.js';
import { repoRoot } from '../../src/embedded/exec.js';
import { baseConfig } from './support.js';

function pgwarden(args: string[], input?: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [join(repoRoot(), 'bin', 'pgwarden.js'), ...args], {
    input,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 30_000,
  });
}

describe('pgwarden command line', () => {
  it('passwd prints a SCRAM-SHA-256 verifier for the password read from stdin, and never the password', () => {
    const r = pgwarden(['passwd', 'alice'], 'tr0ub4dor&3\n');
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain('tr0ub4dor');
    const verifier = parseScramVerifier(r.stdout.trim());
    expect(verifier).not.toBeNull();
    expect(verifier!.iterations).toBe(4096);
    // StoredKey = H(ClientKey(SaltedPassword)): the verifier belongs to exactly this password.
    const storedKey = sha256(
      clientKeyOf(saltedPassword('tr0ub4dor&3', verifier!.salt, verifier!.iterations)),
    );
    expect(storedKey.equals(verifier!.storedKey)).toBe(true);
  });

  it('passwd honours --iterations and refuses too few', () => {
    const r = pgwarden(['passwd', 'bob', '--iterations', '8192'], 'pw\n');
    expect(r.status).toBe(0);
    expect(parseScramVerifier(r.stdout.trim())!.iterations).toBe(8192);
    const low = pgwarden(['passwd', 'bob', '--iterations', '100'], 'pw\n');
    expect(low.status).toBe(2);
    expect(low.stderr).toMatch(/iterations/);
  });

  it('exits 2 with usage on an unknown command or a missing -c', () => {
    const unknown = pgwarden(['frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const missing = pgwarden(['check']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/missing -c/);
  });

  it('check explains a valid config, and warns about nothing in it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgwarden-cli-'));
    const file = join(dir, 'pgwarden.yaml');
    const config = baseConfig({
      roles: { analyst: { statements: ['select'], masks: { 'public.patients.ssn': 'redact' } } },
      users: {},
    });
    writeFileSync(file, stringify(config));
    const r = pgwarden(['check', '-c', file], undefined, { EHR_DB_PASSWORD: 'app-secret-pw' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('configuration is valid');
    expect(r.stdout).not.toContain('WARNING');
    expect(r.stdout).toMatch(/audit +off \(no audit: section\)/);
    expect(r.stdout).toMatch(/access +SQL policy on \(1 role;/);
    expect(r.stdout).not.toMatch(/statements is validated but NOT enforced/);
    expect(r.stdout).not.toContain('app-secret-pw');
  });

  it('check exits 2 naming the key path of a bad value', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgwarden-cli-'));
    const file = join(dir, 'pgwarden.yaml');
    writeFileSync(file, stringify(baseConfig({ listen: { host: '127.0.0.1', port: 'x' } })));
    const r = pgwarden(['check', '-c', file], undefined, { EHR_DB_PASSWORD: 'app-secret-pw' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/listen\.port: must be an integer/);
  });
});
