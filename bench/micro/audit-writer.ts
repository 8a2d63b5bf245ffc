// Micro-benchmark: what the audit writer costs the worker's thread per record, done in the thread (chain + hash,
// I/O on libuv's pool) vs handed to a writer thread (structured clone + postMessage), and durable group commit
// with 1, 16 and 64 sessions waiting, in-thread vs through a writer thread; plus stdout from a worker thread.

import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { AuditChain } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/record.js';
import { AuditWriter, type AuditWriterOptions } from '../../src/audit/writer.js';

export interface HotPathRow {
  name: string;
  /** CPU µs of the calling thread per record (or per operation). */
  cpuUs: number;
}

export interface DurableRow {
  variant: 'in-thread' | 'writer-thread';
  waiters: number;
  recordsPerSec: number;
  syncsPerSec: number;
  recordsPerSync: number;
  p50Us: number;
  p99Us: number;
  /** CPU µs of the calling (session) thread per record. */
  callerCpuUs: number;
  /** CPU µs of the whole process per record: every thread (writer thread, libuv pool) included. */
  processCpuUs: number;
}

export interface StdoutRow {
  name: string;
  workerCpuUs: number;
  mainCpuUs: number;
}

export interface AuditWriterBenchResult {
  dir: string;
  hotPath: HotPathRow[];
  durable: DurableRow[];
  stdout: StdoutRow[];
}

// A typical statement record: about 330 bytes once sealed.
const event = (id: number): AuditEvent => ({
  event: 'statement',
  session: 'n1-0-m3k2x1-1f-a1b2c3',
  identity: 'alice',
  database: 'ehr',
  data: { protocol: 'simple', id, text: `SELECT id, name, dob FROM patients WHERE id = ${id}` },
});

const threadUs = (): number => {
  const { user, system } = process.threadCpuUsage();
  return user + system;
};
const processUs = (): number => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const turn = () => new Promise<void>((r) => setImmediate(r));

function writerOptions(dir: string, key: KeyObject, over: Partial<AuditWriterOptions>): AuditWriterOptions {
  return {
    dir,
    mode: 'durable',
    flushIntervalMs: 5,
    node: 'bench',
    worker: 0,
    signingKey: key,
    checkpointEvery: 1000,
    checkpointIntervalMs: 10_000,
    rotateSize: 64 * 1024 * 1024,
    rotateIntervalMs: 24 * 3600 * 1000,
    retainFiles: 1000,
    onFailure: 'refuse',
    ...over,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// ---------------------------------------------------------------------------------------------------------------
// Worker side: a writer thread (durable batches), a sink for posted events, or a stdout writer.

type WorkerRole =
  | { role: 'writer'; dir: string; keyPem: string }
  | { role: 'drain' }
  | { role: 'stdout'; records: number; perRecord: boolean; keyPem: string };

async function workerMain(role: WorkerRole): Promise<void> {
  const port = parentPort!;
  if (role.role === 'drain') {
    // Receives events as a writer thread would (the clone is paid on both sides) and acknowledges a count.
    let n = 0;
    port.on('message', (m: AuditEvent | AuditEvent[] | 'done') => {
      if (m === 'done') port.postMessage(n);
      else n += Array.isArray(m) ? m.length : 1;
    });
    return;
  }
  const key = crypto.createPrivateKey(role.keyPem);
  if (role.role === 'writer') {
    const w = await AuditWriter.open(writerOptions(role.dir, key, {}));
    port.on('message', (m: { id: number; events: AuditEvent[] } | 'stats') => {
      if (m === 'stats') {
        port.postMessage(w.stats);
        return;
      }
      let last: Promise<void> | void = undefined;
      for (const e of m.events) last = w.write(e);
      void (last as Promise<void>).then(() => port.postMessage(m.id));
    });
    port.postMessage('ready');
    return;
  }
  // stdout: records through the writer's stdout sink (batched), or one process.stdout.write per record.
  const cpu0 = threadUs();
  if (role.perRecord) {
    const chain = new AuditChain({ node: 'bench', worker: 0, stream: 'bench-w0-0' });
    chain.append({ event: 'stream_start' });
    for (let i = 1; i <= role.records; i++) {
      process.stdout.write(chain.append(event(i)) + '\n');
      if (i % 64 === 0) await turn();
    }
  } else {
    const w = await AuditWriter.open(
      writerOptions('', key, { dir: undefined, stdout: true, mode: 'buffered' }),
    );
    for (let i = 1; i <= role.records; i++) {
      w.write(event(i));
      if (i % 64 === 0) await turn();
    }
    await w.close();
  }
  port.postMessage(threadUs() - cpu0);
}

// ---------------------------------------------------------------------------------------------------------------
// Main side.

function startWorker(role: WorkerRole, stdout = false): Worker {
  return new Worker(new URL(import.meta.url), { workerData: role, stdout });
}

function once<T>(w: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function hotPath(dir: string, key: KeyObject, records: number): Promise<HotPathRow[]> {
  const rows: HotPathRow[] = [];
  const events = Array.from({ length: records }, (_, i) => event(i + 1));

  // Serialise + SHA-256 + seal: what the writer does per record on the session's thread.
  {
    const chain = new AuditChain({ node: 'bench', worker: 0, stream: 'bench-w0-1' });
    chain.append({ event: 'stream_start' });
    for (let i = 0; i < 2000; i++) chain.append(events[i]); // warm-up
    const t = threadUs();
    for (const e of events) chain.append(e);
    rows.push({ name: 'chain.append (serialise + SHA-256)', cpuUs: (threadUs() - t) / records });
  }
  // The whole buffered write path on this thread: append, queue, timers, the I/O completions and promises.
  {
    const w = await AuditWriter.open(writerOptions(path.join(dir, 'hot'), key, { mode: 'buffered' }));
    for (let i = 0; i < 2000; i++) w.write(events[i]);
    await w.flush();
    const t = threadUs();
    for (let i = 0; i < records; i++) {
      w.write(events[i]);
      if (i % 64 === 63) await turn(); // sessions arrive over event-loop turns, not all at once
    }
    await w.flush();
    rows.push({
      name: 'AuditWriter.write, buffered (incl. I/O completions)',
      cpuUs: (threadUs() - t) / records,
    });
    await w.close();
  }
  // The alternative: hand each event to a writer thread. Only the sender's side of the clone is counted here.
  for (const batch of [1, 64]) {
    const drain = startWorker({ role: 'drain' });
    await turn();
    const t = threadUs();
    for (let i = 0; i < records; i += batch) {
      drain.postMessage(batch === 1 ? events[i] : events.slice(i, i + batch));
      if (i % 64 === 0) await turn();
    }
    const cpu = threadUs() - t;
    drain.postMessage('done');
    const got = await once<number>(drain);
    if (got !== records) throw new Error(`drain got ${got} of ${records}`);
    await drain.terminate();
    rows.push({
      name: `postMessage to a writer thread, ${batch === 1 ? 'per record' : `batches of ${batch}`} (sender only)`,
      cpuUs: cpu / records,
    });
  }
  // A signed checkpoint (Ed25519): once per checkpoint_every records.
  {
    const chain = new AuditChain({ node: 'bench', worker: 0, stream: 'bench-w0-2' });
    chain.append({ event: 'stream_start' });
    for (let i = 0; i < 200; i++) chain.appendCheckpoint(key);
    const n = 2000;
    const t = threadUs();
    for (let i = 0; i < n; i++) chain.appendCheckpoint(key);
    rows.push({ name: 'checkpoint (Ed25519 sign + append), per checkpoint', cpuUs: (threadUs() - t) / n });
  }
  return rows;
}

/** `waiters` sessions each writing a record and waiting for it, for `ms`. */
async function durableInThread(
  dir: string,
  key: KeyObject,
  waiters: number,
  ms: number,
): Promise<DurableRow> {
  const w = await AuditWriter.open(writerOptions(dir, key, {}));
  const lat: number[] = [];
  let records = 0;
  const syncs0 = w.stats.syncs;
  const t0 = performance.now();
  const cpu0 = threadUs();
  const proc0 = processUs();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: waiters }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await w.write(event(++records));
        lat.push(performance.now() - s);
      }
    }),
  );
  const cpu = threadUs() - cpu0;
  const proc = processUs() - proc0;
  const elapsed = (performance.now() - t0) / 1000;
  const syncs = w.stats.syncs - syncs0;
  await w.close();
  lat.sort((a, b) => a - b);
  return {
    variant: 'in-thread',
    waiters,
    recordsPerSec: records / elapsed,
    syncsPerSec: syncs / elapsed,
    recordsPerSync: records / syncs,
    p50Us: percentile(lat, 0.5) * 1000,
    p99Us: percentile(lat, 0.99) * 1000,
    callerCpuUs: cpu / records,
    processCpuUs: proc / records,
  };
}

/** The same load through a writer thread: events of one turn go as one message, the reply resolves them. */
async function durableWriterThread(
  dir: string,
  keyPem: string,
  waiters: number,
  ms: number,
): Promise<DurableRow> {
  const worker = startWorker({ role: 'writer', dir, keyPem });
  if ((await once<string>(worker)) !== 'ready') throw new Error('writer thread did not start');
  const pending = new Map<number, () => void>();
  worker.on('message', (id: number) => {
    pending.get(id)?.();
    pending.delete(id);
  });
  let batch: AuditEvent[] | null = null;
  let batchDone: Promise<void> | null = null;
  let nextId = 0;
  const write = (e: AuditEvent): Promise<void> => {
    if (batch === null) {
      batch = [];
      const id = ++nextId;
      batchDone = new Promise<void>((r) => pending.set(id, r));
      setImmediate(() => {
        worker.postMessage({ id, events: batch });
        batch = null;
      });
    }
    batch.push(e);
    return batchDone!;
  };
  const stats0 = await statsOf(worker);
  const lat: number[] = [];
  let records = 0;
  const t0 = performance.now();
  const cpu0 = threadUs();
  const proc0 = processUs();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: waiters }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await write(event(++records));
        lat.push(performance.now() - s);
      }
    }),
  );
  const cpu = threadUs() - cpu0;
  const proc = processUs() - proc0;
  const elapsed = (performance.now() - t0) / 1000;
  const syncs = (await statsOf(worker)).syncs - stats0.syncs;
  await worker.terminate();
  lat.sort((a, b) => a - b);
  return {
    variant: 'writer-thread',
    waiters,
    recordsPerSec: records / elapsed,
    syncsPerSec: syncs / elapsed,
    recordsPerSync: records / syncs,
    p50Us: percentile(lat, 0.5) * 1000,
    p99Us: percentile(lat, 0.99) * 1000,
    callerCpuUs: cpu / records,
    processCpuUs: proc / records,
  };
}

async function statsOf(worker: Worker): Promise<{ syncs: number }> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      if (typeof m === 'object' && m !== null && 'syncs' in m) {
        worker.off('message', on);
        resolve(m as { syncs: number });
      }
    };
    worker.on('message', on);
    worker.postMessage('stats');
  });
}

async function stdoutFromWorker(keyPem: string, records: number): Promise<StdoutRow[]> {
  const rows: StdoutRow[] = [];
  for (const perRecord of [false, true]) {
    // The worker's process.stdout reaches the main thread as messages; here the main thread reads and discards
    // them (the real proxy's main thread would also write(2) them to fd 1).
    const worker = startWorker({ role: 'stdout', records, perRecord, keyPem }, true);
    let bytes = 0;
    worker.stdout.on('data', (c: Buffer) => (bytes += c.length));
    const main0 = threadUs();
    const workerCpu = await once<number>(worker);
    await turn();
    const mainCpu = threadUs() - main0;
    await worker.terminate();
    if (bytes < records * 200) throw new Error(`stdout carried only ${bytes} bytes`);
    rows.push({
      name: perRecord ? 'process.stdout.write per record' : 'stdout sink (one write per batch)',
      workerCpuUs: workerCpu / records,
      mainCpuUs: mainCpu / records,
    });
  }
  return rows;
}

export async function runAuditWriterBench(opts?: {
  seconds?: number;
  dir?: string;
}): Promise<AuditWriterBenchResult> {
  const seconds = opts?.seconds ?? 1.5;
  const base = fs.mkdtempSync(path.join(opts?.dir ?? os.tmpdir(), 'pgw-audit-bench-'));
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    const hot = await hotPath(base, privateKey, 50_000);
    const durable: DurableRow[] = [];
    let k = 0;
    for (const waiters of [1, 16, 64]) {
      // Interleaved: the same disk conditions for both variants.
      durable.push(await durableInThread(path.join(base, `d${++k}`), privateKey, waiters, seconds * 1000));
      durable.push(await durableWriterThread(path.join(base, `d${++k}`), keyPem, waiters, seconds * 1000));
    }
    const stdout = await stdoutFromWorker(keyPem, 20_000);
    return { dir: base, hotPath: hot, durable, stdout };
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

export function auditWriterMarkdown(r: AuditWriterBenchResult): string {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '—');
  const lines = [
    '## audit-writer (micro)',
    '',
    '| per record on the session thread | CPU µs |',
    '| --- | ---: |',
    ...r.hotPath.map((h) => `| ${h.name} | ${f(h.cpuUs, 2)} |`),
    '',
    '| durable | waiters | records/s | fdatasync/s | records per fdatasync | p50 µs | p99 µs | caller CPU µs/record | process CPU µs/record |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.durable.map(
      (d) =>
        `| ${d.variant} | ${d.waiters} | ${f(d.recordsPerSec, 0)} | ${f(d.syncsPerSec, 0)} | ${f(d.recordsPerSync)} | ${f(d.p50Us, 0)} | ${f(d.p99Us, 0)} | ${f(d.callerCpuUs, 2)} | ${f(d.processCpuUs, 2)} |`,
    ),
    '',
    '| stdout from a worker thread | worker CPU µs/record | main CPU µs/record |',
    '| --- | ---: | ---: |',
    ...r.stdout.map((s) => `| ${s.name} | ${f(s.workerCpuUs, 2)} | ${f(s.mainCpuUs, 2)} |`),
    '',
    `Files in ${path.dirname(r.dir)}; CPU is process.threadCpuUsage() of the thread named.`,
  ];
  return lines.join('\n');
}

if (!isMainThread) {
  await workerMain(workerData as WorkerRole);
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.env.PGW_BENCH_SECONDS ?? 1.5);
  console.log(
    auditWriterMarkdown(await runAuditWriterBench({ seconds, dir: process.env.PGW_AUDIT_BENCH_DIR })),
  );
}
