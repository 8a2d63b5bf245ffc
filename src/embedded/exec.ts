// Process plumbing for the embedded servers (demo, tests, benches): run commands (as the postgres OS user when we are root), find the
// PostgreSQL binaries and the repository root, and a last-chance cleanup so no server outlives its owner.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, chownSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A command that failed; the message carries its stderr (secrets redacted) so a test failure explains itself. */
export class HarnessCommandError extends Error {
  constructor(
    readonly command: string,
    readonly status: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${status ?? 'signal'}): ${redactSecrets(stderr).trim() || '(no stderr)'}`);
    this.name = 'HarnessCommandError';
  }
}

/** Hides quoted passwords that psql echoes back in error context (`LINE 1: ... password 'x'`). */
export function redactSecrets(text: string): string {
  return text.replace(/(password\s+)'(?:[^']|'')*'/gi, "$1'***'");
}

export interface OsUser {
  uid: number;
  gid: number;
}

let postgresUser: OsUser | null | undefined;

/**
 * The postgres OS account when this process is root (initdb, pg_ctl and pgbouncer refuse to run as root),
 * otherwise null: the tools then run as the current user.
 */
export function postgresOsUser(): OsUser | null {
  if (postgresUser !== undefined) return postgresUser;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return (postgresUser = null);
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root but there is no postgres OS user to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return (postgresUser = { uid: Number(uid), gid: Number(gid) });
}

/** Gives a path to the postgres OS user (no-op when not root), so servers running as that user can use it. */
export function chownToPostgres(...paths: string[]): void {
  const user = postgresOsUser();
  if (!user) return;
  for (const p of paths) chownSync(p, user.uid, user.gid);
}

let binDir: string | undefined;

/** Directory holding initdb/pg_ctl/postgres: $PG_BINDIR, else `pg_config --bindir`, else the newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string {
  if (binDir) return binDir;
  const candidates: string[] = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  try {
    candidates.push(
      execFileSync('pg_config', ['--bindir'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim(),
    );
  } catch {
    // pg_config is optional; fall through to the Debian layout.
  }
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  const found = candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (!found)
    throw new Error(
      `PostgreSQL server binaries (initdb, pg_ctl) not found; looked in: ${candidates.join(', ') || 'nothing'}`,
    );
  return (binDir = found);
}

/** The environment without PG* variables, so an operator's PGHOST/PGSSLMODE never leaks into a test's client. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, ...extra };
}

export interface RunOptions {
  /** Run as the postgres OS user when we are root. */
  asPostgres?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

/** Runs a command to completion and returns its stdout; throws HarnessCommandError with stderr otherwise. */
export function runSync(command: string, args: readonly string[], options: RunOptions = {}): string {
  const user = options.asPostgres ? postgresOsUser() : null;
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      cwd: options.cwd,
      env: options.env ?? cleanEnv(),
      input: options.input,
      timeout: options.timeoutMs ?? 120_000,
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
  } catch (err) {
    const e = err as { status?: number | null; stderr?: string | Buffer; message?: string };
    const stderr = e.stderr ? String(e.stderr) : (e.message ?? '');
    throw new HarnessCommandError(command.split('/').pop() ?? command, e.status ?? null, stderr);
  }
}

let root: string | undefined;

/** The repository root, found from this file whether it runs as TS source (test/harness) or compiled (dist/test/harness). */
export function repoRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pgwarden') {
      return (root = dir);
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('could not find the pgwarden repository root above the harness');
    dir = parent;
  }
}

const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Registers a synchronous last-chance cleanup run on process exit (a crashed test run must not leave a
 * postmaster behind). Returns the function that unregisters it, called once the orderly stop has happened.
 */
export function registerExitCleanup(fn: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const cleanup of [...exitCleanups]) {
        try {
          cleanup();
        } catch {
          // Best effort: the process is exiting and has nobody left to tell.
        }
      }
    });
  }
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}
