// Select-only through pgwarden with its audit trail off, buffered and durable: what recording every statement
// (and, in durable mode, waiting for its fsync before forwarding) costs.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'audit',
  description: 'pgbench -S, simple query protocol, 16 clients, pgwarden audit off / buffered / durable',
  clients: 16,
  threads: 2,
  pgbenchArgs: ['-S', '-M', 'simple'],
  targets: ['pgwarden', 'pgwarden-audit-buffered', 'pgwarden-audit-durable'],
};
