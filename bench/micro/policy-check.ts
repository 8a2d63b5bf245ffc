// Micro-benchmark: what one SQL policy check costs a worker — parse with libpg-query (uncached: every text new;
// cached: the LRU hit a steady workload sees), then judging the facts against a restricted role.
import { pathToFileURL } from 'node:url';
import { loadSqlParser } from '../../src/policy/sql-analyze.js';
import { SqlParseCache } from '../../src/policy/parse-cache.js';
import { compileRole, RoleSet } from '../../src/policy/rules.js';

export interface PolicyCheckBenchResult {
  rows: Array<{ name: string; medianMicros: number; p99Micros: number; samples: number }>;
}

/** Statements of the shapes EHR backends send: point reads, joins, CTEs, writes. `$N` keeps texts cacheable. */
const STATEMENTS: readonly string[] = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
  'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
  'SELECT p.id, p.name, v.note FROM patients p JOIN visits v ON v.patient_id = p.id WHERE p.id = $1 ORDER BY v.id DESC LIMIT 20',
  `WITH recent AS (SELECT patient_id, max(id) AS last FROM visits WHERE note ILIKE $1 GROUP BY patient_id)
   SELECT p.id, p.name, r.last FROM patients p JOIN recent r ON r.patient_id = p.id WHERE p.dob > $2`,
  'INSERT INTO visits (id, patient_id, note) VALUES ($1, $2, $3) RETURNING id',
];

const ROLE = compileRole('clinician', {
  admin: false,
  require_where: true,
  allow_masked_predicates: false,
  safe_harbor: false,
  statements: ['select', 'insert', 'update', 'transaction'],
  tables: { allow: ['public.*'], deny: ['public.audit_*'] },
  columns: { deny: ['public.patients.ssn'] },
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function measure(
  name: string,
  samples: number,
  once: (i: number) => void,
): PolicyCheckBenchResult['rows'][number] {
  const times: number[] = [];
  for (let i = 0; i < Math.min(200, samples); i++) once(-1 - i); // warm-up: JIT and WASM tiers
  for (let i = 0; i < samples; i++) {
    const t0 = process.hrtime.bigint();
    once(i);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return { name, medianMicros: percentile(times, 0.5), p99Micros: percentile(times, 0.99), samples };
}

export async function runPolicyCheckBench(samples = 20_000): Promise<PolicyCheckBenchResult> {
  await loadSqlParser();
  const roles = new RoleSet([ROLE], ['public']);
  const check = (cache: SqlParseCache, text: string): void => {
    const parsed = cache.analyze(text);
    if (!parsed.ok) throw new Error(`bench statement does not parse: ${parsed.error.message}`);
    for (const facts of parsed.statements) roles.check(facts, true);
  };
  const rows: PolicyCheckBenchResult['rows'] = [];
  // Uncached: a comment with a counter makes every text new, as a workload of literal-inlined SQL would.
  const cold = new SqlParseCache(1024);
  rows.push(
    measure('uncached (parse + check)', samples, (i) =>
      check(cold, `${STATEMENTS[Math.abs(i) % STATEMENTS.length]} /* ${i} */`),
    ),
  );
  const warm = new SqlParseCache(1024);
  rows.push(
    measure('cached (LRU hit + check)', samples * 5, (i) =>
      check(warm, STATEMENTS[Math.abs(i) % STATEMENTS.length]),
    ),
  );
  const facts = STATEMENTS.map((text) => {
    const parsed = warm.analyze(text);
    if (!parsed.ok) throw new Error(parsed.error.message);
    return parsed.statements;
  });
  rows.push(
    measure('rules only (facts in hand)', samples * 5, (i) => {
      for (const f of facts[Math.abs(i) % facts.length]) roles.check(f, true);
    }),
  );
  return { rows };
}

export function policyCheckMarkdown(r: PolicyCheckBenchResult): string {
  const lines = [
    '| policy check | median µs | p99 µs | samples |',
    '| --- | ---: | ---: | ---: |',
    ...r.rows.map(
      (row) =>
        `| ${row.name} | ${row.medianMicros.toFixed(2)} | ${row.p99Micros.toFixed(2)} | ${row.samples} |`,
    ),
  ];
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await runPolicyCheckBench();
  process.stdout.write(policyCheckMarkdown(result) + '\n');
}
