// Runs pgbench against one target and parses what it prints (tps, latency, transactions) and, with -l, its
// per-transaction log for latency percentiles.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, registerExitCleanup } from '../../src/embedded/exec.js';
import { percentileSorted } from './stats.js';
import type { PgbenchResult } from './types.js';

export interface PgbenchTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslmode: 'disable' | 'require';
}

export interface PgbenchRun {
  target: PgbenchTarget;
  args: readonly string[];
  /** Write the per-transaction log and compute p50/p99 from it. */
  latencyLog: boolean;
  timeoutMs: number;
}

const running = new Set<ChildProcess>();

/** Kills every pgbench still running (on SIGINT, before the servers it talks to go away). */
export function killRunningPgbench(): void {
  for (const child of running) child.kill('SIGKILL');
}

function exec(
  args: readonly string[],
  target: PgbenchTarget,
  cwd: string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'pgbench',
      ['-h', target.host, '-p', String(target.port), '-U', target.user, ...args, target.database],
      {
        cwd,
        env: cleanEnv({ PGPASSWORD: target.password, PGSSLMODE: target.sslmode, PGCONNECT_TIMEOUT: '10' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    running.add(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(new Error(`could not run pgbench: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      if (code === 0) resolve(out + err);
      else {
        const lines = (err || out).trimEnd().split('\n');
        // The first line of the message is what a report's table shows: make it the actual error.
        const reason = lines.find((l) => /error|FATAL|abort/i.test(l)) ?? lines[lines.length - 1] ?? '';
        reject(
          new Error(`pgbench exited with ${code ?? signal}: ${reason.trim()}\n${lines.slice(-8).join('\n')}`),
        );
      }
    });
  });
}

/** Initialises the pgbench tables (-i) at `scale`, quietly, with the server-side data generator. */
export async function pgbenchInit(target: PgbenchTarget, scale: number): Promise<void> {
  await withScratchDir((cwd) => exec(['-i', '-q', '-I', 'dtGvp', '-s', String(scale)], target, cwd, 600_000));
}

/** A scratch directory for one pgbench run (its -l files), removed afterwards and also if the process exits early. */
async function withScratchDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-pgbench-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const unregister = registerExitCleanup(remove);
  try {
    return await fn(dir);
  } finally {
    remove();
    unregister();
  }
}

function num(re: RegExp, text: string): number {
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Parses pgbench's summary (PostgreSQL 13-17 wording). Exported for tests of the parser. */
export function parsePgbenchOutput(text: string): Omit<PgbenchResult, 'latencyP50Ms' | 'latencyP99Ms'> {
  const transactions = num(/number of transactions actually processed: (\d+)/, text);
  // Older pgbench prints two tps lines (including/excluding connection setup): prefer the one without it.
  const tpsLines = [...text.matchAll(/^tps = ([\d.]+) \(([^)]*)\)/gm)];
  const preferred = tpsLines.find((m) => /without|excluding/.test(m[2])) ?? tpsLines[0];
  const tps = preferred ? Number(preferred[1]) : NaN;
  if (!Number.isFinite(transactions) || !Number.isFinite(tps)) {
    throw new Error(`could not parse pgbench output:\n${text.trimEnd().split('\n').slice(-12).join('\n')}`);
  }
  return {
    transactions,
    failed: num(/number of failed transactions: (\d+)/, text) || 0,
    tps,
    latencyAvgMs: num(/latency average = ([\d.]+) ms/, text),
    connectMs: num(/average connection time = ([\d.]+) ms/, text),
  };
}

/** Latencies (µs) from pgbench -l files: `client_id transaction_no time script_no time_epoch time_us ...`. */
function readLatencyLog(dir: string): Float64Array {
  const values: number[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.startsWith('txlog')) continue;
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      const third = line.split(' ', 3)[2];
      // Failed or skipped transactions log a word instead of a time.
      const us = third === undefined ? NaN : Number(third);
      if (Number.isFinite(us)) values.push(us);
    }
  }
  return Float64Array.from(values).sort();
}

/** One measured pgbench run. */
export async function runPgbench(run: PgbenchRun): Promise<PgbenchResult> {
  return withScratchDir(async (cwd) => {
    const args = [...run.args, ...(run.latencyLog ? ['-l', '--log-prefix', join(cwd, 'txlog')] : [])];
    const parsed = parsePgbenchOutput(await exec(args, run.target, cwd, run.timeoutMs));
    let p50 = NaN;
    let p99 = NaN;
    if (run.latencyLog) {
      const lat = readLatencyLog(cwd);
      p50 = percentileSorted(lat, 50) / 1000;
      p99 = percentileSorted(lat, 99) / 1000;
    }
    return { ...parsed, latencyP50Ms: p50, latencyP99Ms: p99 };
  });
}

/** `pgbench --version`, for the report. */
export async function pgbenchVersion(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('pgbench', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', () => resolve('unknown'));
    child.on('close', () => resolve(out.trim() || 'unknown'));
  });
}
