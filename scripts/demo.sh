#!/usr/bin/env bash
# make demo: a coordinator and an agent for this host on embedded defaults,
# with certificates and the API token under ./data, plus a local database on
# a loopback port (seekdb when pylibseekdb is installed, else MariaDB) that
# the coordinator probes and a light OLTP workload runs against.
# Ctrl-C stops everything.
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/release}
DATA=${DISTDIAG_DEMO_DIR:-data}
API=${DISTDIAG_API_LISTEN:-127.0.0.1:8000}
INGEST=${DISTDIAG_INGEST_LISTEN:-127.0.0.1:7400}
NODE=$(hostname -s 2>/dev/null | tr -c 'A-Za-z0-9._\n-' '_' | cut -c1-64)
NODE=${NODE:-local}
DB_PORT=${DISTDIAG_DEMO_DB_PORT:-12881}

mkdir -p "$DATA"
[ -f "$DATA/certs/ca.pem" ] || "$BIN/distdiag-coordinator" --data-dir "$DATA" cert init
[ -f "$DATA/certs/node-$NODE.pem" ] || "$BIN/distdiag-coordinator" --data-dir "$DATA" cert node "$NODE"

pids=()
db_kind=""
cfg="$DATA/demo-coordinator.toml"
seekdb_bin=$(python3 -c 'import pylibseekdb, os; print(os.path.join(os.path.dirname(pylibseekdb.__file__), "seekdb"))' 2>/dev/null || true)
if [ -n "$seekdb_bin" ] && [ -x "$seekdb_bin" ]; then
  db_kind=oceanbase
elif command -v mariadbd >/dev/null 2>&1; then
  db_kind=mysql
fi
{
  echo "# Written by scripts/demo.sh"
  echo "[probe]"
  echo "interval_ms = 2000"
  if [ -n "$db_kind" ]; then
    echo "[[databases]]"
    echo "name = \"local\""
    echo "dialect = \"$db_kind\""
    echo "host = \"127.0.0.1\""
    echo "port = $DB_PORT"
    echo "user = \"root\""
    echo "schema = \"distdiag\""
    echo "host_node = \"$NODE\""
  fi
} > "$cfg"

cleanup() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "demo stopped; data kept in $DATA"
}
trap cleanup INT TERM EXIT

wait_sql() {
  for _ in $(seq 1 240); do
    (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}
case "$db_kind" in
  oceanbase)
    mkdir -p "$DATA/seekdb"
    "$seekdb_bin" --nodaemon --port "$DB_PORT" --base-dir "$DATA/seekdb" >"$DATA/seekdb.log" 2>&1 &
    pids+=($!)
    ;;
  mysql)
    if [ ! -d "$DATA/mariadb/data/mysql" ]; then
      mkdir -p "$DATA/mariadb"
      mariadb-install-db --no-defaults --datadir="$DATA/mariadb/data" --auth-root-authentication-method=normal --skip-test-db --user="$(id -un)" >"$DATA/mariadb/install.log" 2>&1
    fi
    mariadbd --no-defaults --datadir="$DATA/mariadb/data" --port="$DB_PORT" --bind-address=127.0.0.1 \
      --socket="$PWD/$DATA/mariadb/sock" --pid-file="$PWD/$DATA/mariadb/pid" --user="$(id -un)" --skip-log-bin \
      --performance-schema=ON >"$DATA/mariadb/server.log" 2>&1 &
    pids+=($!)
    ;;
  *)
    echo "no local database (install one with: scripts/install-deps.sh demo); running without database metrics" >&2
    ;;
esac
if [ -n "$db_kind" ] && ! wait_sql; then
  echo "the local $db_kind database did not come up; see $DATA" >&2
  exit 1
fi

"$BIN/distdiag-coordinator" --config "$cfg" --data-dir "$DATA" --api-listen "$API" --ingest-listen "$INGEST" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://$API/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "coordinator failed to start" >&2; exit 1; }
  sleep 0.1
done
# The database and its workload are on loopback: network faults that name no
# interface act there, where they change what the demo sees (on the default
# route's interface they would touch no traffic of it). The connection to the
# coordinator is always left alone.
acfg="$DATA/demo-agent.toml"
printf '# Written by scripts/demo.sh\n[fault]\nnetwork_interface = "lo"\n' > "$acfg"
"$BIN/distdiag-agent" --config "$acfg" --node "$NODE" --coordinator "$INGEST" --certs "$DATA/certs" --state-dir "$DATA/agent" &
pids+=($!)

# Which faults this host's agent can inject (and why not the others).
for _ in $(seq 1 50); do
  "$BIN/distdiag" --url "http://$API" --data-dir "$DATA" nodes 2>/dev/null | grep -q " connected " && break
  sleep 0.2
done
echo
"$BIN/distdiag" --url "http://$API" --data-dir "$DATA" nodes || true

workload_msg="    (no database: install one with scripts/install-deps.sh demo)"
if [ -n "$db_kind" ]; then
  # A light default workload, so database metrics move from the start.
  # (The port check above may pass before the server accepts logins.)
  # Ids drawn uniformly: sysbench's default `special` piles draws on a few
  # rows, two workers then deadlock on them, and seekdb keeps both waiting
  # until its 10 s statement timeout (docs/seekdb-probe.md).
  for _ in $(seq 1 60); do
    "$BIN/distdiag" --url "http://$API" --data-dir "$DATA" workload prepare oltp_read_write --option table_size=10000 2>/dev/null && break
    sleep 2
  done
  wid=$("$BIN/distdiag" --url "http://$API" --data-dir "$DATA" workload start oltp_read_write --threads 2 --option table_size=10000 --option rand_type=uniform || true)
  workload_msg="    database:        local $db_kind on 127.0.0.1:$DB_PORT, workload $wid (2 threads)
    db metrics:      curl -s 'http://$API/api/metrics/database?from=-1m'
    workloads:       $BIN/distdiag --data-dir $DATA workload list
    db fault:        $BIN/distdiag --data-dir $DATA fault start too_many_indexes --param count=8 --duration 2m"
fi

cat <<MSG

  distdiag demo is running (node "$NODE").
    dashboard:       http://$API/
    latest metrics:  curl -s http://$API/api/metrics?node=$NODE
    one series:      curl -s 'http://$API/api/metrics?node=$NODE&metric=cpu.user&from=-5m'
    nodes:           $BIN/distdiag --data-dir $DATA nodes
    API reference:   http://$API/docs
    self-metrics:    curl -s http://$API/metrics
    API token:       $DATA/token
$workload_msg
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
