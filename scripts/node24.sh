#!/bin/sh
# Runs a command with Node >= 22.12 first on PATH. When the machine's node is older, Node 24
# comes from the npm registry's `node` package, cached under .cache/node24 (never another host).
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
minor=$(node -p 'process.versions.node.split(".")[1]' 2>/dev/null || echo 0)
if [ "$major" -lt 22 ] || { [ "$major" -eq 22 ] && [ "$minor" -lt 12 ]; }; then
  cache="$root/.cache/node24"
  if [ ! -x "$cache/node_modules/node/bin/node" ]; then
    echo "pgwarden: node $(node --version 2>/dev/null || echo none) is older than 22.12; fetching Node 24 from the npm registry into .cache/node24" >&2
    mkdir -p "$cache"
    npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error --prefix "$cache" node@24 >&2
  fi
  PATH="$cache/node_modules/node/bin:$PATH"
  export PATH
fi
PATH="$root/node_modules/.bin:$PATH"
export PATH
exec "$@"
