// A server the harness started as a child process (HAProxy, PgBouncer): its output kept line by line for start
// errors, its exit tracked, killed if the test run itself dies, and stopped with SIGTERM then SIGKILL.
import type { ChildProcess } from 'node:child_process';
import { registerExitCleanup } from '../../src/embedded/exec.js';

export interface SupervisedChild {
  /** stdout and stderr, line by line. */
  readonly logs: string[];
  exited(): boolean;
  waitExit(): Promise<void>;
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process is gone. */
  stop(killAfterMs: number): Promise<void>;
}

/** Watches `child` (spawned with stdout and stderr piped); `onRunExit` also runs if the test run exits first. */
export function supervise(child: ChildProcess, onRunExit: () => void = () => {}): SupervisedChild {
  const logs: string[] = [];
  let exited = false;
  const exitWaiters: (() => void)[] = [];
  const collect = (stream: NodeJS.ReadableStream): void => {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      logs.push(...parts.filter((l) => l.length > 0));
    });
  };
  collect(child.stdout!);
  collect(child.stderr!);
  // A crashed test run must not leave the server listening.
  const unregister = registerExitCleanup(() => {
    if (!exited) child.kill('SIGKILL');
    onRunExit();
  });
  child.on('error', (err) => logs.push(`spawn error: ${err.message}`));
  child.on('close', () => {
    exited = true;
    unregister();
    for (const w of exitWaiters.splice(0)) w();
  });
  const waitExit = (): Promise<void> =>
    exited ? Promise.resolve() : new Promise((resolve) => exitWaiters.push(resolve));
  return {
    logs,
    exited: () => exited,
    waitExit,
    async stop(killAfterMs: number): Promise<void> {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await waitExit();
      clearTimeout(timer);
    },
  };
}
