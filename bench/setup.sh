#!/bin/sh
# Installs what the benchmark compares against and drives: PgBouncer (Debian package) and pgbench.
# The bench runner never installs anything itself; run this once, as root or with sudo.
set -e
need=""
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need="$need pgbouncer"
command -v pgbench >/dev/null 2>&1 || need="$need postgresql-client"
if [ -z "$need" ]; then
  echo "bench/setup.sh: pgbouncer and pgbench are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "bench/setup.sh: installing$need"
$sudo apt-get update
# The pgbouncer package enables a system service on 6432; the bench runs its own instance on a free port.
$sudo apt-get install -y --no-install-recommends $need
