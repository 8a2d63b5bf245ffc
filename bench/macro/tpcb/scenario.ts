// pgbench's default TPC-B-like transaction: five statements with writes, the shape of an OLTP request.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'tpcb',
  description: 'pgbench TPC-B-like (default script), 8 clients',
  clients: 8,
  threads: 2,
  pgbenchArgs: [],
};
