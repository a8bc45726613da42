#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this script).
# Run as root on Debian 12: tests that drive real traffic create network
# namespaces and veth pairs (and remove them), which needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

export CARGO_TERM_COLOR=never
# DPDK ports are a cargo feature; build and test them where libdpdk is
# installed (deps.sh installs it), so the real-traffic scenarios also run on
# DPDK vdevs.
FEATURES=()
if pkg-config --exists libdpdk; then
  export VROUTER_FEATURES=dpdk
  FEATURES=(--features vrouter-dataplane/dpdk)
fi
echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings
echo "== build"
cargo build --workspace --all-targets --locked "${FEATURES[@]}"
echo "== tests"
cargo test --workspace --locked "${FEATURES[@]}" -- --test-threads="$(nproc)"
# Each fuzz target for a short, bounded time from its seed corpus (5 targets
# x 25 s; the first build of fuzz/ takes longer). A crash fails CI and
# leaves its input under fuzz/artifacts/<target>/.
echo "== fuzz (25 s per target)"
scripts/fuzz.sh "${FUZZ_SECONDS:-25}"
echo "== soak (2 minutes)"
# Debug binaries from the build above; docs/TESTING.md says what it checks.
nice -n 10 bash scripts/soak.sh -d 120 --bin-dir target/debug --rate 1000
echo "== all tests passed"
