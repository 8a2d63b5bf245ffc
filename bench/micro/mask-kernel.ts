// Micro-benchmark: MB/s of masking a stream of DataRows, WASM kernel vs TypeScript twin vs plain copies of the rows.
import { pathToFileURL } from 'node:url';
import { buildMaskPlan, createRowMasker, MaskAction, type MaskPlan } from '../../src/masking/kernel.js';
import { measureMbPerSec } from '../lib/throughput.js';
import { median } from '../lib/stats.js';

export interface MaskKernelBenchResult {
  rows: Array<{ name: string; mbPerSec: number }>;
  ratios: Record<string, number>;
}

interface Contender {
  readonly label: string;
  readonly make: (plan: MaskPlan, target: Buffer) => (row: Buffer) => number;
}

// 'memcpy' copies each row into one reused buffer (the floor of touching the bytes once); 'alloc+copy' also
// allocates a Buffer per row, as a masker that hands back rows which outlive the call must.
const CONTENDERS: readonly Contender[] = [
  {
    label: 'wasm',
    make: (plan) => {
      const masker = createRowMasker(plan, 'wasm');
      return (row) => masker.mask(row).length;
    },
  },
  {
    // The kernel without the per-row allocation: masked straight into a reused buffer (as into an outgoing write).
    label: 'wasm-into',
    make: (plan, target) => {
      const masker = createRowMasker(plan, 'wasm');
      return (row) => masker.maskInto(row, target);
    },
  },
  {
    label: 'ts',
    make: (plan) => {
      const masker = createRowMasker(plan, 'typescript');
      return (row) => masker.mask(row).length;
    },
  },
  { label: 'memcpy', make: (_plan, target) => (row) => row.copy(target, 0) },
  { label: 'alloc+copy', make: () => (row) => Buffer.from(row).length },
];

// 256 KiB of rows, replayed: they stay in L2 as rows fresh from a socket read would be.
const STREAM_BYTES = Number(process.env.PGW_MASK_STREAM ?? 256 * 1024);
const ROUNDS = 15;

// 8 text columns of a patients-like result; half masked, one of them (the free-text note) by content detection. The
// second plan is the same without detection (the note passes): what detection costs is the difference.
const WITH_DETECTION = [
  { action: MaskAction.Pass }, // id
  { action: MaskAction.Partial, keepFirst: 0, keepLast: 4 }, // ssn
  { action: MaskAction.Pass }, // city
  { action: MaskAction.YearOnly }, // dob
  { action: MaskAction.Pass }, // diagnosis
  { action: MaskAction.Email }, // email
  { action: MaskAction.Pass }, // visit date
  { action: MaskAction.Detect }, // free-text note
];
const PLANS = [
  { label: '4 masked, 1 by detection', specs: WITH_DETECTION, formats: ['MRN-######'] },
  {
    label: '3 masked, no detection',
    specs: WITH_DETECTION.map((spec) =>
      spec.action === MaskAction.Detect ? { action: MaskAction.Pass } : spec,
    ),
    formats: [],
  },
];

const CITIES = ['Springfield', 'Riverside', 'Fairview', 'Madison', 'Georgetown', 'Clinton'];
const DIAGNOSES = [
  'Type 2 diabetes mellitus',
  'Essential hypertension',
  'Asthma, mild',
  'Migraine without aura',
];
const NOTES = [
  'Patient reports improved sleep; continue current dosage and review.',
  'Call back at 555-201-7788 to confirm the follow-up appointment.',
  'No change since last visit, labs within normal range, see chart.',
  'Referred to cardiology; fax summary to the clinic before Friday.',
];

/** The stream as one buffer and its rows as subarrays of it (as a framer hands them out), about 200 B each. */
function rowStream(): { rows: Buffer[]; bytes: number } {
  const built: Buffer[] = [];
  let total = 0;
  let seed = 0x9e3779b9;
  const next = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const pad = (n: number, width: number): string => String(n).padStart(width, '0');
  for (let id = 1; total < STREAM_BYTES; id++) {
    const values = [
      String(100000 + id),
      `${pad(100 + next(800), 3)}-${pad(10 + next(89), 2)}-${pad(1000 + next(8999), 4)}`,
      CITIES[next(CITIES.length)],
      `19${pad(30 + next(70), 2)}-${pad(1 + next(12), 2)}-${pad(1 + next(28), 2)}`,
      DIAGNOSES[next(DIAGNOSES.length)],
      `patient${id}@mail.example.org`,
      `2026-${pad(1 + next(12), 2)}-${pad(1 + next(28), 2)} 09:${pad(next(60), 2)}:00`,
      NOTES[next(NOTES.length)],
    ].map((v) => Buffer.from(v, 'utf8'));
    const size = 7 + values.reduce((sum, v) => sum + 4 + v.length, 0);
    const row = Buffer.alloc(size);
    row[0] = 0x44; // 'D' DataRow
    row.writeInt32BE(size - 1, 1);
    row.writeInt16BE(values.length, 5);
    let at = 7;
    for (const v of values) {
      row.writeInt32BE(v.length, at);
      v.copy(row, at + 4);
      at += 4 + v.length;
    }
    built.push(row);
    total += size;
  }
  const stream = Buffer.concat(built);
  const rows: Buffer[] = [];
  let at = 0;
  for (const row of built) {
    rows.push(stream.subarray(at, at + row.length));
    at += row.length;
  }
  return { rows, bytes: stream.length };
}

/** Measures every contender on every plan in interleaved rounds for about `seconds` (default 2); reports medians. */
export async function runMaskKernelBench(opts?: { seconds?: number }): Promise<MaskKernelBenchResult> {
  const seconds = opts?.seconds ?? 2;
  const { rows: stream, bytes } = rowStream();
  const rowSize = Math.round(bytes / stream.length);
  const rows: MaskKernelBenchResult['rows'] = [];
  const ratios: Record<string, number> = {};
  for (const { label, specs, formats } of PLANS) {
    const plan = buildMaskPlan(specs, '***', formats);
    const med = await measurePlan(plan, stream, bytes, seconds / PLANS.length);
    const name = `datarow-${rowSize}B x8 (${label})`;
    for (const [contender, mbPerSec] of med) rows.push({ name: `${name} ${contender}`, mbPerSec });
    for (const [a, b] of [
      ['wasm', 'memcpy'],
      ['wasm-into', 'memcpy'],
      ['wasm', 'alloc+copy'],
      ['wasm', 'ts'],
      ['wasm-into', 'ts'],
      ['ts', 'memcpy'],
    ]) {
      ratios[`${label}: ${a}/${b}`] = (med.get(a) ?? NaN) / (med.get(b) ?? NaN);
    }
  }
  return { rows, ratios };
}

/** The median MB/s of each contender masking `stream` with `plan`. */
async function measurePlan(
  plan: MaskPlan,
  stream: readonly Buffer[],
  bytes: number,
  seconds: number,
): Promise<Map<string, number>> {
  // Room for any masked row (masking may lengthen a row by plan.growthPerColumn per column).
  const target = Buffer.alloc(
    Math.max(...stream.map((r) => r.length)) + plan.columns.length * plan.growthPerColumn,
  );
  const passes = CONTENDERS.map((contender) => {
    const one = contender.make(plan, target);
    return (): number => {
      let sink = 0;
      for (let i = 0; i < stream.length; i++) sink += one(stream[i]);
      return sink;
    };
  });
  // The twins must agree before their speeds mean anything.
  const wasm = createRowMasker(plan, 'wasm');
  const ts = createRowMasker(plan, 'typescript');
  for (const row of stream) {
    if (!wasm.mask(row).equals(ts.mask(row))) throw new Error('WASM and TypeScript maskers disagree');
  }

  const budgetMs = (seconds * 1000) / (CONTENDERS.length * (ROUNDS + 1));
  const samples: number[][] = CONTENDERS.map(() => []);
  let sink = 0;
  // Round 0 warms up (JIT, WASM region growth) and is discarded; the order rotates so no contender always goes first.
  for (let round = 0; round <= ROUNDS; round++) {
    for (let k = 0; k < CONTENDERS.length; k++) {
      const i = (k + round) % CONTENDERS.length;
      const { mbPerSec, sink: s } = measureMbPerSec(passes[i], bytes, budgetMs);
      sink += s;
      if (round > 0) samples[i].push(mbPerSec);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (sink === 0) throw new Error('benchmark did no work');
  return new Map(CONTENDERS.map((c, i) => [c.label, median(samples[i])]));
}

export function maskKernelMarkdown(result: MaskKernelBenchResult): string {
  const lines = [
    '## mask-kernel: DataRow masking throughput (micro)',
    '',
    '| routine | MB/s |',
    '| --- | ---: |',
  ];
  for (const r of result.rows)
    lines.push(`| ${r.name} | ${Math.round(r.mbPerSec).toLocaleString('en-US')} |`);
  lines.push('', '| ratio | value |', '| --- | ---: |');
  for (const [k, v] of Object.entries(result.ratios)) lines.push(`| ${k} | ${v.toFixed(3)} |`);
  lines.push(
    '',
    `MB/s of input rows per CPU second of the benchmark thread, median of ${ROUNDS} interleaved rounds. ` +
      `Goal: kernel/memcpy >= 0.20. Node ${process.version}.`,
    '',
  );
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.env.PGW_BENCH_SECONDS ?? 2);
  process.stdout.write(maskKernelMarkdown(await runMaskKernelBench({ seconds })));
}
