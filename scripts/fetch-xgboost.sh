#!/usr/bin/env bash
# Fetches the XGBoost C library the coordinator links against: the
# libxgboost.so inside the PyPI wheel xgboost-cpu 3.4.1 (checked against its
# sha256), unpacked with the wheel's layout kept so the bundled libgomp is
# found. Idempotent. The directory must match XGBOOST_LIB_DIR in
# .cargo/config.toml. With --python, also installs that same wheel into
# python3 (the model-compatibility test and the training benchmark use it).
set -euo pipefail
version=3.4.1
sha256=1f16331f5c6beb2b40fbd4bf2834333062d93c9eb38b76186a5c206841dc1809
wheel=xgboost_cpu-${version}-py3-none-manylinux_2_28_x86_64.whl
dir=${DISTDIAG_DEPS:-/var/tmp/distdiag-deps}/xgboost-cpu-${version}

if [ ! -e "$dir/xgboost/lib/libxgboost.so.3" ]; then
  mkdir -p "$dir"
  if [ ! -f "$dir/$wheel" ]; then
    echo "fetching: xgboost-cpu ${version} wheel (PyPI)"
    python3 -m pip download --quiet "xgboost-cpu==${version}" --only-binary=:all: --no-deps \
      --python-version 3.12 --platform manylinux_2_28_x86_64 -d "$dir"
  fi
  echo "${sha256}  $dir/$wheel" | sha256sum --check --quiet
  python3 -m zipfile -e "$dir/$wheel" "$dir"
  ln -sf libxgboost.so "$dir/xgboost/lib/libxgboost.so.3"
fi

# The wheel says Python >= 3.12 but is pure Python around the C library;
# on an older python3 it is installed without that check, with numpy and
# scipy as binary wheels (never built from source).
pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "$@"
}
if [ "${1:-}" = --python ] && ! python3 -c 'import xgboost, sys; sys.exit(xgboost.__version__ != "'"$version"'")' >/dev/null 2>&1; then
  echo "installing: xgboost-cpu ${version} into python3 (pip)"
  pip_install --only-binary=:all: numpy scipy
  pip_install --no-deps --ignore-requires-python "$dir/$wheel"
fi
