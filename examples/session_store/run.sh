#!/usr/bin/env bash
# The session-store example in one command: a throwaway PostgreSQL with pgcached in front, two
# app instances sharing login sessions through it. Extra arguments go to demo.py (e.g.
# --processes to run each instance as a process of its own, --json).
source "$(dirname "$0")/../lib.sh"
run_app python3 "$(dirname "$0")/demo.py" \
  --database-url "$PROXY_URL" --direct-url "$DIRECT_URL" --metrics-url "$METRICS_URL" "$@"
