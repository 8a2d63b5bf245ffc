// `audit verify`: checks audit files with nothing but the public key. Files are grouped by stream and put in chain
// order; each stream is read line by line (memory bounded by one record) and must be an unbroken chain from
// stream_start to stream_end plus its checkpoint, every checkpoint signature valid. The first bad record is named.

import type { KeyObject } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { keyId, loadVerifyKeyFromPem, verifyCheckpointSignature } from './checkpoint.js';
import {
  AuditRecordError,
  GENESIS_HASH,
  MAX_RECORD_BYTES,
  parseAuditLine,
  type AuditRecord,
  type CheckpointData,
} from './record.js';

export interface VerifyOptions {
  /** Accept streams that have not ended (a live file, or a crash): their unsigned tail is counted, not proven. */
  allowOpen?: boolean;
  /** Accept streams whose first files were removed (retention): a stream may begin after seq 1. */
  allowPruned?: boolean;
}

export interface VerifyResult {
  ok: boolean;
  streams: number;
  files: number;
  records: number;
  checkpoints: number;
  firstBad?: { file: string; line: number; reason: string };
  /** Records after the last checkpoint of their stream: present and chained, but not proven by a signature. */
  unsignedTail?: number;
  /** Streams without stream_end and its checkpoint (only with allowOpen). */
  openStreams?: number;
}

/** Bad arguments (no files, unreadable key): the CLI's exit code 2, not a verification failure. */
export class AuditVerifyUsageError extends Error {
  readonly code = 'PGW_AUDIT_VERIFY_USAGE';
}

/** A verification failure at a record: carries its place. */
class Bad extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    reason: string,
  ) {
    super(reason);
  }
}

const CHUNK_BYTES = 1 << 20;

/** An I/O error reading a file: the trail cannot be verified, which is a failure (line 0: the whole file). */
function io<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new Bad(file, 0, `cannot read: ${(e as { code?: string }).code ?? (e as Error).message}`);
  }
}

interface RawLine {
  bytes: Buffer;
  no: number;
  /** False for a last line without its newline. */
  complete: boolean;
}

/**
 * The lines of a file as byte views, one at a time: a view is valid only until the next one is taken (the read
 * buffer is reused). A line longer than MAX_RECORD_BYTES stops the read with an error instead of growing memory.
 */
function* readLines(file: string): Generator<RawLine> {
  const fd = io(file, () => openSync(file, 'r'));
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let carry: Buffer[] = [];
    let carryLength = 0;
    let no = 0;
    while (true) {
      const n = io(file, () => readSync(fd, chunk, 0, CHUNK_BYTES, null));
      if (n === 0) break;
      const view = chunk.subarray(0, n);
      let start = 0;
      while (start < n) {
        const nl = view.indexOf(0x0a, start);
        if (nl === -1) {
          carryLength += n - start;
          if (carryLength > MAX_RECORD_BYTES) throw new Bad(file, no + 1, 'line longer than 16 MiB');
          carry.push(Buffer.from(view.subarray(start))); // a copy: `chunk` is overwritten by the next read
          break;
        }
        let bytes = view.subarray(start, nl);
        if (carryLength > 0) {
          bytes = Buffer.concat([...carry, bytes], carryLength + bytes.length);
          carry = [];
          carryLength = 0;
        }
        no++;
        if (bytes.length > MAX_RECORD_BYTES) throw new Bad(file, no, 'line longer than 16 MiB');
        yield { bytes, no, complete: true };
        start = nl + 1;
      }
    }
    if (carryLength > 0) yield { bytes: Buffer.concat(carry, carryLength), no: no + 1, complete: false };
  } finally {
    closeSync(fd);
  }
}

function parseAt(file: string, line: RawLine): AuditRecord {
  try {
    return parseAuditLine(line.bytes);
  } catch (e) {
    if (e instanceof AuditRecordError) throw new Bad(file, line.no, e.message);
    throw e;
  }
}

/** Expands directories to their *.jsonl files (sorted, not recursive); drops duplicates of the same file. */
export function expandAuditPaths(paths: string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (p: string) => {
    const real = realpathSync(p);
    if (!seen.has(real)) {
      seen.add(real);
      out.push(p);
    }
  };
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      throw new AuditVerifyUsageError(`${p}: ${(e as { code?: string }).code ?? 'cannot stat'}`);
    }
    if (st.isDirectory()) {
      const names = readdirSync(p)
        .filter((n) => n.endsWith('.jsonl'))
        .sort();
      if (names.length === 0) throw new AuditVerifyUsageError(`${p}: no .jsonl files in this directory`);
      for (const n of names) add(join(p, n));
    } else {
      add(p);
    }
  }
  if (out.length === 0) throw new AuditVerifyUsageError('no audit files given');
  return out;
}

interface FileHead {
  file: string;
  stream: string;
  seq: number;
}

interface StreamState {
  stream: string;
  node: string;
  worker: number;
  /** seq the next record must have; 0 before the first record. */
  nextSeq: number;
  lastHash: string;
  ended: boolean;
  sealed: boolean;
  lastCheckpoint: { seq: number; file: string; line: number } | null;
  sinceCheckpoint: number;
  lastFile: string;
  lastLine: number;
}

class Verifier {
  records = 0;
  checkpoints = 0;
  unsignedTail = 0;
  openStreams = 0;
  private readonly keyHex: string;

  constructor(
    private readonly key: KeyObject,
    private readonly options: VerifyOptions,
  ) {
    this.keyHex = keyId(key);
  }

  /** Reads a file's first record to learn its stream and where it starts; null for an empty file. */
  head(file: string): FileHead | null {
    for (const line of readLines(file)) {
      if (!line.complete) {
        if (this.options.allowOpen) {
          // A file the writer has just begun: its one line is not finished yet.
          this.unsignedTail++;
          return null;
        }
        throw new Bad(file, line.no, 'the line is incomplete: the file was cut in the middle of a record');
      }
      const r = parseAt(file, line);
      return { file, stream: r.stream, seq: r.seq };
    }
    if (this.options.allowOpen) return null;
    throw new Bad(
      file,
      1,
      'empty file: its records were removed, or it is still being written (--allow-open)',
    );
  }

  stream(stream: string, files: string[]): void {
    const st: StreamState = {
      stream,
      node: '',
      worker: 0,
      nextSeq: 0,
      lastHash: GENESIS_HASH,
      ended: false,
      sealed: false,
      lastCheckpoint: null,
      sinceCheckpoint: 0,
      lastFile: files[0],
      lastLine: 0,
    };
    files.forEach((file, i) => {
      const lastFile = i === files.length - 1;
      for (const line of readLines(file)) {
        if (!line.complete) {
          if (this.options.allowOpen && lastFile) {
            this.unsignedTail++;
            break;
          }
          throw new Bad(file, line.no, 'the line is incomplete: the file was cut in the middle of a record');
        }
        this.record(st, parseAt(file, line), file, line.no);
      }
    });
    if (!st.sealed) {
      if (!this.options.allowOpen) {
        const where = st.ended ? 'with stream_end but without its checkpoint' : 'without stream_end';
        throw new Bad(
          st.lastFile,
          st.lastLine + 1,
          `stream ${stream} ends at seq ${st.nextSeq - 1} ${where}: truncated, or still being written (--allow-open)`,
        );
      }
      this.openStreams++;
    }
    this.unsignedTail += st.sinceCheckpoint;
  }

  private record(st: StreamState, r: AuditRecord, file: string, line: number): void {
    const bad = (reason: string) => new Bad(file, line, reason);
    if (r.stream !== st.stream) throw bad(`record of stream ${r.stream} in a file of stream ${st.stream}`);
    if (st.nextSeq === 0) {
      if (r.seq === 1) {
        if (r.prev !== GENESIS_HASH) throw bad('the first record of a stream must have prev = 64 zeros');
      } else if (!this.options.allowPruned) {
        throw bad(
          `stream ${st.stream} begins at seq ${r.seq}: records 1 to ${r.seq - 1} are missing (deleted, or removed by retention: --allow-pruned)`,
        );
      }
      st.node = r.node;
      st.worker = r.worker;
    } else {
      if (r.seq !== st.nextSeq) {
        throw bad(
          r.seq > st.nextSeq
            ? `seq ${r.seq} where ${st.nextSeq} was expected: ${r.seq === st.nextSeq + 1 ? `record ${st.nextSeq} is` : `records ${st.nextSeq} to ${r.seq - 1} are`} missing`
            : `seq ${r.seq} where ${st.nextSeq} was expected: a record was inserted, repeated or moved`,
        );
      }
      if (r.prev !== st.lastHash) {
        throw bad(
          `prev is not the hash of record ${r.seq - 1}: a record was replaced, or records were reordered`,
        );
      }
      if (r.node !== st.node || r.worker !== st.worker)
        throw bad('node or worker differ from the rest of the stream');
    }
    if (st.sealed) throw bad('record after the final checkpoint of the stream');
    if (st.ended && r.event !== 'checkpoint') throw bad('record after stream_end');
    if ((r.seq === 1) !== (r.event === 'stream_start')) {
      throw bad(
        r.seq === 1 ? 'a stream must begin with stream_start' : 'stream_start in the middle of a stream',
      );
    }
    if (r.event === 'checkpoint') {
      this.checkpoint(st, r, bad);
    } else {
      st.sinceCheckpoint++;
      if (r.event === 'stream_end') st.ended = true;
    }
    this.records++;
    st.nextSeq = r.seq + 1;
    st.lastHash = r.hash;
    st.lastFile = file;
    st.lastLine = line;
    if (r.event === 'checkpoint') st.lastCheckpoint = { seq: r.seq, file, line };
  }

  private checkpoint(st: StreamState, r: AuditRecord, bad: (reason: string) => Bad): void {
    const d = r.data as CheckpointData;
    if (d.upto_seq !== r.seq - 1 || d.upto_hash !== r.prev) {
      throw bad('the checkpoint does not name the record just before it (upto_seq, upto_hash)');
    }
    if (!verifyCheckpointSignature(st.stream, d.upto_seq, d.upto_hash, d.sig, this.key)) {
      if (d.key_id !== this.keyHex) {
        throw bad(`checkpoint signed by another key (key_id ${d.key_id}; the given key is ${this.keyHex})`);
      }
      const since = st.lastCheckpoint
        ? `after the checkpoint at seq ${st.lastCheckpoint.seq} (${st.lastCheckpoint.file}:${st.lastCheckpoint.line})`
        : 'since the start of the stream';
      throw bad(`checkpoint signature does not verify: records ${since} were forged or re-hashed`);
    }
    this.checkpoints++;
    st.sinceCheckpoint = 0;
    if (st.ended) st.sealed = true;
  }
}

/**
 * Verifies audit files (directories are expanded to their *.jsonl files) against the Ed25519 public key (SPKI
 * PEM). Streams are verified independently, in stream id order; the first failure ends the run. Throws
 * AuditVerifyUsageError for a bad key or paths that name no files.
 */
export function verifyAuditFiles(
  paths: string[],
  publicKeyPem: Buffer | string,
  options: VerifyOptions = {},
): VerifyResult {
  let key: KeyObject;
  try {
    key = loadVerifyKeyFromPem(publicKeyPem);
  } catch (e) {
    throw new AuditVerifyUsageError((e as Error).message);
  }
  const files = expandAuditPaths(paths);
  const v = new Verifier(key, options);
  const byStream = new Map<string, FileHead[]>();
  const result = (): VerifyResult => ({
    ok: true,
    streams: byStream.size,
    files: files.length,
    records: v.records,
    checkpoints: v.checkpoints,
    unsignedTail: v.unsignedTail,
    openStreams: v.openStreams,
  });
  try {
    for (const file of files) {
      const head = v.head(file);
      if (!head) continue;
      const list = byStream.get(head.stream);
      if (list) list.push(head);
      else byStream.set(head.stream, [head]);
    }
    // Rotation files of a stream are put in chain order by the seq they begin with, whatever order they came in.
    for (const stream of [...byStream.keys()].sort()) {
      const heads = byStream.get(stream)!.sort((a, b) => a.seq - b.seq || (a.file < b.file ? -1 : 1));
      v.stream(
        stream,
        heads.map((h) => h.file),
      );
    }
  } catch (e) {
    if (e instanceof Bad)
      return { ...result(), ok: false, firstBad: { file: e.file, line: e.line, reason: e.message } };
    throw e;
  }
  return result();
}
