#!/usr/bin/env python3
"""A product-catalog app that reads the database on every request: the read-through cache case.

Each simulated request renders a product page (one product by id, skewed towards popular
products) and its category listing; about 1 % of requests change a price and read the product
back, checking that the new price is seen at once (read-your-writes). The app has no cache code
at all: pointing its DATABASE_URL at pgcached is the whole change.

    app.py run     --database-url URL --direct-url URL [--metrics-url URL]
    app.py compare --proxy-url URL    --direct-url URL [--metrics-url URL]

`--direct-url` is a connection straight to PostgreSQL, used to set up the table and to measure
the database load (index and sequential scans of the table, from pg_stat_user_tables).
`--metrics-url` is pgcached's Prometheus endpoint, for the hit ratio. `compare` runs the same
requests without and then with pgcached and prints both side by side.
"""

import argparse
import json
import random
import sys
import threading
import time
import urllib.request

import psycopg

PRODUCTS = 200
CATEGORIES = 10

SETUP = f"""
CREATE TABLE IF NOT EXISTS catalog_products (
    id int PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    price numeric(10,2) NOT NULL
);
INSERT INTO catalog_products
SELECT g, 'product ' || g, 'category ' || (g % {CATEGORIES}), 10 + (g % 90)
  FROM generate_series(1, {PRODUCTS}) g
ON CONFLICT (id) DO NOTHING;
"""

PRODUCT_PAGE = "SELECT id, name, category, price FROM catalog_products WHERE id = %s"
CATEGORY_LIST = (
    "SELECT id, name, price FROM catalog_products WHERE category = %s ORDER BY id LIMIT 20"
)
CHANGE_PRICE = "UPDATE catalog_products SET price = %s WHERE id = %s"
TABLE_SCANS = """
SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
  FROM pg_stat_user_tables WHERE relname = 'catalog_products'
"""


def popular_product(rng):
    """Product ids skewed towards the first ones, as real catalogs are."""
    return min(PRODUCTS, 1 + int(rng.expovariate(1 / 12)))


def table_scans(direct_url):
    with psycopg.connect(direct_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(TABLE_SCANS).fetchone()[0]


def cache_counters(metrics_url):
    """pgcached's hit and miss counters, from its Prometheus text endpoint."""
    if not metrics_url:
        return None
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counters = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        if line.startswith("pgcached_cache_hits_total"):
            counters["hits"] = float(line.split()[-1])
        elif line.startswith("pgcached_cache_misses_total"):
            counters["misses"] = float(line.split()[-1])
    return counters


def worker(url, requests, seed, failures, lock):
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(requests):
            product = popular_product(rng)
            row = conn.execute(PRODUCT_PAGE, (product,)).fetchone()
            conn.execute(CATEGORY_LIST, (row[2],)).fetchall()
            if rng.random() < 0.01:
                new_price = round(rng.uniform(1, 100), 2)
                conn.execute(CHANGE_PRICE, (new_price, product))
                seen = conn.execute(PRODUCT_PAGE, (product,)).fetchone()[3]
                if float(seen) != new_price:
                    with lock:
                        failures.append(
                            f"product {product}: wrote price {new_price}, read back {seen}"
                        )


def run(url, direct_url, metrics_url, requests, threads, label):
    with psycopg.connect(direct_url, autocommit=True) as conn:
        conn.execute(SETUP)
    # Warm-up, not measured: a cache has to see a statement once before it can serve it.
    worker(url, 50, 0, [], threading.Lock())
    time.sleep(1.2)
    scans_before = table_scans(direct_url)
    counters_before = cache_counters(metrics_url) if label == "pgcached" else None
    failures = []
    lock = threading.Lock()
    per_thread = requests // threads
    started = time.monotonic()
    pool = [
        threading.Thread(target=worker, args=(url, per_thread, seed, failures, lock))
        for seed in range(1, threads + 1)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    # Sessions report their table statistics when they end; give the collector a moment.
    time.sleep(1.2)
    scans = table_scans(direct_url) - scans_before
    done = per_thread * threads
    result = {
        "mode": label,
        "requests": done,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(done / elapsed, 1),
        "table_scans": scans,
        "scans_per_request": round(scans / done, 3),
        "read_your_writes_failures": failures,
        "hit_ratio": None,
    }
    if counters_before is not None:
        after = cache_counters(metrics_url)
        hits = after["hits"] - counters_before["hits"]
        misses = after["misses"] - counters_before["misses"]
        result["hit_ratio"] = round(hits / (hits + misses), 3) if hits + misses else 0.0
    return result


def print_table(results):
    print(f"{'':28}" + "".join(f"{r['mode']:>16}" for r in results))
    rows = [
        ("requests", "requests"),
        ("requests per second", "requests_per_second"),
        ("table scans in PostgreSQL", "table_scans"),
        ("table scans per request", "scans_per_request"),
        ("cache hit ratio", "hit_ratio"),
    ]
    for title, key in rows:
        values = "".join(
            f"{'-' if r[key] is None else r[key]:>16}" for r in results
        )
        print(f"{title:28}{values}")


def main():
    parser = argparse.ArgumentParser(description="product catalog read-through example")
    parser.add_argument("mode", choices=["run", "compare"])
    parser.add_argument("--database-url", help="what the app uses (run)")
    parser.add_argument("--proxy-url", help="pgcached (compare)")
    parser.add_argument("--direct-url", required=True, help="PostgreSQL itself")
    parser.add_argument("--metrics-url", help="pgcached's /metrics")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.mode == "run":
        url = args.database_url or args.direct_url
        label = "pgcached" if url != args.direct_url else "direct"
        results = [run(url, args.direct_url, args.metrics_url, args.requests, args.threads, label)]
    else:
        if not args.proxy_url:
            parser.error("compare needs --proxy-url")
        results = [
            run(args.direct_url, args.direct_url, None, args.requests, args.threads, "direct"),
            run(args.proxy_url, args.direct_url, args.metrics_url, args.requests, args.threads,
                "pgcached"),
        ]
    if args.json:
        print(json.dumps(results if args.mode == "compare" else results[0]))
    else:
        print_table(results)
    failures = [f for r in results for f in r["read_your_writes_failures"]]
    for failure in failures:
        print(f"read-your-writes FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
