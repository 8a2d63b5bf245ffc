// The benchmark runner: `npm run bench -- <scenario|framing|all> [--rounds N] [--seconds S] [--targets a,b]`.
// Macro scenarios put pgwarden side by side with direct PostgreSQL and PgBouncer in one run and report ratios.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CleanupStack } from './lib/cleanup.js';
import { framingMarkdown, runFramingScenario } from './lib/framing.js';
import { runMacroScenario, type MacroOptions } from './lib/macro.js';
import { killRunningPgbench } from './lib/pgbench.js';
import { policyCheckMarkdown, runPolicyCheckBench } from './micro/policy-check.js';
import { maskKernelMarkdown, runMaskKernelBench } from './micro/mask-kernel.js';
import { macroMarkdown, saveResults } from './lib/report.js';
import { ALL_TARGETS, type MacroScenario, type TargetName } from './lib/types.js';

const USAGE = `usage: npm run bench -- <scenario|framing|all> [options]

scenarios: %SCENARIOS%, framing, policy-check, mask-kernel (micro), all
options:
  --rounds N          interleaved rounds per target (default 3)
  --seconds S         seconds per pgbench run, or per framing case (default 10)
  --warmup S          warm-up seconds per target before round 1 (default 2)
  --scale N           pgbench -i scale factor (default 10)
  --targets LIST      comma-separated targets: direct, pgbouncer, pgwarden, pgwarden-audit-buffered,
                      pgwarden-audit-durable (default: the scenario's own, else the first three)
  --no-latency-log    skip pgbench -l (no p50/p99 columns)
  --bouncer-plaintext no TLS from pgbench to PgBouncer (DESIGN.md's reference figure is without it); by default
                      PgBouncer gets client TLS like pgwarden and direct, so the comparison is like for like
`;

const here = dirname(fileURLToPath(import.meta.url));

function macroScenarioNames(): string[] {
  const dir = join(here, 'macro');
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'scenario.js')))
    .map((d) => d.name)
    .sort();
}

async function loadScenario(name: string): Promise<MacroScenario> {
  const mod = (await import(`./macro/${name}/scenario.js`)) as { scenario?: MacroScenario };
  if (!mod.scenario || mod.scenario.name !== name)
    throw new Error(`bench/macro/${name}/scenario.ts must export a scenario named '${name}'`);
  return mod.scenario;
}

function positiveNumber(
  flag: string,
  value: string | undefined,
  fallback: number,
  allowZero = false,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0))
    throw new Error(`--${flag} must be a ${allowZero ? 'non-negative' : 'positive'} number, got '${value}'`);
  return n;
}

function parseTargets(value: string | undefined): TargetName[] | null {
  if (value === undefined) return null;
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!(ALL_TARGETS as readonly string[]).includes(n))
      throw new Error(`unknown target '${n}' (known: ${ALL_TARGETS.join(', ')})`);
  if (names.length === 0) throw new Error('--targets needs at least one target');
  return names as TargetName[];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      scale: { type: 'string' },
      targets: { type: 'string' },
      'no-latency-log': { type: 'boolean' },
      'bouncer-plaintext': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const available = macroScenarioNames();
  const usage = USAGE.replace('%SCENARIOS%', available.join(', ') || '(none built)');
  if (values.help || positionals.length !== 1) {
    process.stdout.write(usage);
    return values.help ? 0 : 2;
  }
  const requested = positionals[0];
  if (
    requested !== 'all' &&
    requested !== 'framing' &&
    requested !== 'policy-check' &&
    requested !== 'mask-kernel' &&
    !available.includes(requested)
  ) {
    process.stderr.write(`unknown scenario '${requested}'\n\n${usage}`);
    return 2;
  }
  const options: MacroOptions = {
    rounds: Math.round(positiveNumber('rounds', values.rounds, 3)),
    seconds: positiveNumber('seconds', values.seconds, 10),
    warmupSeconds: positiveNumber('warmup', values.warmup, 2, true),
    scale: Math.round(positiveNumber('scale', values.scale, 10)),
    targets: parseTargets(values.targets),
    latencyLog: !values['no-latency-log'],
    bouncerTls: values['bouncer-plaintext'] !== true,
  };
  if (!Number.isInteger(options.seconds)) throw new Error('--seconds must be a whole number (pgbench -T)');

  const cleanup = new CleanupStack();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(130); // A second Ctrl-C: the harness's exit hooks still stop the servers.
    interrupted = true;
    console.error(`\n${signal}: stopping everything the bench started`);
    killRunningPgbench();
    void cleanup.run().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const log = (line: string): void => console.error(line);
  const names = requested === 'all' ? ['framing', 'policy-check', 'mask-kernel', ...available] : [requested];
  let failures = 0;
  for (const name of names) {
    try {
      if (name === 'mask-kernel') {
        const report = await runMaskKernelBench();
        const md = maskKernelMarkdown(report);
        process.stdout.write(`\n${md}\n`);
        const saved = saveResults('mask-kernel', new Date().toISOString(), report, md);
        log(`saved ${saved.json} and ${saved.md}`);
        continue;
      }
      if (name === 'policy-check') {
        const report = await runPolicyCheckBench();
        const md = policyCheckMarkdown(report);
        process.stdout.write(`\n${md}\n`);
        const saved = saveResults('policy-check', new Date().toISOString(), report, md);
        log(`saved ${saved.json} and ${saved.md}`);
        continue;
      }
      if (name === 'framing') {
        const report = await runFramingScenario(values.seconds === undefined ? undefined : options.seconds);
        const md = framingMarkdown(report);
        process.stdout.write(`\n${md}\n`);
        const saved = saveResults('framing', report.startedAt, report, md);
        log(`saved ${saved.json} and ${saved.md}`);
        continue;
      }
      const report = await runMacroScenario(await loadScenario(name), options, cleanup, log);
      const md = macroMarkdown(report);
      process.stdout.write(`\n${md}\n`);
      const saved = saveResults(name, report.startedAt, report, md);
      log(`saved ${saved.json} and ${saved.md}`);
      const missing = report.targets.filter((t) => !t.summary);
      if (missing.length > 0) {
        failures++;
        log(`[${name}] no numbers for: ${missing.map((t) => t.target).join(', ')}`);
      }
    } catch (err) {
      failures++;
      log(`[${name}] failed: ${(err as Error).message}`);
    }
    if (interrupted) break;
  }
  await cleanup.run();
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${(err as Error).message}`);
    process.exit(2);
  },
);
