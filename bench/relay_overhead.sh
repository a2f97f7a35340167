#!/usr/bin/env bash
# Relay overhead: pgbench -S (scale 10, 8 clients, 2 threads) straight to PostgreSQL vs. through
# pgcached, and through PgBouncer (session pooling) when it is installed, in each -M mode.
# Runs alternate target by target, ROUNDS times per mode, all in one run on the same cluster,
# so the ratios compare like with like on a noisy machine. Prints a Markdown table.
#
# Usage: bench/relay_overhead.sh [seconds-per-run] [rounds]     (defaults: 10, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
PROXY_PORT="${PROXY_PORT:-6543}"
BOUNCER_PORT="${BOUNCER_PORT:-6544}"
METRICS_PORT="${METRICS_PORT:-9543}"

source bench/lib.sh
start_demo --cache off

BOUNCER=""
if command -v pgbouncer >/dev/null 2>&1; then
  cat >"$WORK/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=${PG_PORT} dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${BOUNCER_PORT}
auth_type = trust
auth_file = ${WORK}/users.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = ${WORK}/pgbouncer.log
pidfile = ${WORK}/pgbouncer.pid
INI
  echo '"postgres" ""' >"$WORK/users.txt"
  if [[ "$(id -u)" == 0 ]]; then
    chown -R nobody "$WORK"
    runuser -u nobody -- pgbouncer -d "$WORK/pgbouncer.ini"
  else
    pgbouncer -d "$WORK/pgbouncer.ini"
  fi
  sleep 1
  BOUNCER="$BOUNCER_PORT"
  stop_bouncer() { [[ -f "$WORK/pgbouncer.pid" ]] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true; }
  EXTRA_CLEANUP="stop_bouncer"
fi

"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q app >/dev/null 2>&1

tps() {
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -S -c 8 -j 2 -T "$SECONDS_PER_RUN" -M "$2" -n app 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

echo "| mode | round | direct tps | pgcached tps | pgcached / direct | PgBouncer tps | PgBouncer / direct |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in simple extended prepared; do
  for round in $(seq 1 "$ROUNDS"); do
    direct="$(tps "$PG_PORT" "$mode")"
    proxied="$(tps "$PROXY_PORT" "$mode")"
    if [[ -n "$BOUNCER" ]]; then
      bounced="$(tps "$BOUNCER" "$mode")"
      printf '| %s | %s | %.0f | %.0f | %s× | %.0f | %s× |\n' "$mode" "$round" "$direct" "$proxied" \
        "$(ratio "$proxied" "$direct")" "$bounced" "$(ratio "$bounced" "$direct")"
    else
      printf '| %s | %s | %.0f | %.0f | %s× | – | – |\n' "$mode" "$round" "$direct" "$proxied" \
        "$(ratio "$proxied" "$direct")"
    fi
  done
done
