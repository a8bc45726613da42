#!/usr/bin/env bash
# LPM lookup alone: vrouter-fib next to DPDK's rte_fib (DIR24_8 for IPv4,
# TRIE for IPv6) on the same routes and the same addresses, in one run.
#
# IPv4: dpdk-test-fib (Debian package dpdk-dev) generates 1M routes in its
# default depth distribution and 10M lookup addresses and dumps both (-w/-u);
# it is then run again on the dumps (-f/-t), once in its own address order and
# once on a shuffled copy. The fib bench (benches/fib.rs) loads the same files
# and times Fib4Table::lookup_batch the way test-fib times
# rte_fib_lookup_bulk: TSC per burst of 64, averaged ("cycles/lookup").
# IPv6: the fib bench's BGP-like 200k-prefix table and 10M addresses are
# dumped and test-fib -6 (TRIE) runs on them.
#
# DPDK gets 2 MiB hugepages (as deployed): the script reserves 1400 more
# (2.8 GiB) on a private hugetlbfs mount and gives them back on exit; if the
# kernel cannot supply them it falls back to --no-huge and says so.
# vrouter-fib maps its tables on transparent huge pages (vrouter_buf::HugeTable).
#
# Usage: scripts/bench-lpm.sh   (as root; about 5 minutes; run on a quiet
#        machine)
set -euo pipefail
cd "$(dirname "$0")/.."
D=$(mktemp -d /tmp/vrouter-lpm.XXXXXX)
PREFIX="vrlpm$$"
NR0=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
  mountpoint -q "$D/huge" && umount "$D/huge"
  echo "$NR0" > /proc/sys/vm/nr_hugepages
  rm -rf "$D" "/var/run/dpdk/$PREFIX"
}
trap cleanup EXIT
mkdir "$D/huge"
echo $((NR0 + 1400)) > /proc/sys/vm/nr_hugepages || true
if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((NR0 + 1400)) ] && mount -t hugetlbfs -o pagesize=2M nodev "$D/huge"; then
  EAL=(--huge-dir "$D/huge" -m 2800 --no-pci --file-prefix "$PREFIX" --log-level='.*,3')
  echo "== DPDK on 2 MiB hugepages"
else
  echo "$NR0" > /proc/sys/vm/nr_hugepages
  EAL=(--no-huge -m 4096 --no-pci --file-prefix "$PREFIX" --log-level='.*,3')
  echo "== hugepages unavailable: DPDK runs with --no-huge (4 KiB pages)"
fi

testfib() { # args...: prints test-fib's average lookup cost
  dpdk-test-fib "${EAL[@]}" -- "$@" 2>&1 | grep -E "AVG FIB lookup" || echo "dpdk-test-fib printed no lookup figure"
}
ours() { # routes ips: prints vrouter-fib's TSC pass lines
  VROUTER_FIB_ROUTES="$1" VROUTER_FIB_IPS="$2" VROUTER_FIB_DUMP_DIR="$D" \
    cargo bench -q -p vrouter-benches --bench fib -- --warm-up-time 1 --measurement-time 3 \
    fib4/lookup_batch_256 2>&1 | grep -E "^fib4 lookup_batch: .*bursts of 64|^TSC|fib4/lookup_batch_256|thrpt" || true
}

cargo build -q --release -p vrouter-benches --benches
echo "== dpdk-test-fib: generate and dump 1M IPv4 routes and 10M addresses"
dpdk-test-fib "${EAL[@]}" -- -n 1000000 -l 10000000 -g 600000 -w "$D/routes.txt" -u "$D/ips.txt" >/dev/null 2>&1
shuf --random-source=<(yes) "$D/ips.txt" > "$D/ips_shuf.txt"
for ips in ips ips_shuf; do
  echo "== IPv4, $ips: DPDK rte_fib DIR24_8 on the dump"
  testfib -f "$D/routes.txt" -t "$D/$ips.txt" -g 600000
  echo "== IPv4, $ips: vrouter-fib lookup_batch on the dump"
  ours "$D/routes.txt" "$D/$ips.txt"
done
echo "== IPv6: DPDK rte_fib6 TRIE on vrouter-fib's BGP-like 200k table (dumped above)"
testfib -6 -f "$D/routes6.txt" -t "$D/ips6.txt" -g 600000
echo "== IPv6: vrouter-fib lookup_batch on the same table"
VROUTER_FIB6_ROUTES="$D/routes6.txt" VROUTER_FIB6_IPS="$D/ips6.txt" \
  cargo bench -q -p vrouter-benches --bench fib -- --warm-up-time 1 --measurement-time 3 \
  fib6/lookup_batch_256 2>&1 | grep -E "^fib6 lookup_batch: .*bursts of 64|fib6/lookup_batch_256|thrpt" || true
