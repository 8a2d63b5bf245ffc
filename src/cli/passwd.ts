// `pgwarden passwd USER`: reads a password (twice, without echo, on a terminal; one line from a pipe) and prints
// the SCRAM-SHA-256 verifier to paste into users.USER.password. The password itself is never printed or stored.

import { parseArgs } from 'node:util';
import { generateScramVerifier } from '../auth/scram-verifier.js';

export async function runPasswd(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { iterations: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const user = positionals[0];
  if (!user || positionals.length > 1) {
    process.stderr.write('usage: pgwarden passwd USER [--iterations N]\n');
    return 2;
  }
  const iterations = values.iterations === undefined ? 4096 : Number(values.iterations);
  if (!Number.isInteger(iterations) || iterations < 4096 || iterations > 10_000_000) {
    process.stderr.write('pgwarden passwd: --iterations must be an integer from 4096 to 10000000\n');
    return 2;
  }
  let password: string;
  if (process.stdin.isTTY) {
    password = await promptHidden(`Password for ${user}: `);
    const again = await promptHidden('Again: ');
    if (again !== password) {
      process.stderr.write('pgwarden passwd: the passwords differ\n');
      return 1;
    }
  } else {
    password = (await readAll(process.stdin)).replace(/\r?\n$/, '');
  }
  if (password.length === 0) {
    process.stderr.write('pgwarden passwd: empty password\n');
    return 1;
  }
  process.stdout.write(generateScramVerifier(password, { iterations }) + '\n');
  return 0;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.removeListener('data', onData);
          process.stderr.write('\n');
          resolve(value);
          return;
        }
        if (ch === '\u0003') process.exit(130);
        value = ch === '\u007f' ? value.slice(0, -1) : value + ch;
      }
    };
    stdin.on('data', onData);
  });
}
