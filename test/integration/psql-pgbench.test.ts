// libpq's own tools through pgwarden (verify-full TLS, SCRAM-SHA-256-PLUS by default): psql queries, \copy both
// ways, errors with ON_ERROR_STOP, channel_binding=require, the replication refusal, and pgbench in every query mode.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { libpqEnv, startProxy } from './support.js';

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a libpq tool to completion and reports its exit code and output; never throws on a non-zero exit. */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${command} did not run to completion (${err.message}); stderr: ${stderr}`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** psql without ~/.psqlrc, unaligned, tuples only: output a test can compare. */
const PSQL = ['-X', '-A', '-t'];

describe('psql and pgbench through pgwarden', () => {
  let proxy: PgwardenProcess;
  let env: NodeJS.ProcessEnv;
  let dir: string;

  beforeAll(async () => {
    proxy = await startProxy();
    env = libpqEnv(proxy);
    dir = mkdtempSync(join(tmpdir(), 'pgwarden-psql-'));
  });
  afterAll(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await proxy?.stop();
  });

  describe('psql', () => {
    it('runs a query given with -c and prints its result', async () => {
      const r = await run('psql', [...PSQL, '-c', "select 'hello ' || current_user, 6 * 7"], env);
      expect(r).toEqual({ code: 0, stdout: 'hello app|42\n', stderr: '' });
    });

    it('logs in with PGCHANNELBINDING=require, so SCRAM-SHA-256-PLUS was used', async () => {
      const r = await run('psql', [...PSQL, '-c', 'select 1'], { ...env, PGCHANNELBINDING: 'require' });
      expect(r).toEqual({ code: 0, stdout: '1\n', stderr: '' });
    });

    it('copies a table out and back in with \\copy, byte for byte', async () => {
      const source = join(dir, 'patients.tsv');
      const exported = join(dir, 'patients-out.tsv');
      const lines: string[] = [];
      for (let i = 0; i < 10_000; i++) {
        const note = i % 5 === 0 ? '\\N' : `line\\nbreak\\ttab ✓ ${i}`;
        lines.push(`${i}\tMRN-${String(i).padStart(6, '0')}\tJosé Müller ${i}\t${note}\n`);
      }
      writeFileSync(source, lines.join(''));
      const r = await run(
        'psql',
        [
          ...PSQL,
          '-v',
          'ON_ERROR_STOP=1',
          '-c',
          'set client_min_messages = warning', // no "does not exist, skipping" notice on stderr
          '-c',
          'drop table if exists psql_copy',
          '-c',
          'create table psql_copy (id int primary key, mrn text, name text, note text)',
          '-c',
          `\\copy psql_copy from '${source}'`,
          '-c',
          'select count(*) from psql_copy',
          '-c',
          `\\copy (select * from psql_copy order by id) to '${exported}'`,
          '-c',
          'drop table psql_copy',
        ],
        env,
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('SET\nDROP TABLE\nCREATE TABLE\nCOPY 10000\n10000\nCOPY 10000\nDROP TABLE\n');
      expect(readFileSync(exported).equals(readFileSync(source))).toBe(true);
    });

    it('stops at the first error with ON_ERROR_STOP=1: exit code 3 and the SQLSTATE in the message', async () => {
      const script = join(dir, 'failing.sql');
      writeFileSync(script, "select 'before';\nselect 1/0;\nselect 'not reached';\n");
      const r = await run(
        'psql',
        [...PSQL, '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-f', script],
        env,
      );
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('before\n');
      expect(r.stderr).toContain('ERROR:  22012: division by zero');
    });

    it('is refused a replication connection with the reason', async () => {
      const r = await run('psql', [...PSQL, 'replication=database dbname=ehr', '-c', 'IDENTIFY_SYSTEM'], env);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('FATAL:  replication connections are not supported through pgwarden');
    });
  });

  describe('pgbench', () => {
    beforeAll(async () => {
      const init = await run('pgbench', ['-i', '-s', '1', '-q'], env, 120_000);
      if (init.code !== 0) throw new Error(`pgbench -i failed (exit ${init.code}): ${init.stderr}`);
    });

    it.each(['simple', 'extended', 'prepared'])(
      'runs 3 s with 4 clients in -M %s without failures',
      async (mode) => {
        const r = await run('pgbench', ['-n', '-T', '3', '-c', '4', '-M', mode], env);
        expect(r.code, r.stderr).toBe(0);
        const field = (re: RegExp): string => {
          const m = re.exec(r.stdout);
          if (!m) throw new Error(`pgbench output lacks ${re}:\n${r.stdout}`);
          return m[1];
        };
        expect(field(/^query mode: (\w+)$/m)).toBe(mode);
        expect(field(/^number of clients: (\d+)$/m)).toBe('4');
        expect(Number(field(/^number of transactions actually processed: (\d+)$/m))).toBeGreaterThan(0);
        expect(Number(field(/^number of failed transactions: (\d+) /m))).toBe(0);
        expect(Number(field(/^tps = ([\d.]+) /m))).toBeGreaterThan(0);
      },
    );
  });
});
