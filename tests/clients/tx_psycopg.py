"""psycopg 2 or psycopg 3 with default settings (autocommit off: the driver opens a transaction
before the first statement, the application commits), running the workload of tx_workload.py.

Usage: tx_psycopg.py HOST PORT reads|writes|all TABLE psycopg2|psycopg3
"""
from tx_workload import COMMITTED, KEY, ROLLED_BACK, Args, keys, run

ARGS = Args()
if ARGS.mode == "psycopg2":
    import psycopg2 as driver

    def connect():
        return driver.connect(host=ARGS.host, port=ARGS.port, user="postgres", dbname="app",
                              sslmode="disable", connect_timeout=10)
elif ARGS.mode == "psycopg3":
    import psycopg as driver

    def connect():
        return driver.connect(host=ARGS.host, port=ARGS.port, user="postgres", dbname="app",
                              sslmode="disable", connect_timeout=10)
else:
    raise SystemExit("MODE is psycopg2 or psycopg3")

SELECT = ARGS.select("%s")
UPDATE = ARGS.update("%s", "%s")


def read(conn, key):
    """Reads `key` in the connection's current (or a new, implicit) transaction."""
    with conn.cursor() as cur:
        cur.execute(SELECT, (key,))
        return cur.fetchone()[0]


def read_and_commit(conn, key=KEY):
    value = read(conn, key)
    conn.commit()
    return value


def update(conn, value):
    with conn.cursor() as cur:
        cur.execute(UPDATE, (value, KEY))
        return cur.rowcount


def reads():
    conn = connect()
    values = [read_and_commit(conn, key) for key in keys()]
    conn.close()
    return {"reads": values}


def writes():
    a, b = connect(), connect()
    out = {"b_before": [read_and_commit(b) for _ in range(3)]}
    # Commit path: A's write is its own until COMMIT.
    out["a_before_write"] = read(a, KEY)
    out["updated"] = update(a, COMMITTED)
    out["a_own_write"] = read(a, KEY)
    out["b_during"] = read_and_commit(b)
    a.commit()
    out["a_after_commit"] = read_and_commit(a)
    out["b_after_commit"] = read_and_commit(b)
    # Rollback path: nobody sees the write, A included once it rolled back.
    out["rolled_back_updated"] = update(a, ROLLED_BACK)
    out["a_own_rollback"] = read(a, KEY)
    out["b_during_rollback"] = read_and_commit(b)
    a.rollback()
    out["a_after_rollback"] = read_and_commit(a)
    out["b_after_rollback"] = read_and_commit(b)
    c = connect()
    out["c_after_rollback"] = read_and_commit(c)
    for conn in (a, b, c):
        conn.close()
    return out


run(ARGS.phase, reads, writes)
