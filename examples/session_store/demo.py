#!/usr/bin/env python3
"""Two stateless app instances sharing login sessions through pgcached.

    demo.py --database-url URL --direct-url URL [--metrics-url URL] [--json]

Instance A and instance B each have their own connection through pgcached (`--database-url`),
as two processes behind a load balancer would. A user logs in on A; B sees the session on every
request (answered from pgcached's cache after the first); the user logs out on A and B's very
next request no longer sees it. Then an administrator deletes a session straight in PostgreSQL
(`--direct-url`), and B stops seeing it as soon as the change reaches pgcached through logical
replication. Exits with status 1 if any expectation fails.
"""

import argparse
import json
import sys
import time
import urllib.request

import psycopg

from store import SessionStore, create_schema

LOOKUPS = 100


def cache_hits(metrics_url):
    if not metrics_url:
        return None
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("pgcached_cache_hits_total"):
                return float(line.split()[-1])
    return 0.0


def warm_up(store, token, metrics_url, limit=5.0):
    """Looks the session up until pgcached answers from its cache (or `limit` seconds pass,
    or for half a second without a metrics URL); returns what the lookups saw."""
    seen = []
    started = time.monotonic()
    while time.monotonic() - started < (limit if metrics_url else 0.5):
        before = cache_hits(metrics_url)
        seen.append(store.lookup(token))
        if before is not None and cache_hits(metrics_url) > before:
            break
        time.sleep(0.02)
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="pgcached, as the app instances use it")
    parser.add_argument("--direct-url", required=True, help="PostgreSQL itself, as an admin tool uses it")
    parser.add_argument("--metrics-url", help="pgcached's /metrics, to show cache hits")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    say = (lambda *_: None) if args.json else print
    failures = []

    def expect(condition, what):
        say(("  ok    " if condition else "  FAIL  ") + what)
        if not condition:
            failures.append(what)

    create_schema(args.direct_url)
    a = SessionStore(args.database_url)
    b = SessionStore(args.database_url)

    say("1. alice logs in on instance A")
    token = a.login("alice")
    say(f"       session token {token[:8]}…")

    say(f"2. instance B serves {LOOKUPS} requests of alice")
    # pgcached judges a new statement text in the background on its first execution; a
    # long-running instance is past that point, so wait for it before measuring.
    warmup_seen = warm_up(b, token, args.metrics_url)
    hits_before = cache_hits(args.metrics_url)
    seen = warmup_seen + [b.lookup(token) for _ in range(LOOKUPS)]
    hits = None
    if hits_before is not None:
        hits = cache_hits(args.metrics_url) - hits_before
    expect(all(user == "alice" for user in seen), "B sees alice's session on every request")
    if hits is not None:
        say(f"       {hits:.0f} of {LOOKUPS} lookups answered from pgcached's cache")
        expect(hits >= 0.9 * LOOKUPS, "lookups are cache hits")

    say("3. alice logs out on instance A")
    a.logout(token)
    after_logout = b.lookup(token)
    expect(after_logout is None, "B's very next request no longer sees the session")

    say("4. bob logs in on A; an administrator deletes his session straight in PostgreSQL")
    token = a.login("bob")
    for _ in range(5):
        b.lookup(token)
        time.sleep(0.05)
    expect(b.lookup(token) == "bob", "B sees bob's session")
    with psycopg.connect(args.direct_url, autocommit=True) as admin:
        admin.execute("DELETE FROM sessions WHERE token = %s", (token,))
    deleted_at = time.monotonic()
    delay_ms = None
    while time.monotonic() - deleted_at < 2.0:
        if b.lookup(token) is None:
            delay_ms = (time.monotonic() - deleted_at) * 1000
            break
        time.sleep(0.001)
    expect(delay_ms is not None, "B stops seeing the session deleted outside pgcached")
    if delay_ms is not None:
        say(f"       invisible through pgcached {delay_ms:.1f} ms after the DELETE committed")

    a.close()
    b.close()
    summary = {
        "lookups": len(seen),
        "cross_instance_lookups_ok": all(user == "alice" for user in seen),
        "cache_hits": hits,
        "logout_seen_at_once": after_logout is None,
        "external_delete_delay_ms": None if delay_ms is None else round(delay_ms, 2),
        "failures": failures,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        say("all expectations held" if not failures else f"{len(failures)} expectation(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
