#!/usr/bin/env bash
# Resident memory of a command over its whole run: samples VmRSS every 0.5 s and prints
# "seconds_since_start rss_kib" lines, so two commits' curves can be laid side by side (a single
# peak from /usr/bin/time moves by about 1 GB between runs of the default config).
#
# Usage: benchmarks/rss_trace.sh OUT.rss COMMAND [ARGS...]
set -euo pipefail
out=$1
shift
"$@" &
pid=$!
start=$(date +%s.%N)
: > "$out"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n "$rss" ]] && echo "$(echo "$(date +%s.%N) - $start" | bc) $rss" >> "$out"
  sleep 0.5
done
wait "$pid"
