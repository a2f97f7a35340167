#!/usr/bin/env bash
# Cache hits: pgbench at 8 clients on a hot set of 1000 keys
# (\set aid random(1, 1000); SELECT abalance FROM pgbench_accounts WHERE aid = :aid),
# straight to PostgreSQL vs. through pgcached with --cache on, in each -M mode, side by side in
# one run; and redis-benchmark -t get -c 8 on the same machine when redis-server is installed.
# Prints a Markdown table for docs/BENCHMARKS.md.
#
# Usage: bench/cache_hot_set.sh [seconds-per-run] [rounds]     (defaults: 10, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
PROXY_PORT="${PROXY_PORT:-6545}"
METRICS_PORT="${METRICS_PORT:-9545}"
REDIS_PORT="${REDIS_PORT:-6546}"

source bench/lib.sh
start_demo --cache on

"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q app >/dev/null 2>&1
printf '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' >"$WORK/hot.sql"

tps() {
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -n -f "$WORK/hot.sql" -c 8 -j 2 \
    -T "$SECONDS_PER_RUN" -M "$2" app 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

# Warm the cache: every key once per mode.
for mode in simple extended prepared; do
  "$PGBENCH" -h 127.0.0.1 -p "$PROXY_PORT" -U postgres -n -f "$WORK/hot.sql" -c 8 -j 2 -T 3 \
    -M "$mode" app >/dev/null 2>&1
done

echo "| mode | round | direct tps | pgcached tps | pgcached / direct |"
echo "|---|---:|---:|---:|---:|"
for mode in simple extended prepared; do
  for round in $(seq 1 "$ROUNDS"); do
    direct="$(tps "$PG_PORT" "$mode")"
    cached="$(tps "$PROXY_PORT" "$mode")"
    printf '| %s | %s | %.0f | %.0f | %s× |\n' "$mode" "$round" "$direct" "$cached" \
      "$(ratio "$cached" "$direct")"
  done
done

if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  stop_redis() { kill "$REDIS_PID" 2>/dev/null || true; }
  EXTRA_CLEANUP="stop_redis"
  sleep 1
  echo
  echo "| redis-benchmark -t get -c 8 | requests/s |"
  echo "|---|---:|"
  for round in $(seq 1 "$ROUNDS"); do
    rps="$(redis-benchmark -p "$REDIS_PORT" -t get -c 8 -n 400000 -q 2>/dev/null \
      | tr '\r' '\n' | sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)"
    printf '| round %s | %.0f |\n' "$round" "$rps"
  done
fi
echo
curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | grep -E '^pgcached_cache_(hits|misses)_total' || true
