// `pgwarden audit verify --key PUBLIC.pem [--allow-open] [--allow-pruned] PATH...`: checks audit files with the
// public key alone. Exit codes: 0 verified, 1 tampered, truncated or unreadable, 2 usage error.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AuditVerifyUsageError, verifyAuditFiles, type VerifyResult } from '../audit/verify.js';

const USAGE = `usage: pgwarden audit verify --key PUBLIC.pem [--allow-open] [--allow-pruned] PATH...
  PATH            audit files, or directories (their *.jsonl files); any order, several streams at once
  --key FILE      the Ed25519 public key (SPKI PEM: openssl pkey -in audit.key -pubout -out audit.pub)
  --allow-open    accept streams still being written (or cut by a crash); records after their last
                  checkpoint are reported as not yet signed
  --allow-pruned  accept streams whose oldest files were removed by retention
`;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatVerifyResult(r: VerifyResult): string {
  if (!r.ok && r.firstBad) return `FAILED: ${r.firstBad.file}:${r.firstBad.line}: ${r.firstBad.reason}`;
  let line = `ok: ${plural(r.streams, 'stream')}, ${plural(r.files, 'file')}, ${plural(r.records, 'record')}, ${plural(r.checkpoints, 'checkpoint')}`;
  if (r.openStreams) line += `; ${plural(r.openStreams, 'stream')} still open`;
  if (r.unsignedTail)
    line += `; ${plural(r.unsignedTail, 'record')} after the last checkpoint not yet signed`;
  return line;
}

function usage(message: string): number {
  process.stderr.write(`pgwarden audit: ${message}\n${USAGE}`);
  return 2;
}

export async function runAudit(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'help' || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (sub !== 'verify')
    return usage(sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        key: { type: 'string', short: 'k' },
        'allow-open': { type: 'boolean', default: false },
        'allow-pruned': { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (!values.key) return usage('missing --key PUBLIC.pem');
  if (positionals.length === 0) return usage('missing PATH: the audit files or directories to verify');
  let pem: Buffer;
  try {
    pem = readFileSync(values.key);
  } catch (e) {
    return usage(`cannot read --key ${values.key}: ${(e as { code?: string }).code ?? 'error'}`);
  }
  let result: VerifyResult;
  try {
    result = verifyAuditFiles(positionals, pem, {
      allowOpen: values['allow-open'],
      allowPruned: values['allow-pruned'],
    });
  } catch (e) {
    if (e instanceof AuditVerifyUsageError) return usage(e.message);
    throw e;
  }
  process.stdout.write(formatVerifyResult(result) + '\n');
  return result.ok ? 0 : 1;
}
