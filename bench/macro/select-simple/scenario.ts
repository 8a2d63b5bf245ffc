// Select-only by primary key over the simple query protocol: the per-statement cost of a proxy.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'select-simple',
  description: 'pgbench -S, simple query protocol, 16 clients',
  clients: 16,
  threads: 2,
  pgbenchArgs: ['-S', '-M', 'simple'],
};
