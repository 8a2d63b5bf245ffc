// One macro scenario end to end: its own PostgreSQL (TLS, SCRAM) with pgbench tables, PgBouncer and pgwarden in
// front of it, then pgbench rounds interleaved across direct / pgbouncer / pgwarden, measuring TPS, latency and
// the CPU each proxy burns per transaction.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestCerts, type TestCerts } from '../../src/embedded/certs.js';
import { repoRoot } from '../../src/embedded/exec.js';
import { findPgbouncer, startPgbouncer } from '../../test/harness/pgbouncer.js';
import { startPgwarden } from '../../test/harness/pgwarden.js';
import { startPostgres, type PgServer } from '../../src/embedded/postgres.js';
import { CleanupStack } from './cleanup.js';
import { processTreeCpuSeconds } from './cpu.js';
import { pgbenchInit, pgbenchVersion, runPgbench, type PgbenchTarget } from './pgbench.js';
import { macroRatios } from './report.js';
import { scramVerifier } from './scram.js';
import { median } from './stats.js';
import {
  TARGETS,
  type MacroReport,
  type MacroScenario,
  type RunRecord,
  type TargetName,
  type TargetReport,
} from './types.js';

export interface MacroOptions {
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  scale: number;
  /** null: the scenario's own targets, else direct, pgbouncer and pgwarden. */
  targets: readonly TargetName[] | null;
  /** Per-transaction pgbench log for p50/p99 (cheap: a few MB per run). */
  latencyLog: boolean;
  /** TLS between pgbench and PgBouncer in every scenario, not only where the scenario asks for it. */
  bouncerTls: boolean;
}

interface LiveTarget {
  report: TargetReport;
  endpoint: PgbenchTarget;
  /** Process whose CPU is charged to this target; null for direct. */
  proxyPid: number | null;
}

const DEFAULT_POOL_SIZE = 40;

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function firstLines(text: string, n: number): string {
  return text.split('\n').slice(0, n).join('\n');
}

function postmasterPid(pg: PgServer): number {
  return Number(readFileSync(join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

function pgbouncerVersion(binary: string): string {
  try {
    return execFileSync(binary, ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
}

/** The pgwarden config the bench runs: TLS on both sides, SCRAM for the bench user, one pooled database. */
export function pgwardenBenchConfig(
  pg: PgServer,
  certs: TestCerts,
  benchVerifier: string,
  poolSize: number,
  policy = true,
): object {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    tls: { cert: certs.serverCert, key: certs.serverKey },
    databases: {
      ehr: {
        upstream: {
          host: '127.0.0.1',
          port: pg.port,
          database: 'ehr',
          user: 'app',
          // Expanded by pgwarden from its environment, so the file never holds the upstream secret.
          password: '${BENCH_PG_PASSWORD}',
          tls: { mode: 'require' },
        },
        pool: { size: poolSize },
      },
    },
    users: { bench: { password: benchVerifier, roles: ['bench'] } },
    // pgbench's own statements under a restricted role: what every statement costs when policy is on.
    roles: {
      bench: {
        statements: ['select', 'insert', 'update', 'transaction', 'set'],
        tables: { allow: ['public.pgbench_*'] },
      },
    },
    access: { enforce: policy },
  };
}

/** An audit section for a pgwarden target: a fresh Ed25519 key and a file sink in the bench's temp dir. */
function benchAuditConfig(base: string, target: string, mode: 'buffered' | 'durable'): object {
  const { privateKey } = generateKeyPairSync('ed25519');
  const keyFile = join(base, `${target}.key`);
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { mode, sinks: [{ type: 'file', path: join(base, `${target}-audit`) }], signing_key_file: keyFile };
}

/** Runs one scenario; everything it starts is registered on `outer` too, so SIGINT stops it. */
export async function runMacroScenario(
  scenario: MacroScenario,
  options: MacroOptions,
  outer: CleanupStack,
  log: (line: string) => void,
): Promise<MacroReport> {
  const startedAt = new Date().toISOString();
  const local = new CleanupStack();
  const unregister = outer.push(() => local.run());
  try {
    const base = mkdtempSync(join(tmpdir(), 'pgwarden-bench-'));
    local.push(() => rmSync(base, { recursive: true, force: true }));
    const certs = makeTestCerts(join(base, 'certs'));
    const poolSize = scenario.poolSize ?? DEFAULT_POOL_SIZE;

    log(`[${scenario.name}] starting PostgreSQL`);
    const pg = await startPostgres({
      tls: true,
      certs,
      settings: { max_connections: '200', shared_buffers: '128MB' },
    });
    local.push(() => pg.stop());
    const appPassword = randomBytes(12).toString('base64url');
    const benchPassword = randomBytes(12).toString('base64url');
    pg.sql(
      [`create role app login password ${literal(appPassword)};`, 'create database ehr owner app;'].join(
        '\n',
      ),
    );
    // PgBouncer authenticates clients against app's own verifier and reuses the client's SCRAM keys to log in
    // upstream (its standard pass-through setup). A forced `user=/password=` upstream login cannot be used:
    // PgBouncer up to 1.25 overwrites it with the client's keys after a SCRAM login (pgbouncer issues 944, 1461).
    const appVerifierFromPg = pg.sql("select rolpassword from pg_authid where rolname = 'app'").trim();
    const direct: PgbenchTarget = {
      host: pg.host,
      port: pg.port,
      user: 'app',
      password: appPassword,
      database: 'ehr',
      sslmode: 'require',
    };
    log(`[${scenario.name}] pgbench -i -s ${options.scale}`);
    await pgbenchInit(direct, options.scale);
    if (scenario.setupSql) {
      // As app, so the tables belong to the account every target logs in with.
      pg.sql(`set role app;\n${scenario.setupSql}`, 'ehr');
    }

    const live: LiveTarget[] = [];
    const reports: TargetReport[] = [];
    const bouncerBinary = findPgbouncer();
    const bouncerTls = options.bouncerTls || scenario.bouncerClientTls === true;
    for (const target of options.targets ?? scenario.targets ?? TARGETS) {
      const report: TargetReport = {
        target,
        clientTls: target !== 'pgbouncer' || bouncerTls,
        runs: [],
        summary: null,
      };
      reports.push(report);
      if (target === 'direct') {
        live.push({ report, endpoint: direct, proxyPid: null });
      } else if (target === 'pgbouncer') {
        if (!bouncerBinary) {
          report.error =
            'pgbouncer is not installed; install it with `sh bench/setup.sh` (apt-get install -y pgbouncer)';
          log(`[${scenario.name}] ${report.error}; running without that column`);
          continue;
        }
        try {
          const bouncer = await startPgbouncer({
            databases: { ehr: { host: pg.host, port: pg.port, dbname: 'ehr' } },
            users: { app: appVerifierFromPg },
            authType: 'scram-sha-256',
            poolMode: 'session',
            maxClientConn: scenario.clients + 50,
            defaultPoolSize: poolSize,
            ...(bouncerTls
              ? {
                  clientTls: {
                    cert: certs.serverCert,
                    key: certs.serverKey,
                    ca: certs.caCert,
                    sslmode: 'require' as const,
                  },
                }
              : {}),
            serverTlsSslmode: 'require',
          });
          local.push(() => bouncer.stop());
          const endpoint: PgbenchTarget = {
            ...direct,
            host: bouncer.host,
            port: bouncer.port,
            sslmode: bouncerTls ? 'require' : 'disable',
          };
          live.push({ report, endpoint, proxyPid: bouncer.pid });
        } catch (err) {
          report.error = (err as Error).message;
          log(`[${scenario.name}] pgbouncer did not start: ${report.error}`);
        }
      } else {
        try {
          const config = pgwardenBenchConfig(
            pg,
            certs,
            scramVerifier(benchPassword),
            poolSize,
            target !== 'pgwarden-policy-off',
          );
          if (scenario.pgwardenRoles) Object.assign(config, { roles: scenario.pgwardenRoles });
          const auditMode =
            target === 'pgwarden-audit-buffered'
              ? 'buffered'
              : target === 'pgwarden-audit-durable'
                ? 'durable'
                : null;
          if (auditMode) Object.assign(config, { audit: benchAuditConfig(base, target, auditMode) });
          const warden = await startPgwarden(config, {
            env: { BENCH_PG_PASSWORD: appPassword },
            cwd: repoRoot(),
          });
          local.push(() => warden.stop());
          const endpoint = {
            host: '127.0.0.1',
            port: warden.port,
            user: 'bench',
            password: benchPassword,
            database: 'ehr',
            sslmode: 'require',
          } as const;
          live.push({ report, endpoint, proxyPid: warden.pid });
        } catch (err) {
          report.error = (err as Error).message;
          log(`[${scenario.name}] the pgwarden column is unavailable: ${firstLines(report.error, 12)}`);
        }
      }
    }

    const scripts = (scenario.scripts ?? []).flatMap((f) => [
      '-f',
      join(repoRoot(), 'bench', 'macro', scenario.name, f),
    ]);
    const argsFor = (seconds: number): string[] => [
      '-n',
      '-T',
      String(seconds),
      '-c',
      String(scenario.clients),
      '-j',
      String(scenario.threads),
      ...scenario.pgbenchArgs,
      ...scripts,
    ];
    const timeoutMs = (seconds: number): number => seconds * 1000 + 120_000;
    const fail = (t: LiveTarget, err: unknown): void => {
      t.report.error = (err as Error).message;
      log(`[${scenario.name}] ${t.report.target} failed: ${firstLines(t.report.error, 10)}`);
    };

    // Warm caches and pools once per target, so round 1 is not charged with first connections.
    if (options.warmupSeconds > 0) {
      for (const t of live) {
        try {
          await runPgbench({
            target: t.endpoint,
            args: argsFor(options.warmupSeconds),
            latencyLog: false,
            timeoutMs: timeoutMs(options.warmupSeconds),
          });
        } catch (err) {
          fail(t, err);
        }
      }
    }
    const pgPid = postmasterPid(pg);
    for (let round = 1; round <= options.rounds; round++) {
      // Interleaved A/B/C, so drift on a shared machine spreads over every target alike.
      for (const t of live) {
        if (t.report.error) continue;
        const proxyBefore = t.proxyPid === null ? null : processTreeCpuSeconds(t.proxyPid);
        const pgBefore = processTreeCpuSeconds(pgPid);
        try {
          const result = await runPgbench({
            target: t.endpoint,
            args: argsFor(options.seconds),
            latencyLog: options.latencyLog,
            timeoutMs: timeoutMs(options.seconds),
          });
          const record: RunRecord = {
            round,
            ...result,
            proxyCpuSeconds: proxyBefore === null ? null : processTreeCpuSeconds(t.proxyPid!) - proxyBefore,
            pgCpuSeconds: processTreeCpuSeconds(pgPid) - pgBefore,
          };
          t.report.runs.push(record);
          log(
            `[${scenario.name}] round ${round} ${t.report.target}: ${result.tps.toFixed(0)} tps, ${result.latencyAvgMs.toFixed(3)} ms avg` +
              (record.proxyCpuSeconds === null
                ? ''
                : `, proxy ${((record.proxyCpuSeconds * 1e6) / result.transactions).toFixed(1)} µs/txn`),
          );
        } catch (err) {
          fail(t, err);
        }
      }
    }

    for (const t of live) {
      const runs = t.report.runs;
      if (t.report.error || runs.length === 0) continue;
      const txns = runs.reduce((a, r) => a + r.transactions, 0);
      const proxyCpu = runs.reduce((a, r) => a + (r.proxyCpuSeconds ?? 0), 0);
      t.report.summary = {
        tpsMedian: median(runs.map((r) => r.tps)),
        latencyAvgMsMedian: median(runs.map((r) => r.latencyAvgMs)),
        latencyP50MsMedian: median(runs.map((r) => r.latencyP50Ms)),
        latencyP99MsMedian: median(runs.map((r) => r.latencyP99Ms)),
        proxyCpuUsPerTxn: t.proxyPid === null ? null : (proxyCpu * 1e6) / txns,
        pgCpuUsPerTxn: (runs.reduce((a, r) => a + r.pgCpuSeconds, 0) * 1e6) / txns,
      };
    }

    return {
      kind: 'macro',
      scenario: scenario.name,
      description: scenario.description,
      startedAt,
      finishedAt: new Date().toISOString(),
      settings: {
        rounds: options.rounds,
        seconds: options.seconds,
        warmupSeconds: options.warmupSeconds,
        scale: options.scale,
        clients: scenario.clients,
        threads: scenario.threads,
        pgbenchArgs: [...scenario.pgbenchArgs, ...(scenario.scripts ?? []).flatMap((f) => ['-f', f])],
        poolSize,
      },
      environment: {
        node: process.version,
        cpus: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
        kernel: release(),
        postgres: pg.sql('show server_version').trim(),
        pgbench: await pgbenchVersion(),
        pgbouncer: bouncerBinary ? pgbouncerVersion(bouncerBinary) : 'not installed',
      },
      targets: reports,
      ratios: macroRatios(reports),
    };
  } finally {
    await local.run();
    unregister();
  }
}
