#!/usr/bin/env python3
"""A product catalog that reads the database on every request: the read-through cache case.

Each simulated request renders a product page (one product by id, most requests going to a few
popular products) and the listing of that product's category. About 1 % of requests change the
product's price and read it back, on the same connection and on another one, checking that the
new price is seen at once (read-your-writes). The app has no cache code at all: pointing its
database URL at pgcached is the whole change.

    app.py [run]   --database-url URL --direct-url URL [--metrics-url URL] [--json]
    app.py compare --database-url URL --direct-url URL [--metrics-url URL] [--json]

--database-url  what the app connects to (pgcached, or PostgreSQL itself); in `compare`, pgcached
--direct-url    PostgreSQL itself: sets up the table and measures the database's load (index
                and sequential scans of the table, from pg_stat_user_tables)
--metrics-url   pgcached's Prometheus endpoint (http://host:port/metrics), for the hit ratio

`run` runs the requests once. `compare` runs the same requests straight to PostgreSQL, then
through pgcached, and prints both side by side. After each run, every product page and category
listing is read through the app's URL and compared with PostgreSQL's own answer. Exits with
status 1 if a read-your-writes check fails, an answer differs from the database, or a request
fails.
"""

import argparse
import itertools
import json
import random
import sys
import threading
import time
import urllib.request
from decimal import Decimal

import psycopg

PRODUCTS = 100
CATEGORIES = 10

SETUP = f"""
CREATE TABLE IF NOT EXISTS catalog_products (
    id int PRIMARY KEY,
    name text NOT NULL,
    category int NOT NULL,
    price numeric(10,2) NOT NULL
);
INSERT INTO catalog_products
SELECT g, 'product ' || g, g % {CATEGORIES}, 10 + g % 90
  FROM generate_series(1, {PRODUCTS}) g
ON CONFLICT (id) DO NOTHING;
"""
# Every run starts from the same prices.
RESET_PRICES = """
UPDATE catalog_products SET price = 10 + id % 90 WHERE price <> 10 + id % 90
"""

PRODUCT_PAGE = "SELECT id, name, category, price FROM catalog_products WHERE id = %s"
CATEGORY_LISTING = (
    "SELECT id, name, price FROM catalog_products WHERE category = %s ORDER BY id LIMIT 20"
)
CHANGE_PRICE = "UPDATE catalog_products SET price = %s WHERE id = %s"
TABLE_SCANS = """
SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::bigint
  FROM pg_stat_user_tables WHERE relname = 'catalog_products'
"""

# Popularity falls with rank (a Zipf-like law): product 1 gets about 23 % of the page views,
# product 10 about 2 %, product 100 about 0.15 %.
CUMULATIVE_WEIGHTS = list(itertools.accumulate(1 / rank**1.1 for rank in range(1, PRODUCTS + 1)))
PRODUCT_IDS = list(range(1, PRODUCTS + 1))
UPDATE_SHARE = 0.01


def pick_product(rng):
    return rng.choices(PRODUCT_IDS, cum_weights=CUMULATIVE_WEIGHTS)[0]


# The app's sessions carry this name, through pgcached too (it relays the startup unchanged).
APP_NAME = "catalog-example"
APP_SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"


def app_connection(url):
    return psycopg.connect(url, autocommit=True, application_name=APP_NAME)


def wait_for_app_sessions_to_end(direct_url, limit=15.0):
    """A PostgreSQL session hands its table statistics over as it ends: wait for the app's."""
    deadline = time.monotonic() + limit
    with psycopg.connect(direct_url, autocommit=True) as conn:
        while conn.execute(APP_SESSIONS, (APP_NAME,)).fetchone()[0] > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app's sessions did not end within {limit:g} s")
            time.sleep(0.05)
    # A session leaves pg_stat_activity just before it hands its statistics over.
    time.sleep(0.2)


def table_scans(direct_url):
    """Index plus sequential scans of the table PostgreSQL has counted so far."""
    with psycopg.connect(direct_url, autocommit=True) as conn:
        return conn.execute(TABLE_SCANS).fetchone()[0]


def metric_totals(metrics_url, names):
    """Sums every series of each metric in `names` from a Prometheus text endpoint."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            # `name{labels} value [timestamp]`: labels may hold spaces, the value never does.
            value = line.rsplit("}", 1)[-1].split()[0] if "}" in line else line.split()[1]
            totals[name] += float(value)
    return totals


def cache_counters(metrics_url):
    if not metrics_url:
        return None
    totals = metric_totals(
        metrics_url, ["pgcached_cache_hits_total", "pgcached_cache_misses_total"]
    )
    return totals["pgcached_cache_hits_total"], totals["pgcached_cache_misses_total"]


class Tally:
    """What the worker threads report, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.updates = 0
        self.failures = []

    def add(self, requests, updates, failures):
        with self.lock:
            self.requests += requests
            self.updates += updates
            self.failures.extend(failures)


def worker(url, requests, seed, tally):
    """One app server thread: `requests` requests on its own connections."""
    rng = random.Random(seed)
    done = updates = 0
    failures = []
    try:
        with app_connection(url) as conn, app_connection(url) as other:
            for _ in range(requests):
                product = pick_product(rng)
                page = conn.execute(PRODUCT_PAGE, (product,)).fetchone()
                conn.execute(CATEGORY_LISTING, (page[2],)).fetchall()
                if rng.random() < UPDATE_SHARE:
                    new_price = Decimal(rng.randrange(100, 10000)) / 100
                    conn.execute(CHANGE_PRICE, (new_price, product))
                    updates += 1
                    for name, connection in (("same", conn), ("another", other)):
                        seen = connection.execute(PRODUCT_PAGE, (product,)).fetchone()[3]
                        if seen != new_price:
                            failures.append(
                                f"product {product}: set price {new_price}, read back {seen} "
                                f"on {name} connection"
                            )
                done += 1
    except Exception as e:  # a failed request fails the run, it does not end it silently
        failures.append(f"request failed: {e!r}")
    tally.add(done, updates, failures)


def requests_of(url, requests, threads, first_seed):
    tally = Tally()
    pool = [
        threading.Thread(
            target=worker,
            args=(url, requests // threads + (i < requests % threads), first_seed + i, tally),
        )
        for i in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return tally


def answers(url):
    """Every product page and every category listing, as the app would read them."""
    with app_connection(url) as conn:
        pages = [conn.execute(PRODUCT_PAGE, (p,)).fetchone() for p in PRODUCT_IDS]
        listings = [conn.execute(CATEGORY_LISTING, (c,)).fetchall() for c in range(CATEGORIES)]
    return pages + listings


def run(url, direct_url, metrics_url, requests, threads, mode):
    with psycopg.connect(direct_url, autocommit=True) as conn:
        conn.execute(SETUP)
        conn.execute(RESET_PRICES)
    # Warm-up, not measured: a cache learns a statement on its first execution and can serve
    # it from the next (pgcached asks the catalog about it in the background meanwhile), and
    # PostgreSQL's own buffers warm up too.
    requests_of(url, 50, 1, 0)
    time.sleep(0.5)
    wait_for_app_sessions_to_end(direct_url)

    scans_before = table_scans(direct_url)
    counters_before = cache_counters(metrics_url)
    started = time.monotonic()
    tally = requests_of(url, requests, threads, 1)
    elapsed = time.monotonic() - started
    counters_after = cache_counters(metrics_url)
    wait_for_app_sessions_to_end(direct_url)
    scans = table_scans(direct_url) - scans_before

    # Not measured: what the app reads now must be what the database holds.
    mismatches = sum(a != b for a, b in zip(answers(url), answers(direct_url)))

    hit_ratio = None
    if counters_before is not None:
        hits = counters_after[0] - counters_before[0]
        misses = counters_after[1] - counters_before[1]
        hit_ratio = round(hits / (hits + misses), 3) if hits + misses else 0.0
    return {
        "mode": mode,
        "requests": tally.requests,
        "price_updates": tally.updates,
        "elapsed_seconds": round(elapsed, 3),
        "requests_per_second": round(tally.requests / elapsed, 1),
        "table_scans": scans,
        "scans_per_request": round(scans / max(tally.requests, 1), 3),
        "hit_ratio": hit_ratio,
        "read_your_writes_ok": not tally.failures,
        "failures": tally.failures,
        "answers_checked": PRODUCTS + CATEGORIES,
        "answers_differing_from_database": mismatches,
    }


ROWS = [
    ("requests", "requests"),
    ("price updates", "price_updates"),
    ("elapsed (s)", "elapsed_seconds"),
    ("requests per second", "requests_per_second"),
    ("table scans in PostgreSQL", "table_scans"),
    ("table scans per request", "scans_per_request"),
    ("cache hit ratio", "hit_ratio"),
    ("read-your-writes", "read_your_writes_ok"),
    ("answers differing from db", "answers_differing_from_database"),
]


def show(value):
    if value is None:
        return "-"
    if value is True:
        return "ok"
    if value is False:
        return "FAILED"
    return str(value)


def print_table(results):
    print(f"{'':28}" + "".join(f"{r['mode']:>14}" for r in results))
    for title, key in ROWS:
        print(f"{title:28}" + "".join(f"{show(r[key]):>14}" for r in results))


def ok(result):
    return (
        result["read_your_writes_ok"]
        and result["answers_differing_from_database"] == 0
        and result["requests"] > 0
    )


def main():
    parser = argparse.ArgumentParser(
        description="A product catalog that reads the database on every request.",
        epilog="run: one run against --database-url; compare: PostgreSQL alone, then pgcached",
    )
    parser.add_argument("mode", nargs="?", choices=["run", "compare"], default="run")
    parser.add_argument(
        "--database-url", "--proxy-url", dest="database_url", required=True,
        help="what the app connects to (in compare: pgcached)",
    )
    parser.add_argument("--direct-url", required=True, help="PostgreSQL itself")
    parser.add_argument("--metrics-url", help="pgcached's Prometheus endpoint, for the hit ratio")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.requests < 1 or args.threads < 1:
        parser.error("--requests and --threads must be positive")

    if args.mode == "run":
        mode = "direct" if args.database_url == args.direct_url else "pgcached"
        metrics_url = args.metrics_url if mode == "pgcached" else None
        result = run(
            args.database_url, args.direct_url, metrics_url, args.requests, args.threads, mode
        )
        results = [result]
        summary = result
    else:
        if args.database_url == args.direct_url:
            parser.error("compare needs pgcached's URL as --database-url")
        direct = run(args.direct_url, args.direct_url, None, args.requests, args.threads, "direct")
        cached = run(
            args.database_url, args.direct_url, args.metrics_url, args.requests, args.threads,
            "pgcached",
        )
        results = [direct, cached]
        reduction = None
        if cached["table_scans"]:
            reduction = round(direct["table_scans"] / cached["table_scans"], 2)
        summary = {
            "direct": direct,
            "pgcached": cached,
            "database_load_reduction": reduction,
            "ok": ok(direct) and ok(cached),
        }

    if args.json:
        print(json.dumps(summary))
    else:
        print_table(results)
        if args.mode == "compare" and summary["database_load_reduction"]:
            print(
                f"\nPostgreSQL scanned the table {summary['database_load_reduction']}x less "
                "often with pgcached in front of it."
            )
    for result in results:
        for failure in result["failures"]:
            print(f"{result['mode']}: {failure}", file=sys.stderr)
        if result["answers_differing_from_database"]:
            print(
                f"{result['mode']}: {result['answers_differing_from_database']} answers differ "
                "from the database's",
                file=sys.stderr,
            )
    return 0 if all(ok(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
