#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this script).
# Run as root on Debian 12: tests that drive real traffic create network
# namespaces and veth pairs (and remove them), which needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

export CARGO_TERM_COLOR=never
echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --all-targets --locked
echo "== tests"
cargo test --workspace --locked -- --test-threads="$(nproc)"
echo "== all tests passed"
