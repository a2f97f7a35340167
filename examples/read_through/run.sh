#!/usr/bin/env bash
# The read-through example in one command: a throwaway PostgreSQL with pgcached in front, the
# product-catalog app run without and with pgcached, side by side. Extra arguments go to app.py
# (e.g. --requests 5000, --threads 8, --json).
source "$(dirname "$0")/../lib.sh"
run_app python3 "$(dirname "$0")/app.py" compare \
  --database-url "$PROXY_URL" --direct-url "$DIRECT_URL" --metrics-url "$METRICS_URL" "$@"
