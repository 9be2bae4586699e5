#!/usr/bin/env bash
# Coverage-guided fuzzing of what distdiag reads from outside (fuzz/: the
# agent stream's frames and messages, the dataset importer) with AFL++
# through cargo afl. Usage: scripts/fuzz.sh SECONDS [--keep-corpus] [TARGET...]
#
#   SECONDS        how long each target runs (make test: 20, make fuzz: 900)
#   --keep-corpus  afterwards, add what AFL found (the inputs that reached
#                  new edges, under 4 KiB) to fuzz/corpus/TARGET/ to commit
#   TARGET         frames, dataset (default: both)
#
# Prints one table row per target. A crash or a hang fails the run; its
# input is copied to fuzz/regressions/TARGET/, where the crate's tests
# replay it from then on (commit it with the fix).
set -euo pipefail
seconds=${1:?usage: scripts/fuzz.sh SECONDS [--keep-corpus] [TARGET...]}
shift
keep=0
if [ "${1:-}" = --keep-corpus ]; then keep=1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames dataset)

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-/var/tmp/distdiag-target}/afl
# Instrumented builds live apart: other RUSTFLAGS would rebuild the main tree.
CARGO_TARGET_DIR=$target_dir cargo afl build --quiet --release -p distdiag-fuzz --features afl

# No CPU frequency or core-dump checks (machines we do not own), no core
# pinning (a busy 2-core machine has no free core), no screen.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1

out_root=$(mktemp -d "${TMPDIR:-/tmp}/distdiag-fuzz.XXXXXX")
trap 'rm -rf "$out_root"' EXIT
status=0
printf '| target | seconds | executions | per second | corpus | edges covered | crashes | hangs |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
  bin=$target_dir/release/fuzz-$t
  corpus=$root/fuzz/corpus/$t
  [ -x "$bin" ] || { echo "no fuzz target $t" >&2; exit 64; }
  out=$out_root/$t
  # -V: stop after this many seconds; the log stays for a failing run.
  if ! cargo afl fuzz -i "$corpus" -o "$out" -V "$seconds" -- "$bin" >"$out_root/$t.log" 2>&1; then
    cat "$out_root/$t.log" >&2
    echo "afl-fuzz failed for $t" >&2
    exit 1
  fi
  stats=$out/default/fuzzer_stats
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes); hangs=$(get saved_hangs)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$(get run_time)" "$(get execs_done)" \
    "$(get execs_per_sec)" "$(get corpus_count)" "$(get bitmap_cvg)" "$crashes" "$hangs"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    mkdir -p "$root/fuzz/regressions/$t"
    for f in "$out"/default/crashes/id:* "$out"/default/hangs/id:*; do
      [ -e "$f" ] || continue
      name=$(sha256sum "$f" | cut -c1-16)
      cp "$f" "$root/fuzz/regressions/$t/$name"
      echo "$t: $(basename "$(dirname "$f")") input saved as fuzz/regressions/$t/$name" >&2
    done
    status=1
  fi
  if [ $keep = 1 ]; then
    # The queue's inputs that reached new edges, under 4 KiB (afl-cmin sees
    # no coverage from cargo afl's persistent programs here).
    find "$out/default/queue" -maxdepth 1 -name '*+cov*' -size -4k -type f | while read -r f; do
      cp "$f" "$corpus/$(sha256sum "$f" | cut -c1-16)"
    done
    echo "$t: corpus now $(ls "$corpus" | wc -l) inputs" >&2
  fi
done
exit $status
