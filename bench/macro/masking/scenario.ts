// 1,000 rows of synthetic patients per statement: through pgwarden with four of their columns masked (the WASM
// kernel on every row), against PgBouncer and direct PostgreSQL returning the same rows unmasked.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'masking',
  description:
    'custom script: SELECT 1,000 patient rows per statement (pgwarden masks 4 of 8 columns), 8 clients',
  clients: 8,
  threads: 2,
  pgbenchArgs: ['-M', 'prepared'],
  scripts: ['select-patients.sql'],
  setupSql: `
    create table bench_patients (id int primary key, name text, ssn text, dob date, zip text, email text,
      phone text, diagnosis text);
    insert into bench_patients
      select i, 'Patient ' || i, lpad((i % 899 + 100)::text, 3, '0') || '-' || lpad((i % 89 + 10)::text, 2, '0')
        || '-' || lpad((i % 8999 + 1000)::text, 4, '0'),
        date '1950-01-01' + (i * 7) % 20000, lpad((i % 99999)::text, 5, '0'), 'p' || i || '@example.org',
        '617-555-' || lpad((i % 10000)::text, 4, '0'), 'diagnosis ' || (i % 50)
      from generate_series(1, 20000) i;
    analyze bench_patients;`,
  pgwardenRoles: {
    bench: {
      statements: ['select', 'set', 'transaction'],
      tables: { allow: ['public.bench_patients', 'public.pgbench_*'] },
      masks: {
        'public.bench_patients.ssn': 'partial_last4',
        'public.bench_patients.name': 'redact',
        'public.bench_patients.dob': 'year_only',
        'public.bench_patients.email': 'email',
      },
    },
  },
};
