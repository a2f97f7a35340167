#!/usr/bin/env bash
# The session-store example in one command: a throwaway PostgreSQL with pgcached in front, two
# app instances sharing login sessions through it.
source "$(dirname "$0")/../lib.sh"
python3 "$(dirname "$0")/demo.py" \
  --database-url "$PROXY_URL" --direct-url "$DIRECT_URL" --metrics-url "$METRICS_URL" "$@"
