# Shared by the benchmark scripts: starts `pgcached demo` (a throwaway PostgreSQL with pgcached in
# front) and finds pgbench. Source it after setting PROXY_PORT and METRICS_PORT; pass extra
# pgcached flags to start_demo. Sets WORK (a temp dir, removed on exit), PG_PORT and PGBENCH,
# and runs the functions in EXTRA_CLEANUP (space-separated) on exit. PGCACHED_BIN=path runs that
# pgcached binary instead of building and running target/release/pgcached (to compare builds).

EXTRA_CLEANUP=""

start_demo() {
  local binary="${PGCACHED_BIN:-target/release/pgcached}"
  [[ -n "${PGCACHED_BIN:-}" ]] || cargo build --release --quiet
  WORK="$(mktemp -d)"
  chmod 755 "$WORK"
  : >"$WORK/demo.log"
  "$binary" demo "$@" --listen "127.0.0.1:${PROXY_PORT}" \
    --metrics-listen "127.0.0.1:${METRICS_PORT}" >"$WORK/demo.log" 2>&1 &
  DEMO_PID=$!
  trap bench_cleanup EXIT
  for _ in $(seq 1 100); do
    grep -q "PostgreSQL (throwaway)" "$WORK/demo.log" && break
    sleep 0.2
  done
  PG_PORT="$(sed -n 's/.*PostgreSQL (throwaway) *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/demo.log")"
  [[ -n "$PG_PORT" ]] || { cat "$WORK/demo.log"; exit 1; }
  PGBENCH="$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1 || command -v pgbench)"
}

bench_cleanup() {
  for f in $EXTRA_CLEANUP; do "$f"; done
  kill -INT "$DEMO_PID" 2>/dev/null || true
  wait "$DEMO_PID" 2>/dev/null || true
  rm -rf "$WORK"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# pgcached's cache hits and misses so far, from its metrics: "hits misses".
cache_counts() {
  curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | awk '
    $1 == "pgcached_cache_hits_total" { h = $2 }
    $1 == "pgcached_cache_misses_total" { m = $2 }
    END { printf "%d %d\n", h, m }'
}

# Hits / (hits + misses) between two cache_counts outputs ("h0 m0" "h1 m1").
hit_ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " "); h = y[1] - x[1]; m = y[2] - x[2];
    if (h + m == 0) print "–"; else printf "%.3f", h / (h + m) }'
}

# The machine's 1-minute load average (the machine is shared: note it with each result).
load1() { cut -d' ' -f1 /proc/loadavg; }

# pgcached's invalidations by source and scope so far (what the writes of a run invalidated).
invalidation_scopes() {
  curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | grep -E '^pgcached_invalidation(s|_scopes)_total' || true
}
