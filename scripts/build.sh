#!/bin/sh
# Build: the AssemblyScript kernels (release, optimizeLevel 3) and the TypeScript sources.
set -e
cd "$(dirname "$0")/.."
asc assembly/index.ts --target release
tsc -p tsconfig.build.json
