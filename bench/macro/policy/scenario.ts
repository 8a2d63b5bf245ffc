// Select-only through pgwarden with its SQL policy off and on: what parsing (cached) and judging every statement
// against a restricted role costs. The per-check cost itself is measured by `npm run bench -- policy-check`.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'policy',
  description: 'pgbench -S, simple query protocol, 16 clients, pgwarden SQL policy off / on',
  clients: 16,
  threads: 2,
  pgbenchArgs: ['-S', '-M', 'simple'],
  targets: ['pgwarden-policy-off', 'pgwarden'],
};
