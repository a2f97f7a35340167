"""A user-session store kept in a PostgreSQL table, shared by stateless app instances.

Every request of every app instance looks its session token up: in a busy app that is the most
frequent query there is, and the reason teams put Redis in front of the database. Through
pgcached, lookups are answered from memory, and a logout (a DELETE through any instance, or
straight in the database) makes the session invisible everywhere at once.

The lookup keeps `now()` out of its SQL on purpose: a statement calling a non-immutable function
is never cached, so the expiry is compared in Python instead.
"""

import datetime
import secrets

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token text PRIMARY KEY,
    user_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
)
"""


class SessionStore:
    """Sessions of one app instance, over its own database connection."""

    def __init__(self, database_url, lifetime=datetime.timedelta(hours=1)):
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.lifetime = lifetime

    def login(self, user_name):
        token = secrets.token_hex(16)
        expires_at = datetime.datetime.now(datetime.timezone.utc) + self.lifetime
        self.conn.execute(
            "INSERT INTO sessions (token, user_name, expires_at) VALUES (%s, %s, %s)",
            (token, user_name, expires_at),
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
        if expires_at <= datetime.datetime.now(datetime.timezone.utc):
            return None
        return user_name

    def logout(self, token):
        self.conn.execute("DELETE FROM sessions WHERE token = %s", (token,))

    def close(self):
        self.conn.close()


def create_schema(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
