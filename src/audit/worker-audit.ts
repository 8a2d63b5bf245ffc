// One worker's audit trail: its writer (its own hash-chained stream, so no ordering crosses threads) and what
// every session of the worker needs to record statements.

import crypto from 'node:crypto';
import type { PgwardenConfig } from '../config/load.js';
import { AUDIT_PG_DEFAULTS } from '../config/schema.js';
import { log } from '../core/log.js';
import { stats } from '../metrics/worker-stats.js';
import { loadSigningKeyFromPem } from './checkpoint.js';
import { SessionAudit, type ParamsPolicy } from './session-audit.js';
import { AuditWriter } from './writer.js';

export class WorkerAudit {
  private sessions = 0;

  private constructor(
    readonly writer: AuditWriter,
    private readonly node: string,
    private readonly worker: number,
    readonly params: ParamsPolicy,
    private readonly paramsKey: Buffer | null,
    readonly refuseWhenUnavailable: boolean,
  ) {}

  static async open(config: PgwardenConfig, worker: number): Promise<WorkerAudit | null> {
    const a = config.audit;
    if (!a) return null;
    const fileSink = a.sinks.find((s) => s.type === 'file');
    const pgSink = a.sinks.find((s) => s.type === 'postgres');
    const writer = await AuditWriter.open({
      dir: fileSink?.path,
      stdout: a.sinks.some((s) => s.type === 'stdout'),
      postgres: pgSink && {
        // The audit database's own account and TLS: nothing is shared with the proxied databases.
        settings: {
          name: 'audit',
          host: pgSink.host!,
          port: pgSink.port ?? AUDIT_PG_DEFAULTS.port,
          database: pgSink.database!,
          user: pgSink.user!,
          password: pgSink.password,
          tls: {
            mode: pgSink.tls?.mode ?? 'require',
            ca: pgSink.tls?.ca ? Buffer.from(pgSink.tls.ca) : undefined,
            serverName: pgSink.tls?.server_name,
          },
          connectTimeoutMs: config.timeouts.upstream_connect,
          maxMessageSize: config.limits.max_message_size,
          framing: config.framing,
        },
        table: pgSink.table ?? AUDIT_PG_DEFAULTS.table,
      },
      mode: a.mode,
      flushIntervalMs: a.flush_interval,
      node: config.node_id,
      worker,
      signingKey: loadSigningKeyFromPem(a.signing_key),
      checkpointEvery: a.checkpoint_every,
      checkpointIntervalMs: a.checkpoint_interval,
      rotateSize: a.rotate_size,
      rotateIntervalMs: a.rotate_interval,
      retainFiles: a.retain_files,
      onFailure: a.on_failure,
      onAvailabilityChange: (available, reason) => {
        if (available) log.warn('audit log writable again; statements are accepted', { worker });
        else log.error('audit log unavailable; statements are refused', { worker, reason });
        stats.auditUnavailable = available ? 0 : 1;
        if (!available) stats.auditFailures++;
      },
    });
    return new WorkerAudit(
      writer,
      config.node_id,
      worker,
      a.params,
      a.params_key ? Buffer.from(a.params_key) : null,
      a.on_failure === 'refuse',
    );
  }

  forSession(): SessionAudit {
    const id = `${this.node}-${this.worker}-${Date.now().toString(36)}-${(++this.sessions).toString(36)}-${crypto.randomBytes(3).toString('hex')}`;
    return new SessionAudit(this.writer, id, this.params, this.paramsKey);
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}
