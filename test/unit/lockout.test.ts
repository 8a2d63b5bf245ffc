// Brute-force lockout: sliding window, lock and cooldown, both keys, bounded memory, sharing across workers.
import { randomUUID } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BroadcastLockoutStore,
  MemoryLockoutStore,
  lockoutKeys,
  type LockoutPolicy,
} from '../../src/auth/lockout.js';

const policy: LockoutPolicy = { maxFailures: 3, windowMs: 60_000, cooldownMs: 300_000 };
const T = 1_750_000_000_000;

async function fail(
  store: MemoryLockoutStore | BroadcastLockoutStore,
  keys: string[],
  times: number[],
): Promise<void> {
  for (const t of times) await store.recordFailure(keys, t);
}

describe('lockoutKeys', () => {
  it('gives a user key and an address key', () => {
    expect(lockoutKeys('alice', '10.0.0.7')).toEqual(['user:alice', 'addr:10.0.0.7']);
    expect(lockoutKeys('alice', null)).toEqual(['user:alice']);
  });

  it('folds IPv4-mapped IPv6 addresses into IPv4, and IPv6 case', () => {
    expect(lockoutKeys('a', '::ffff:1.2.3.4')).toEqual(['user:a', 'addr:1.2.3.4']);
    expect(lockoutKeys('a', '::FFFF:1.2.3.4')).toEqual(['user:a', 'addr:1.2.3.4']);
    expect(lockoutKeys('a', '2001:DB8::1')).toEqual(['user:a', 'addr:2001:db8::1']);
    expect(lockoutKeys('a', '::1')).toEqual(['user:a', 'addr:::1']);
  });

  it('cuts user names at 63 bytes, as PostgreSQL does, so long-name suffixes do not make new keys', () => {
    const base = 'u'.repeat(63);
    expect(lockoutKeys(`${base}junk1`, null)).toEqual(lockoutKeys(`${base}junk2`, null));
    expect(lockoutKeys(base, null)).toEqual([`user:${base}`]);
    expect(lockoutKeys('x'.repeat(10_000), null)[0].length).toBe('user:'.length + 63);
  });
});

describe('MemoryLockoutStore', () => {
  it('locks a key at maxFailures within the window, for cooldownMs', async () => {
    const store = new MemoryLockoutStore(policy);
    const keys = ['user:alice'];
    await fail(store, keys, [T, T + 1000]);
    expect(await store.lockedFor(keys, T + 1000)).toBe(0);
    await store.recordFailure(keys, T + 2000);
    expect(await store.lockedFor(keys, T + 2000)).toBe(policy.cooldownMs);
    expect(await store.lockedFor(keys, T + 2000 + policy.cooldownMs - 1)).toBe(1);
    expect(await store.lockedFor(keys, T + 2000 + policy.cooldownMs)).toBe(0);
  });

  it('does not count failures older than the window (sliding)', async () => {
    const store = new MemoryLockoutStore(policy);
    const keys = ['user:bob'];
    await fail(store, keys, [T, T + 10_000]);
    // At T + windowMs the failure at T has just left the window: two in it, no lock.
    await store.recordFailure(keys, T + policy.windowMs);
    expect(await store.lockedFor(keys, T + policy.windowMs)).toBe(0);
    // One millisecond earlier all three would have counted.
    const other = new MemoryLockoutStore(policy);
    await fail(other, keys, [T, T + 10_000, T + policy.windowMs - 1]);
    expect(await other.lockedFor(keys, T + policy.windowMs - 1)).toBe(policy.cooldownMs);
    // The window slides: failures at +10s and +60s, and one at +69.999s, are three within 60s.
    await store.recordFailure(keys, T + 69_999);
    expect(await store.lockedFor(keys, T + 69_999)).toBe(policy.cooldownMs);
  });

  it('starts afresh when a lock ends', async () => {
    const store = new MemoryLockoutStore({ ...policy, cooldownMs: 1000 });
    const keys = ['user:carol'];
    await fail(store, keys, [T, T + 1, T + 2]);
    expect(await store.lockedFor(keys, T + 2)).toBe(1000);
    await fail(store, keys, [T + 1002, T + 1003]);
    expect(await store.lockedFor(keys, T + 1003)).toBe(0);
    await store.recordFailure(keys, T + 1004);
    expect(await store.lockedFor(keys, T + 1004)).toBe(1000);
  });

  it('clears failures on success, but a running lock keeps running', async () => {
    const store = new MemoryLockoutStore(policy);
    const keys = lockoutKeys('dave', '10.0.0.1');
    await fail(store, keys, [T, T + 1]);
    await store.recordSuccess(keys, T + 2);
    await store.recordFailure(keys, T + 3);
    expect(await store.lockedFor(keys, T + 3)).toBe(0);
    expect(store.size).toBe(2);
    await fail(store, keys, [T + 4, T + 5]);
    expect(await store.lockedFor(keys, T + 5)).toBe(policy.cooldownMs);
    await store.recordSuccess(keys, T + 6);
    expect(await store.lockedFor(keys, T + 6)).toBe(policy.cooldownMs - 1);
  });

  it('locks an address trying many user names (spraying), whatever the next name', async () => {
    const store = new MemoryLockoutStore(policy);
    for (const [i, user] of ['alice', 'bob', 'carol'].entries()) {
      await store.recordFailure(lockoutKeys(user, '203.0.113.9'), T + i);
    }
    expect(await store.lockedFor(lockoutKeys('erin', '203.0.113.9'), T + 3)).toBe(policy.cooldownMs - 1);
    expect(await store.lockedFor(lockoutKeys('erin', '::ffff:203.0.113.9'), T + 3)).toBe(
      policy.cooldownMs - 1,
    );
    // Other clients trying those names are not locked: each name failed only once.
    expect(await store.lockedFor(lockoutKeys('alice', '198.51.100.1'), T + 3)).toBe(0);
  });

  it('locks a user attacked from rotating addresses, from any address', async () => {
    const store = new MemoryLockoutStore(policy);
    for (const [i, addr] of ['192.0.2.1', '192.0.2.2', '192.0.2.3'].entries()) {
      await store.recordFailure(lockoutKeys('frank', addr), T + i);
    }
    expect(await store.lockedFor(lockoutKeys('frank', '192.0.2.200'), T + 3)).toBe(policy.cooldownMs - 1);
    expect(await store.lockedFor(lockoutKeys('grace', '192.0.2.1'), T + 3)).toBe(0);
  });

  it('reports the longest lock among the keys', async () => {
    const store = new MemoryLockoutStore(policy);
    await fail(store, ['user:a'], [T, T, T]);
    await fail(store, ['addr:x'], [T + 500, T + 500, T + 500]);
    expect(await store.lockedFor(['user:a', 'addr:x'], T + 1000)).toBe(policy.cooldownMs - 500);
    expect(await store.lockedFor(['user:a', 'addr:y'], T + 1000)).toBe(policy.cooldownMs - 1000);
  });

  it('keeps failures that arrive out of order (from other workers) in time order', async () => {
    const store = new MemoryLockoutStore(policy);
    await store.recordFailure(['k'], T + 50_000);
    await store.recordFailure(['k'], T);
    // At T + windowMs + 1 the failure at T is out of the window even though it was recorded last.
    await store.recordFailure(['k'], T + policy.windowMs + 1);
    expect(await store.lockedFor(['k'], T + policy.windowMs + 1)).toBe(0);
    await store.recordFailure(['k'], T + policy.windowMs + 2);
    expect(await store.lockedFor(['k'], T + policy.windowMs + 2)).toBe(policy.cooldownMs);
  });

  it('counts a key named twice in one attempt once', async () => {
    const store = new MemoryLockoutStore(policy);
    await store.recordFailure(['user:a', 'user:a', 'user:a'], T);
    expect(await store.lockedFor(['user:a'], T)).toBe(0);
  });

  it('keeps at most maxKeys keys, evicting the least recently touched', async () => {
    const store = new MemoryLockoutStore(policy, { maxKeys: 3 });
    await fail(store, ['k1'], [T, T, T]); // locked
    await store.recordFailure(['k2'], T);
    await store.recordFailure(['k3'], T);
    expect(await store.lockedFor(['k1'], T + 1)).toBeGreaterThan(0); // touches k1: k2 is now the oldest
    await store.recordFailure(['k4'], T + 2);
    expect(store.size).toBe(3);
    // k2 was forgotten: two more failures do not lock it, while k3 still has its first.
    await fail(store, ['k2'], [T + 3, T + 3]);
    expect(await store.lockedFor(['k2'], T + 3)).toBe(0);
    expect(await store.lockedFor(['k1'], T + 3)).toBeGreaterThan(0);
    // Each step touched a key and evicted the oldest; the size never passed the bound.
    for (let i = 0; i < 100; i++) await store.recordFailure([`spray${i}`], T + 4);
    expect(store.size).toBe(3);
    expect(await store.lockedFor(['k1'], T + 4)).toBe(0); // evicted by the flood
  });

  it('keeps at most maxFailures timestamps per key', async () => {
    const store = new MemoryLockoutStore({ maxFailures: 2, windowMs: 1000, cooldownMs: 1 });
    // Locked at T+1 for 1 ms; failures during and after keep being recorded, bounded.
    await fail(store, ['k'], [T, T + 1, T + 1, T + 1, T + 1]);
    expect(await store.lockedFor(['k'], T + 1)).toBe(1);
    expect(await store.lockedFor(['k'], T + 2)).toBe(0);
    // Two failures were kept from the locked period (the bound), so one more locks again.
    await store.recordFailure(['k'], T + 3);
    expect(await store.lockedFor(['k'], T + 3)).toBe(1);
  });

  it('prunes expired entries as they are touched and through prune()', async () => {
    const store = new MemoryLockoutStore(policy);
    await store.recordFailure(['old'], T);
    await fail(store, ['locked'], [T, T, T]);
    await store.recordFailure(['recent'], T + 50_000);
    expect(store.size).toBe(3);
    expect(store.prune(T + policy.windowMs)).toBe(1); // 'old' left the window
    expect(store.size).toBe(2);
    expect(await store.lockedFor(['recent'], T + 50_000 + policy.windowMs)).toBe(0);
    expect(store.size).toBe(1); // looking at 'recent' found it empty and dropped it
    expect(store.prune(T + policy.cooldownMs)).toBe(1); // the lock ended
    expect(store.size).toBe(0);
  });

  it('validates the policy and refuses use after close', async () => {
    expect(() => new MemoryLockoutStore({ ...policy, maxFailures: 0 })).toThrow(TypeError);
    expect(() => new MemoryLockoutStore({ ...policy, windowMs: Number.NaN })).toThrow(TypeError);
    expect(() => new MemoryLockoutStore({ ...policy, cooldownMs: -1 })).toThrow(TypeError);
    expect(() => new MemoryLockoutStore(policy, { maxKeys: 0 })).toThrow(TypeError);
    const store = new MemoryLockoutStore(policy);
    store.close();
    await expect(store.lockedFor(['k'], T)).rejects.toThrow(/closed/);
    await expect(store.recordFailure(['k'], T)).rejects.toThrow(/closed/);
  });
});

describe('BroadcastLockoutStore', () => {
  const open: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  function pair(): [BroadcastLockoutStore, BroadcastLockoutStore, string] {
    const name = `pgwarden-lockout-test-${randomUUID()}`;
    const a = new BroadcastLockoutStore(name, new MemoryLockoutStore(policy));
    const b = new BroadcastLockoutStore(name, new MemoryLockoutStore(policy));
    open.push(a, b);
    return [a, b, name];
  }

  /** Polls until `check` holds; messages arrive on a later turn of the event loop. */
  async function eventually(check: () => Promise<boolean>, timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  it("counts each other's failures: two workers' failures lock both", async () => {
    const [a, b] = pair();
    const keys = lockoutKeys('henry', '10.1.1.1');
    // A marker key posted after each failure shows when the other side has it (one sender's messages keep order).
    await a.recordFailure(keys, T);
    await a.recordFailure(['user:marker-a'], T);
    await eventually(async () => b.local.size === 3);
    expect(await b.lockedFor(keys, T)).toBe(0);
    await b.recordFailure(keys, T + 1);
    await b.recordFailure(['user:marker-b'], T + 1);
    await eventually(async () => a.local.size === 4);
    expect(await a.lockedFor(keys, T + 1)).toBe(0);
    await a.recordFailure(keys, T + 2);
    expect(await a.lockedFor(keys, T + 2)).toBe(policy.cooldownMs);
    await eventually(async () => (await b.lockedFor(keys, T + 2)) > 0);
    expect(await b.lockedFor(keys, T + 2)).toBe(policy.cooldownMs);
  });

  it('shares successes, which clear the failures in the other worker too', async () => {
    const [a, b] = pair();
    const keys = ['user:ivy'];
    await fail(a, keys, [T, T + 1]);
    await a.recordFailure(['user:marker'], T + 1);
    // b has both of a's failures once the marker (posted after them) is there.
    await eventually(async () => b.local.size === 2);
    await b.recordSuccess(keys, T + 2);
    expect(b.local.size).toBe(1);
    await eventually(async () => a.local.size === 1);
    // Without the success, this third failure would lock the user on both sides.
    await a.recordFailure(keys, T + 3);
    expect(await a.lockedFor(keys, T + 3)).toBe(0);
    await eventually(async () => b.local.size === 2);
    expect(await b.lockedFor(keys, T + 3)).toBe(0);
  });

  it('applies received messages without posting them again', async () => {
    const [a, b, name] = pair();
    const seen: unknown[] = [];
    const listener = new BroadcastChannel(name);
    open.push(listener);
    listener.onmessage = (event: unknown) => seen.push((event as { data: unknown }).data);

    await fail(a, ['user:jack'], [T, T + 1, T + 2]);
    await eventually(async () => (await b.lockedFor(['user:jack'], T + 2)) > 0);
    // b's own message comes after anything b would have echoed: messages from one sender arrive in order.
    await b.recordFailure(['user:marker'], T + 3);
    await eventually(async () => seen.length >= 4);
    expect(seen).toEqual([
      { v: 1, kind: 'failure', keys: ['user:jack'], nowMs: T },
      { v: 1, kind: 'failure', keys: ['user:jack'], nowMs: T + 1 },
      { v: 1, kind: 'failure', keys: ['user:jack'], nowMs: T + 2 },
      { v: 1, kind: 'failure', keys: ['user:marker'], nowMs: T + 3 },
    ]);
  });

  it('ignores messages of the wrong shape or types', async () => {
    const [a, , name] = pair();
    const sender = new BroadcastChannel(name);
    open.push(sender);
    const bad: unknown[] = [
      'failure user:kim',
      null,
      42,
      { v: 2, kind: 'failure', keys: ['user:kim'], nowMs: T },
      { v: 1, kind: 'lock', keys: ['user:kim'], nowMs: T },
      { v: 1, kind: 'failure', keys: 'user:kim', nowMs: T },
      { v: 1, kind: 'failure', keys: ['user:kim', 7], nowMs: T },
      { v: 1, kind: 'failure', keys: [''], nowMs: T },
      { v: 1, kind: 'failure', keys: ['user:kim'], nowMs: '1750000000000' },
      { v: 1, kind: 'failure', keys: ['user:kim'], nowMs: Number.NaN },
      { v: 1, kind: 'failure', keys: ['user:kim'], nowMs: -1 },
      { v: 1, kind: 'failure', keys: ['x'.repeat(2000)], nowMs: T },
      { v: 1, kind: 'failure', keys: Array.from({ length: 17 }, (_, i) => `user:kim${i}`), nowMs: T },
    ];
    // Three well-formed copies of each would lock; send each bad one three times.
    for (const message of bad) for (let i = 0; i < 3; i++) sender.postMessage(message);
    // Then one valid message: once it is applied, every bad one before it has been seen (same sender, in order).
    sender.postMessage({ v: 1, kind: 'failure', keys: ['user:marker'], nowMs: T });
    await eventually(async () => a.local.size === 1);
    expect(await a.lockedFor(['user:kim', 'x'.repeat(2000), ''], T)).toBe(0);
    expect(a.local.size).toBe(1);
  });

  it('close() closes the channel and the store', async () => {
    const [a, b] = pair();
    a.close();
    await expect(a.lockedFor(['k'], T)).rejects.toThrow(/closed/);
    // b posting to a closed peer is fine.
    await b.recordFailure(['k'], T);
    expect(await b.lockedFor(['k'], T)).toBe(0);
  });
});
