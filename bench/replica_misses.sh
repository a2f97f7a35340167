#!/usr/bin/env bash
# Read replicas: what cache misses cost and where they run, side by side in one run.
# `pgcached demo --standby` starts a throwaway primary, a streaming standby of it and a pgcached
# with the standby as --replica; this script adds a second pgcached without replicas in front of
# the same primary. pgbench -M prepared, 8 clients, `SELECT abalance FROM pgbench_accounts
# WHERE aid = :aid` with aid random over all 1,000,000 rows of scale 10: nearly every read is a
# first read, so a miss. Targets alternate per round: PostgreSQL direct, pgcached without
# replicas, pgcached with the replica. For each: tps, and the transactions per second the
# primary and the standby ran (xact_commit of database app; includes a few of pgcached's own
# queries). Both servers and both pgcacheds share this machine's cores, so throughput says
# little about separate machines; the queries moved off the primary are the point.
#
# Usage: bench/replica_misses.sh [seconds-per-run] [rounds]     (defaults: 10, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
PROXY_PORT="${PROXY_PORT:-6570}"
METRICS_PORT="${METRICS_PORT:-9570}"
PLAIN_PORT="${PLAIN_PORT:-6571}"

command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
source bench/lib.sh
start_demo --standby --cache on
PSQL="$(dirname "$PGBENCH")/psql"
STANDBY_PORT="$(sed -n 's/.*standby (throwaway) *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/demo.log")"
[[ -n "$STANDBY_PORT" ]] || { cat "$WORK/demo.log"; exit 1; }

"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q app >/dev/null 2>&1
printf '\\set aid random(1, 1000000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' \
  >"$WORK/read.sql"

UPSTREAM="postgres://pgcached:pgcached_secret@127.0.0.1:${PG_PORT}/app?sslmode=disable"
RUST_LOG=warn target/release/pgcached --listen "127.0.0.1:$PLAIN_PORT" \
  --metrics-listen "127.0.0.1:$((PLAIN_PORT + 100))" --upstream "$UPSTREAM" --cache on \
  >"$WORK/plain.log" 2>&1 &
PLAIN_PID=$!
stop_plain() { kill -INT "$PLAIN_PID" 2>/dev/null || true; wait "$PLAIN_PID" 2>/dev/null || true; }
EXTRA_CLEANUP="stop_plain"

commits() { # port
  "$PSQL" -h 127.0.0.1 -p "$1" -U postgres -d app -Atc \
    "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = 'app'" \
    2>/dev/null | tail -1
}
# The standby has replayed everything the primary wrote (the load).
until [[ "$("$PSQL" -h 127.0.0.1 -p "$STANDBY_PORT" -U postgres -d app -Atc \
  "SELECT count(*) FROM pgbench_accounts" 2>/dev/null)" == 1000000 ]]; do sleep 0.5; done

# A replica's fills so far (pgcached_replica_reads_total, outcome filled).
replica_fills() {
  curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" |
    awk '/^pgcached_replica_reads_total/ && /outcome="filled"/ { s += $2 } END { printf "%d", s }'
}

run() { # port seconds out
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -n -f "$WORK/read.sql" -c 8 -j 2 -T "$2" \
    -M prepared app >"$3" 2>/dev/null
}
tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1"; }
per_second() { awk -v a="$1" -v b="$2" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%.0f", (b - a) / s }'; }

# Warm-up: every target serves, the demo's replica is usable, the statements are classified.
for port in "$PG_PORT" "$PLAIN_PORT" "$PROXY_PORT"; do run "$port" 3 /dev/null; done

echo "Run: $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD), $(nproc) cores, ${SECONDS_PER_RUN} s per run, ${ROUNDS} round(s)."
echo
echo "| round | target | tps | vs direct | primary xact/s | standby xact/s | misses filled by the replica |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
  direct=""
  for target in direct plain replica; do
    case "$target" in
      direct) port="$PG_PORT"; name="PostgreSQL direct" ;;
      plain) port="$PLAIN_PORT"; name="pgcached, no replica" ;;
      replica) port="$PROXY_PORT"; name="pgcached --replica" ;;
    esac
    p0="$(commits "$PG_PORT")"; s0="$(commits "$STANDBY_PORT")"; f0="$(replica_fills)"
    run "$port" "$SECONDS_PER_RUN" "$WORK/out"
    p1="$(commits "$PG_PORT")"; s1="$(commits "$STANDBY_PORT")"; f1="$(replica_fills)"
    tps="$(tps_of "$WORK/out")"
    [[ "$target" == direct ]] && direct="$tps"
    filled="–"
    if [[ "$target" == replica ]]; then
      filled="$(awk -v f="$((f1 - f0))" -v t="$tps" -v s="$SECONDS_PER_RUN" \
        'BEGIN { if (t == 0) print "–"; else printf "%.0f %%", 100 * f / (t * s) }')"
    fi
    echo "| $round | $name | $tps | $(ratio "$tps" "$direct") | $(per_second "$p0" "$p1") | $(per_second "$s0" "$s1") | $filled |"
  done
done
