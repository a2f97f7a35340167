"""Logs in with TLS as each given role and prints, as JSON, what happened: the role the server
reports, or the SQLSTATE of the refusal. Used to compare logins through pgcached with logins
straight to PostgreSQL.

Usage: tls_login.py psycopg|asyncpg HOST PORT USER:PASSWORD...
"""
import asyncio
import json
import ssl
import sys

DRIVER, HOST, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
LOGINS = [pair.split(":", 1) for pair in sys.argv[4:]]


def with_psycopg(user, password):
    import psycopg

    # libpq's defaults: sslmode=require here, channel_binding=prefer.
    conninfo = f"host={HOST} port={PORT} dbname=app user={user} password={password} sslmode=require connect_timeout=10"
    try:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
            return {"user": row[0], "client_tls": conn.info.pgconn.ssl_in_use}
    except psycopg.Error as error:
        # A refused login is a libpq connection error: no SQLSTATE, the server's text in it.
        text = str(error)
        fatal = [line.split("FATAL:  ", 1)[1] for line in text.splitlines() if "FATAL:  " in line]
        return {"sqlstate": error.sqlstate, "message": fatal[0] if fatal else text}


async def with_asyncpg(user, password):
    import asyncpg

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        conn = await asyncpg.connect(
            host=HOST, port=PORT, user=user, password=password, database="app",
            ssl=context, timeout=10,
        )
    except asyncpg.PostgresError as error:
        return {"sqlstate": error.sqlstate, "message": error.args[0] if error.args else ""}
    try:
        user = await conn.fetchval("SELECT current_user")
        # ssl= given as a context means TLS or no connection at all.
        return {"user": user}
    finally:
        await conn.close()


def main():
    results = {}
    for user, password in LOGINS:
        if DRIVER == "psycopg":
            results[f"{user}:{password}"] = with_psycopg(user, password)
        else:
            results[f"{user}:{password}"] = asyncio.run(with_asyncpg(user, password))
    print(json.dumps(results, sort_keys=True))


main()
