// CPU time of a process and its descendants from /proc, to charge each proxy with what it burned per transaction.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** utime+stime+cutime+cstime in ticks (all threads of the process, plus children it has already reaped). */
function ownTicks(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
  return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
}

function children(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    // Children are listed per thread; a multi-threaded parent (a Node process) may fork from any of them.
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' '))
        if (c.trim()) out.push(Number(c));
    } catch {
      // The thread exited while we looked.
    }
  }
  return out;
}

/**
 * Seconds of CPU used so far by `pid` and every live descendant, including descendants already reaped (their
 * time moves into the parent's cutime/cstime when waited for, so a short-lived backend is not lost).
 */
export function processTreeCpuSeconds(pid: number): number {
  let ticks = 0;
  const stack = [pid];
  const seen = new Set<number>();
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    const t = ownTicks(p);
    if (t === null) continue;
    ticks += t;
    stack.push(...children(p));
  }
  return ticks / clockTicks();
}
