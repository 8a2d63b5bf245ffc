// The /metrics text: prom-client for the main thread's own process metrics and for the worker counters (summed
// over workers at scrape time through collect hooks), plus the statement duration histogram, whose per-worker
// buckets are summed here and written in the exposition format directly (prom-client cannot import buckets).

import client from 'prom-client';
import { AUTH_FAILURE_REASONS, DURATION_BUCKETS, type StatsSnapshot } from './worker-stats.js';

type NumericKey = {
  [K in keyof StatsSnapshot]: StatsSnapshot[K] extends number ? K : never;
}[keyof StatsSnapshot];

/** Sums snapshots; arrays element-wise, records key-wise. */
export function sumSnapshots(snapshots: readonly StatsSnapshot[], base?: StatsSnapshot): StatsSnapshot {
  const out = structuredClone(base ?? emptySnapshot());
  for (const s of snapshots) {
    for (const key of Object.keys(s) as Array<keyof StatsSnapshot>) {
      const v = s[key];
      if (typeof v === 'number') (out[key as NumericKey] as number) += v;
    }
    s.durationBuckets.forEach((n, i) => (out.durationBuckets[i] += n));
    for (const r of AUTH_FAILURE_REASONS) out.authFailures[r] += s.authFailures[r];
    for (const [rule, n] of Object.entries(s.maskedByRule))
      out.maskedByRule[rule] = (out.maskedByRule[rule] ?? 0) + n;
  }
  return out;
}

export function emptySnapshot(): StatsSnapshot {
  return {
    clientConnectionsOpened: 0,
    clientConnectionsActive: 0,
    serverConnectionsOpened: 0,
    serverConnectionsActive: 0,
    serverConnectionsIdle: 0,
    bytesFromClients: 0,
    bytesToClients: 0,
    statements: 0,
    durationBuckets: new Array(DURATION_BUCKETS.length + 1).fill(0),
    durationSum: 0,
    durationCount: 0,
    authFailures: Object.fromEntries(
      AUTH_FAILURE_REASONS.map((r) => [r, 0]),
    ) as StatsSnapshot['authFailures'],
    protocolErrors: 0,
    cancelRequests: 0,
    cancelForwarded: 0,
    clientsRefused: 0,
    upstreamErrors: 0,
    auditRecords: 0,
    auditFailures: 0,
    auditUnavailable: 0,
    policyRefusals: 0,
    rowLimitStops: 0,
    actorAssertions: 0,
    actorRefusals: 0,
    breakGlassStarts: 0,
    lockouts: 0,
    addressRefusals: 0,
    maskedFields: 0,
    maskedByRule: {},
    detectedFields: 0,
    maskedPredicateRefusals: 0,
  };
}

/** Counters survive a worker's death: what it had counted until its last scrape is kept as a base. */
export const GAUGE_KEYS: ReadonlyArray<NumericKey> = [
  'clientConnectionsActive',
  'serverConnectionsActive',
  'serverConnectionsIdle',
  'auditUnavailable',
];

export class MetricsExposition {
  readonly registry = new client.Registry();
  private latest: StatsSnapshot = emptySnapshot();
  readonly workersAlive: client.Gauge;
  readonly draining: client.Gauge;
  readonly reloads: client.Counter<'result'>;
  readonly workerRestarts: client.Counter;

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pgwarden_process_' });
    const counter = (name: string, help: string, pick: (s: StatsSnapshot) => number) =>
      new client.Counter({
        name,
        help,
        registers: [this.registry],
        collect: (() => {
          const latest = () => this.latest;
          return function (this: client.Counter) {
            this.reset();
            this.inc(pick(latest()));
          };
        })(),
      });
    const gauge = (name: string, help: string, pick: (s: StatsSnapshot) => number) =>
      new client.Gauge({
        name,
        help,
        registers: [this.registry],
        collect: (() => {
          const latest = () => this.latest;
          return function (this: client.Gauge) {
            this.set(pick(latest()));
          };
        })(),
      });
    counter(
      'pgwarden_client_connections_total',
      'Client connections accepted',
      (s) => s.clientConnectionsOpened,
    );
    gauge('pgwarden_client_connections', 'Client connections open now', (s) => s.clientConnectionsActive);
    counter(
      'pgwarden_server_connections_total',
      'Upstream connections opened',
      (s) => s.serverConnectionsOpened,
    );
    gauge('pgwarden_server_connections', 'Upstream connections open now', (s) => s.serverConnectionsActive);
    gauge(
      'pgwarden_server_connections_idle',
      'Upstream connections idle in pools',
      (s) => s.serverConnectionsIdle,
    );
    counter('pgwarden_client_received_bytes_total', 'Bytes received from clients', (s) => s.bytesFromClients);
    counter('pgwarden_client_sent_bytes_total', 'Bytes sent to clients', (s) => s.bytesToClients);
    counter(
      'pgwarden_statements_total',
      'Statements (simple Query and extended Execute)',
      (s) => s.statements,
    );
    counter(
      'pgwarden_protocol_errors_total',
      'Connections ended for protocol violations',
      (s) => s.protocolErrors,
    );
    counter('pgwarden_cancel_requests_total', 'CancelRequests received', (s) => s.cancelRequests);
    counter(
      'pgwarden_cancel_forwarded_total',
      'CancelRequests sent to an upstream backend',
      (s) => s.cancelForwarded,
    );
    counter(
      'pgwarden_clients_refused_total',
      'Clients refused for connection or pool limits',
      (s) => s.clientsRefused,
    );
    counter('pgwarden_upstream_errors_total', 'Failed upstream connection attempts', (s) => s.upstreamErrors);
    counter(
      'pgwarden_audit_records_total',
      'Session audit records handed to the writer',
      (s) => s.auditRecords,
    );
    counter(
      'pgwarden_audit_failures_total',
      'Times a worker audit writer became unavailable',
      (s) => s.auditFailures,
    );
    gauge(
      'pgwarden_audit_unavailable_workers',
      'Workers whose audit log cannot be written now (their statements are refused)',
      (s) => s.auditUnavailable,
    );
    counter(
      'pgwarden_policy_refusals_total',
      'Statements refused by SQL policy (rules, guardrails, unparsable SQL)',
      (s) => s.policyRefusals,
    );
    counter('pgwarden_max_rows_stops_total', 'Results stopped at max_rows', (s) => s.rowLimitStops);
    counter(
      'pgwarden_actor_assertions_total',
      'Actor tokens accepted (SET pgwarden.actor)',
      (s) => s.actorAssertions,
    );
    counter('pgwarden_actor_refusals_total', 'Actor tokens refused', (s) => s.actorRefusals);
    counter(
      'pgwarden_break_glass_total',
      'Break-glass emergency access windows opened',
      (s) => s.breakGlassStarts,
    );
    counter(
      'pgwarden_lockouts_total',
      'Login attempts refused because the user or address is locked out',
      (s) => s.lockouts,
    );
    counter(
      'pgwarden_address_refusals_total',
      'Connections refused by address rules (deny_cidrs, user cidrs, PROXY sources)',
      (s) => s.addressRefusals,
    );
    counter(
      'pgwarden_masked_detected_fields_total',
      'Values with no masking rule of their own masked by the content detectors',
      (s) => s.detectedFields,
    );
    counter(
      'pgwarden_masked_predicate_refusals_total',
      'Statements refused for using a masked column in a predicate',
      (s) => s.maskedPredicateRefusals,
    );
    const latest = () => this.latest;
    new client.Counter({
      name: 'pgwarden_masked_fields_total',
      help: 'Result values replaced by a mask, by the rule that masked them',
      labelNames: ['rule'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [rule, n] of Object.entries(latest().maskedByRule)) this.labels(rule).inc(n);
      },
    });
    new client.Counter({
      name: 'pgwarden_auth_failures_total',
      help: 'Failed client authentications by reason',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const r of AUTH_FAILURE_REASONS) this.labels(r).inc(latest().authFailures[r]);
      },
    });
    this.workersAlive = new client.Gauge({
      name: 'pgwarden_workers',
      help: 'Worker threads running',
      registers: [this.registry],
    });
    this.draining = new client.Gauge({
      name: 'pgwarden_draining',
      help: '1 while shutting down',
      registers: [this.registry],
    });
    this.reloads = new client.Counter({
      name: 'pgwarden_config_reloads_total',
      help: 'Configuration reloads by result',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.workerRestarts = new client.Counter({
      name: 'pgwarden_worker_restarts_total',
      help: 'Workers replaced after they died',
      registers: [this.registry],
    });
  }

  async render(snapshot: StatsSnapshot): Promise<string> {
    this.latest = snapshot;
    return (await this.registry.metrics()) + histogramText(snapshot);
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function histogramText(s: StatsSnapshot): string {
  const name = 'pgwarden_statement_duration_seconds';
  const lines = [
    `# HELP ${name} Time from a round trip's first message (Query, Sync, FunctionCall) to its ReadyForQuery`,
    `# TYPE ${name} histogram`,
  ];
  DURATION_BUCKETS.forEach((le, i) => lines.push(`${name}_bucket{le="${le}"} ${s.durationBuckets[i]}`));
  lines.push(`${name}_bucket{le="+Inf"} ${s.durationBuckets[DURATION_BUCKETS.length]}`);
  lines.push(`${name}_sum ${s.durationSum}`, `${name}_count ${s.durationCount}`);
  return lines.join('\n') + '\n';
}
