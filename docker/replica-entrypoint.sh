#!/bin/bash
# The streaming replica of compose.scale.yaml: on first start, copy the primary with
# pg_basebackup -R (which writes primary_conninfo and standby.signal), then run PostgreSQL.
# The copy has the primary's roles, databases and settings; after `SELECT pg_promote()` it is
# the primary, and pgcached (target_session_attrs=primary) switches to it.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_basebackup -h "$PRIMARY_HOST" -U "$REPLICATION_USER" -D "$PGDATA" -R -X stream -c fast; do
    echo "waiting for the primary at $PRIMARY_HOST"
    sleep 1
  done
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
