"""psycopg 3 calls whose results are printed as JSON, to compare pgcached with PostgreSQL.

Usage: psycopg_check.py HOST PORT            run every check, print a transcript
       psycopg_check.py HOST PORT --tls      connect with sslmode=require, print what TLS says
"""
import json
import sys
import threading
import time

import psycopg
from psycopg import sql

HOST, PORT = sys.argv[1], int(sys.argv[2])


def conninfo(user="postgres", password=None, sslmode="disable", **extra):
    parts = dict(host=HOST, port=PORT, user=user, dbname="app", sslmode=sslmode, connect_timeout=10)
    if password is not None:
        parts["password"] = password
    parts.update(extra)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes:" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return f"float:{value}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"{type(value).__name__}:{value}"


TYPES_SQL = """SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 12345.678::numeric,
  true, 'text é ✓', NULL::text, '\\x00ff10'::bytea, '2024-02-29 12:34:56'::timestamp,
  '2024-02-29 12:34:56+02'::timestamptz, '2024-02-29'::date, '12:34:56'::time,
  '1 day 02:00:00'::interval, '2e3b1c4a-9b0f-4e8e-8b1a-1c2d3e4f5a6b'::uuid,
  '{"a": [1, 2]}'::jsonb, '{"b": null}'::json, ARRAY[1, 2, NULL]::int[], ARRAY['x', 'y']::text[],
  '192.168.0.1/24'::inet, 'infinity'::float8, 'NaN'::numeric, %s::text, %s::int, %s::bytea"""


def check_types(out):
    for binary in (False, True):
        with psycopg.connect(conninfo(), prepare_threshold=None) as conn:
            with conn.cursor(binary=binary) as cur:
                cur.execute(TYPES_SQL, ("param ✓", 42, b"\x00\x01\xfe"))
                out[f"types_binary_{binary}"] = jsonable(list(cur.fetchone()))
                out[f"columns_binary_{binary}"] = [(d.name, d.type_code) for d in cur.description]


def check_prepared(out):
    with psycopg.connect(conninfo(), prepare_threshold=0) as conn:
        rows = []
        for i in range(20):
            rows.append(conn.execute("SELECT %s::int * 2, %s::text", (i, f"v{i}")).fetchone())
        out["prepared"] = jsonable(rows)


def check_errors(out):
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        errors = []
        for statement in ("SELECT * FROM no_such_table", "SELECT 1/0", "SELEC 1",
                          "SELECT 'abc'::int"):
            try:
                conn.execute(statement)
                errors.append(None)
            except psycopg.Error as e:
                errors.append([e.sqlstate, e.diag.message_primary])
        out["errors"] = errors
        out["after_errors"] = conn.execute("SELECT 'alive'").fetchone()[0]


def check_transactions(out):
    with psycopg.connect(conninfo()) as conn:
        conn.execute("DROP TABLE IF EXISTS py_psycopg_tx")
        conn.execute("CREATE TABLE py_psycopg_tx (id int primary key, v text)")
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO py_psycopg_tx VALUES (1, 'kept')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO py_psycopg_tx VALUES (2, 'rolled back')")
                conn.execute("INSERT INTO py_psycopg_tx VALUES (1, 'duplicate')")
        except psycopg.errors.UniqueViolation as e:
            out["unique_violation"] = e.sqlstate
        out["transaction_rows"] = conn.execute("SELECT * FROM py_psycopg_tx ORDER BY id").fetchall()
        conn.commit()


def check_copy(out):
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_psycopg_copy")
        conn.execute("CREATE TABLE py_psycopg_copy (id int, name text, data bytea)")
        with conn.cursor() as cur:
            with cur.copy("COPY py_psycopg_copy FROM STDIN") as copy:
                for i in range(5000):
                    copy.write_row((i, f"name {i}\twith tab", bytes([i % 256, 0])))
            with cur.copy("COPY py_psycopg_copy TO STDOUT (FORMAT binary)") as copy:
                out["copy_out_binary_bytes"] = sum(len(chunk) for chunk in copy)
            rows = []
            with cur.copy("COPY (SELECT * FROM py_psycopg_copy ORDER BY id LIMIT 5) TO STDOUT") as copy:
                for row in copy.rows():
                    rows.append(row)
            out["copy_out_rows"] = jsonable(rows)
        out["copy_count"] = conn.execute("SELECT count(*) FROM py_psycopg_copy").fetchone()[0]


def check_notify(out):
    with psycopg.connect(conninfo(), autocommit=True) as listener:
        listener.execute("LISTEN py_channel")
        with psycopg.connect(conninfo(), autocommit=True) as notifier:
            notifier.execute("NOTIFY py_channel, 'psycopg payload'")
        received = []
        for note in listener.notifies(timeout=10, stop_after=1):
            received.append([note.channel, note.payload])
        out["notifies"] = received


def check_cancel(out):
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute("SELECT pg_sleep(20)")
            out["cancel"] = "not cancelled"
        except psycopg.errors.QueryCanceled as e:
            out["cancel"] = e.sqlstate
        out["cancel_fast"] = time.monotonic() - started < 10
        out["after_cancel"] = conn.execute("SELECT 'alive'").fetchone()[0]


def check_auth(out):
    results = {}
    for user, password in (("trust_user", None), ("md5_user", "md5_secret"),
                           ("scram_user", "scram_secret"), ("md5_user", "wrong"),
                           ("scram_user", "wrong")):
        try:
            with psycopg.connect(conninfo(user=user, password=password)) as conn:
                results[f"{user}:{password}"] = conn.execute("SELECT current_user").fetchone()[0]
        except psycopg.OperationalError as e:
            results[f"{user}:{password}"] = ["refused", "password authentication failed" in str(e)]
    out["auth"] = results


def check_tls():
    with psycopg.connect(conninfo(sslmode="require")) as conn:
        value = conn.execute("SELECT 'over tls'").fetchone()[0]
        print(json.dumps({"value": value, "ssl_in_use": conn.pgconn.ssl_in_use}))


def main():
    if "--tls" in sys.argv:
        check_tls()
        return
    out = {}
    for check in (check_types, check_prepared, check_errors, check_transactions, check_copy,
                  check_notify, check_cancel, check_auth):
        check(out)
    print(json.dumps(out, sort_keys=True, indent=1))


main()
