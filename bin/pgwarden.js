#!/usr/bin/env node
// The pgwarden command: a thin launcher for the compiled CLI (npm run build writes dist/).
import os from 'node:os';

// Every worker's audit writer keeps one file operation in libuv's thread pool (4 threads by default, shared
// with DNS and crypto): size it before anything uses it.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, os.availableParallelism() + 2));
await import('../dist/src/cli/main.js');
