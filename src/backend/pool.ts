// A pool of server connections for one databases: entry, on one worker. Session mode: a client session holds a
// connection from login to logout; on release the connection is reset (DISCARD ALL) and kept for the next client
// with the same startup parameters (PostgreSQL makes startup parameters the RESET values, so the reset restores
// them). Transaction mode will lend per transaction through the same acquire/release seam.

import { log } from '../core/log.js';
import { stats } from '../metrics/worker-stats.js';
import { TxStatus } from '../protocol/codes.js';
import { query } from '../protocol/writer.js';
import { ServerConnection, type ServerOwner } from './server-connection.js';
import type { UpstreamSettings } from './upstream-settings.js';

export interface PoolSettings {
  readonly upstream: UpstreamSettings;
  /** Most server connections this pool (this worker's share) may hold, busy or idle. */
  readonly size: number;
  readonly idleTimeoutMs: number;
  readonly lifetimeMs: number;
  /** Idle connections kept past idleTimeoutMs (this worker's share of pool.min_idle). */
  readonly minIdle: number;
}

export class PoolTimeoutError extends Error {
  override readonly name = 'PoolTimeoutError';
}

interface Waiter {
  params: ReadonlyArray<readonly [string, string]>;
  key: string;
  resolve: (c: ServerConnection) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const RESET_QUERY = query('DISCARD ALL');

export class Pool {
  private readonly idle = new Map<string, ServerConnection[]>();
  private readonly waiters: Waiter[] = [];
  private total = 0; // connecting + busy + resetting + idle
  private retired = false;

  constructor(readonly settings: PoolSettings) {}

  /** Startup parameters decide which idle connections can serve a client. */
  static keyOf(params: ReadonlyArray<readonly [string, string]>): string {
    return params.map(([k, v]) => `${k}\u0000${v}`).join('\u0001');
  }

  acquire(params: ReadonlyArray<readonly [string, string]>, timeoutMs: number): Promise<ServerConnection> {
    const key = Pool.keyOf(params);
    const ready = this.takeIdle(key);
    if (ready) return Promise.resolve(ready);
    if (this.total < this.settings.size || this.evictIdle()) return this.open(params, key);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        params,
        key,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new PoolTimeoutError(`no server connection within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Returns a connection. Only a connection idle outside a transaction, with nothing in flight, is reused. */
  release(conn: ServerConnection, reusable: boolean): void {
    if (conn.closed) return; // its close already left the pool
    if (!reusable || this.retired || conn.txStatus !== TxStatus.Idle || this.expired(conn)) {
      conn.close();
      return;
    }
    conn.setRewriting(false);
    conn.trackOutcomes(false);
    conn.attach(new ResettingOwner(this, conn));
    conn.socket.write(RESET_QUERY);
  }

  /** Called when a connection closes, whoever held it. */
  forget(conn: ServerConnection): void {
    const list = this.idle.get(conn.paramsKey);
    const i = list ? list.indexOf(conn) : -1;
    if (i >= 0) {
      list!.splice(i, 1);
      stats.serverConnectionsIdle--;
    }
    this.total--;
    this.serveWaiter();
  }

  /** A reset finished: hand the connection to a waiter with the same parameters, or keep it idle. */
  parkIdle(conn: ServerConnection): void {
    const w = this.waiters.findIndex((x) => x.key === conn.paramsKey);
    if (w >= 0) {
      const [waiter] = this.waiters.splice(w, 1);
      clearTimeout(waiter.timer);
      conn.owner = null;
      waiter.resolve(conn);
      return;
    }
    conn.attach(new IdleOwner(conn));
    conn.idleSince = Date.now();
    let list = this.idle.get(conn.paramsKey);
    if (!list) this.idle.set(conn.paramsKey, (list = []));
    list.push(conn);
    stats.serverConnectionsIdle++;
    // A waiter with other parameters can only be served by closing an idle connection.
    this.serveWaiter();
  }

  /** Closes idle connections past their idle timeout or lifetime (called by the worker's sweeper). */
  sweep(now: number): void {
    let idle = 0;
    for (const list of this.idle.values()) idle += list.length;
    for (const list of this.idle.values()) {
      for (const conn of [...list]) {
        const stale = this.settings.idleTimeoutMs > 0 && now - conn.idleSince > this.settings.idleTimeoutMs;
        if (this.expired(conn, now) || (stale && idle > this.settings.minIdle)) {
          conn.close();
          idle--;
        }
      }
    }
  }

  /** After a reload changed this database's settings: no reuse; idle connections close now. */
  retire(): void {
    this.retired = true;
    for (const list of this.idle.values()) for (const conn of [...list]) conn.close();
  }

  get size(): number {
    return this.total;
  }

  private expired(conn: ServerConnection, now = Date.now()): boolean {
    return this.settings.lifetimeMs > 0 && now - conn.createdAt > this.settings.lifetimeMs;
  }

  private takeIdle(key: string): ServerConnection | null {
    const list = this.idle.get(key);
    const conn = list?.pop();
    if (!conn) return null;
    stats.serverConnectionsIdle--;
    conn.owner = null;
    return conn;
  }

  private evictIdle(): boolean {
    for (const list of this.idle.values()) {
      const conn = list[0];
      if (conn) {
        conn.close(); // its forget() frees the slot
        return this.total < this.settings.size;
      }
    }
    return false;
  }

  private serveWaiter(): void {
    if (this.waiters.length === 0) return;
    const waiter = this.waiters[0];
    const ready = this.takeIdle(waiter.key);
    if (ready) {
      this.waiters.shift();
      clearTimeout(waiter.timer);
      waiter.resolve(ready);
      return;
    }
    if (this.total < this.settings.size || this.evictIdle()) {
      this.waiters.shift();
      clearTimeout(waiter.timer);
      this.open(waiter.params, waiter.key).then(waiter.resolve, waiter.reject);
    }
  }

  private async open(
    params: ReadonlyArray<readonly [string, string]>,
    key: string,
  ): Promise<ServerConnection> {
    this.total++;
    try {
      const conn = await ServerConnection.connect(this.settings.upstream, params, key);
      conn.socket.on('close', () => this.forget(conn));
      return conn;
    } catch (e) {
      this.total--;
      stats.upstreamErrors++;
      this.serveWaiter();
      throw e;
    }
  }
}

/** Holds a released connection while DISCARD ALL runs; anything but a clean ReadyForQuery closes it. */
class ResettingOwner implements ServerOwner {
  constructor(
    private readonly pool: Pool,
    private readonly conn: ServerConnection,
  ) {}
  serverData(): void {}
  serverReady(status: number): void {
    if (status === TxStatus.Idle) this.pool.parkIdle(this.conn);
    else this.conn.close();
  }
  serverClosed(): void {}
}

/** An idle connection must stay silent: any message (e.g. a FATAL from an administrator shutdown) retires it. */
class IdleOwner implements ServerOwner {
  constructor(private readonly conn: ServerConnection) {}
  serverData(): void {
    log.debug('idle server connection spoke; closing it', { server: this.conn.id });
    this.conn.close();
  }
  serverReady(): void {}
  serverClosed(): void {}
}
