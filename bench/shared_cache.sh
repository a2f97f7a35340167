#!/usr/bin/env bash
# The shared tier (--shared-cache on one redis-server) against pgcached's memory alone and
# PostgreSQL, side by side in one run, on one throwaway PostgreSQL (pgbench scale 1, 100,000 rows),
# pgbench -M prepared, script `\set aid random(1, K)` `SELECT abalance FROM pgbench_accounts
# WHERE aid = :aid`. Three tables, in Markdown for docs/BENCHMARKS.md:
#
# 1. Hit cost, 1 client, K = 1000, every key filled beforehand: PostgreSQL direct; a memory hit
#    of a pgcached without the tier; a memory hit (L1) of one with it; a shared-tier hit (L2: a pgcached whose memory holds almost nothing, --cache-size
#    64KiB, so nearly every read misses memory and is served from Redis); with the mix of answers.
# 2. Cold start of a second pgcached, 4 clients, K = 10,000: pgcached A fills every key (into
#    memory and Redis); then a fresh pgcached B reads the same keys for a few seconds, without
#    and with the shared tier: its throughput, what PostgreSQL ran, where B's answers came from.
# 3. Scale-out, K = 100,000 (a wide working set, mostly first reads): N = 1, 2, 3 fresh
#    pgcacheds (4 clients each), without and with the shared tier, Redis emptied before each run:
#    total tps and the queries per second PostgreSQL ran.
#
# PostgreSQL's query rate is xact_commit of database app over the run (it includes a few
# catalog and stream queries of the pgcacheds). Each table alternates its targets per round.
#
# Usage: bench/shared_cache.sh [seconds-per-run] [rounds]     (defaults: 5, 1)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-5}"
ROUNDS="${2:-1}"
PROXY_PORT="${PROXY_PORT:-6555}"
METRICS_PORT="${METRICS_PORT:-9555}"
REDIS_PORT="${REDIS_PORT:-6556}"
FIRST_PORT="${FIRST_PORT:-6560}"

for tool in redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install redis-server redis-tools curl)" >&2; exit 1; }
done
source bench/lib.sh
start_demo --cache on
PSQL="$(dirname "$PGBENCH")/psql"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
  >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS=()
stop_proxies() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
stop_everything() {
  stop_proxies
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
}
EXTRA_CLEANUP="stop_everything"
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q app >/dev/null 2>&1
for k in 1000 10000 100000; do
  printf '\\set aid random(1, %s)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' "$k" \
    >"$WORK/read-$k.sql"
done
UPSTREAM="postgres://pgcached:pgcached_secret@127.0.0.1:${PG_PORT}/app?sslmode=disable"

commits() {
  "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d app -Atc \
    "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = 'app'" \
    2>/dev/null | tail -1
}

# metric <pgcached-port> <name>: the (unlabelled) value, 0 when absent.
metric() {
  local v
  v="$(curl -s "http://127.0.0.1:$(($1 + 100))/metrics" | sed -n "s/^$2 \([0-9.e+]*\)\$/\1/p" | head -1)"
  awk -v v="${v:-0}" 'BEGIN { printf "%d", v }'
}

# start_proxy <port> <shared on|off> [extra flags...]: starts one pgcached and waits until it
# serves a memory hit (its change stream runs) and, with the tier, until the tier is up.
start_proxy() {
  local port="$1" shared="$2"
  shift 2
  local flags=(--listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((port + 100))"
    --upstream "$UPSTREAM" --cache on "$@")
  [[ "$shared" == on ]] && flags+=(--shared-cache "redis://127.0.0.1:$REDIS_PORT")
  RUST_LOG=warn target/release/pgcached "${flags[@]}" >>"$WORK/proxies.log" 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 1 100); do
    "$PSQL" -h 127.0.0.1 -p "$port" -U postgres -d app -Atc \
      "SELECT abalance FROM pgbench_accounts WHERE aid = 0" >/dev/null 2>&1 || true
    if [[ "$(metric "$port" pgcached_cache_hits_total)" -gt 0 ]] &&
      { [[ "$shared" == off ]] || [[ "$(metric "$port" pgcached_shared_cache_up)" == 1 ]]; }; then
      return 0
    fi
    sleep 0.1
  done
  echo "pgcached on $port did not become ready" >&2
  tail -20 "$WORK/proxies.log" >&2
  exit 1
}

# bench <port> <clients> <K> <seconds> <out>
bench() {
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -n -f "$WORK/read-$3.sql" -c "$2" -j 1 \
    -T "$4" -M prepared app >"$5" 2>/dev/null
}
tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1"; }
latency_of() { sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$1"; }

# answers <port>: "L1 hits, L2 hits, misses" as three numbers.
answers() {
  local l1 l2 m
  l1="$(metric "$1" pgcached_cache_hits_total)"
  l2="$(metric "$1" pgcached_shared_cache_hits_total)"
  m="$(metric "$1" pgcached_cache_misses_total)"
  # A shared-tier hit fills memory and is then answered from there: it is counted as a
  # memory hit too. Count it once, as L2.
  echo "$((l1 - l2)) $l2 $m"
}

# mix <before> <after>: "a % L1, b % L2, c % PostgreSQL" of the reads between two answers.
mix() {
  awk -v b="$1" -v a="$2" 'BEGIN {
    split(b, x, " "); split(a, y, " ");
    l1 = y[1] - x[1]; l2 = y[2] - x[2]; pg = y[3] - x[3]; t = l1 + l2 + pg; if (t == 0) t = 1;
    printf "%.1f %% L1, %.1f %% L2, %.1f %% PostgreSQL", 100 * l1 / t, 100 * l2 / t, 100 * pg / t }'
}
per_second() { awk -v a="$1" -v b="$2" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%.0f", (b - a) / s }'; }
micros() { awk -v ms="$1" 'BEGIN { printf "%.0f", ms * 1000 }'; }

echo "Run: $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD), $(nproc) cores, $(redis-server --version | sed 's/ sha.*//'), ${SECONDS_PER_RUN} s per run, ${ROUNDS} round(s)."
echo

# --- 1. Hit cost -----------------------------------------------------------------------------
L1_PORT=$((FIRST_PORT + 1))
L2_PORT=$((FIRST_PORT + 2))
PLAIN_PORT=$((FIRST_PORT + 3))
redis-cli -p "$REDIS_PORT" flushall >/dev/null
start_proxy "$L1_PORT" on
start_proxy "$L2_PORT" on --cache-size 64KiB
start_proxy "$PLAIN_PORT" off
# Fill every key: through the first pgcached (its memory and Redis) and the one without the tier.
bench "$L1_PORT" 4 1000 3 "$WORK/fill"
bench "$PLAIN_PORT" 4 1000 3 "$WORK/fill"
echo "### Hit cost: 1 client, 1000 keys, every key filled"
echo
echo "| target | round | latency µs | tps | answers |"
echo "|---|---:|---:|---:|---|"
for round in $(seq 1 "$ROUNDS"); do
  for target in direct plain l1 l2; do
    case "$target" in
      direct) port="$PG_PORT"; name="PostgreSQL direct" ;;
      plain) port="$PLAIN_PORT"; name="pgcached without the tier, memory hit" ;;
      l1) port="$L1_PORT"; name="pgcached, memory hit (L1)" ;;
      l2) port="$L2_PORT"; name="pgcached, shared-tier hit (L2; memory 64KiB)" ;;
    esac
    [[ "$target" != direct ]] && before="$(answers "$port")"
    bench "$port" 1 1000 "$SECONDS_PER_RUN" "$WORK/out"
    answered="PostgreSQL"
    [[ "$target" != direct ]] && answered="$(mix "$before" "$(answers "$port")")"
    printf '| %s | %s | %s | %.0f | %s |\n' "$name" "$round" \
      "$(micros "$(latency_of "$WORK/out")")" "$(tps_of "$WORK/out")" "$answered"
  done
done
stop_proxies
echo

# --- 2. Cold start of a second pgcached ------------------------------------------------------
A_PORT=$((FIRST_PORT + 1))
B_PORT=$((FIRST_PORT + 2))
echo "### Cold start of a second pgcached: 4 clients, 10,000 keys filled by another pgcached"
echo
echo "| pgcached B | round | B tps | PostgreSQL queries/s | B's answers | entries in Redis |"
echo "|---|---:|---:|---:|---|---:|"
for round in $(seq 1 "$ROUNDS"); do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  start_proxy "$A_PORT" on
  # About 10 reads per key: all but a handful of the 10,000 keys are filled.
  bench "$A_PORT" 4 10000 12 "$WORK/fill"
  entries="$(redis-cli -p "$REDIS_PORT" dbsize)"
  order="off on"
  (( round % 2 == 0 )) && order="on off"
  for shared in $order; do
    start_proxy "$B_PORT" "$shared"
    before="$(answers "$B_PORT")"
    c0="$(commits)"
    bench "$B_PORT" 4 10000 "$SECONDS_PER_RUN" "$WORK/out"
    c1="$(commits)"
    answered="$(mix "$before" "$(answers "$B_PORT")")"
    kill -INT "${PIDS[-1]}"
    wait "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
    label="fresh, memory only"
    [[ "$shared" == on ]] && label="fresh, with the shared tier"
    printf '| %s | %s | %.0f | %s | %s | %s |\n' "$label" "$round" "$(tps_of "$WORK/out")" \
      "$(per_second "$c0" "$c1")" "$answered" "$entries"
  done
  stop_proxies
done
echo

# --- 3. Scale-out: N = 1, 2, 3 ----------------------------------------------------------------
echo "### Scale-out: N fresh pgcacheds, 4 clients each, 100,000 keys"
echo
echo "| pgcacheds | shared tier | round | total tps | PostgreSQL queries/s | answers |"
echo "|---:|---|---:|---:|---:|---|"
for round in $(seq 1 "$ROUNDS"); do
  for n in 1 2 3; do
    order="off on"
    (( round % 2 == 0 )) && order="on off"
    for shared in $order; do
      redis-cli -p "$REDIS_PORT" flushall >/dev/null
      declare -A before=()
      for i in $(seq 1 "$n"); do start_proxy $((FIRST_PORT + i)) "$shared"; done
      for i in $(seq 1 "$n"); do before[$i]="$(answers $((FIRST_PORT + i)))"; done
      c0="$(commits)"
      outs=()
      for i in $(seq 1 "$n"); do
        bench $((FIRST_PORT + i)) 4 100000 "$SECONDS_PER_RUN" "$WORK/pgbench.$i" &
        outs+=($!)
      done
      for pid in "${outs[@]}"; do wait "$pid"; done
      c1="$(commits)"
      total=0
      sum_before="0 0 0"
      sum_after="0 0 0"
      for i in $(seq 1 "$n"); do
        total="$(awk -v a="$total" -v b="$(tps_of "$WORK/pgbench.$i")" 'BEGIN { print a + b }')"
        sum_before="$(awk -v a="$sum_before" -v b="${before[$i]}" 'BEGIN { split(a, x, " "); split(b, y, " "); print x[1] + y[1], x[2] + y[2], x[3] + y[3] }')"
        sum_after="$(awk -v a="$sum_after" -v b="$(answers $((FIRST_PORT + i)))" 'BEGIN { split(a, x, " "); split(b, y, " "); print x[1] + y[1], x[2] + y[2], x[3] + y[3] }')"
      done
      stop_proxies
      unset before
      printf '| %s | %s | %s | %.0f | %s | %s |\n' "$n" "$shared" "$round" "$total" \
        "$(per_second "$c0" "$c1")" "$(mix "$sum_before" "$sum_after")"
    done
  done
done
