#!/usr/bin/env bash
# NetworkPolicy classification next to DPDK's rte_acl on the same rule set
# and the same lookups (issue 7, benches/RESULTS.md §7).
#
# `vrouter-bench acl-export[-one-pod] DIR` writes the services bench's 1000
# rules (100 policies x 10 ingress rules; benches/svc.rs) in ClassBench
# format for dpdk-test-acl (Debian package dpdk): one 5-tuple rule per
# selected-pod prefix x peer prefix x port range, in rule order, so rte_acl's
# highest-priority match is our first-matching rule; the ipBlock `except` is
# expanded into the prefixes that remain. The trace is the bench's 4096
# (src, dst, port) tuples, classified --iter times. Then `vrouter-bench
# policy[-one-pod]` classifies the same tuples with our classifier.
#
# Both set-ups: the 1000 pods case and the worst case (one pod selected by
# all 1000 rules). DPDK runs with --no-huge (no hugepages to give back).
#
# Usage: scripts/bench-acl.sh [iterations]   (as root; run on a quiet machine;
#        a loaded one halves both figures)
set -euo pipefail
cd "$(dirname "$0")/.."
ITER=${1:-200}
D=$(mktemp -d /tmp/vrouter-acl.XXXXXX)
PREFIX="vracl$$"
cleanup() { rm -rf "$D" "/var/run/dpdk/$PREFIX"; }
trap cleanup EXIT
command -v dpdk-test-acl >/dev/null || { echo "dpdk-test-acl missing: apt-get install dpdk" >&2; exit 1; }
cargo build --release -q -p vrouter-benches --bin vrouter-bench
B=target/release/vrouter-bench
for set in "" -one-pod; do
  mkdir -p "$D/set$set"
  echo "== policy set${set:- (1000 pods)}: $($B "acl-export$set" "$D/set$set")"
  rules=$(grep -c '^@' "$D/set$set/rules")
  for alg in scalar sse avx2; do
    out=$(dpdk-test-acl --no-huge -m 4096 --no-pci --file-prefix "$PREFIX" --log-level='.*,3' -- \
      --rulesf="$D/set$set/rules" --tracef="$D/set$set/trace" --rulenum=$((rules + 1)) \
      --iter="$ITER" --verbose=0 --alg="$alg" 2>&1) || { echo "dpdk-test-acl ($alg) failed:"; echo "$out" | tail -5; continue; }
    echo "dpdk-test-acl $alg: $(echo "$out" | grep -o '[0-9.]* cycles/pkt, [0-9.]* pkt/sec' | tail -1)"
  done
  $B "policy$set" "polls:$ITER"
done
