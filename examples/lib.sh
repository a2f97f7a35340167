# Shared by the examples' run.sh: starts `pgcached demo` (a throwaway PostgreSQL with pgcached in
# front of it) on free ports and stops it on exit. Sets PROXY_URL, DIRECT_URL and METRICS_URL.
#
# PGCACHED_BIN: a built pgcached binary; without it, `cargo build --release` builds one.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${PGCACHED_BIN:-}" ]]; then
  echo "building pgcached (cargo build --release)..." >&2
  (cd "$ROOT" && cargo build --release --quiet -p pgcached)
  PGCACHED_BIN="$ROOT/target/release/pgcached"
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
stop_demo() {
  kill "$DEMO_PID" 2>/dev/null || true
  wait "$DEMO_PID" 2>/dev/null || true
  rm -f "$DEMO_LOG"
}
trap stop_demo EXIT

for _ in $(seq 1 300); do
  if grep -q "PostgreSQL (throwaway)" "$DEMO_LOG"; then break; fi
  if ! kill -0 "$DEMO_PID" 2>/dev/null; then
    echo "pgcached demo did not start:" >&2
    cat "$DEMO_LOG" >&2
    exit 1
  fi
  sleep 0.1
done
PG_ADDRESS="$(awk '/PostgreSQL \(throwaway\)/ { print $3 }' "$DEMO_LOG")"
if [[ -z "$PG_ADDRESS" ]]; then
  echo "pgcached demo did not start in time:" >&2
  cat "$DEMO_LOG" >&2
  exit 1
fi

PROXY_URL="postgres://postgres@127.0.0.1:$LISTEN_PORT/app?sslmode=disable"
DIRECT_URL="postgres://postgres@$PG_ADDRESS/app?sslmode=disable"
METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"
export PROXY_URL DIRECT_URL METRICS_URL
