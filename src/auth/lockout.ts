// Brute-force lockout: after policy.maxFailures failed logins for one user name, or from one client address,
// within policy.windowMs, that key is locked for policy.cooldownMs. The caller asks lockedFor() before it starts
// an authentication and refuses with the same message as a failed login, so a lock never reveals whether the user
// exists (unknown users collect failures exactly like known ones).
//
// Both keys are counted because each catches what the other misses: an address lock catches one client trying
// many user names (password spraying), a user lock catches one account attacked from rotating addresses.
//
// The store interface is async on purpose: a Redis-backed store will implement it for a whole cluster. Within one
// node, BroadcastLockoutStore shares failures between worker threads.
import { BroadcastChannel } from 'node:worker_threads';

export interface LockoutPolicy {
  /** Failures within the window that lock a key. */
  maxFailures: number;
  /** A failure counts while it is younger than this (sliding window). */
  windowMs: number;
  /** How long a lock lasts. */
  cooldownMs: number;
}

export interface LockoutStore {
  /** Milliseconds left on the longest lock among `keys`; 0 when none of them is locked. */
  lockedFor(keys: readonly string[], nowMs: number): Promise<number>;
  recordFailure(keys: readonly string[], nowMs: number): Promise<void>;
  /** Clears the failures counted against `keys` (a lock already running keeps running). */
  recordSuccess(keys: readonly string[], nowMs: number): Promise<void>;
  close(): void;
}

export interface MemoryLockoutStoreOptions {
  /** Most keys tracked at once; beyond it the least recently touched key is forgotten. Default 100 000. */
  maxKeys?: number;
}

export const DEFAULT_LOCKOUT_MAX_KEYS = 100_000;

/**
 * PostgreSQL truncates the startup packet's user name to NAMEDATALEN - 1 bytes before looking the role up, so
 * names that differ only beyond that are the same role: they must be the same lockout key too, or appending
 * junk would dodge the per-user lock. It also bounds the memory one key takes.
 */
const PG_NAME_MAX_BYTES = 63;
const IPV4_MAPPED = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** The lockout keys of one login attempt: `user:<name>`, and `addr:<address>` when the address is known. */
export function lockoutKeys(user: string, address: string | null): string[] {
  const name = Buffer.from(user, 'utf8').subarray(0, PG_NAME_MAX_BYTES).toString('utf8');
  const keys = [`user:${name}`];
  if (address !== null) keys.push(`addr:${normalizeAddress(address)}`);
  return keys;
}

/** A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; one client must have one key. */
function normalizeAddress(address: string): string {
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1];
  return address.includes(':') ? address.toLowerCase() : address;
}

interface Entry {
  /** Failure times inside the window, oldest first, at most policy.maxFailures of them. */
  failures: number[];
  /** 0 when not locked. */
  lockedUntil: number;
}

/**
 * One process's (one worker's) lockout state. A Map in insertion order doubles as the LRU list: touching a key
 * re-inserts it at the end, so the first key is always the least recently touched and the one evicted.
 */
export class MemoryLockoutStore implements LockoutStore {
  readonly policy: Readonly<LockoutPolicy>;
  readonly maxKeys: number;
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(policy: LockoutPolicy, options: MemoryLockoutStoreOptions = {}) {
    if (!Number.isSafeInteger(policy.maxFailures) || policy.maxFailures < 1) {
      throw new TypeError('lockout maxFailures must be an integer >= 1');
    }
    if (!Number.isFinite(policy.windowMs) || policy.windowMs <= 0) {
      throw new TypeError('lockout windowMs must be a positive number');
    }
    if (!Number.isFinite(policy.cooldownMs) || policy.cooldownMs <= 0) {
      throw new TypeError('lockout cooldownMs must be a positive number');
    }
    const maxKeys = options.maxKeys ?? DEFAULT_LOCKOUT_MAX_KEYS;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1)
      throw new TypeError('lockout maxKeys must be an integer >= 1');
    this.policy = Object.freeze({ ...policy });
    this.maxKeys = maxKeys;
  }

  /** Keys currently tracked (with failures in the window or a lock, as of their last touch). */
  get size(): number {
    return this.entries.size;
  }

  async lockedFor(keys: readonly string[], nowMs: number): Promise<number> {
    this.checkOpen();
    let longest = 0;
    for (const key of distinct(keys)) {
      const entry = this.entries.get(key);
      if (entry === undefined) continue;
      if (!this.refresh(entry, nowMs)) {
        this.entries.delete(key);
        continue;
      }
      // A key being asked about is being attacked or used: keep it away from eviction.
      this.touch(key, entry);
      longest = Math.max(longest, entry.lockedUntil - nowMs);
    }
    return longest;
  }

  async recordFailure(keys: readonly string[], nowMs: number): Promise<void> {
    this.applyFailure(keys, nowMs);
  }

  async recordSuccess(keys: readonly string[], nowMs: number): Promise<void> {
    this.applySuccess(keys, nowMs);
  }

  /** Synchronous core of recordFailure, for BroadcastLockoutStore. */
  applyFailure(keys: readonly string[], nowMs: number): void {
    this.checkOpen();
    const { maxFailures, cooldownMs } = this.policy;
    for (const key of distinct(keys)) {
      const entry = this.entries.get(key) ?? { failures: [], lockedUntil: 0 };
      this.refresh(entry, nowMs);
      insertInOrder(entry.failures, nowMs);
      if (entry.failures.length > maxFailures) entry.failures.shift();
      if (entry.lockedUntil === 0 && entry.failures.length >= maxFailures) {
        entry.lockedUntil = nowMs + cooldownMs;
        // The lock is the penalty for these failures; once it ends the key starts afresh.
        entry.failures.length = 0;
      }
      this.touch(key, entry);
    }
  }

  /** Synchronous core of recordSuccess, for BroadcastLockoutStore. */
  applySuccess(keys: readonly string[], nowMs: number): void {
    this.checkOpen();
    for (const key of distinct(keys)) {
      const entry = this.entries.get(key);
      if (entry === undefined) continue;
      entry.failures.length = 0;
      if (!this.refresh(entry, nowMs)) this.entries.delete(key);
    }
  }

  /** Forgets every key with neither failures in the window nor a lock; returns how many were forgotten. */
  prune(nowMs: number): number {
    this.checkOpen();
    let removed = 0;
    for (const [key, entry] of this.entries) {
      if (!this.refresh(entry, nowMs)) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  close(): void {
    this.closed = true;
    this.entries.clear();
  }

  /** Drops failures that left the window and a lock that ended; false when nothing is left to remember. */
  private refresh(entry: Entry, nowMs: number): boolean {
    const oldestCounted = nowMs - this.policy.windowMs;
    let stale = 0;
    while (stale < entry.failures.length && entry.failures[stale] <= oldestCounted) stale++;
    if (stale > 0) entry.failures.splice(0, stale);
    if (entry.lockedUntil !== 0 && entry.lockedUntil <= nowMs) entry.lockedUntil = 0;
    return entry.failures.length > 0 || entry.lockedUntil !== 0;
  }

  private touch(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.maxKeys) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  private checkOpen(): void {
    // Fail closed: a caller that keeps using a closed store gets an error (and refuses the login), not "no lock".
    if (this.closed) throw new Error('lockout store is closed');
  }
}

/** What workers post to each other. */
interface LockoutMessage {
  v: 1;
  kind: 'failure' | 'success';
  keys: string[];
  nowMs: number;
}

/** Bounds on a received message: lockoutKeys gives two short keys, anything far bigger is not ours. */
const MAX_MESSAGE_KEYS = 16;
const MAX_MESSAGE_KEY_LENGTH = 1024;

/**
 * A MemoryLockoutStore per worker thread, kept in step through a BroadcastChannel so that failures count
 * node-wide: a local failure or success is applied here and posted; a received one is applied here and never
 * re-posted (BroadcastChannel does not deliver a message back to the instance that posted it, so there is no echo).
 */
export class BroadcastLockoutStore implements LockoutStore {
  private readonly channel: BroadcastChannel;
  private closed = false;

  constructor(
    channelName: string,
    /** The worker's own state; its owner calls local.prune() from time to time. */
    readonly local: MemoryLockoutStore,
  ) {
    if (typeof channelName !== 'string' || channelName === '') {
      throw new TypeError('lockout channel name must be a non-empty string');
    }
    this.channel = new BroadcastChannel(channelName);
    this.channel.onmessage = (event: unknown) => this.receive((event as { data?: unknown }).data);
    // The channel must not keep a worker alive on its own; close() is still the way to release it.
    this.channel.unref();
  }

  async lockedFor(keys: readonly string[], nowMs: number): Promise<number> {
    return this.local.lockedFor(keys, nowMs);
  }

  async recordFailure(keys: readonly string[], nowMs: number): Promise<void> {
    this.local.applyFailure(keys, nowMs);
    this.post('failure', keys, nowMs);
  }

  async recordSuccess(keys: readonly string[], nowMs: number): Promise<void> {
    this.local.applySuccess(keys, nowMs);
    this.post('success', keys, nowMs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
    this.local.close();
  }

  private post(kind: LockoutMessage['kind'], keys: readonly string[], nowMs: number): void {
    const message: LockoutMessage = { v: 1, kind, keys: [...keys], nowMs };
    this.channel.postMessage(message);
  }

  private receive(data: unknown): void {
    if (this.closed || !isLockoutMessage(data)) return;
    if (data.kind === 'failure') this.local.applyFailure(data.keys, data.nowMs);
    else this.local.applySuccess(data.keys, data.nowMs);
  }
}

function isLockoutMessage(data: unknown): data is LockoutMessage {
  if (typeof data !== 'object' || data === null) return false;
  const m = data as Record<string, unknown>;
  if (m.v !== 1 || (m.kind !== 'failure' && m.kind !== 'success')) return false;
  if (typeof m.nowMs !== 'number' || !Number.isFinite(m.nowMs) || m.nowMs < 0) return false;
  if (!Array.isArray(m.keys) || m.keys.length > MAX_MESSAGE_KEYS) return false;
  return m.keys.every((k) => typeof k === 'string' && k.length > 0 && k.length <= MAX_MESSAGE_KEY_LENGTH);
}

/**
 * Keeps failure times sorted, oldest first, which refresh() relies on to drop stale ones from the front. Failures
 * from other workers can arrive after later local ones, so appending alone would not keep the order.
 */
function insertInOrder(times: number[], t: number): void {
  let i = times.length;
  while (i > 0 && times[i - 1] > t) i--;
  times.splice(i, 0, t);
}

function distinct(keys: readonly string[]): Set<string> {
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new TypeError('lockout keys must be an array of strings');
  }
  return new Set(keys);
}
