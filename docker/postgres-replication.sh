#!/bin/bash
# Runs once, when the primary's volume is first created (compose.scale.yaml): a role for the
# streaming replica and the pg_hba.conf line that lets it stream (the image's own line, "host
# all all all", does not match replication connections).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'replicator_secret';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
