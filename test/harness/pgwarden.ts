// Launches the built pgwarden (`node bin/pgwarden.js start -c FILE`) with a config, waits for its "ready" log
// line to learn the ports it bound, and collects its output for assertions; never builds anything itself.
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { registerExitCleanup, repoRoot } from '../../src/embedded/exec.js';

export interface PgwardenProcess {
  port: number;
  /** The admin/metrics HTTP port; 0 when the config has no admin listener. */
  adminPort: number;
  pid: number;
  /** Every stdout and stderr line so far, in arrival order. */
  logs: string[];
  configFile: string;
  /** Sends `signal` (default SIGTERM), waits for exit (SIGKILL after timeoutMs, default 15 s); resolves the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  kill(): void;
  /**
   * Resolves with the first log line matching `re` at index >= `fromIndex` (default 0: lines already logged count
   * too, so a line that arrived before the call is not missed); pass `logs.length` to wait for a new line only.
   */
  waitForLog(re: RegExp, timeoutMs?: number, fromIndex?: number): Promise<string>;
  /** Rewrites the config file, sends SIGHUP and waits for pgwarden to log a line mentioning the reload. */
  reload(newConfigYamlOrObject: string | object): Promise<void>;
}

export interface StartPgwardenOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** How long to wait for the ready line (default 20 s). */
  timeoutMs?: number;
}

interface ReadyLine {
  msg?: unknown;
  listen?: { port?: unknown };
  admin?: { port?: unknown };
}

function toYaml(config: string | object): string {
  return typeof config === 'string' ? config : stringify(config);
}

function lastLines(logs: string[], n = 30): string {
  return logs.slice(-n).join('\n') || '(no output)';
}

/** Starts pgwarden on the given config (YAML text or an object serialised to YAML). */
export async function startPgwarden(
  config: string | object,
  options: StartPgwardenOptions = {},
): Promise<PgwardenProcess> {
  const root = repoRoot();
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-proc-'));
  const configFile = join(dir, 'pgwarden.yaml');
  writeFileSync(configFile, toYaml(config), { mode: 0o600 });

  const child = spawn(process.execPath, [join(root, 'bin', 'pgwarden.js'), 'start', '-c', configFile], {
    cwd: options.cwd ?? root,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const lineWaiters = new Set<() => void>();
  let exitCode: number | null = null;
  let exited = false;
  let spawnError: Error | null = null;
  const exitWaiters = new Set<() => void>();

  const onData = (stream: NodeJS.ReadableStream): void => {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) if (line.length > 0) logs.push(line);
      for (const w of [...lineWaiters]) w();
    });
    stream.on('end', () => {
      if (partial.length > 0) logs.push(partial);
      partial = '';
      for (const w of [...lineWaiters]) w();
    });
  };
  onData(child.stdout!);
  onData(child.stderr!);

  const unregister = registerExitCleanup(() => {
    if (!exited) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  child.on('error', (err) => {
    spawnError = err;
  });
  child.on('close', (code) => {
    exited = true;
    exitCode = code;
    unregister();
    rmSync(dir, { recursive: true, force: true });
    for (const w of [...exitWaiters]) w();
    for (const w of [...lineWaiters]) w();
  });

  const waitForExit = (): Promise<void> =>
    exited ? Promise.resolve() : new Promise((resolve) => exitWaiters.add(() => resolve()));

  function waitForLog(re: RegExp, timeoutMs = 10_000, fromIndex = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      let scanned = fromIndex;
      const check = (): void => {
        for (; scanned < logs.length; scanned++) {
          if (re.test(logs[scanned])) {
            done();
            resolve(logs[scanned]);
            return;
          }
        }
        if (exited) {
          done();
          reject(
            new Error(
              `pgwarden exited (code ${exitCode}) before logging ${re}; last output:\n${lastLines(logs)}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `pgwarden logged nothing matching ${re} within ${timeoutMs} ms; last output:\n${lastLines(logs)}`,
          ),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        lineWaiters.delete(check);
      };
      lineWaiters.add(check);
      check();
    });
  }

  let readyLine: string;
  try {
    readyLine = await waitForLog(/"msg"\s*:\s*"ready"/, options.timeoutMs ?? 20_000);
  } catch (err) {
    if (!exited) {
      child.kill('SIGKILL');
      await waitForExit();
    }
    if (spawnError) {
      const message = `pgwarden did not become ready: could not spawn node: ${(spawnError as Error).message}`;
      throw new Error(message, { cause: err });
    }
    if (!exited || exitCode === null || logs.length === 0) {
      throw new Error(`pgwarden did not become ready: ${(err as Error).message}`, { cause: err });
    }
    // First line: the reason a person can act on; then the output for the details.
    const reason =
      logs.find((l) => /"level"\s*:\s*"(error|fatal)"|Error|error:/.test(l)) ?? logs[logs.length - 1];
    const hint = /ERR_MODULE_NOT_FOUND.*dist/.test(logs.join('\n'))
      ? ' (pgwarden is not built: run `npm run build`)'
      : '';
    throw new Error(
      `pgwarden did not become ready: pgwarden exited (code ${exitCode})${hint}: ${reason.trim()}\n--- output ---\n${lastLines(logs)}`,
      { cause: err },
    );
  }
  const ready = JSON.parse(readyLine) as ReadyLine;
  const port = Number(ready.listen?.port);
  if (!Number.isInteger(port) || port <= 0) {
    child.kill('SIGKILL');
    await waitForExit();
    throw new Error(`pgwarden's ready line has no listen.port: ${readyLine}`);
  }
  const adminPort = Number(ready.admin?.port ?? 0);

  return {
    port,
    adminPort: Number.isInteger(adminPort) ? adminPort : 0,
    pid: child.pid!,
    logs,
    configFile,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<number | null> {
      if (!exited) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await waitForExit();
        clearTimeout(timer);
      }
      return exitCode;
    },
    kill(): void {
      if (!exited) child.kill('SIGKILL');
    },
    waitForLog,
    async reload(newConfig: string | object): Promise<void> {
      if (exited) throw new Error(`pgwarden is not running (exit code ${exitCode})`);
      // Write then rename, so pgwarden never reads a half-written file.
      const tmp = `${configFile}.${process.pid}.tmp`;
      writeFileSync(tmp, toYaml(newConfig), { mode: 0o600 });
      renameSync(tmp, configFile);
      const from = logs.length;
      child.kill('SIGHUP');
      await waitForLog(/reload/i, 10_000, from);
    },
  };
}
