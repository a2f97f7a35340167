# Shared by the examples' run.sh: starts `pgcached demo` (a throwaway PostgreSQL with pgcached in
# front of it) on free ports and stops it on exit. Sets PROXY_URL, DIRECT_URL and METRICS_URL.
#
# PGCACHED_BIN: a built pgcached binary; without it, `cargo build --release` builds one.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${PGCACHED_BIN:-}" ]]; then
  echo "building pgcached (cargo build --release -p pgcached)..." >&2
  (cd "$ROOT" && cargo build --release --quiet -p pgcached)
  PGCACHED_BIN="$ROOT/target/release/pgcached"
fi
if [[ ! -x "$PGCACHED_BIN" ]]; then
  echo "PGCACHED_BIN=$PGCACHED_BIN is not an executable" >&2
  exit 1
fi

python3 -c 'import psycopg' 2>/dev/null || {
  echo "the examples need psycopg 3: python3 -m pip install 'psycopg[binary]'" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

LISTEN_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
DEMO_LOG="$(mktemp)"
"$PGCACHED_BIN" --listen "127.0.0.1:$LISTEN_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  demo >"$DEMO_LOG" 2>&1 &
DEMO_PID=$!

APP_PID=""

# Stops the app if it still runs, then pgcached (which removes its throwaway cluster), waiting
# up to 15 s for it.
stop_demo() {
  if [[ -n "$APP_PID" ]]; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
  if kill -0 "$DEMO_PID" 2>/dev/null; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$DEMO_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DEMO_PID" 2>/dev/null || true
  fi
  wait "$DEMO_PID" 2>/dev/null || true
  rm -f "$DEMO_LOG"
}
trap stop_demo EXIT
trap 'exit 130' INT TERM

# The banner is printed once pgcached accepts connections.
PG_ADDRESS=""
for _ in $(seq 1 600); do
  PG_ADDRESS="$(awk '/PostgreSQL \(throwaway\)/ { print $3 }' "$DEMO_LOG")"
  if [[ -n "$PG_ADDRESS" ]]; then break; fi
  if ! kill -0 "$DEMO_PID" 2>/dev/null; then
    echo "pgcached demo did not start:" >&2
    cat "$DEMO_LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$PG_ADDRESS" ]]; then
  echo "pgcached demo did not start within 60 s:" >&2
  cat "$DEMO_LOG" >&2
  exit 1
fi

PROXY_URL="postgres://postgres@127.0.0.1:$LISTEN_PORT/app?sslmode=disable"
DIRECT_URL="postgres://postgres@$PG_ADDRESS/app?sslmode=disable"
METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"
export PROXY_URL DIRECT_URL METRICS_URL
echo "pgcached demo: PostgreSQL at $PG_ADDRESS, pgcached at 127.0.0.1:$LISTEN_PORT," \
  "metrics at $METRICS_URL" >&2

# Runs the example's program, in the background so that a signal to this script stops it at once
# (bash runs traps only between commands); returns its exit status.
run_app() {
  "$@" &
  APP_PID=$!
  local status=0
  wait "$APP_PID" || status=$?
  APP_PID=""
  return "$status"
}
