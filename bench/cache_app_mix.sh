#!/usr/bin/env bash
# An application's mix over three tables: pgbench at 8 clients, four weighted scripts on
# users (10,000 rows), products (1,000 rows in 20 categories) and orders (appended to):
#   lookup  (weight 80): \set uid random(1, 10000)   SELECT id, name, email, visits FROM users WHERE id = :uid
#   listing (weight 15): \set cat random(1, 20)      SELECT id, name, price FROM products WHERE category = :cat
#   order   (weight  4): INSERT INTO orders (user_id, product_id, qty) VALUES (:uid, :pid, 1)
#   update  (weight  1): UPDATE users SET visits = visits + 1 WHERE id = :uid
# orders references users and products (no cascades). Straight to PostgreSQL vs. through
# pgcached with --cache on, in simple and prepared mode, side by side in one run (the two
# alternate within each round, after a 3 s warm-up per mode). Each pgcached run reports its hit
# ratio (from pgcached's metrics), each row the machine's load. Prints a Markdown table for
# docs/BENCHMARKS.md, then what the writes invalidated.
#
# Usage: bench/cache_app_mix.sh [seconds-per-run] [rounds]     (defaults: 10, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
PROXY_PORT="${PROXY_PORT:-6548}"
METRICS_PORT="${METRICS_PORT:-9548}"

source bench/lib.sh
start_demo --cache on
PSQL="$(dirname "$PGBENCH")/psql"

"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres app <<'SQL'
DROP TABLE IF EXISTS products; -- the demo's sample table
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE,
                    visits int NOT NULL DEFAULT 0);
INSERT INTO users (id, name, email) SELECT g, 'user ' || g, 'user' || g || '@example.com'
  FROM generate_series(1, 10000) g;
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category int NOT NULL,
                       price numeric(10, 2) NOT NULL);
INSERT INTO products SELECT g, 'product ' || g, g % 20 + 1, 5 + g % 95
  FROM generate_series(1, 1000) g;
CREATE INDEX ON products (category);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users (id),
                     product_id int NOT NULL REFERENCES products (id), qty int NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
VACUUM ANALYZE;
SQL

printf '\\set uid random(1, 10000)\nSELECT id, name, email, visits FROM users WHERE id = :uid;\n' >"$WORK/lookup.sql"
printf '\\set cat random(1, 20)\nSELECT id, name, price FROM products WHERE category = :cat;\n' >"$WORK/listing.sql"
printf '\\set uid random(1, 10000)\n\\set pid random(1, 1000)\nINSERT INTO orders (user_id, product_id, qty) VALUES (:uid, :pid, 1);\n' >"$WORK/order.sql"
printf '\\set uid random(1, 10000)\nUPDATE users SET visits = visits + 1 WHERE id = :uid;\n' >"$WORK/update.sql"

run() { # port mode seconds
  "$PGBENCH" -h 127.0.0.1 -p "$1" -U postgres -n \
    -f "$WORK/lookup.sql@80" -f "$WORK/listing.sql@15" -f "$WORK/order.sql@4" -f "$WORK/update.sql@1" \
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
