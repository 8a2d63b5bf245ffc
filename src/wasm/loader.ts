// Loads build/pgwarden.wasm once per thread, synchronously on first use, and checks it against src/wasm/abi.ts.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  FRAMER_ABI_CONSTANTS,
  MASK_ABI_CONSTANTS,
  type PgwardenExports,
  type WasmGlobal,
  type WasmMemory,
} from './abi.js';

// The project compiles without the DOM lib (where TypeScript declares WebAssembly); this is the part the loader uses.
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

// The loader runs from src/wasm (vitest, tsx) and from dist/src/wasm (compiled); build/ sits at the repository root.
const CANDIDATES = ['../../build/pgwarden.wasm', '../../../build/pgwarden.wasm'];

let loaded: PgwardenExports | undefined;

/** Thrown when the module is missing or was built from an assembly/ that does not match src/wasm/abi.ts. */
export class WasmLoadError extends Error {
  readonly code = 'PGW_WASM_LOAD';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WasmLoadError';
  }
}

/** The thread's one instance of build/pgwarden.wasm (instantiated on the first call). */
export function loadPgwardenWasm(): PgwardenExports {
  return (loaded ??= instantiate(readModuleBytes()));
}

/** The absolute path of the module the loader uses, or undefined when none of the candidate paths holds one. */
export function locatePgwardenWasm(): string | undefined {
  return candidatePaths().find((path) => existsSync(path));
}

function candidatePaths(): string[] {
  return CANDIDATES.map((candidate) => fileURLToPath(new URL(candidate, import.meta.url)));
}

function readModuleBytes(): Uint8Array {
  const path = locatePgwardenWasm();
  if (path === undefined) {
    throw new WasmLoadError(
      `pgwarden.wasm not found (tried ${candidatePaths().join(', ')}); run npm run build:wasm`,
    );
  }
  try {
    return readFileSync(path);
  } catch (err) {
    throw new WasmLoadError(`cannot read ${path}`, { cause: err });
  }
}

function instantiate(bytes: Uint8Array): PgwardenExports {
  // abort() may run before instantiation returns (from the start function), when memory is not known yet.
  const view: { memory?: WasmMemory } = {};
  const module = new wasmApi.Module(bytes);
  const instance = new wasmApi.Instance(module, {
    env: {
      // AssemblyScript calls abort on a failed assertion or an impossible allocation; surface it as an exception.
      abort(messagePtr: number, filePtr: number, line: number, column: number): never {
        const memory = view.memory;
        const where = memory ? `${readString(memory, filePtr)}:${line}:${column}` : `${line}:${column}`;
        const what = memory ? readString(memory, messagePtr) : 'abort';
        throw new Error(`pgwarden.wasm aborted: ${what} at ${where}`);
      },
    },
  });
  const exports = instance.exports as unknown as PgwardenExports;
  view.memory = exports.memory;
  for (const [name, expected] of [...FRAMER_ABI_CONSTANTS, ...MASK_ABI_CONSTANTS]) {
    const global = exports[name] as WasmGlobal | undefined;
    const actual: unknown = global?.value;
    if (actual !== expected) {
      throw new WasmLoadError(
        `pgwarden.wasm does not match src/wasm/abi.ts: ${name} is ${String(actual)}, expected ${expected}; rebuild it`,
      );
    }
  }
  return exports;
}

// An AssemblyScript string: UTF-16LE code units, byte length in the u32 right before the pointer.
function readString(memory: WasmMemory, ptr: number): string {
  if (ptr < 4 || ptr > memory.buffer.byteLength) return '?';
  const bytes = new DataView(memory.buffer).getUint32(ptr - 4, true);
  if (bytes > 4096 || ptr + bytes > memory.buffer.byteLength) return '?';
  return Buffer.from(memory.buffer, ptr, bytes & ~1).toString('utf16le');
}
