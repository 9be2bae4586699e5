# The README's two commands: `make demo` and `make test`.
CARGO_TARGET_DIR ?= /var/tmp/distdiag-target
export CARGO_TARGET_DIR
CARGO ?= cargo

.PHONY: demo test fuzz soak bench bench-remote-write bench-accuracy build image lint unit deps-test deps-bench

demo:
	scripts/install-deps.sh demo
	$(CARGO) build --release -p distdiag-coordinator -p distdiag-agent -p distdiag-cli
	scripts/demo.sh

# Every test must run here: one whose prerequisite (root, cgroup v1, a
# database server, schemathesis, ...) is missing fails instead of skipping.
# cargo fetch brings every locked package, also those only other
# platforms build (the crate-graph test reads `cargo metadata --offline`).
test: deps-test lint
	$(CARGO) fetch
	$(CARGO) build --workspace --bins
	DISTDIAG_REQUIRE_ALL=1 $(CARGO) nextest run --workspace --no-fail-fast
	scripts/fuzz.sh 20

# Coverage-guided fuzzing, long: FUZZ_SECONDS per target (15 min each by
# default); the inputs AFL++ finds that reach new edges go to fuzz/corpus/ to commit.
FUZZ_SECONDS ?= 900
fuzz: deps-test
	scripts/fuzz.sh $(FUZZ_SECONDS) --keep-corpus

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps-bench
	$(CARGO) build --release --workspace --bins
	$(CARGO_TARGET_DIR)/release/distdiag-bench

# The soak: 1,000 simulated agents × 200 metrics at 1 Hz for 10 minutes,
# then 20 kill -9 of the coordinator under that load, and the count of every
# row (SOAK_AGENTS, SOAK_METRICS, SOAK_SECONDS, SOAK_KILLS change it).
soak: deps-bench
	$(CARGO) build --release --workspace --bins
	$(CARGO_TARGET_DIR)/release/distdiag-bench soak

# Remote write: the coordinator's CPU with and without a VictoriaMetrics
# receiver under simulated agents (RW_AGENTS, RW_METRICS, RW_SECONDS), and
# samples/s delivered to it from a backlog.
bench-remote-write: deps-bench
	$(CARGO) build --release --workspace --bins
	$(CARGO_TARGET_DIR)/release/distdiag-bench remote-write

# The full fault campaign on the testbed (Galera, then standalone MariaDB);
# about an hour per database with the defaults, see scripts/bench-accuracy.sh for the knobs.
bench-accuracy: deps-bench
	$(CARGO) build --release --workspace --bins
	scripts/bench-accuracy.sh

# The container image (Containerfile) from the release programs; podman
# builds it without a registry.
image:
	scripts/fetch-xgboost.sh
	$(CARGO) build --release -p distdiag-coordinator -p distdiag-agent -p distdiag-cli
	scripts/image-rootfs.sh $(CARGO_TARGET_DIR)/release image/rootfs
	podman build -t localhost/distdiag:0.1.0 .

build:
	scripts/fetch-xgboost.sh
	$(CARGO) build --workspace --bins

deps-test:
	scripts/install-deps.sh test

deps-bench:
	scripts/install-deps.sh bench
