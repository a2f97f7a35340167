#!/usr/bin/env bash
# The read-through example in one command: a throwaway PostgreSQL with pgcached in front, the
# product-catalog app run without and with pgcached, side by side.
source "$(dirname "$0")/../lib.sh"
python3 "$(dirname "$0")/app.py" compare \
  --proxy-url "$PROXY_URL" --direct-url "$DIRECT_URL" --metrics-url "$METRICS_URL" "$@"
