// The `framing` scenario: runs the micro benchmark of bench/micro/framing.ts (WASM vs TypeScript twin vs a plain
// copy, side by side) and renders its rows and ratios like the macro reports.

export interface FramingReport {
  kind: 'micro';
  scenario: 'framing';
  startedAt: string;
  finishedAt: string;
  seconds: number | undefined;
  rows: { name: string; mbPerSec: number }[];
  ratios: Record<string, number>;
}

export async function runFramingScenario(seconds: number | undefined): Promise<FramingReport> {
  const startedAt = new Date().toISOString();
  // Loaded on demand: the macro scenarios must not depend on the micro bench being built.
  const { runFramingBench } = await import('../micro/framing.js');
  const result = await runFramingBench(seconds === undefined ? {} : { seconds });
  return {
    kind: 'micro',
    scenario: 'framing',
    startedAt,
    finishedAt: new Date().toISOString(),
    seconds,
    rows: result.rows.map((r) => ({ name: r.name, mbPerSec: r.mbPerSec })),
    ratios: { ...result.ratios },
  };
}

export function framingMarkdown(report: FramingReport): string {
  const lines = [
    '## framing: message framing throughput (micro)',
    '',
    '| routine | MB/s |',
    '| --- | ---: |',
  ];
  for (const r of report.rows)
    lines.push(`| ${r.name} | ${Math.round(r.mbPerSec).toLocaleString('en-US')} |`);
  const ratios = Object.entries(report.ratios);
  if (ratios.length > 0) {
    lines.push('', '| ratio | value |', '| --- | ---: |');
    for (const [k, v] of ratios) lines.push(`| ${k} | ${v.toFixed(3)} |`);
  }
  lines.push('', `Node ${process.version}. Started ${report.startedAt}.`, '');
  return lines.join('\n');
}
