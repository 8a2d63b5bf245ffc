// The audit trail through real clients: every event type of a scripted session lands in hash-chained, signed
// files that `pgwarden audit verify` accepts; records from several workers verify; and in durable mode a
// statement whose result a client received has its record on disk even when pgwarden is killed with SIGKILL.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../../src/embedded/exec.js';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { baseConfig, libpqEnv, metric, pgClient, pgOptions, startProxy } from './support.js';
import pg from 'pg';

interface Keys {
  dir: string;
  privateKey: string;
  publicKey: string;
}

function makeKeys(): Keys {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-audit-keys-'));
  const privateKey = join(dir, 'audit.key');
  const publicKey = join(dir, 'audit.pub');
  execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', privateKey]);
  execFileSync('openssl', ['pkey', '-in', privateKey, '-pubout', '-out', publicKey]);
  return { dir, privateKey, publicKey };
}

function auditConfig(keys: Keys, auditDir: string, extra: Record<string, unknown> = {}) {
  return {
    audit: {
      mode: 'durable',
      sinks: [{ type: 'file', path: auditDir }],
      signing_key_file: keys.privateKey,
      checkpoint_every: 20,
      ...extra,
    },
  };
}

function records(
  dir: string,
): Array<Record<string, unknown> & { event: string; data: Record<string, unknown> }> {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l)),
    );
}

function verify(keys: Keys, dir: string, ...flags: string[]) {
  return spawnSync(
    process.execPath,
    [join(repoRoot(), 'bin', 'pgwarden.js'), 'audit', 'verify', '--key', keys.publicKey, ...flags, dir],
    { encoding: 'utf8', timeout: 60_000 },
  );
}

describe('audit trail', () => {
  let proxy: PgwardenProcess | null = null;
  afterEach(async () => {
    if (proxy) await proxy.stop();
    proxy = null;
  });

  it('records every event of a scripted session (psql and node-postgres), and audit verify accepts the files', async () => {
    const keys = makeKeys();
    const dir = join(keys.dir, 'audit');
    proxy = await startProxy({
      workers: 1,
      ...auditConfig(keys, dir, { params: 'hash', params_key_file: keys.privateKey }),
    });

    execFileSync('psql', ['-X', '-At', '-c', 'select 41 + 1'], { env: libpqEnv(proxy), encoding: 'utf8' });
    const client = await pgClient(proxy);
    await client.query('select $1::int + 1 as n', [7]);
    await expect(client.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
    await client.end();
    const bad = new pg.Client({ ...pgOptions(proxy), password: 'wrong' });
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });
    expect(await proxy.stop()).toBe(0);
    proxy = null;

    const all = records(dir);
    const events = new Set(all.map((r) => r.event));
    for (const e of [
      'stream_start',
      'connection_open',
      'login_success',
      'login_failure',
      'statement',
      'statement_end',
      'connection_close',
      'checkpoint',
      'stream_end',
    ]) {
      expect(events, e).toContain(e);
    }
    const simple = all.find((r) => r.event === 'statement' && r.data.text === 'select 41 + 1');
    expect(simple).toMatchObject({ identity: 'alice', database: 'ehr', data: { protocol: 'simple' } });
    expect(all.find((r) => r.event === 'statement' && r.data.phase === 'parse')?.data.text).toBe(
      'select $1::int + 1 as n',
    );
    const bind = all.find((r) => r.event === 'statement' && r.data.phase === 'bind');
    // params: hash records a keyed hash, never the value.
    expect((bind?.data.params as string[])[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(all)).not.toMatch(/"7"/);
    expect(
      all.some((r) => r.event === 'statement_end' && (r.data.tags as string[]).includes('SELECT 1')),
    ).toBe(true);
    expect(all.some((r) => r.event === 'statement_end' && r.data.sqlstate === '22012')).toBe(true);
    expect(all.find((r) => r.event === 'login_failure')?.data).toMatchObject({
      user: 'alice',
      reason: 'bad_password',
    });
    expect(all.find((r) => r.event === 'login_success')?.data.tls_version).toMatch(/^TLSv1\.[23]$/);

    const ok = verify(keys, dir);
    expect(ok.stderr + ok.stdout).toMatch(/^ok/m);
    expect(ok.status).toBe(0);
  });

  it('verifies the streams of several workers and of the main thread (configuration reloads)', async () => {
    const keys = makeKeys();
    const dir = join(keys.dir, 'audit');
    const overrides = { workers: 2, ...auditConfig(keys, dir, { mode: 'buffered' }) };
    proxy = await startProxy(overrides);
    const clients = await Promise.all(Array.from({ length: 8 }, () => pgClient(proxy!)));
    await Promise.all(clients.map((c, i) => c.query(`select ${i} as worker_probe`)));
    await Promise.all(clients.map((c) => c.end()));
    await proxy.reload(baseConfig(overrides));
    await proxy.reload('listen: { port: not-a-port }\n');
    expect(await proxy.stop()).toBe(0);
    proxy = null;
    const all = records(dir);
    const streams = new Set(all.map((r) => r.stream));
    expect(streams.size).toBe(3);
    const reloads = all.filter((r) => r.event === 'config_reload');
    expect(reloads.map((r) => r.data.ok)).toEqual([true, false]);
    expect(reloads.every((r) => r.worker === -1)).toBe(true);
    expect(String(reloads[1].data.error)).toMatch(/listen\.port/);
    const r = verify(keys, dir);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('keeps on disk, through a SIGKILL, the record of every statement whose result the client received', async () => {
    const keys = makeKeys();
    const dir = join(keys.dir, 'audit');
    proxy = await startProxy({ workers: 2, ...auditConfig(keys, dir) });
    const clients = await Promise.all(Array.from({ length: 4 }, () => pgClient(proxy!)));
    for (const c of clients) c.on('error', () => {}); // the kill below ends their connections
    const answered: string[] = [];
    let stop = false;
    const loops = clients.map(async (c, i) => {
      for (let n = 0; !stop; n++) {
        const tag = `crash_probe_${i}_${n}`;
        try {
          await c.query(`select '${tag}'`);
          answered.push(tag);
        } catch {
          return;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1500));
    proxy.kill(); // SIGKILL: no drain, no final checkpoint
    stop = true;
    await Promise.all(loops);
    proxy = null;
    for (const c of clients) c.end().catch(() => {});
    expect(answered.length).toBeGreaterThan(20);
    const texts = new Set(records(dir).map((r) => r.data?.text));
    const missing = answered.filter((t) => !texts.has(`select '${t}'`));
    expect(missing).toEqual([]);
    // The chain is intact up to the last record; the tail after the last checkpoint is reported, not rejected.
    const r = verify(keys, dir, '--allow-open');
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('refuses statements with 58030 while the audit disk is full, then accepts them again by itself', async () => {
    // A real full filesystem: a 1 MiB tmpfs (CI runs as root, so permissions cannot make a path unwritable).
    const keys = makeKeys();
    const mnt = mkdtempSync(join(tmpdir(), 'pgwarden-audit-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    try {
      proxy = await startProxy({ workers: 1, ...auditConfig(keys, join(mnt, 'audit')) });
      const client = await pgClient(proxy);
      await client.query('select 1');
      const st = statfsSync(mnt);
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(Number(st.bavail) * st.bsize));
      let refused: unknown = null;
      for (let i = 0; i < 200 && !refused; i++) {
        await client.query(`select ${i}, repeat('x', 2000)`).catch((e: unknown) => (refused = e));
      }
      expect(refused).toMatchObject({
        code: '58030',
        message: expect.stringMatching(/audit log unavailable/),
      });
      // Still refused while the disk stays full; the session itself stays usable.
      await expect(client.query('select 2')).rejects.toMatchObject({ code: '58030' });
      expect(proxy.logs.some((l) => /audit log unavailable/.test(l))).toBe(true);
      expect(await metric(proxy, 'pgwarden_audit_unavailable_workers')).toBe(1);
      expect(await metric(proxy, 'pgwarden_audit_failures_total')).toBeGreaterThanOrEqual(1);
      rmSync(join(mnt, 'filler'));
      let recovered = false;
      for (let i = 0; i < 50 && !recovered; i++) {
        await new Promise((r) => setTimeout(r, 200));
        recovered = await client.query('select 3').then(
          () => true,
          () => false,
        );
      }
      expect(recovered).toBe(true);
      expect(await metric(proxy, 'pgwarden_audit_unavailable_workers')).toBe(0);
      expect(await metric(proxy, 'pgwarden_audit_records_total')).toBeGreaterThan(5);
      await client.end();
      expect(await proxy.stop()).toBe(0);
      proxy = null;
      const r = verify(keys, join(mnt, 'audit'));
      expect(r.status, r.stdout + r.stderr).toBe(0);
    } finally {
      if (proxy) await proxy.stop();
      proxy = null;
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
