// Plain counters a worker keeps on its hot path (a field increment, nothing more). The main thread asks every
// worker for a snapshot at scrape time and sums them (metrics/exposition.ts). No label takes unbounded values.

/** Statement duration buckets in seconds (upper bounds), Prometheus style. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export const AUTH_FAILURE_REASONS = [
  'bad_password',
  'unknown_user',
  'malformed',
  'channel_binding',
  'database_not_allowed',
  'tls_required',
  'certificate',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

export interface StatsSnapshot {
  clientConnectionsOpened: number;
  clientConnectionsActive: number;
  serverConnectionsOpened: number;
  serverConnectionsActive: number;
  serverConnectionsIdle: number;
  bytesFromClients: number;
  bytesToClients: number;
  statements: number;
  durationBuckets: number[]; // cumulative counts per DURATION_BUCKETS entry, then +Inf
  durationSum: number;
  durationCount: number;
  authFailures: Record<AuthFailureReason, number>;
  protocolErrors: number;
  cancelRequests: number;
  cancelForwarded: number;
  clientsRefused: number;
  upstreamErrors: number;
  auditRecords: number;
  auditFailures: number;
  auditUnavailable: number;
  policyRefusals: number;
  rowLimitStops: number;
  actorAssertions: number;
  actorRefusals: number;
  breakGlassStarts: number;
  lockouts: number;
  addressRefusals: number;
  maskedFields: number;
  /** Masked values by the config rule that masked them (bounded by the config's rules). */
  maskedByRule: Record<string, number>;
  detectedFields: number;
  maskedPredicateRefusals: number;
}

export class WorkerStats {
  clientConnectionsOpened = 0;
  clientConnectionsActive = 0;
  serverConnectionsOpened = 0;
  serverConnectionsActive = 0;
  serverConnectionsIdle = 0;
  bytesFromClients = 0;
  bytesToClients = 0;
  statements = 0;
  readonly durationBuckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  durationSum = 0;
  durationCount = 0;
  readonly authFailures = Object.fromEntries(AUTH_FAILURE_REASONS.map((r) => [r, 0])) as Record<
    AuthFailureReason,
    number
  >;
  protocolErrors = 0;
  cancelRequests = 0;
  cancelForwarded = 0;
  clientsRefused = 0;
  upstreamErrors = 0;
  /** Session records handed to the audit writer. */
  auditRecords = 0;
  /** Times the audit writer became unavailable. */
  auditFailures = 0;
  /** 1 while this worker's audit writer cannot write (a gauge, summed over workers). */
  auditUnavailable = 0;
  /** Statements refused by SQL policy (rules, guardrails, unparsable SQL). */
  policyRefusals = 0;
  /** Results stopped at max_rows. */
  rowLimitStops = 0;
  /** Actor tokens accepted (SET pgwarden.actor). */
  actorAssertions = 0;
  /** Actor tokens refused. */
  actorRefusals = 0;
  /** Break-glass emergency access windows opened. */
  breakGlassStarts = 0;
  /** Login attempts refused because the user or address is locked out. */
  lockouts = 0;
  /** Connections refused by address rules (deny_cidrs, user cidrs, PROXY sources). */
  addressRefusals = 0;
  /** Result values replaced by a mask (configured, unknown origin, or derived from a masked column). */
  maskedFields = 0;
  /** Masked values by rule (keys: config entries such as roles.analyst.masks["public.patients.ssn"]). */
  readonly maskedByRule: Record<string, number> = {};
  /** Values with no rule of their own that the content detectors masked. */
  detectedFields = 0;
  /** Statements refused for using a masked column in a predicate. */
  maskedPredicateRefusals = 0;

  /** Records one statement round trip (seconds). Buckets are non-cumulative here; snapshot() accumulates. */
  observeDuration(seconds: number): void {
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]) i++;
    this.durationBuckets[i]++;
    this.durationSum += seconds;
    this.durationCount++;
  }

  snapshot(): StatsSnapshot {
    const cumulative: number[] = [];
    let acc = 0;
    for (const n of this.durationBuckets) cumulative.push((acc += n));
    return {
      clientConnectionsOpened: this.clientConnectionsOpened,
      clientConnectionsActive: this.clientConnectionsActive,
      serverConnectionsOpened: this.serverConnectionsOpened,
      serverConnectionsActive: this.serverConnectionsActive,
      serverConnectionsIdle: this.serverConnectionsIdle,
      bytesFromClients: this.bytesFromClients,
      bytesToClients: this.bytesToClients,
      statements: this.statements,
      durationBuckets: cumulative,
      durationSum: this.durationSum,
      durationCount: this.durationCount,
      authFailures: { ...this.authFailures },
      protocolErrors: this.protocolErrors,
      cancelRequests: this.cancelRequests,
      cancelForwarded: this.cancelForwarded,
      clientsRefused: this.clientsRefused,
      upstreamErrors: this.upstreamErrors,
      auditRecords: this.auditRecords,
      auditFailures: this.auditFailures,
      auditUnavailable: this.auditUnavailable,
      policyRefusals: this.policyRefusals,
      rowLimitStops: this.rowLimitStops,
      actorAssertions: this.actorAssertions,
      actorRefusals: this.actorRefusals,
      breakGlassStarts: this.breakGlassStarts,
      lockouts: this.lockouts,
      addressRefusals: this.addressRefusals,
      maskedFields: this.maskedFields,
      maskedByRule: { ...this.maskedByRule },
      detectedFields: this.detectedFields,
      maskedPredicateRefusals: this.maskedPredicateRefusals,
    };
  }
}

export const stats = new WorkerStats();
