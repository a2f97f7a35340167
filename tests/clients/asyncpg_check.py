"""asyncpg calls (binary formats, named prepared statements) printed as JSON, to compare
pgcached with PostgreSQL.

Usage: asyncpg_check.py HOST PORT            run every check, print a transcript
       asyncpg_check.py HOST PORT --tls      connect with ssl='require', print what TLS says
"""
import asyncio
import json
import sys

import asyncpg

HOST, PORT = sys.argv[1], int(sys.argv[2])


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


async def connect(user="postgres", password=None, ssl=False):
    return await asyncpg.connect(host=HOST, port=PORT, user=user, password=password,
                                 database="app", ssl=ssl, timeout=10)


async def check_types(out):
    conn = await connect()
    row = await conn.fetchrow(
        """SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 12345.678::numeric,
           true, 'text é ✓', NULL::text, '\\x00ff10'::bytea, '2024-02-29 12:34:56'::timestamp,
           '2024-02-29 12:34:56+02'::timestamptz, '2024-02-29'::date, '12:34:56'::time,
           '1 day 02:00:00'::interval, '2e3b1c4a-9b0f-4e8e-8b1a-1c2d3e4f5a6b'::uuid,
           '{"a": [1, 2]}'::jsonb, ARRAY[1, 2, NULL]::int[], '192.168.0.1/24'::inet,
           $1::text, $2::int8, $3::bytea""",
        "param ✓", 2**40, b"\x00\x01\xfe")
    out["types"] = jsonable(list(row))
    await conn.close()


async def check_prepared(out):
    conn = await connect()
    statement = await conn.prepare("SELECT $1::int * 2 AS doubled, $2::text AS label")
    out["prepared"] = jsonable([list(await statement.fetchrow(i, f"v{i}")) for i in range(20)])
    out["prepared_columns"] = [a.name for a in statement.get_attributes()]
    rows = await conn.fetch("SELECT g FROM generate_series(1, 1000) g")
    out["fetch_count"] = len(rows)
    await conn.executemany("SELECT $1::int", [(i,) for i in range(50)])
    async with conn.transaction():
        cursor_rows = [r[0] async for r in conn.cursor("SELECT g FROM generate_series(1, 250) g",
                                                       prefetch=40)]
    out["cursor_rows"] = len(cursor_rows)
    await conn.close()


async def check_errors(out):
    conn = await connect()
    errors = []
    for statement in ("SELECT * FROM no_such_table", "SELECT 1/0", "SELEC 1"):
        try:
            await conn.execute(statement)
            errors.append(None)
        except asyncpg.PostgresError as e:
            errors.append([e.sqlstate, e.message])
    out["errors"] = errors
    out["after_errors"] = await conn.fetchval("SELECT 'alive'")
    await conn.close()


async def check_copy(out):
    conn = await connect()
    await conn.execute("DROP TABLE IF EXISTS py_asyncpg_copy")
    await conn.execute("CREATE TABLE py_asyncpg_copy (id int, name text)")
    await conn.copy_records_to_table("py_asyncpg_copy",
                                     records=[(i, f"name {i}") for i in range(3000)])
    out["copy_count"] = await conn.fetchval("SELECT count(*) FROM py_asyncpg_copy")
    chunks = []
    await conn.copy_from_query("SELECT * FROM py_asyncpg_copy ORDER BY id LIMIT 3",
                               output=lambda data: chunks.append(data) or asyncio.sleep(0))
    out["copy_out"] = b"".join(chunks).decode()
    await conn.close()


async def check_notify(out):
    listener = await connect()
    received = asyncio.get_running_loop().create_future()
    await listener.add_listener("apg_channel",
                                lambda c, pid, ch, payload: received.done() or received.set_result(
                                    [ch, payload]))
    notifier = await connect()
    await notifier.execute("NOTIFY apg_channel, 'asyncpg payload'")
    out["notify"] = await asyncio.wait_for(received, 10)
    await notifier.close()
    await listener.close()


async def check_cancel(out):
    conn = await connect()
    try:
        await conn.execute("SELECT pg_sleep(20)", timeout=0.5)
        out["cancel"] = "not cancelled"
    except asyncio.TimeoutError:
        out["cancel"] = "timeout"
    out["after_cancel"] = await conn.fetchval("SELECT 'alive'")
    await conn.close()


async def check_auth(out):
    results = {}
    for user, password in (("trust_user", None), ("md5_user", "md5_secret"),
                           ("scram_user", "scram_secret"), ("md5_user", "wrong"),
                           ("scram_user", "wrong")):
        try:
            conn = await connect(user=user, password=password)
            results[f"{user}:{password}"] = await conn.fetchval("SELECT current_user")
            await conn.close()
        except asyncpg.InvalidPasswordError as e:
            results[f"{user}:{password}"] = ["refused", e.sqlstate]
    out["auth"] = results


async def check_tls():
    conn = await connect(ssl="require")
    value = await conn.fetchval("SELECT 'over tls'")
    ssl_object = conn._transport.get_extra_info("ssl_object")
    print(json.dumps({"value": value, "ssl_in_use": ssl_object is not None}))
    await conn.close()


async def main():
    if "--tls" in sys.argv:
        await check_tls()
        return
    out = {}
    for check in (check_types, check_prepared, check_errors, check_copy, check_notify,
                  check_cancel, check_auth):
        await check(out)
    print(json.dumps(out, sort_keys=True, indent=1))


asyncio.run(main())
