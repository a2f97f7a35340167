#!/usr/bin/env python3
"""Two stateless app instances sharing login sessions through pgcached.

    demo.py --database-url URL --direct-url URL [--metrics-url URL] [--processes] [--json]

--database-url  pgcached, as the app instances use it
--direct-url    PostgreSQL itself, as an administrator's tool uses it (and to create the table)
--metrics-url   pgcached's Prometheus endpoint (http://host:port/metrics), to count cache hits
--processes     run each instance as a process of its own (store.py), not as an object here
--json          print one JSON object on stdout (the transcript goes to stderr)

Instance A and instance B each have their own connection through pgcached, as two processes
behind a load balancer would. A user logs in on A; B sees the session on every request,
answered from pgcached's cache; the user logs out on A and B's very next request no longer sees
it. An administrator deletes a session straight in PostgreSQL, and B stops seeing it as soon as
the change reaches pgcached through logical replication. A session past its expiry is refused
even while its row is still served from the cache. Exits with status 1 if any expectation fails.
"""

import argparse
import datetime
import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import psycopg

from store import SessionStore, create_schema

LOOKUPS = 100
# How long a delete made outside pgcached may take to become invisible through it.
PROPAGATION_BOUND_SECONDS = 2.0
SHORT_LIFETIME = datetime.timedelta(seconds=1.5)


class InstanceProcess:
    """A SessionStore in a process of its own: store.py run as a program."""

    def __init__(self, database_url):
        self.process = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).with_name("store.py")),
             "--database-url", database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, name, *args):
        self.process.stdin.write(json.dumps({"call": name, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the instance process exited ({self.process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def login(self, user_name, lifetime=None):
        seconds = None if lifetime is None else lifetime.total_seconds()
        return self.call("login", user_name, seconds)

    def lookup(self, token):
        return self.call("lookup", token)

    def logout(self, token):
        self.call("logout", token)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)


def cache_hits(metrics_url):
    """pgcached's pgcached_cache_hits_total (all series summed), or None without a URL."""
    if not metrics_url:
        return None
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.split("{", 1)[0].split(" ", 1)[0] == "pgcached_cache_hits_total":
            total += float(line.rsplit("}", 1)[-1].split()[0] if "}" in line else line.split()[1])
    return total


def until_served_from_cache(store, token, metrics_url, limit=5.0):
    """Looks `token` up until pgcached answers a lookup from its cache, for at most `limit`
    seconds (half a second without a metrics URL, when hits cannot be seen). pgcached learns
    a new statement on its first execution and caches from the next; a long-running app
    instance is past that point. Returns what the lookups saw and whether one was a hit."""
    seen = []
    started = time.monotonic()
    while time.monotonic() - started < (limit if metrics_url else 0.5):
        before = cache_hits(metrics_url)
        seen.append(store.lookup(token))
        if before is not None and cache_hits(metrics_url) > before:
            return seen, True
        time.sleep(0.02)
    return seen, None if metrics_url is None else False


def main():
    parser = argparse.ArgumentParser(
        description="Two stateless app instances sharing login sessions through pgcached."
    )
    parser.add_argument("--database-url", required=True, help="pgcached, for the app instances")
    parser.add_argument("--direct-url", required=True, help="PostgreSQL itself, for the admin")
    parser.add_argument("--metrics-url", help="pgcached's Prometheus endpoint, for cache hits")
    parser.add_argument("--processes", action="store_true", help="one process per instance")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    out = sys.stderr if args.json else sys.stdout
    failures = []

    def say(text):
        print(text, file=out, flush=True)

    def expect(condition, what):
        say(("  ok    " if condition else "  FAIL  ") + what)
        if not condition:
            failures.append(what)
        return condition

    if create_schema(args.direct_url):
        # pgcached rereads the catalog twice a second and starts afresh when it changes; let
        # it see the new table before measuring.
        time.sleep(1.0)
    instance = InstanceProcess if args.processes else SessionStore
    a = instance(args.database_url)
    b = instance(args.database_url)
    kind = "processes" if args.processes else "objects in this process"
    say(f"instances A and B: two {kind}, each with its own connection through pgcached")
    summary = {"instances": "processes" if args.processes else "in-process"}
    try:
        say("1. alice logs in on instance A")
        token = a.login("alice")
        say(f"       session token {token[:8]}...")

        say(f"2. instance B serves {LOOKUPS} requests of alice")
        seen, _ = until_served_from_cache(b, token, args.metrics_url)
        hits_before = cache_hits(args.metrics_url)
        looked_up = [b.lookup(token) for _ in range(LOOKUPS)]
        hits = None if hits_before is None else cache_hits(args.metrics_url) - hits_before
        shared = expect(
            all(user == "alice" for user in seen + looked_up),
            "B sees alice's session on every request",
        )
        if hits is not None:
            say(f"       {hits:.0f} of {LOOKUPS} lookups answered from pgcached's cache")
            expect(hits >= 0.9 * LOOKUPS, "B's lookups are cache hits")
        summary.update(
            lookups=len(looked_up), cross_instance_lookups_ok=shared, cache_hits=hits
        )

        say("3. alice logs out on instance A")
        a.logout(token)
        b_next = b.lookup(token)
        at_once = expect(b_next is None, "B's very next request no longer sees the session")
        expect(a.lookup(token) is None, "A no longer sees it either")
        summary["logout_seen_at_once"] = at_once

        say("4. bob logs in on A; an administrator deletes his session straight in PostgreSQL")
        token = a.login("bob")
        seen, cached = until_served_from_cache(b, token, args.metrics_url)
        expect(bool(seen) and all(user == "bob" for user in seen), "B sees bob's session")
        if cached is not None:
            expect(cached, "B's lookup of bob's session is served from the cache")
        with psycopg.connect(args.direct_url, autocommit=True) as admin:
            admin.execute("DELETE FROM sessions WHERE token = %s", (token,))
            committed = time.monotonic()
        delay_ms = None
        while time.monotonic() - committed < PROPAGATION_BOUND_SECONDS:
            if b.lookup(token) is None:
                delay_ms = (time.monotonic() - committed) * 1000
                break
            time.sleep(0.001)
        expect(
            delay_ms is not None,
            f"B stops seeing the deleted session within {PROPAGATION_BOUND_SECONDS:.0f} s",
        )
        if delay_ms is not None:
            say(f"       invisible through pgcached {delay_ms:.1f} ms after the DELETE committed")
        summary.update(
            external_delete_cached_before=cached,
            external_delete_delay_ms=None if delay_ms is None else round(delay_ms, 2),
        )

        say(f"5. carol logs in on A for {SHORT_LIFETIME.total_seconds():g} s")
        token = a.login("carol", lifetime=SHORT_LIFETIME)
        expires = time.monotonic() + SHORT_LIFETIME.total_seconds()
        seen, _ = until_served_from_cache(b, token, args.metrics_url, limit=1.0)
        expect("carol" in seen, "B sees carol's session")
        time.sleep(max(0.0, expires - time.monotonic()) + 0.1)
        hits_before = cache_hits(args.metrics_url)
        expired_refused = expect(b.lookup(token) is None, "B refuses it once it has expired")
        if hits_before is not None and cache_hits(args.metrics_url) > hits_before:
            say("       its row still came from the cache: the expiry is compared in Python")
        summary["expired_session_refused"] = expired_refused
        a.logout(token)
    finally:
        a.close()
        b.close()

    summary["failures"] = failures
    summary["ok"] = not failures
    say("all expectations held" if not failures else f"{len(failures)} expectation(s) failed")
    if args.json:
        print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
