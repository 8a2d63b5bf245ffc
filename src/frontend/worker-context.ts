// Everything one worker thread shares between its client sessions: the current settings, the pools, the live
// sessions by cancel key, and the worker-level timers (one sweeper instead of a timer per session).

import { log } from '../core/log.js';
import { Pool } from '../backend/pool.js';
import { sendCancel } from '../backend/cancel.js';
import { stats } from '../metrics/worker-stats.js';
import { CancelKeyAllocator, secretsEqual, workerOfProcessId } from './cancel-keys.js';
import type { ClientSession } from './client-session.js';
import type { DatabaseEntry, RuntimeSettings } from './runtime.js';
import type { WorkerAudit } from '../audit/worker-audit.js';
import { BroadcastLockoutStore, MemoryLockoutStore, type LockoutStore } from '../auth/lockout.js';
import type { LockoutPolicy } from '../auth/lockout.js';
import type { ServerConnection } from '../backend/server-connection.js';
import { loadMaskCatalog, type MaskCatalog } from '../masking/mask-catalog.js';
import type { PolicyRuntime } from '../policy/policy-runtime.js';

/** A mask catalog is read again after this long, so DDL made elsewhere (other workers, nodes) is seen. */
const MASK_CATALOG_TTL_MS = 60_000;

/** Workers of one node share lockout counts over this channel (a failure on any worker counts on all). */
const LOCKOUT_CHANNEL = 'pgwarden-lockout';

export class WorkerContext {
  readonly sessions = new Map<number, ClientSession>();
  readonly allSessions = new Set<ClientSession>();
  readonly keys: CancelKeyAllocator;
  draining = false;
  /** This worker's audit trail; null when the config has no audit section. */
  audit: WorkerAudit | null = null;
  private readonly pools = new Map<string, { pool: Pool; fingerprint: string }>();
  private lockout: { store: BroadcastLockoutStore; policy: string } | null = null;
  private sweeper: NodeJS.Timeout;

  constructor(
    readonly workerIndex: number,
    public runtime: RuntimeSettings,
    /** Sends a cancel for a session owned by another worker (through the main thread). */
    private readonly forwardCancel: (processId: number, secret: Buffer) => void,
  ) {
    this.keys = new CancelKeyAllocator(workerIndex);
    // Joined at once, not at the first login: failures other workers announce before then must count here too.
    this.lockoutStore();
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  poolFor(db: DatabaseEntry): Pool {
    const current = this.pools.get(db.name);
    if (current && current.fingerprint === db.fingerprint) return current.pool;
    current?.pool.retire();
    const r = this.runtime;
    const pool = new Pool({
      upstream: db.upstream,
      size: db.poolSize,
      idleTimeoutMs: r.serverIdleMs,
      lifetimeMs: r.serverLifetimeMs,
      minIdle: db.minIdle,
    });
    this.pools.set(db.name, { pool, fingerprint: db.fingerprint });
    return pool;
  }

  /**
   * The mask catalog of a database, read (on `server`, idle and about to serve a masked session) when there is
   * none or it is older than the TTL or DDL has passed through this worker since it was read.
   */
  async maskCatalog(db: DatabaseEntry, server: ServerConnection): Promise<MaskCatalog> {
    const policy = this.runtime.policy;
    const cached = this.maskCatalogs.get(db.name);
    if (cached && cached.policy === policy && Date.now() - cached.catalog.loadedAt < MASK_CATALOG_TTL_MS) {
      return cached.catalog;
    }
    const catalog = await loadMaskCatalog(
      server,
      policy.catalogColumns,
      this.runtime.poolAcquireMs,
      policy.searchPath,
    );
    this.maskCatalogs.set(db.name, { catalog, policy });
    return catalog;
  }
  private readonly maskCatalogs = new Map<string, { catalog: MaskCatalog; policy: PolicyRuntime }>();

  /** DDL went upstream: relations and views may have changed under every mask catalog of this worker. */
  invalidateMaskCatalogs(): void {
    this.maskCatalogs.clear();
  }

  /** The node's brute-force lockout store under the current policy; null when lockout is off. */
  lockoutStore(): LockoutStore | null {
    const policy: LockoutPolicy | null = this.runtime.policy.lockout;
    if (!policy) return null;
    const key = JSON.stringify(policy);
    if (this.lockout?.policy !== key) {
      // A reload that changes the policy starts counting afresh: old counts were made under other limits.
      this.lockout?.store.close();
      this.lockout = {
        store: new BroadcastLockoutStore(LOCKOUT_CHANNEL, new MemoryLockoutStore(policy)),
        policy: key,
      };
    }
    return this.lockout.store;
  }

  /** A reload: new sessions and new statements see the new settings; changed or removed databases get new pools. */
  applyRuntime(runtime: RuntimeSettings): void {
    this.runtime = runtime;
    this.lockoutStore();
    for (const [name, entry] of this.pools) {
      const db = runtime.databases.get(name);
      if (!db || db.fingerprint !== entry.fingerprint) {
        entry.pool.retire();
        this.pools.delete(name);
      }
    }
  }

  /** A CancelRequest arrived on this worker: handle it here or hand it to the owning worker. */
  routeCancel(processId: number, secret: Buffer): void {
    stats.cancelRequests++;
    if (workerOfProcessId(processId) === this.workerIndex) this.cancelLocal(processId, secret);
    else this.forwardCancel(processId, secret);
  }

  cancelLocal(processId: number, secret: Buffer): void {
    const session = this.sessions.get(processId);
    if (!session || !secretsEqual(session.cancelSecret, secret)) return; // unknown or stale key: ignore, like PostgreSQL
    const server = session.cancellableServer();
    if (!server) return;
    stats.cancelForwarded++;
    sendCancel(server.settings, server.processId, server.secret).catch((e: Error) =>
      log.warn('cancel request to upstream failed', { database: server.settings.name, reason: e.message }),
    );
  }

  private sweep(): void {
    const now = Date.now();
    for (const s of this.allSessions) s.checkIdle(now);
    for (const { pool } of this.pools.values()) pool.sweep(now);
    this.lockout?.store.local.prune(now);
  }

  /** SIGTERM: end idle sessions now, busy ones at their next idle moment, all of them after the drain timeout. */
  drain(onEmpty: () => void): void {
    this.draining = true;
    for (const s of [...this.allSessions]) s.drainIfIdle();
    const check = setInterval(() => {
      if (this.allSessions.size === 0) {
        clearInterval(check);
        clearTimeout(force);
        this.closePools();
        onEmpty();
      }
    }, 50);
    const force = setTimeout(() => {
      for (const s of [...this.allSessions]) s.shutdown();
    }, this.runtime.drainMs);
  }

  private closePools(): void {
    for (const { pool } of this.pools.values()) pool.retire();
  }
}
