#!/usr/bin/env bash
# make demo: a coordinator and an agent for this host on embedded defaults,
# with certificates and the API token under ./data. Ctrl-C stops both.
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/release}
DATA=${DISTDIAG_DEMO_DIR:-data}
API=${DISTDIAG_API_LISTEN:-127.0.0.1:8000}
INGEST=${DISTDIAG_INGEST_LISTEN:-127.0.0.1:7400}
NODE=$(hostname -s 2>/dev/null | tr -c 'A-Za-z0-9._\n-' '_' | cut -c1-64)
NODE=${NODE:-local}

mkdir -p "$DATA"
[ -f "$DATA/certs/ca.pem" ] || "$BIN/distdiag-coordinator" --data-dir "$DATA" cert init
[ -f "$DATA/certs/node-$NODE.pem" ] || "$BIN/distdiag-coordinator" --data-dir "$DATA" cert node "$NODE"

pids=()
cleanup() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "demo stopped; data kept in $DATA"
}
trap cleanup INT TERM EXIT

"$BIN/distdiag-coordinator" --data-dir "$DATA" --api-listen "$API" --ingest-listen "$INGEST" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://$API/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "coordinator failed to start" >&2; exit 1; }
  sleep 0.1
done
"$BIN/distdiag-agent" --node "$NODE" --coordinator "$INGEST" --certs "$DATA/certs" --state-dir "$DATA/agent" &
pids+=($!)

cat <<MSG

  distdiag demo is running (node "$NODE").
    dashboard:       http://$API/
    latest metrics:  curl -s http://$API/api/metrics?node=$NODE
    one series:      curl -s 'http://$API/api/metrics?node=$NODE&metric=cpu.user&from=-5m'
    nodes:           curl -s http://$API/api/nodes
    self-metrics:    curl -s http://$API/metrics
    API token:       $DATA/token
  Ctrl-C stops both.

MSG
wait -n "${pids[@]}" || true
