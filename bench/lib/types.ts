// Shapes shared by the benchmark runner, its scenarios and its reports.

/** One folder of bench/macro/: what pgbench runs against every target. */
export interface MacroScenario {
  name: string;
  /** One line for the report. */
  description: string;
  /** pgbench -c: concurrent client sessions. */
  clients: number;
  /** pgbench -j: worker threads (the machine has 2 cores). */
  threads: number;
  /** Further pgbench options (-S, -M, -C, ...), without connection, duration, client or logging options. */
  pgbenchArgs: string[];
  /** Custom pgbench scripts, file names inside the scenario's folder (passed with -f). */
  scripts?: string[];
  /**
   * Whether PgBouncer's client side uses TLS even when the runner is given --bouncer-plaintext (scenarios about
   * connection setup). pgwarden and direct PostgreSQL always use TLS; PgBouncer does too by default.
   */
  bouncerClientTls?: boolean;
  /** Targets compared by default (TARGETS when unset). */
  targets?: readonly TargetName[];
  /** Server connections each proxy may hold for the bench user (pgwarden pool.size, PgBouncer default_pool_size). */
  poolSize?: number;
  /** SQL run in the bench database (as its owner, app) after pgbench -i: tables the scripts read. */
  setupSql?: string;
  /** Roles of the pgwarden bench user instead of the default restricted one (config `roles:` entries). */
  pgwardenRoles?: Record<string, unknown>;
}

export type TargetName =
  | 'direct'
  | 'pgbouncer'
  | 'pgwarden'
  | 'pgwarden-audit-buffered'
  | 'pgwarden-audit-durable'
  | 'pgwarden-policy-off';
/** What a scenario runs unless it names its own targets. */
export const TARGETS: readonly TargetName[] = ['direct', 'pgbouncer', 'pgwarden'];
/** Every target --targets accepts: pgwarden also with its audit trail on (buffered or durable), or its SQL policy off. */
export const ALL_TARGETS: readonly TargetName[] = [
  ...TARGETS,
  'pgwarden-audit-buffered',
  'pgwarden-audit-durable',
  'pgwarden-policy-off',
];

/** What one pgbench run printed, plus what we measured around it. */
export interface PgbenchResult {
  transactions: number;
  failed: number;
  tps: number;
  latencyAvgMs: number;
  /** From the per-transaction log (-l); NaN when logging was off. */
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** pgbench's "average connection time" (with -C); NaN otherwise. */
  connectMs: number;
}

export interface RunRecord extends PgbenchResult {
  round: number;
  /** CPU seconds the proxy process tree used during the run; null for direct. */
  proxyCpuSeconds: number | null;
  /** CPU seconds the PostgreSQL server (postmaster and backends) used during the run. */
  pgCpuSeconds: number;
}

export interface TargetSummary {
  tpsMedian: number;
  latencyAvgMsMedian: number;
  latencyP50MsMedian: number;
  latencyP99MsMedian: number;
  /** Total proxy CPU over all rounds divided by total transactions; null for direct. */
  proxyCpuUsPerTxn: number | null;
  pgCpuUsPerTxn: number;
}

export interface TargetReport {
  target: TargetName;
  /** Whether pgbench talked TLS to this target. */
  clientTls: boolean;
  runs: RunRecord[];
  summary: TargetSummary | null;
  /** Why the target has no numbers (did not start, pgbench failed, not installed). */
  error?: string;
}

export interface MacroReport {
  kind: 'macro';
  scenario: string;
  description: string;
  startedAt: string;
  finishedAt: string;
  settings: {
    rounds: number;
    seconds: number;
    warmupSeconds: number;
    scale: number;
    clients: number;
    threads: number;
    pgbenchArgs: string[];
    poolSize: number;
  };
  environment: Record<string, string>;
  targets: TargetReport[];
  /** Side-by-side ratios of the same run, e.g. `tps pgwarden/direct`. */
  ratios: Record<string, number>;
}
