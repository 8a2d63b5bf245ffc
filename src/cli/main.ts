// The pgwarden command line: start, check, passwd, demo. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.

import { parseArgs } from 'node:util';
import { ConfigError, formatConfigError, loadConfigFile } from '../config/load.js';
import { explainConfig } from '../config/explain.js';
import { describeError } from '../core/log.js';
import { buildRuntime } from '../frontend/build-runtime.js';
import { Supervisor } from '../cluster/supervisor.js';
import { runPasswd } from './passwd.js';

const USAGE = `usage:
  pgwarden start -c pgwarden.yaml      run a node (SIGHUP reloads, SIGTERM drains)
  pgwarden check -c pgwarden.yaml      validate the config and explain it
  pgwarden passwd USER [--iterations N] print a SCRAM-SHA-256 verifier for USER (password read from stdin)
  pgwarden audit verify --key PUBLIC.pem [--allow-open] [--allow-pruned] PATH...
                                       check audit files (hash chain and signed checkpoints) with the public key
  pgwarden demo                        start a local PostgreSQL and pgwarden in front of it, print how to connect
`;

function configArg(args: string[]): string {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) throw new UsageError('missing -c <config file>');
  return values.config;
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const file = configArg(rest);
      const config = loadConfigFile(file);
      const supervisor = new Supervisor(file, config);
      await supervisor.start();
      await supervisor.runUntilStopped();
      return 0;
    }
    case 'check': {
      const file = configArg(rest);
      const config = loadConfigFile(file);
      buildRuntime(config, config.workers);
      process.stdout.write(`${file}: configuration is valid\n\n${explainConfig(config)}\n`);
      return 0;
    }
    case 'passwd':
      return runPasswd(rest);
    case 'audit':
      return (await import('./audit.js')).runAudit(rest);
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(rest);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ConfigError) {
      process.stderr.write(formatConfigError(e) + '\n');
      process.exitCode = 2;
    } else if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`pgwarden: ${(e as Error).message}\n${USAGE}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`pgwarden: ${describeError(e)}\n`);
      process.exitCode = 1;
    }
  },
);
