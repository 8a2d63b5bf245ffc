// A new TLS connection with SCRAM authentication for every transaction: the cost of a connection storm.
import type { MacroScenario } from '../../lib/types.js';

export const scenario: MacroScenario = {
  name: 'connect-tls',
  description: 'pgbench -S -C: TLS handshake and SCRAM login per transaction, 8 clients',
  clients: 8,
  threads: 2,
  pgbenchArgs: ['-S', '-C'],
  bouncerClientTls: true,
};
