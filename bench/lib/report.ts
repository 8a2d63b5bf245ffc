// Turns benchmark results into the printed Markdown table and the saved bench/results/<stamp>-<name>.{json,md}.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../src/embedded/exec.js';
import type { MacroReport, TargetReport } from './types.js';

function fmt(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
}

function thousands(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '—';
}

/** Keeps free text (error messages) from breaking a Markdown table row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** Ratios of the medians measured in this run; only pairs where both sides have numbers. */
export function macroRatios(targets: readonly TargetReport[]): Record<string, number> {
  const by = new Map(targets.filter((t) => t.summary).map((t) => [t.target, t.summary!]));
  const ratios: Record<string, number> = {};
  const pair = (key: string, a: number | null | undefined, b: number | null | undefined): void => {
    if (
      a !== null &&
      a !== undefined &&
      b !== null &&
      b !== undefined &&
      Number.isFinite(a) &&
      Number.isFinite(b) &&
      b !== 0
    ) {
      ratios[key] = a / b;
    }
  };
  const direct = by.get('direct');
  const bouncer = by.get('pgbouncer');
  const warden = by.get('pgwarden');
  pair('tps pgwarden/direct', warden?.tpsMedian, direct?.tpsMedian);
  pair('tps pgwarden/pgbouncer', warden?.tpsMedian, bouncer?.tpsMedian);
  pair('tps pgbouncer/direct', bouncer?.tpsMedian, direct?.tpsMedian);
  pair('cpu/txn pgwarden/pgbouncer', warden?.proxyCpuUsPerTxn, bouncer?.proxyCpuUsPerTxn);
  pair('latency avg pgwarden/pgbouncer', warden?.latencyAvgMsMedian, bouncer?.latencyAvgMsMedian);
  pair('tps audit buffered/audit off', by.get('pgwarden-audit-buffered')?.tpsMedian, warden?.tpsMedian);
  pair('tps audit durable/audit off', by.get('pgwarden-audit-durable')?.tpsMedian, warden?.tpsMedian);
  pair('tps policy on/policy off', warden?.tpsMedian, by.get('pgwarden-policy-off')?.tpsMedian);
  return ratios;
}

/** The Markdown report of one macro scenario (also what the runner prints). */
export function macroMarkdown(report: MacroReport): string {
  const s = report.settings;
  const lines = [
    `## ${report.scenario}: ${report.description}`,
    '',
    `pgbench ${[...s.pgbenchArgs, '-c', String(s.clients), '-j', String(s.threads)].join(' ')}, scale ${s.scale}, ` +
      `${s.rounds} interleaved rounds × ${s.seconds} s per target (after ${s.warmupSeconds} s warm-up), ` +
      `proxy pool ${s.poolSize} server connections (session mode). Proxies reach PostgreSQL over TLS.`,
    '',
    row([
      'target',
      'client TLS',
      'TPS (median)',
      'latency avg ms',
      'p50 ms',
      'p99 ms',
      'proxy CPU µs/txn',
      'PostgreSQL CPU µs/txn',
    ]),
    row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:']),
  ];
  for (const t of report.targets) {
    const m = t.summary;
    if (!m) {
      lines.push(
        row([
          t.target,
          t.clientTls ? 'yes' : 'no',
          `failed: ${cell((t.error ?? 'no result').split('\n')[0])}`,
          '',
          '',
          '',
          '',
          '',
        ]),
      );
      continue;
    }
    lines.push(
      row([
        t.target,
        t.clientTls ? 'yes' : 'no',
        thousands(m.tpsMedian),
        fmt(m.latencyAvgMsMedian, 3),
        fmt(m.latencyP50MsMedian, 3),
        fmt(m.latencyP99MsMedian, 3),
        fmt(m.proxyCpuUsPerTxn, 1),
        fmt(m.pgCpuUsPerTxn, 1),
      ]),
    );
  }
  const ratioEntries = Object.entries(report.ratios);
  if (ratioEntries.length > 0) {
    lines.push('', row(['ratio', 'value']), row(['---', '---:']));
    for (const [k, v] of ratioEntries) lines.push(row([k, v.toFixed(3)]));
  }
  lines.push(
    '',
    'Per round (TPS): ' +
      report.targets
        .map((t) => `${t.target} ${t.runs.map((r) => thousands(r.tps)).join(' / ') || '—'}`)
        .join('; '),
  );
  const env = Object.entries(report.environment).map(([k, v]) => `${k}: ${v}`);
  lines.push('', `Environment: ${env.join('; ')}. Started ${report.startedAt}.`, '');
  return lines.join('\n');
}

/** Writes `<stamp>-<name>.json` and `.md` under bench/results/ and returns their paths. */
export function saveResults(
  name: string,
  startedAt: string,
  json: unknown,
  markdown: string,
): { json: string; md: string } {
  const dir = join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, '-');
  const base = join(dir, `${stamp}-${name}`);
  writeFileSync(
    `${base}.json`,
    JSON.stringify(json, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) +
      '\n',
  );
  writeFileSync(`${base}.md`, markdown);
  return { json: `${base}.json`, md: `${base}.md` };
}
