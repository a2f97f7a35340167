#!/usr/bin/env bash
# Reads inside transactions: sysbench oltp_read_only (BEGIN, 10 point selects, 4 range
# queries, COMMIT per transaction) and oltp_point_select, pgsql driver (prepared statements),
# 8 threads, straight to PostgreSQL vs. through pgcached --cache on, side by side in one run.
# Prints a Markdown table for docs/BENCHMARKS.md, then pgcached's hit and miss counters.
#
# Needs Debian's sysbench (apt-get install sysbench).
#
# Usage: bench/sysbench_tx.sh [seconds-per-run] [rounds] [table-size]   (defaults: 20, 2, 10000)
# WARMUP=seconds sets the warm-up per test through pgcached (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-20}"
ROUNDS="${2:-2}"
TABLE_SIZE="${3:-10000}"
PROXY_PORT="${PROXY_PORT:-6547}"
METRICS_PORT="${METRICS_PORT:-9547}"

command -v sysbench >/dev/null || { echo "sysbench not installed (apt-get install sysbench)" >&2; exit 1; }

source bench/lib.sh
start_demo --cache on

sb() {
  local port="$1" test="$2"
  shift 2
  sysbench "$test" --db-driver=pgsql --pgsql-host=127.0.0.1 --pgsql-port="$port" \
    --pgsql-user=postgres --pgsql-db=app --tables=1 --table-size="$TABLE_SIZE" "$@"
}

sb "$PG_PORT" oltp_read_only prepare >/dev/null

tps() {
  sb "$1" "$2" --threads=8 --time="$SECONDS_PER_RUN" --report-interval=0 run 2>/dev/null \
    | sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\) per sec.)/\1/p'
}

# Warm: the statements get judged and the hot rows cached.
for test in oltp_read_only oltp_point_select; do
  sb "$PROXY_PORT" "$test" --threads=8 --time="${WARMUP:-5}" run >/dev/null 2>&1
done

echo "| test | round | direct tps | pgcached tps | pgcached / direct |"
echo "|---|---:|---:|---:|---:|"
for test in oltp_read_only oltp_point_select; do
  for round in $(seq 1 "$ROUNDS"); do
    direct="$(tps "$PG_PORT" "$test")"
    cached="$(tps "$PROXY_PORT" "$test")"
    printf '| %s | %s | %.0f | %.0f | %s× |\n' "$test" "$round" "$direct" "$cached" \
      "$(ratio "$cached" "$direct")"
  done
done
echo
curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" \
  | grep -E '^pgcached_cache_(hits|misses)_total|^pgcached_cache_bypass_total|^pgcached_(begins_deferred|blocks_local)_total' || true
