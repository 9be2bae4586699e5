#!/usr/bin/env bash
# Prepares image/rootfs for the Containerfile: the release programs, the
# XGBoost C library in the wheel's layout (as the programs' run path
# expects), every shared library the programs load (as ldd lists them) and
# the image's accounts. Usage: scripts/image-rootfs.sh [BIN_DIR [OUT_DIR]]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/release}
out=${2:-image/rootfs}
xgb=${XGBOOST_DIR:-/var/tmp/distdiag-deps/xgboost-cpu-3.4.1}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/usr/local/lib/distdiag/lib" "$out/etc/distdiag" \
    "$out/var/lib/distdiag" "$out/var/lib/distdiag-agent" "$out/tmp"
for p in distdiag-coordinator distdiag-agent distdiag; do
    install -m 0755 "$bin/$p" "$out/usr/local/bin/$p"
done
mkdir -p "$out/usr/local/lib/distdiag/xgboost" "$out/usr/local/lib/distdiag/xgboost_cpu.libs"
cp -a "$xgb/xgboost/lib" "$out/usr/local/lib/distdiag/xgboost/"
cp -a "$xgb/xgboost_cpu.libs/." "$out/usr/local/lib/distdiag/xgboost_cpu.libs/"
# The system libraries the programs load, and the dynamic loader at the
# path the programs name.
for p in distdiag-coordinator distdiag-agent distdiag; do
    ldd "$bin/$p" | awk '/=> \//{print $3} /^\s*\/lib/{print $1}'
done | sort -u | while read -r lib; do
    case "$lib" in
        */xgboost/*|*/xgboost_cpu.libs/*) ;;
        */ld-linux*) mkdir -p "$out/$(dirname "$lib")"; cp -L "$lib" "$out/$lib" ;;
        *) cp -L "$lib" "$out/usr/local/lib/distdiag/lib/" ;;
    esac
done
# Defaults for a container; k8s/ mounts its own over them.
printf 'data_dir = "/var/lib/distdiag"\n\n[api]\nlisten = "0.0.0.0:8000"\n\n[ingest]\nlisten = "0.0.0.0:7400"\n' \
    >"$out/etc/distdiag/coordinator.toml"
printf 'state_dir = "/var/lib/distdiag-agent"\n' >"$out/etc/distdiag/agent.toml"
printf 'root:x:0:0:root:/root:/sbin/nologin\ndistdiag:x:65532:65532:distdiag:/var/lib/distdiag:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\ndistdiag:x:65532:\n' >"$out/etc/group"
chown -R 65532:65532 "$out/var/lib/distdiag"
chmod 1777 "$out/tmp"
echo "$out: $(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1)"
