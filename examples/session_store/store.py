#!/usr/bin/env python3
"""A user-session store kept in a PostgreSQL table, shared by stateless app instances.

Every request of every app instance looks its session token up: in a busy app that is the most
frequent query there is, and the usual reason to put a key-value store in front of the
database. Through pgcached, lookups are answered from memory, and a logout (a DELETE through any
instance, or straight in the database) makes the session invisible everywhere.

The lookup keeps `now()` out of its SQL on purpose: a statement calling a function that is not
immutable is never cached, so the expiry is compared in Python instead.

Run as a program, this file is one app instance in a process of its own, serving the store's
methods over stdin/stdout (one JSON object a line), for `demo.py --processes`:

    store.py --database-url URL
    > {"call": "login", "args": ["alice"]}
    < {"result": "3f9c..."}
"""

import argparse
import datetime
import json
import secrets
import sys

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token text PRIMARY KEY,
    user_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
)
"""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


class SessionStore:
    """The sessions as one app instance sees them, over its own database connection."""

    def __init__(self, database_url, lifetime=datetime.timedelta(hours=1)):
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.lifetime = lifetime

    def login(self, user_name, lifetime=None):
        """Opens a session for `user_name`; returns its token."""
        token = secrets.token_hex(16)
        created_at = utc_now()
        expires_at = created_at + (self.lifetime if lifetime is None else lifetime)
        self.conn.execute(
            "INSERT INTO sessions (token, user_name, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (token, user_name, created_at, expires_at),
        )
        return token

    def lookup(self, token):
        """The session's user, or None if there is no such session or it has expired."""
        row = self.conn.execute(
            "SELECT user_name, expires_at FROM sessions WHERE token = %s", (token,)
        ).fetchone()
        if row is None:
            return None
        user_name, expires_at = row
        if expires_at <= utc_now():
            return None
        return user_name

    def logout(self, token):
        self.conn.execute("DELETE FROM sessions WHERE token = %s", (token,))

    def close(self):
        self.conn.close()


def create_schema(database_url):
    """Creates the sessions table if it is missing; True if it was created now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        existed = conn.execute("SELECT to_regclass('sessions') IS NOT NULL").fetchone()[0]
        conn.execute(SCHEMA)
    return not existed


def serve(database_url, requests=sys.stdin, replies=sys.stdout):
    """Answers calls of the store's methods, one JSON object a line, until end of input."""
    store = SessionStore(database_url)
    try:
        for line in requests:
            request = json.loads(line)
            args = list(request.get("args", []))
            if request["call"] == "login" and len(args) > 1 and args[1] is not None:
                args[1] = datetime.timedelta(seconds=args[1])
            try:
                if request["call"] not in ("login", "lookup", "logout"):
                    raise ValueError(f"no such call: {request['call']}")
                reply = {"result": getattr(store, request["call"])(*args)}
            except (psycopg.Error, ValueError, TypeError) as e:
                reply = {"error": str(e)}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one app instance serving the session store")
    parser.add_argument("--database-url", required=True)
    serve(parser.parse_args().database_url)
