#!/usr/bin/env bash
# `make bench-accuracy`: the full fault campaign on the testbed — a 3-node
# MariaDB Galera cluster, then 3 standalone MariaDB nodes — and both
# reports (AC@1/3/5, Avg@5 and per-type F1 per scenario family, for the
# model, the statistical scorer and Dummy, trained and evaluated on
# disjoint cases: cross-validated in FOLDS folds, REPEATS times with the
# cases dealt anew, figures the means over the dealings). About an hour per
# database with the defaults; every knob is an environment variable:
#   DBS="galera mariadb"  CASES=1  NORMAL_S=30  FAULT_S=90  RECOVERY_S=15
#   TYPES=cpu_stress,memory_stress,disk_stress,network_delay,network_loss,cache_bottleneck,too_many_indexes
#   FAMILIES=A,B,C,W  FOLDS=2  REPEATS=5  SEED=42  OUT=/var/tmp/distdiag-accuracy
# On Galera too_many_indexes is left out of the default types: its DDL
# replicates to every member, so it is a cluster-wide change there, not a
# fault of one node. Faults last 90 s so that a diagnosis 30 s early or
# late still falls inside them.
# Each testbed is removed when its campaign ends, fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/release
OUT=${OUT:-/var/tmp/distdiag-accuracy}
DBS=${DBS:-galera mariadb}
API=127.0.0.1:8109
mkdir -p "$OUT"

testbed_pid=
stop_testbed() {
    if [ -n "$testbed_pid" ] && kill -0 "$testbed_pid" 2>/dev/null; then
        kill -TERM "$testbed_pid"
        wait "$testbed_pid" || true
    fi
    testbed_pid=
}
trap stop_testbed EXIT INT TERM

ALL_TYPES=cpu_stress,memory_stress,disk_stress,network_delay,network_loss,cache_bottleneck,too_many_indexes
for db in $DBS; do
    types=${TYPES:-$ALL_TYPES}
    if [ "$db" = galera ] && [ -z "${TYPES:-}" ]; then
        types=${ALL_TYPES%,too_many_indexes}
    fi
    dir=/var/tmp/distdiag-testbed-$db
    log=$OUT/$db-testbed.log
    echo "== $db: bringing up the testbed (log: $log)"
    "$BIN/distdiag-testbed" up --db "$db" --dir "$dir" --net 9 --api "$API" >"$log" 2>&1 &
    testbed_pid=$!
    until grep -q '^Ctrl-C' "$log"; do
        if ! kill -0 "$testbed_pid" 2>/dev/null; then
            cat "$log"
            exit 1
        fi
        sleep 2
    done
    cat "$log"
    "$BIN/distdiag" --url "http://$API" --data-dir "$dir/coordinator" campaign run \
        --out "$OUT/$db" \
        --families "${FAMILIES:-A,B,C,W}" \
        --types "$types" \
        --cases "${CASES:-1}" --normal-s "${NORMAL_S:-30}" --fault-s "${FAULT_S:-90}" \
        --recovery-s "${RECOVERY_S:-15}" --folds "${FOLDS:-2}" --repeats "${REPEATS:-5}" --seed "${SEED:-42}" >"$OUT/$db.md"
    stop_testbed
done
for db in $DBS; do
    echo
    echo "# $db"
    cat "$OUT/$db.md"
done
