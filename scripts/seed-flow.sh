#!/usr/bin/env bash
# The seeds' first-hour flow against a running `make demo`, timed:
#   one normal period, one labelled case per seed fault type, train, then a
#   fresh fault of each type, and how long until the ranking's top entry is
#   that type on the agent's node with p >= 0.5 (the bar: within 10 s).
# Usage: scripts/seed-flow.sh [TYPES...]   (default: the seeds' four)
# Environment: DISTDIAG_URL (default http://127.0.0.1:8000), DATA (default
# data), NORMAL_S (120), CASE_S (60), PROBE_S (30), SETTLE_S (30),
# TRAINED_SETTLE_S (130, after training),
# CASES (labelled cases per type, 1), REFIT=1 (`distdiag train --refit`:
# the version learns from every case), PROBE_ONLY=1 (time the active model
# only: no collection, no training).
# Only rankings whose window ends after the fault started count.
set -euo pipefail
cd "$(dirname "$0")/.."

URL=${DISTDIAG_URL:-http://127.0.0.1:8000}
DATA=${DATA:-data}
NORMAL_S=${NORMAL_S:-120}
CASE_S=${CASE_S:-60}
PROBE_S=${PROBE_S:-30}
SETTLE_S=${SETTLE_S:-30}
CASES=${CASES:-1}
TRAINED_SETTLE_S=${TRAINED_SETTLE_S:-130}
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(cpu_stress memory_stress disk_stress network_delay)
TOKEN=$(cat "$DATA/token")
BIN=${BIN:-${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/release}

api() { # METHOD PATH [BODY]
  curl -sf -X "$1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "$URL$2"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

NODE=$(api GET /api/nodes | json "next(n['node'] for n in d['nodes'] if n.get('kind','agent')=='agent' and not n['node'].startswith('db:'))")
echo "agent node: $NODE; types: ${TYPES[*]}" >&2

if [ -z "${PROBE_ONLY:-}" ]; then
echo "normal period: ${NORMAL_S} s" >&2
api POST /api/training/normal/start >/dev/null
sleep "$NORMAL_S"
api POST /api/training/normal/stop >/dev/null

for round in $(seq "$CASES"); do
  for t in "${TYPES[@]}"; do
    echo "labelled case $round: $t, ${CASE_S} s" >&2
    api POST /api/anomaly/start "{\"type\": \"$t\", \"nodes\": [\"$NODE\"], \"duration\": $CASE_S, \"collect_training_data\": true}" >/dev/null
    sleep $((CASE_S + SETTLE_S))
  done
done

echo "training" >&2
trained_from=$(date +%s)
"$BIN/distdiag" --url "$URL" --data-dir "$DATA" train ${REFIT:+--refit} >&2
echo "trained in $(( $(date +%s) - trained_from )) s" >&2
# The first probe waits until the last labelled case (CASE_S long, where a
# probe stops at its hit) has left the reference period the model holds
# windows against (TRAINED_SETTLE_S, default the 120 s baseline + 10 s):
# with SETTLE_S alone half that reference was the last case, and the first
# probe's stressor was held against a node already disturbed (cpu_stress
# 22 s, then 5.4 s with the full wait; training itself takes seconds).
sleep "$TRAINED_SETTLE_S"
fi

echo "| type | top before the fault | top-1 with p >= 0.5 after | p then | first top-1 (any p) after |"
echo "|---|---|---|---|---|"
for t in "${TYPES[@]}"; do
  before=$(api GET '/api/anomaly/ranks?limit=1' | json "f\"{d['ranks'][0]['type']} p {d['ranks'][0]['probability']:.2f}\" if d['ranks'] else '-'")
  start=$(date +%s.%N)
  start_ms=$(python3 -c "print(int($start * 1000))")
  id=$(api POST /api/anomaly/start "{\"type\": \"$t\", \"nodes\": [\"$NODE\"], \"duration\": $PROBE_S}" | json "d['anomalies'][0]['id']")
  hit="-" p="-" first="-"
  while :; do
    now=$(date +%s.%N)
    el=$(python3 -c "print(f'{$now - $start:.1f}')")
    top=$(api GET '/api/anomaly/ranks?limit=1' | json "' '.join([d['ranks'][0]['node'], d['ranks'][0]['type'], str(d['ranks'][0]['probability'])]) if d['ranks'] and d['timestamp'] > $start_ms else '- - 0'")
    read -r tn tt tp <<<"$top"
    if [ "$tn" = "$NODE" ] && [ "$tt" = "$t" ]; then
      [ "$first" = "-" ] && first="$el s"
      if python3 -c "import sys; sys.exit(0 if $tp >= 0.5 else 1)"; then
        hit="$el s" p=$(printf '%.2f' "$tp")
        break
      fi
    fi
    python3 -c "import sys; sys.exit(0 if $now - $start < $PROBE_S else 1)" || break
    sleep 0.5
  done
  echo "| $t | $before | $hit | $p | $first |"
  api POST /api/anomaly/stop "{\"id\": \"$id\"}" >/dev/null || true
  sleep "$SETTLE_S"
done
