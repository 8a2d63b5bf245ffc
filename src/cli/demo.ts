// `pgwarden demo`: a working pgwarden on this machine in one command. It starts a throwaway PostgreSQL from the
// installed server binaries (initdb in a temp dir, TLS and SCRAM on, a synthetic `patients` table), then a
// pgwarden node in front of it with a generated certificate and a demo user, and prints how to connect.
// Ctrl-C drains pgwarden, stops PostgreSQL and removes the temp dir.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { generateScramVerifier } from '../auth/scram-verifier.js';
import { loadConfigFile } from '../config/load.js';
import { Supervisor } from '../cluster/supervisor.js';
import { startPostgres } from '../embedded/postgres.js';

const SAMPLE = `
create table patients (id serial primary key, name text, ssn text, dob date, zip text, email text, phone text, diagnosis text);
insert into patients (name, ssn, dob, zip, email, phone, diagnosis) values
  ('Ada Synthetic', '123-45-6789', '1961-04-12', '02139', 'ada@example.org', '617-555-0101', 'hypertension'),
  ('Ben Example', '987-65-4321', '1984-11-30', '94110', 'ben@example.org', '415-555-0199', 'asthma');
`;

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { port: { type: 'string', default: '6432' } },
    strict: true,
  });
  const port = Number(values.port);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgwarden-demo-'));
  process.stdout.write('pgwarden demo: starting a local PostgreSQL (initdb in a temp dir)...\n');
  const pg = await startPostgres({ tls: true });
  const upstreamPassword = crypto.randomBytes(18).toString('base64url');
  const demoPassword = crypto.randomBytes(9).toString('base64url');
  pg.sql(`create role app login password '${upstreamPassword}'; create database ehr owner app;`);
  pg.sql(`set role app; ${SAMPLE}`, 'ehr');
  const certs = pg.certs!;
  const configFile = path.join(dir, 'pgwarden.yaml');
  fs.writeFileSync(
    configFile,
    stringify({
      listen: { host: '127.0.0.1', port },
      admin: { host: '127.0.0.1', port: 0 },
      tls: { cert: certs.serverCert, key: certs.serverKey },
      databases: {
        ehr: {
          upstream: {
            host: '127.0.0.1',
            port: pg.port,
            database: 'ehr',
            user: 'app',
            password: '${DEMO_UPSTREAM_PASSWORD}',
            tls: { mode: 'verify-full', ca_file: certs.caCert, server_name: 'localhost' },
          },
        },
      },
      users: { demo: { password: generateScramVerifier(demoPassword), roles: ['clinician'] } },
      roles: {
        // Enough to explore, little enough to see the guardrails: try TRUNCATE patients, or DELETE without WHERE.
        clinician: {
          statements: ['select', 'insert', 'update', 'delete', 'transaction', 'set', 'copy_out'],
          tables: { allow: ['public.*'] },
          max_rows: 10000,
        },
      },
    }),
    { mode: 0o600 },
  );
  process.env.DEMO_UPSTREAM_PASSWORD = upstreamPassword;
  const supervisor = new Supervisor(configFile, loadConfigFile(configFile));
  let node;
  try {
    node = await supervisor.start();
  } catch (e) {
    await pg.stop();
    throw e;
  }
  process.stdout.write(
    [
      '',
      `pgwarden is listening on 127.0.0.1:${node.port} (TLS required, SCRAM-SHA-256), metrics on http://127.0.0.1:${node.adminPort}/metrics`,
      `PostgreSQL (upstream) runs on 127.0.0.1:${pg.port}; pgwarden logs in there as 'app' — clients never see that password.`,
      '',
      'Connect with:',
      `  PGPASSWORD='${demoPassword}' psql "host=127.0.0.1 port=${node.port} dbname=ehr user=demo sslmode=verify-full sslrootcert=${certs.caCert}"`,
      '  then: select * from patients;   (and see the policy at work: truncate patients;)',
      '',
      `Config: ${configFile}   (Ctrl-C stops everything)`,
      '',
    ].join('\n'),
  );
  await supervisor.runUntilStopped();
  await pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  return 0;
}
