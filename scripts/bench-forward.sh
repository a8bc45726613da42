#!/usr/bin/env bash
# System benchmark on one veth topology, side by side:
#
#   [gen] g0 ==veth== r0 [forwarder under test] r1 ==veth== s0 [sink]
#
# The generator (dpdk-testpmd txonly on an AF_XDP vdev, pinned to core 0)
# offers 64-byte UDP frames with many flows (198.18.1.2 -> 198.19.0.1,
# --txonly-multi-flow). The sink counts them on its veth and drops them (see
# --sink below). Each forwarder, pinned to core 1 where it can be, gets the
# same offered load for the same time:
#
#   kernel            Linux IPv4 forwarding (RPS steers its work to core 1)
#   linux-bridge      a Linux bridge
#   testpmd-mac       dpdk-testpmd --forward-mode=mac on AF_XDP vdevs: the I/O floor
#   vrouterd-af-xdp   vrouterd routing, AF_XDP ports
#   vrouterd-af-packet vrouterd routing, AF_PACKET ports (TPACKET_V3, QDISC_BYPASS)
#
# and, when named with -f, the AF_XDP I/O-path variants of vrouterd-af-xdp:
#   vrouterd-af-xdp-native / -generic       xdp-mode = native / generic
#   vrouterd-af-xdp-busy-poll[-256]         busy-poll-us = 50, budget 64 [256]
#   vrouterd-af-xdp-ring-512 / -ring-8192   ring-size (2048 by default)
#
# For each: offered and delivered packets/s, loss, and cost per packet:
# polling forwarders report their own busy cycles per packet (vrouterd's
# busy-poll accounting, testpmd's --record-core-cycles); for the kernel and
# the bridge, CPU time of the whole system except the generator, divided by
# delivered packets (sink receive included). Appends the table, the machine
# and the command to benches/RESULTS.md unless --no-record.
#
# The sink (--sink): `drop` (default) drops the frames in an nftables netdev
# ingress chain, before the sink's IP stack: on veth the sink's receive work
# runs on the CPU that transmits into the pair (the forwarder's core), and a
# real sink is another host. `stack` lets the sink's kernel route and drop
# them (not local, not forwarding): the figures before 2026-11-25 12:30 UTC.
#
# Usage: scripts/bench-forward.sh [-t SECONDS] [-f LIST] [--sink drop|stack] [--no-record]
# Run as root. Everything is named bf<pid>* and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=10
LIST="kernel,linux-bridge,testpmd-mac,vrouterd-af-xdp,vrouterd-af-packet"
RECORD=1
SINK=drop
CMDLINE="scripts/bench-forward.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    -t) SECS=$2; shift 2 ;;
    -f) LIST=$2; shift 2 ;;
    --no-record) RECORD=0; shift ;;
    --sink) SINK=$2; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/deps.sh
# The same build as bench-compare.sh and bench-floor.sh (with the dpdk
# feature where libdpdk is installed), so running them in turn builds once.
FEAT=()
pkg-config --exists libdpdk 2>/dev/null && FEAT=(--features vrouter-dataplane/dpdk)
cargo build --release --locked -q -p vrouter-dataplane --bin vrouterd "${FEAT[@]}"
VROUTERD="$PWD/target/release/vrouterd"
WARMUP=2
P="bf$$"
WORK=$(mktemp -d /tmp/vrouter-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  for n in gen rtr sink; do ip netns del "$P$n" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK" "/var/run/dpdk/${P}"*
}
trap cleanup EXIT INT TERM
ns() { ip netns exec "$P$1" "${@:2}"; }

for n in gen rtr sink; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
ip link add "${P}g0" netns "${P}gen" type veth peer name "${P}r0" netns "${P}rtr"
ip link add "${P}r1" netns "${P}rtr" type veth peer name "${P}s0" netns "${P}sink"
for x in "gen g0" "rtr r0" "rtr r1" "sink s0"; do
  set -- $x
  ip -n "$P$1" link set "$P$2" up
  ns "$1" ethtool -K "$P$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
done
for i in r0 r1; do ns rtr sysctl -qw "net.ipv6.conf.$P$i.disable_ipv6=1"; done
ns sink ip addr add 198.18.2.2/24 dev "${P}s0"
case "$SINK" in
  drop) ns sink nft add table netdev sink
        ns sink nft add chain netdev sink in "{ type filter hook ingress device ${P}s0 priority 0; }"
        ns sink nft add rule netdev sink in ip daddr 198.19.0.0/16 counter drop ;;
  stack) ;;
  *) echo "--sink must be drop or stack" >&2; exit 2 ;;
esac
ns gen ip addr add 198.18.1.2/24 dev "${P}g0"
mac_of() { ip -n "$P$1" link show "$P$2" | awk '/link\/ether/{print $2}'; }
R0MAC=$(mac_of rtr r0); R1MAC=$(mac_of rtr r1); SMAC=$(mac_of sink s0)
MHZ=$(awk -F: '/cpu MHz/{printf "%d", $2; exit}' /proc/cpuinfo)
[ -n "$MHZ" ] && [ "$MHZ" -gt 0 ] || MHZ=2600

stat_of() { ns "$1" cat "/sys/class/net/$P$2/statistics/$3"; }
busy_jiffies() { awk '/^cpu /{print $4+$7+$8}' /proc/stat; }  # system + irq + softirq
proc_jiffies() { awk '{print $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # system time

# Processes are started with `ip netns exec` directly (not through `ns`), so
# that $! is the process itself (ip execs it) and stopping it by PID works.
start_gen() { # start_gen <dst-mac>
  ip netns exec "${P}gen" dpdk-testpmd -l 0-1 --main-lcore 1 --no-huge -m 512 --no-pci --file-prefix "${P}gen" \
    --vdev "net_af_xdp0,iface=${P}g0" --log-level='.*,3' -- --forward-mode=txonly --txpkts=64 \
    --eth-peer="0,$1" --tx-ip=198.18.1.2,198.19.0.1 --txonly-multi-flow --total-num-mbufs=16384 \
    --nb-cores=1 --auto-start --stats-period=1 > "$WORK/gen.log" 2>&1 < /dev/null &
  GEN=$!; PIDS+=("$GEN")
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }

declare -a ROWS
measure() { # measure <name> <cost-fn>
  local name=$1
  sleep "$WARMUP"
  local tx0 rx0 j0 g0; tx0=$(stat_of gen g0 tx_packets); rx0=$(stat_of sink s0 rx_packets); j0=$(busy_jiffies); g0=$(proc_jiffies "$GEN")
  sleep "$SECS"
  local tx1 rx1 j1 g1; tx1=$(stat_of gen g0 tx_packets); rx1=$(stat_of sink s0 rx_packets); j1=$(busy_jiffies); g1=$(proc_jiffies "$GEN")
  OFFERED=$(( (tx1 - tx0) / SECS )); DELIVERED=$(( (rx1 - rx0) / SECS ))
  local hz; hz=$(getconf CLK_TCK)
  SYS_NS=$(awk -v j=$((j1 - j0 - (g1 - g0))) -v hz="$hz" -v p=$((rx1 - rx0)) 'BEGIN{ if (p>0) printf "%.0f", j/hz*1e9/p; else print "-" }')
}
row() { # row <name> <cycles/pkt or -> <how>
  local loss; loss=$(awk -v o="$OFFERED" -v d="$DELIVERED" 'BEGIN{ if (o>0) printf "%.1f%%", (o-d)*100/o; else print "-" }')
  ROWS+=("$(printf '| %-19s | %10s | %10s | %6s | %12s | %14s |' "$1" "$OFFERED" "$DELIVERED" "$loss" "$2" "$SYS_NS")")
  printf '%-20s offered %9s pps  delivered %9s pps  loss %6s  cycles/pkt %8s  system ns/pkt %8s\n' "$1" "$OFFERED" "$DELIVERED" "$loss" "$2" "$SYS_NS"
}

run_kernel() {
  ns rtr ip addr add 198.18.1.1/24 dev "${P}r0"; ns rtr ip addr add 198.18.2.1/24 dev "${P}r1"
  ns rtr sysctl -qw net.ipv4.ip_forward=1
  ns rtr ip route add 198.19.0.0/16 via 198.18.2.2
  ns rtr sh -c "echo 2 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" || true
  ns rtr ping -c 1 -W 1 198.18.2.2 >/dev/null || true
  start_gen "$R0MAC"; measure kernel
  local cyc; cyc=$(awk -v n="$SYS_NS" -v m="$MHZ" 'BEGIN{ if (n!="-") printf "%.0f*", n*m/1000; else print "-" }')
  row kernel "$cyc"; stop_pid "$GEN"
  ns rtr sysctl -qw net.ipv4.ip_forward=0; ns rtr ip addr flush dev "${P}r0"; ns rtr ip addr flush dev "${P}r1"
  ns rtr sh -c "echo 0 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" || true
}
run_bridge() {
  ns rtr ip link add "${P}br" type bridge; ns rtr ip link set "${P}r0" master "${P}br"; ns rtr ip link set "${P}r1" master "${P}br"
  ns rtr ip link set "${P}br" up
  start_gen "$SMAC"; measure linux-bridge
  local cyc; cyc=$(awk -v n="$SYS_NS" -v m="$MHZ" 'BEGIN{ if (n!="-") printf "%.0f*", n*m/1000; else print "-" }')
  row linux-bridge "$cyc"; stop_pid "$GEN"
  ns rtr ip link del "${P}br"
}
run_testpmd() {
  ip netns exec "${P}rtr" dpdk-testpmd -l 0-1 --main-lcore 0 --no-huge -m 512 --no-pci --file-prefix "${P}fwd" \
    --vdev "net_af_xdp0,iface=${P}r0" --vdev "net_af_xdp1,iface=${P}r1" --log-level='.*,3' -- \
    --forward-mode=mac --eth-peer="0,$SMAC" --eth-peer="1,$SMAC" --total-num-mbufs=16384 --nb-cores=1 \
    --record-core-cycles --auto-start --stats-period=1 > "$WORK/fwd.log" 2>&1 < /dev/null &
  local F=$!; PIDS+=("$F"); sleep 2
  start_gen "$R0MAC"; measure testpmd-mac; stop_pid "$GEN"; stop_pid "$F"
  local cyc; cyc=$(grep -o "CPU cycles/packet=[0-9.]*" "$WORK/fwd.log" | tail -1 | cut -d= -f2 || true)
  row testpmd-mac "${cyc:--}"
}
run_vrouterd() { # run_vrouterd <driver> [<label> <extra port keys>]
  local label=${2:-vrouterd-$1} extra=${3:-}
  cat > "$WORK/vr-$1.toml" <<CFG
[dataplane]
workers = 1
cores = [1]
[[port]]
name = "r0"
driver = "$1"
interface = "${P}r0"
$extra
[[port]]
name = "r1"
driver = "$1"
interface = "${P}r1"
$extra
[[interface]]
name = "r0"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "r1"
addresses = ["198.18.2.1/24"]
[[route]]
prefix = "198.19.0.0/16"
via = ["198.18.2.2"]
CFG
  ip netns exec "${P}rtr" "$VROUTERD" --config "$WORK/vr-$1.toml" > "$WORK/vr-$1.log" 2>&1 &
  local V=$!; PIDS+=("$V")
  for _ in $(seq 100); do grep -q "vrouterd running" "$WORK/vr-$1.log" && break; sleep 0.05; done
  if ! grep -q "vrouterd running" "$WORK/vr-$1.log"; then
    echo "$label: vrouterd did not start: $(tail -1 "$WORK/vr-$1.log")"; stop_pid "$V"; return
  fi
  start_gen "$R0MAC"; measure "$label"; stop_pid "$GEN"; stop_pid "$V"
  local cyc; cyc=$(awk -F': ' '/busy cycles per received packet/{printf "%.0f", $2}' "$WORK/vr-$1.log")
  row "$label" "${cyc:--}"
  cp "$WORK/vr-$1.log" "$WORK/$label.log"
}
# I/O-path variants of vrouterd on AF_XDP (issue 3's study): the program's
# attach mode, socket busy polling, and ring sizes (which bound the batch
# one kick can move).
run_variant() { # run_variant <name>
  case "$1" in
    vrouterd-af-xdp-native) run_vrouterd af-xdp "$1" 'xdp-mode = "native"' ;;
    vrouterd-af-xdp-generic) run_vrouterd af-xdp "$1" 'xdp-mode = "generic"' ;;
    vrouterd-af-xdp-busy-poll) run_vrouterd af-xdp "$1" "busy-poll-us = 50
busy-poll-budget = 64" ;;
    vrouterd-af-xdp-busy-poll-256) run_vrouterd af-xdp "$1" "busy-poll-us = 50
busy-poll-budget = 256" ;;
    vrouterd-af-xdp-ring-512) run_vrouterd af-xdp "$1" "ring-size = 512" ;;
    vrouterd-af-xdp-ring-8192) run_vrouterd af-xdp "$1" "ring-size = 8192" ;;
    *) echo "unknown forwarder $1" >&2; exit 2 ;;
  esac
}

echo "== $SECS s per forwarder, after ${WARMUP} s warm-up; generator: testpmd txonly, AF_XDP, core 0"
for f in ${LIST//,/ }; do
  case "$f" in
    kernel) run_kernel ;;
    linux-bridge) run_bridge ;;
    testpmd-mac) run_testpmd ;;
    vrouterd-af-xdp) run_vrouterd af-xdp ;;
    vrouterd-af-packet) run_vrouterd af-packet ;;
    vrouterd-af-xdp-*) run_variant "$f" ;;
    *) echo "unknown forwarder $f" >&2; exit 2 ;;
  esac
done

TABLE=$(
  echo "| forwarder | offered pps | delivered pps | loss | cycles/pkt | system ns/pkt |"
  echo "|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do echo "$r"; done
)
echo; echo "$TABLE"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "### bench-forward, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)"
    echo
    echo "Command: \`$CMDLINE\` (64-byte UDP, testpmd txonly generator on AF_XDP, $SECS s per forwarder, sink: $SINK)."
    echo "cycles/pkt: the forwarder's own busy cycles per packet (vrouterd: busy polls; testpmd: --record-core-cycles);"
    echo "\\* = system CPU time except the generator, per delivered packet, at ${MHZ} MHz (sink receive included)."
    echo
    echo "$TABLE"
  } >> benches/RESULTS.md
  echo "(appended to benches/RESULTS.md)"
fi
