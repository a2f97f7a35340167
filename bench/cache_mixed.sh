#!/usr/bin/env bash
# Mixed load: pgbench at 8 clients, 95 % reads / 5 % updates on a hot set of 1000 keys
#   read  (weight 95): \set aid random(1, 1000)  SELECT abalance FROM pgbench_accounts WHERE aid = :aid
#   write (weight 5):  \set aid random(1, 1000)  UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid
# straight to PostgreSQL vs. through pgcached with --cache on, in simple and prepared mode, side by
# side in one run (the two alternate within each round, after a 3 s warm-up per mode). Each
# pgcached run reports its hit ratio (from pgcached's metrics), each row the machine's load.
# Prints a Markdown table for docs/BENCHMARKS.md, then what the writes invalidated.
#
# Usage: bench/cache_mixed.sh [seconds-per-run] [rounds]     (defaults: 10, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
PROXY_PORT="${PROXY_PORT:-6547}"
METRICS_PORT="${METRICS_PORT:-9547}"

source bench/lib.sh
start_demo --cache on

"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q app >/dev/null 2>&1
printf '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' >"$WORK/read.sql"
printf '\\set aid random(1, 1000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n' >"$WORK/write.sql"

run() { # port mode seconds
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -n -f "$WORK/read.sql@95" -f "$WORK/write.sql@5" \
    -c 8 -j 2 -T "$3" -M "$2" app 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

for mode in simple prepared; do
  run "$PROXY_PORT" "$mode" 3 >/dev/null
done

echo "| mode | round | direct tps | pgcached tps | pgcached / direct | pgcached hit ratio | load (1 min) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in simple prepared; do
  for round in $(seq 1 "$ROUNDS"); do
    direct="$(run "$PG_PORT" "$mode" "$SECONDS_PER_RUN")"
    before="$(cache_counts)"
    cached="$(run "$PROXY_PORT" "$mode" "$SECONDS_PER_RUN")"
    after="$(cache_counts)"
    printf '| %s | %s | %.0f | %.0f | %s× | %s | %s |\n' "$mode" "$round" "$direct" "$cached" \
      "$(ratio "$cached" "$direct")" "$(hit_ratio "$before" "$after")" "$(load1)"
  done
done
echo
invalidation_scopes
