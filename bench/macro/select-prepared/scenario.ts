// Select-only with named prepared statements (Parse once, Bind/Execute after) in session pooling.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'select-prepared',
  description: 'pgbench -S, extended protocol with prepared statements, 16 clients, session pooling',
  clients: 16,
  threads: 2,
  pgbenchArgs: ['-S', '-M', 'prepared'],
};
