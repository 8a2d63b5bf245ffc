#!/usr/bin/env node
// The pgwarden command: a thin launcher for the compiled CLI (npm run build writes dist/).
import '../dist/src/cli/main.js';
