// Micro-benchmark: framing MB/s of backend DataRow streams, WASM scanner vs TypeScript twin vs a plain Buffer.copy.
import { pathToFileURL } from 'node:url';
import { createFramer, WasmFramer, type Framer, type FramerOptions } from '../../src/protocol/framing.js';
import { measureMbPerSec } from '../lib/throughput.js';
import { median } from '../lib/stats.js';

export interface FramingBenchResult {
  rows: Array<{ name: string; mbPerSec: number }>;
  ratios: Record<string, number>;
}

interface Scenario {
  readonly name: string;
  readonly chunks: Buffer[];
  readonly bytes: number;
}

interface Contender {
  readonly label: string;
  /** undefined: the memcpy reference. */
  readonly make?: (options: FramerOptions) => Framer;
}
// 'wasm' is what createFramer gives the proxy (chunks of large messages hopped in JS, the others copied in and
// scanned in WASM); 'wasm-scan' forces every chunk through the copy-in and the scanner: the WASM kernel alone.
const CONTENDERS: readonly Contender[] = [
  { label: 'wasm', make: (o) => createFramer(o, 'wasm') },
  { label: 'wasm-scan', make: (o) => new WasmFramer(o, { jsHopAverageBytes: Infinity }) },
  { label: 'ts', make: (o) => createFramer(o, 'typescript') },
  { label: 'memcpy' },
];
const BACKEND: FramerOptions = { startup: false, maxMessageSize: 1 << 30, maxStartupSize: 10000 };
// 256 KiB of rows, replayed: the chunks stay in L2 as a chunk fresh from a socket read would be. A larger stream
// (PGW_FRAMING_STREAM=4194304) makes the hops pay cache misses that a hot chunk never has.
const STREAM_BYTES = Number(process.env.PGW_FRAMING_STREAM ?? 256 * 1024);
const ROUNDS = 15;

/** A stream of DataRows of about `rowBytes` each (4 text columns, sizes varying +-20%), cut into `chunkSize` reads. */
function dataRowScenario(name: string, rowBytes: number, chunkSize: number): Scenario {
  const rows: Buffer[] = [];
  let total = 0;
  let seed = 0x9e3779b9;
  const next = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  while (total < STREAM_BYTES) {
    const payload = Math.max(4, Math.round(rowBytes * (0.8 + 0.4 * next())) - 7 - 4 * 4);
    const row = Buffer.alloc(7 + 4 * 4 + payload);
    row[0] = 0x44; // 'D' DataRow
    row.writeInt32BE(row.length - 1, 1);
    row.writeInt16BE(4, 5);
    let at = 7;
    for (let c = 0; c < 4; c++) {
      const len = c < 3 ? payload >> 2 : payload - 3 * (payload >> 2);
      row.writeInt32BE(len, at);
      row.fill(0x61 + c, at + 4, at + 4 + len);
      at += 4 + len;
    }
    rows.push(row);
    total += row.length;
  }
  const stream = Buffer.concat(rows);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += chunkSize) chunks.push(stream.subarray(at, at + chunkSize));
  return { name, chunks, bytes: stream.length };
}

/** One pass over the scenario; returns a value derived from the work so that none of it can be skipped. */
function makePass(contender: Contender, scenario: Scenario): () => number {
  const chunks = scenario.chunks;
  if (!contender.make) {
    const target = Buffer.alloc(Math.max(...chunks.map((c) => c.length)));
    return () => {
      let sink = 0;
      for (let i = 0; i < chunks.length; i++) sink += chunks[i].copy(target, 0);
      return sink + target[7];
    };
  }
  const framer = contender.make(BACKEND);
  return () => {
    let sink = 0;
    for (let i = 0; i < chunks.length; i++) {
      const n = framer.scan(chunks[i]);
      // Read the last record as a consumer would; keeps the record table live.
      sink += n + (n > 0 ? framer.records[3 * n - 1] : 0);
    }
    if (framer.error !== 0) throw new Error(`framing failed with ${framer.error}`);
    return sink;
  };
}

/**
 * Measures every contender on every scenario in interleaved rounds and reports medians. `seconds` is the time spent
 * on each scenario (all contenders together), default 2.
 */
export async function runFramingBench(opts?: { seconds?: number }): Promise<FramingBenchResult> {
  const seconds = opts?.seconds ?? 2;
  const scenarios = [
    dataRowScenario('datarow-100B/16KiB', 100, 16 * 1024),
    dataRowScenario('datarow-100B/64KiB', 100, 64 * 1024),
    dataRowScenario('datarow-200B/16KiB', 200, 16 * 1024),
    dataRowScenario('datarow-300B/16KiB', 300, 16 * 1024),
    dataRowScenario('datarow-2KiB/16KiB', 2048, 16 * 1024),
  ];
  const budgetMs = (seconds * 1000) / (CONTENDERS.length * (ROUNDS + 1));
  const rows: FramingBenchResult['rows'] = [];
  const ratios: Record<string, number> = {};
  let sink = 0;
  for (const scenario of scenarios) {
    const passes = CONTENDERS.map((c) => makePass(c, scenario));
    const samples: number[][] = CONTENDERS.map(() => []);
    // Round 0 warms up (JIT, WASM scratch growth) and is discarded; the order rotates so no contender always goes first.
    for (let round = 0; round <= ROUNDS; round++) {
      for (let k = 0; k < CONTENDERS.length; k++) {
        const i = (k + round) % CONTENDERS.length;
        const { mbPerSec, sink: s } = measureMbPerSec(passes[i], scenario.bytes, budgetMs);
        sink += s;
        if (round > 0) samples[i].push(mbPerSec);
      }
      // Yield between rounds so a caller running other work on this thread is not starved.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const med = new Map(CONTENDERS.map((c, i) => [c.label, median(samples[i])]));
    for (const [label, mbPerSec] of med) rows.push({ name: `${scenario.name} ${label}`, mbPerSec });
    for (const [a, b] of [
      ['wasm', 'memcpy'],
      ['wasm', 'ts'],
      ['wasm-scan', 'memcpy'],
      ['wasm-scan', 'ts'],
    ]) {
      ratios[`${scenario.name} ${a}/${b}`] = (med.get(a) ?? NaN) / (med.get(b) ?? NaN);
    }
  }
  if (sink === 0) throw new Error('benchmark did no work');
  return { rows, ratios };
}

function printTable(result: FramingBenchResult): void {
  const width = Math.max(
    ...result.rows.map((r) => r.name.length),
    ...Object.keys(result.ratios).map((k) => k.length),
  );
  console.log(`${'framing'.padEnd(width)}  ${'MB/s (median)'.padStart(14)}`);
  for (const r of result.rows) console.log(`${r.name.padEnd(width)}  ${r.mbPerSec.toFixed(0).padStart(14)}`);
  console.log('');
  for (const [k, v] of Object.entries(result.ratios))
    console.log(`${k.padEnd(width)}  ${v.toFixed(2).padStart(14)}`);
  console.log(`\nMB/s per CPU second of the benchmark thread, median of ${ROUNDS} interleaved rounds.`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.env.PGW_BENCH_SECONDS ?? 2);
  printTable(await runFramingBench({ seconds }));
}
