// The main thread of a node: owns the validated config, starts N worker threads on one port (SO_REUSEPORT),
// replaces a worker that dies without touching the others, reloads on SIGHUP (a bad file keeps the old config),
// drains on SIGTERM, and serves the admin endpoints with metrics summed over the workers at scrape time.

import type http from 'node:http';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { startAdminServer } from '../admin/http.js';
import { configureLog, describeError, log } from '../core/log.js';
import { ConfigError, formatConfigError, loadConfigFile, type PgwardenConfig } from '../config/load.js';
import { unenforcedRoleRules } from '../config/explain.js';
import { buildRuntime } from '../frontend/build-runtime.js';
import { WorkerAudit } from '../audit/worker-audit.js';
import { emptySnapshot, GAUGE_KEYS, MetricsExposition, sumSnapshots } from '../metrics/exposition.js';
import type { StatsSnapshot } from '../metrics/worker-stats.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);
const STATS_TIMEOUT_MS = 1000;

interface WorkerSlot {
  index: number;
  worker: Worker | null;
  listening: boolean;
  /** The last snapshot it reported, so its counts are not lost if it dies. */
  last: StatsSnapshot | null;
  restarts: number;
  lastStart: number;
}

export interface StartedNode {
  port: number;
  adminPort: number | null;
  stop(): Promise<void>;
}

export class Supervisor {
  private readonly slots: WorkerSlot[] = [];
  private port = 0;
  private draining = false;
  private admin: http.Server | null = null;
  private readonly metrics = new MetricsExposition();
  /** Counters of workers that died, added to the live ones. */
  private retired: StatsSnapshot = emptySnapshot();
  private statsRequest = 0;
  private readonly pendingStats = new Map<number, { got: StatsSnapshot[]; want: number; done: () => void }>();
  private exitResolve: (() => void) | null = null;
  /** The main thread's own audit stream (worker -1): configuration reloads. */
  private audit: WorkerAudit | null = null;

  constructor(
    private readonly configFile: string,
    private config: PgwardenConfig,
  ) {}

  get workerCount(): number {
    return this.config.workers;
  }

  async start(): Promise<StartedNode> {
    configureLog(this.config.log.level, { node: this.config.node_id });
    // Validate what workers will build (read certificates, parse verifiers) before any thread starts.
    buildRuntime(this.config, this.workerCount);
    const { host, port } = this.config.listen;
    // With port 0 the OS picks a port once, here, and every worker joins it through SO_REUSEPORT.
    this.audit = await WorkerAudit.open(this.config, -1);
    const placeholder = await listenPlaceholder(host, port);
    this.port = (placeholder.address() as net.AddressInfo).port;
    try {
      await Promise.all(Array.from({ length: this.workerCount }, (_, i) => this.spawn(i)));
    } finally {
      placeholder.close();
    }
    if (this.config.admin.enabled) {
      this.admin = await startAdminServer(this.config.admin.host, this.config.admin.port, {
        metrics: async () => ({ contentType: this.metrics.contentType, body: await this.renderMetrics() }),
        healthy: () => this.slots.some((s) => s.listening),
        ready: () => !this.draining && this.slots.every((s) => s.listening),
        terminateWorker:
          process.env.PGWARDEN_DEBUG_ENDPOINTS === '1'
            ? (i) => {
                const slot = this.slots[i];
                if (!slot?.worker) return false;
                void slot.worker.terminate();
                return true;
              }
            : undefined,
      });
    }
    const adminPort = this.admin ? (this.admin.address() as net.AddressInfo).port : null;
    for (const warning of unenforcedRoleRules(this.config)) log.warn(warning);
    log.info('ready', {
      listen: { host, port: this.port },
      admin: this.admin ? { host: this.config.admin.host, port: adminPort } : null,
      workers: this.workerCount,
      tls: this.config.tls ? 'on' : 'off',
    });
    return { port: this.port, adminPort, stop: () => this.drain() };
  }

  /** Installs SIGHUP / SIGTERM / SIGINT handlers; resolves when the node has drained. */
  runUntilStopped(): Promise<void> {
    process.on('SIGHUP', () => this.reload());
    process.on('SIGTERM', () => void this.drain());
    process.on('SIGINT', () => void this.drain());
    return new Promise((resolve) => (this.exitResolve = resolve));
  }

  private spawn(index: number): Promise<void> {
    const slot: WorkerSlot = this.slots[index] ?? {
      index,
      worker: null,
      listening: false,
      last: null,
      restarts: 0,
      lastStart: 0,
    };
    this.slots[index] = slot;
    const init: WorkerInit = { index, port: this.port, config: this.config, workerCount: this.workerCount };
    const worker = new Worker(WORKER_URL, { workerData: init });
    slot.worker = worker;
    slot.listening = false;
    slot.lastStart = Date.now();
    this.metrics.workersAlive.set(this.slots.filter((s) => s.worker).length);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'listening':
            slot.listening = true;
            resolve();
            return;
          case 'listen-failed':
            reject(new Error(`worker ${index} could not listen: ${m.reason}`));
            return;
          case 'config-failed':
            log.error('worker rejected the reloaded config', { worker: index, reason: m.reason });
            return;
          case 'cancel':
            this.routeCancel(m.processId, m.secret);
            return;
          case 'stats':
            this.onStats(index, m.requestId, m.snapshot);
            return;
          case 'drained':
            return;
        }
      });
      worker.on('error', (e) => log.error('worker crashed', { worker: index, error: describeError(e) }));
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return;
        slot.worker = null;
        slot.listening = false;
        if (slot.last) {
          const keep = { ...slot.last };
          for (const k of GAUGE_KEYS) keep[k] = 0;
          this.retired = sumSnapshots([keep], this.retired);
          slot.last = null;
        }
        this.metrics.workersAlive.set(this.slots.filter((s) => s.worker).length);
        if (this.draining) {
          if (this.slots.every((s) => !s.worker)) this.finish();
          return;
        }
        reject(new Error(`worker ${index} exited with code ${code} during startup`));
        this.replace(slot, code);
      });
    });
  }

  /** A worker died: start another in its place, backing off if it keeps dying young. */
  private replace(slot: WorkerSlot, code: number): void {
    const young = Date.now() - slot.lastStart < 5000;
    slot.restarts = young ? slot.restarts + 1 : 0;
    const delay = Math.min(100 * 2 ** slot.restarts, 5000);
    log.error('worker exited; replacing it', { worker: slot.index, code, delay_ms: delay });
    this.metrics.workerRestarts.inc();
    setTimeout(() => {
      if (this.draining) return;
      this.spawn(slot.index).catch((e) =>
        log.error('replacement worker failed', { error: describeError(e) }),
      );
    }, delay);
  }

  private post(slot: WorkerSlot, m: ToWorker): void {
    slot.worker?.postMessage(m);
  }

  private routeCancel(processId: number, secret: Uint8Array): void {
    const index = (processId >>> 22) & 0xff;
    const slot = this.slots[index];
    if (slot) this.post(slot, { type: 'cancel', processId, secret });
  }

  private onStats(index: number, requestId: number, snapshot: StatsSnapshot): void {
    this.slots[index].last = snapshot;
    const pending = this.pendingStats.get(requestId);
    if (!pending) return;
    pending.got.push(snapshot);
    if (pending.got.length === pending.want) pending.done();
  }

  private async renderMetrics(): Promise<string> {
    const live = this.slots.filter((s) => s.worker);
    const requestId = ++this.statsRequest;
    const got: StatsSnapshot[] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, STATS_TIMEOUT_MS);
      this.pendingStats.set(requestId, {
        got,
        want: live.length,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      if (live.length === 0) resolve();
      for (const slot of live) this.post(slot, { type: 'stats', requestId });
    });
    this.pendingStats.delete(requestId);
    return this.metrics.render(sumSnapshots(got, this.retired));
  }

  /** SIGHUP: load and validate the file again; only a valid config reaches the workers. */
  reload(): void {
    let next: PgwardenConfig;
    try {
      next = loadConfigFile(this.configFile);
      buildRuntime(next, this.workerCount);
    } catch (e) {
      const why = e instanceof ConfigError ? formatConfigError(e) : describeError(e);
      log.error('reload failed; keeping the running configuration', { reason: why });
      this.metrics.reloads.labels('failed').inc();
      this.auditReload(false, why);
      return;
    }
    if (JSON.stringify(next.audit) !== JSON.stringify(this.config.audit)) {
      log.warn('audit settings changes take effect only after a restart');
    }
    if (next.listen.host !== this.config.listen.host || next.listen.port !== this.config.listen.port) {
      log.warn('listen address changes take effect only after a restart');
    }
    this.config = next;
    configureLog(next.log.level, { node: next.node_id });
    for (const slot of this.slots)
      this.post(slot, { type: 'config', config: next, workerCount: this.workerCount });
    this.metrics.reloads.labels('ok').inc();
    this.auditReload(true, null);
    log.info('configuration reloaded', { file: this.configFile });
  }

  private auditReload(ok: boolean, error: string | null): void {
    const done = this.audit?.writer.write({
      event: 'config_reload',
      data: ok ? { ok, file: this.configFile } : { ok, file: this.configFile, error },
    });
    // A refusal here is already logged by the writer's availability callback; a reload is not undone by it.
    done?.catch(() => {});
  }

  /** SIGTERM: stop accepting, let sessions finish up to timeouts.drain, then end the rest with 57P01. */
  drain(): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.metrics.draining.set(1);
      log.info('draining', { timeout_ms: this.config.timeouts.drain });
      for (const slot of this.slots) this.post(slot, { type: 'drain' });
      // Workers exit by themselves once empty; this bounds a worker that cannot.
      setTimeout(() => {
        for (const slot of this.slots) void slot.worker?.terminate();
      }, this.config.timeouts.drain + 5000).unref();
      if (this.slots.every((s) => !s.worker)) this.finish();
    }
    return new Promise((resolve) => {
      const check = setInterval(() => {
        if (this.slots.every((s) => !s.worker)) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
  }

  private finish(): void {
    this.admin?.close();
    const closed = this.audit ? this.audit.close() : Promise.resolve();
    closed
      .catch((e) => log.error('closing the audit log failed', { error: describeError(e) }))
      .finally(() => {
        log.info('stopped');
        this.exitResolve?.();
      });
  }
}

function listenPlaceholder(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port, reusePort: true }, () => resolve(server));
  });
}

export async function startFromFile(file: string): Promise<{ supervisor: Supervisor; node: StartedNode }> {
  const config = loadConfigFile(file);
  const supervisor = new Supervisor(file, config);
  return { supervisor, node: await supervisor.start() };
}
