"""psycopg 3 transactions at REPEATABLE READ and SERIALIZABLE, for
tests/tests/drivers_transactions.rs. Prints a JSON transcript; with --pgcached (the endpoint is
pgcached, whose admin console answers on the same port, database `pgcached`), it also waits for
the cache where a scenario needs it and reports the console's `cache_hits` under "hits" (the
test drops that key before comparing with the run straight to PostgreSQL).

Scenarios:
  repeatable-read  a REPEATABLE READ transaction reads a row; another client updates it and the
                   cache is refilled with the new value; the transaction still reads the old
                   one, and leaves it nowhere for other clients to read.
  write-skew       two SERIALIZABLE transactions each read two rows and update the other's: one
                   of them fails with SQLSTATE 40001, as straight to PostgreSQL.
  role             a role whose default_transaction_isolation is serializable (ALTER ROLE ... SET)
                   reads in its transactions: never from the cache.

Usage: tx_isolation.py HOST PORT SCENARIO [--pgcached]
"""
import json
import sys
import time

import psycopg
from psycopg import IsolationLevel

HOST, PORT, SCENARIO = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PGCACHED = "--pgcached" in sys.argv[4:]
ROLE, ROLE_PASSWORD = "tx_serializable_user", "tx_serializable_secret"


def connect(user="postgres", password=None, dbname="app", **settings):
    extra = {} if password is None else {"password": password}
    return psycopg.connect(host=HOST, port=PORT, user=user, dbname=dbname, sslmode="disable",
                           connect_timeout=10, **extra, **settings)


class Console:
    """pgcached's `SHOW STATS`, when the endpoint is pgcached; otherwise nothing."""

    def __init__(self):
        self.conn = connect(dbname="pgcached", autocommit=True) if PGCACHED else None

    def hits(self):
        if self.conn is None:
            return 0
        for stat, value in self.conn.execute("SHOW STATS").fetchall():
            if stat == "cache_hits":
                return int(float(value))
        raise SystemExit("SHOW STATS has no cache_hits")

    def until_served(self, read, expected, limit=10.0):
        """Reads until a read returns `expected` from the cache (straight to PostgreSQL: once)."""
        started = time.monotonic()
        while True:
            before = self.hits()
            value = read()
            if value == expected and (self.conn is None or self.hits() > before):
                return value
            if time.monotonic() - started > limit:
                raise SystemExit(f"{expected!r} not served from the cache after {limit} s ({value!r})")
            time.sleep(0.02)


def repeatable_read(console):
    select = "SELECT v FROM iso_rr WHERE id = %s"
    watcher = connect(autocommit=True)
    writer = connect(autocommit=True)
    rr = connect()
    rr.isolation_level = IsolationLevel.REPEATABLE_READ
    out = {"warm": console.until_served(lambda: watcher.execute(select, (1,)).fetchone()[0], "old")}
    out["rr_first"] = rr.execute(select, (1,)).fetchone()[0]
    out["rr_isolation"] = rr.execute("SHOW transaction_isolation").fetchone()[0]
    out["updated"] = writer.execute("UPDATE iso_rr SET v = 'new' WHERE id = 1").rowcount
    out["refilled"] = console.until_served(lambda: watcher.execute(select, (1,)).fetchone()[0],
                                           "new")
    before = console.hits()
    out["rr_again"] = [rr.execute(select, (1,)).fetchone()[0] for _ in range(5)]
    hits = console.hits() - before
    # The old snapshot's reads filled nothing: a fresh statement still reads the new row.
    out["watcher_after_rr"] = [watcher.execute(select, (1,)).fetchone()[0] for _ in range(3)]
    rr.commit()
    out["rr_after_commit"] = rr.execute(select, (1,)).fetchone()[0]
    rr.commit()
    for conn in (watcher, writer, rr):
        conn.close()
    return out, hits


def outcome(action):
    """The value `action` returns, or the SQLSTATE it fails with."""
    try:
        return action()
    except psycopg.Error as e:
        return {"sqlstate": e.sqlstate}


def write_skew(console):
    select = "SELECT on_call FROM iso_ssi WHERE id = %s"
    watcher = connect(autocommit=True)
    for key in (1, 2):
        console.until_served(lambda: watcher.execute(select, (key,)).fetchone()[0], True)
    t1 = connect()
    t2 = connect()
    for conn in (t1, t2):
        conn.isolation_level = IsolationLevel.SERIALIZABLE
    before = console.hits()
    out = {
        "t1_reads": [t1.execute(select, (key,)).fetchone()[0] for key in (1, 2)],
        "t2_reads": [t2.execute(select, (key,)).fetchone()[0] for key in (1, 2)],
    }
    hits = console.hits() - before
    out["t1_update"] = outcome(
        lambda: t1.execute("UPDATE iso_ssi SET on_call = false WHERE id = 1").rowcount)
    out["t2_update"] = outcome(
        lambda: t2.execute("UPDATE iso_ssi SET on_call = false WHERE id = 2").rowcount)
    out["t1_commit"] = outcome(lambda: t1.commit() or "committed")
    out["t2_commit"] = outcome(lambda: t2.commit() or "committed")
    for conn in (t1, t2):
        conn.rollback()
    out["after"] = [row[0] for row in
                    watcher.execute("SELECT on_call FROM iso_ssi ORDER BY id").fetchall()]
    for conn in (watcher, t1, t2):
        conn.close()
    return out, hits


def role(console):
    select = "SELECT v FROM iso_role WHERE id = %s"
    conn = connect(user=ROLE, password=ROLE_PASSWORD)
    out = {"isolation": conn.execute("SHOW transaction_isolation").fetchone()[0]}
    conn.commit()
    # The same reads in READ COMMITTED blocks first (BEGIN ISOLATION LEVEL READ COMMITTED): where
    # pgcached caches such blocks, this leaves entries for exactly these statements.
    conn.isolation_level = IsolationLevel.READ_COMMITTED
    out["read_committed"] = []
    for i in range(30):
        out["read_committed"].append(conn.execute(select, (i % 3 + 1,)).fetchone()[0])
        conn.commit()
    # Then the role's default: every block is SERIALIZABLE.
    conn.isolation_level = None
    before = console.hits()
    out["serializable"] = []
    for i in range(60):
        out["serializable"].append(conn.execute(select, (i % 3 + 1,)).fetchone()[0])
        conn.commit()
    hits = console.hits() - before
    out["serializable_isolation"] = conn.execute("SHOW transaction_isolation").fetchone()[0]
    conn.commit()
    conn.close()
    return out, hits


def main():
    scenarios = {"repeatable-read": repeatable_read, "write-skew": write_skew, "role": role}
    console = Console()
    out, hits = scenarios[SCENARIO](console)
    if PGCACHED:
        out["hits"] = hits
    print(json.dumps(out, sort_keys=True))


main()
