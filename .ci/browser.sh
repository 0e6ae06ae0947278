#!/usr/bin/env bash
# Debian's Chromium, for the report's browser tests (tests/test_report_html.py open the page headless).
# Fast when it is installed already (one `command -v`); a cold install is ~25 s (113 MB, bookworm).
# apt holds a lock a second apt (another job on the machine) may have: retried, then a clear failure.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
for try in 1 2 3 4 5 6; do
  if apt-get update -qq >"$log" 2>&1 \
     && apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
    rm -f "$log"
    exit 0
  fi
  echo "ci/browser: apt-get failed (try $try; the apt lock may be busy), retrying in 20 s" >&2
  sleep 20
done
tail -20 "$log" >&2
echo "ci/browser: could not install chromium (log: $log); the report's browser tests need it" >&2
exit 1
