#!/usr/bin/env bash
# The comparison suite: one throwaway PostgreSQL 15 cluster, and side by side in front of it
#   direct        PostgreSQL itself
#   pgcached on   pgcached (release build) with --cache on  (the `pgcached demo` instance)
#   pgcached off  pgcached with --cache off: the plain relay
#   PgBouncer     session pooling (Debian's package)
#   pgpool-II     with its in-memory query cache (memqcache_method = 'shmem'; Debian's package)
# plus reference points on the same machine: redis-benchmark GET against a throwaway
# redis-server, a canned-reply PostgreSQL wire server and a TCP echo server (bench/rtt.c).
# Workloads (pgbench, scale 10, 1/8/32 clients, -M simple/extended/prepared), the 1-client hit
# latency p50/p99 and perf stat counts per query are run by bench/compare.py, which writes the
# tables into docs/BENCHMARKS.md (between markers) and the charts into docs/*.png.
#
# Usage: bench/compare.sh [--quick] [--seconds N] [--rounds N] [--no-docs] [--only PARTS]
#   --only hot,miss,mixed,latency,perf runs a part and prints its tables (docs untouched)
#   COMPARE_HOLD=FILE bench/compare.sh: start everything, write the ports to FILE, wait for SIGTERM
#   python3 bench/compare.py --render bench/results/compare.json: redraw charts and tables from a run
#   (full run ≈ 20 min; --quick ≈ 5 min: 2-second runs, no extended mode, 1 and 8 clients)
# Missing PgBouncer, pgpool-II, Redis and gcc are installed with apt-get (as root, or with sudo);
# without apt-get those targets are skipped, with a message. matplotlib comes from pip
# (bench/requirements.txt) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("$@")
for arg in "$@"; do
  case "$arg" in
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
  esac
done

say() { printf '== %s\n' "$*" >&2; }

# ---- tools ----
as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  # Debian's packages start their services on install; keep them from doing so (the suite
  # starts its own throwaway instances on free ports).
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null && as_root chmod 755 "$guard"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1 \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
      >/dev/null 2>&1; } || say "apt-get install $* failed"
  [[ -n "$guard" ]] && as_root rm -f "$guard"
  return 0
}

missing=()
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v pgpool >/dev/null || missing+=(pgpool2)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && as_root true 2>/dev/null; then
    say "installing with apt-get: ${missing[*]}"
    apt_install "${missing[@]}"
  else
    say "apt-get is not available (or not as root): not installing ${missing[*]}; those targets are skipped"
  fi
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  say "installing matplotlib with pip (bench/requirements.txt)"
  python3 -m pip install -q -r bench/requirements.txt >/dev/null 2>&1 \
    || python3 -m pip install -q --user -r bench/requirements.txt >/dev/null 2>&1 \
    || say "pip could not install matplotlib: no charts"
fi

# ---- ports ----
read -r PROXY_PORT METRICS_PORT OFF_PORT OFF_METRICS_PORT BOUNCER_PORT POOL_PORT POOL_PCP_PORT \
  REDIS_PORT ECHO_PORT FLOOR_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# ---- the cluster and pgcached ----
say "building pgcached (release) and starting the throwaway cluster"
source bench/lib.sh
start_demo --cache on
RUN_AS=()
# As root, the servers run as nobody (PgBouncer refuses root); setpriv execs, so $! is theirs.
if [[ "$(id -u)" == 0 ]]; then RUN_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups --); fi
mkdir -p "$WORK/run"
[[ "$(id -u)" == 0 ]] && chown nobody "$WORK/run"
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -f "$WORK/run/pgbouncer.pid" ]] && kill "$(cat "$WORK/run/pgbouncer.pid")" 2>/dev/null || true
  [[ -f "$WORK/run/pgpool.pid" ]] && kill -INT "$(tr -d '\0' <"$WORK/run/pgpool.pid")" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  sleep 0.5
}
EXTRA_CLEANUP="stop_all"

target/release/pgcached --cache off --replication off --listen "127.0.0.1:${OFF_PORT}" \
  --metrics-listen "127.0.0.1:${OFF_METRICS_PORT}" \
  --upstream "postgres://pgcached:pgcached_secret@127.0.0.1:${PG_PORT}/app" >"$WORK/pgcached-off.log" 2>&1 &
PIDS+=($!)
OFF_PID=$!
DEMO_PGCACHED_PID="$DEMO_PID"

# ---- PgBouncer (session pooling) ----
HAVE_BOUNCER=""
if command -v pgbouncer >/dev/null; then
  cat >"$WORK/run/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=${PG_PORT} dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${BOUNCER_PORT}
unix_socket_dir =
auth_type = trust
auth_file = ${WORK}/run/users.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = ${WORK}/run/pgbouncer.log
pidfile = ${WORK}/run/pgbouncer.pid
INI
  echo '"postgres" ""' >"$WORK/run/users.txt"
  [[ "$(id -u)" == 0 ]] && chown -R nobody "$WORK/run"
  if "${RUN_AS[@]}" pgbouncer -d "$WORK/run/pgbouncer.ini"; then HAVE_BOUNCER=1; fi
else
  say "pgbouncer is not installed: PgBouncer is skipped"
fi

# ---- pgpool-II with the in-memory query cache ----
HAVE_POOL=""
if command -v pgpool >/dev/null; then
  mkdir -p "$WORK/run/pgpool-oid"
  cat >"$WORK/run/pgpool.conf" <<CONF
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = ${POOL_PORT}
socket_dir = '${WORK}/run'
pcp_listen_addresses = '127.0.0.1'
pcp_port = ${POOL_PCP_PORT}
pcp_socket_dir = '${WORK}/run'
wd_ipc_socket_dir = '${WORK}/run'
pid_file_name = '${WORK}/run/pgpool.pid'
logdir = '${WORK}/run'
log_destination = 'stderr'
backend_hostname0 = '127.0.0.1'
backend_port0 = ${PG_PORT}
backend_weight0 = 1
backend_flag0 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
num_init_children = 40
max_pool = 1
reserved_connections = 0
connection_cache = on
load_balance_mode = off
sr_check_period = 0
health_check_period = 0
failover_on_backend_error = off
use_watchdog = off
memory_cache_enabled = on
memqcache_method = 'shmem'
memqcache_total_size = 256MB
memqcache_max_num_cache = 1000000
memqcache_expire = 0
memqcache_auto_cache_invalidation = on
memqcache_maxcache = 409600
memqcache_cache_block_size = 1MB
memqcache_oiddir = '${WORK}/run/pgpool-oid'
CONF
  : >"$WORK/run/pcp.conf"
  [[ "$(id -u)" == 0 ]] && chown -R nobody "$WORK/run"
  "${RUN_AS[@]}" pgpool -n -f "$WORK/run/pgpool.conf" -F "$WORK/run/pcp.conf" \
    -a /dev/null >"$WORK/run/pgpool.log" 2>&1 &
  PIDS+=($!)
  POOL_PID=$!
  HAVE_POOL=1
else
  say "pgpool is not installed: pgpool-II is skipped"
fi

# ---- Redis ----
HAVE_REDIS=""
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  "${RUN_AS[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --daemonize no --dir "$WORK/run" >"$WORK/run/redis.log" 2>&1 &
  PIDS+=($!)
  HAVE_REDIS=1
else
  say "redis-server/redis-benchmark are not installed: Redis is skipped"
fi

# ---- reference servers: echo and canned PostgreSQL replies ----
HAVE_RTT=""
if command -v gcc >/dev/null && gcc -O2 -o "$WORK/rtt" bench/rtt.c; then
  "$WORK/rtt" echo-server "$ECHO_PORT" 60 66 &
  PIDS+=($!)
  "$WORK/rtt" pg-server "$FLOOR_PORT" &
  PIDS+=($!)
  FLOOR_PID=$!
  HAVE_RTT=1
else
  say "gcc is not available: the echo and canned-reply floors are skipped"
fi

# ---- data ----
say "loading pgbench data (scale 10)"
"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q app >"$WORK/init.log" 2>&1 \
  || { cat "$WORK/init.log"; exit 1; }
"$PGBENCH" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c 1 -T 1 -S app >/dev/null 2>&1 || true

wait_port() {
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
wait_port "$OFF_PORT" || { cat "$WORK/pgcached-off.log"; exit 1; }
if [[ -n "$HAVE_BOUNCER" ]] && ! wait_port "$BOUNCER_PORT"; then
  say "PgBouncer did not start: skipped"; cat "$WORK/run/pgbouncer.log" >&2 || true; HAVE_BOUNCER=""
fi
if [[ -n "$HAVE_POOL" ]] && ! wait_port "$POOL_PORT"; then
  say "pgpool-II did not start: skipped"; tail -20 "$WORK/run/pgpool.log" >&2 || true; HAVE_POOL=""
fi
if [[ -n "$HAVE_REDIS" ]] && ! wait_port "$REDIS_PORT"; then
  say "redis-server did not start: skipped"; HAVE_REDIS=""
fi

export PGBENCH PG_PORT PROXY_PORT METRICS_PORT OFF_PORT OFF_METRICS_PORT BOUNCER_PORT POOL_PORT \
  REDIS_PORT ECHO_PORT FLOOR_PORT HAVE_BOUNCER HAVE_POOL HAVE_REDIS HAVE_RTT WORK OFF_PID \
  DEMO_PGCACHED_PID POOL_PID="${POOL_PID:-}" RTT="$WORK/rtt" SUITE_PID=$$ FLOOR_PID="${FLOOR_PID:-}"
if [[ -n "${COMPARE_HOLD:-}" ]]; then
  # For runs by hand: everything is up; the ports go to $COMPARE_HOLD; SIGTERM tears down.
  env | grep -E '_PORT=|^WORK=|_PID=|^PGBENCH=' | sort >"$COMPARE_HOLD"
  say "holding; ports in $COMPARE_HOLD; kill -TERM $$ to stop"
  sleep 100000 &
  PIDS+=($!)
  trap 'exit 0' TERM INT
  wait "${PIDS[-1]}" || true
  exit 0
fi
python3 bench/compare.py "${ARGS[@]}"
