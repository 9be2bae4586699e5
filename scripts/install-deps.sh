#!/usr/bin/env bash
# Installs what `make test` and `make bench` need when it is missing.
# Idempotent; run as root (apt-get) on Debian 12. Usage: install-deps.sh [test|bench|demo]
set -euo pipefail
want=${1:-test}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "need root to install ${missing[*]} (or install them yourself)" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_databases() {
  apt_install mariadb-server python3 python3-pip
  if ! python3 -c 'import pylibseekdb' >/dev/null 2>&1; then
    echo "installing: pylibseekdb (pip)"
    python3 -m pip install --quiet pylibseekdb 2>/dev/null || python3 -m pip install --quiet --break-system-packages pylibseekdb
  fi
}

# The coordinator links the XGBoost C library (bindgen needs libclang; pip fetches it).
apt_install libclang-dev python3 python3-pip
here=$(dirname "$0")

if [ "$want" = demo ]; then
  "$here/fetch-xgboost.sh"
  # Every agent fault on this host: iptables (NFQUEUE and statistic for
  # delay and loss), iproute2 (tc for bandwidth), util-linux (unshare for
  # the agent's probes in a throwaway namespace).
  apt_install iptables nftables iproute2 util-linux
  # The demo's local database: seekdb, or MariaDB where seekdb cannot be installed.
  install_databases || echo "no database installed; the demo runs without one" >&2
  exit 0
fi

# Tests and the benchmark also load the models in Python's xgboost.
"$here/fetch-xgboost.sh" --python

# Build and test tooling.
command -v cc >/dev/null || apt_install gcc libc6-dev
if ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add rustfmt
fi
command -v kill >/dev/null || apt_install procps
if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# Coverage-guided fuzzing (scripts/fuzz.sh): cargo afl, and the AFL++ it
# builds for this toolchain (once; "already built" is fine).
if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --locked
fi
if ! afl_out=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$afl_out"; then
  echo "$afl_out" >&2
  exit 1
fi

# Network faults: iptables (NFQUEUE and statistic for delay and loss), iproute2 (tc, test
# namespaces), nftables (reverting loss faults that earlier versions journalled as tables).
apt_install nftables iptables iproute2

# Database tests: MariaDB (the MySQL dialect) and seekdb, the OceanBase
# kernel shipped by the PyPI package pylibseekdb. The tests start their own
# servers on free loopback ports; nothing here starts a service.
install_databases

# The testbed: nsenter (util-linux) puts each node's processes in its
# namespace; Galera clusters replicate with galera-4 and transfer state
# with rsync.
apt_install util-linux galera-4 rsync

# Remote write (tests/tests/remote_write.rs, distdiag-bench remote-write):
# real receivers, started by the tests on free loopback ports. The packages'
# own services, where their postinst starts one, are stopped: nothing here
# runs a service.
if ! command -v victoria-metrics >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install victoria-metrics prometheus
  for svc in victoria-metrics prometheus; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

# The Parquet export read back by pandas through pyarrow (tests/tests/diagnosis.rs).
if ! python3 -c 'import pyarrow, pandas' >/dev/null 2>&1; then
  echo "installing: pyarrow, pandas (pip)"
  python3 -m pip install --quiet pyarrow pandas 2>/dev/null || python3 -m pip install --quiet --break-system-packages pyarrow pandas
fi

# The API against its OpenAPI document (tests/tests/schemathesis.rs).
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  echo "installing: schemathesis (pip)"
  python3 -m pip install --quiet schemathesis 2>/dev/null || python3 -m pip install --quiet --break-system-packages schemathesis
fi

# Deployment: the units are checked with systemd-analyze, the roles with
# ansible-lint and run with ansible-playbook (start-stop-daemon, from dpkg,
# starts the programs where systemd does not run).
apt_install systemd
if ! python3 -c 'import ansiblelint' >/dev/null 2>&1 || ! command -v ansible-playbook >/dev/null 2>&1; then
  echo "installing: ansible-core, ansible-lint (pip)"
  python3 -m pip install --quiet ansible-core ansible-lint 2>/dev/null || python3 -m pip install --quiet --break-system-packages ansible-core ansible-lint
fi

# Kubernetes manifests render with kubectl kustomize (Debian's
# kubernetes-client unless a kubectl is already installed: the two packages
# conflict) and validate offline (kubernetes-validate ships the schemas);
# the image builds with podman, in the test from programs stripped by
# binutils' strip.
command -v kubectl >/dev/null || apt_install kubernetes-client
apt_install podman binutils
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "installing: kubernetes-validate (pip)"
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null || python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi

# The dashboard: built with npm packages, tested in Debian's Chromium through
# playwright-core (never a downloaded browser).
apt_install chromium
command -v npm >/dev/null || apt_install nodejs npm
for d in coordinator/web tests/web; do
  if [ ! -d "$here/../$d/node_modules" ]; then
    echo "installing: npm packages of $d"
    (cd "$here/../$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

if [ "$want" = bench ]; then
  # The yardstick for the native OLTP workload.
  apt_install sysbench
  # The comparison tool for the agent's collection cost.
  apt_install prometheus-node-exporter
fi
