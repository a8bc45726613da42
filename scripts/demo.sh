#!/usr/bin/env bash
# The vRouter demo: real namespaces, real traffic through vrouterd.
#
#   pod1, pod2 --(veth)-- [ vrouterd: bridge "pods" + gateway 198.18.10.1 ] --(veth)-- ext
#
# Two pods share a bridge domain whose routed gateway (BVI) is vrouterd; an
# "external" host sits on a routed uplink. The demo pings pod to pod
# (bridged), pod to gateway, pod to ext (routed, IPv4 and IPv6), traces the
# route, runs iperf3 TCP for 5 seconds, then stops vrouterd and prints a
# summary of what it forwarded. Everything it creates is named vd<pid>* and
# removed on exit. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

echo "== building vrouterd (release)"
cargo build --release --locked -q -p vrouter-dataplane --bin vrouterd
VROUTERD="$PWD/target/release/vrouterd"

P="vd$$"
WORK="$(mktemp -d /tmp/vrouter-demo.XXXXXX)"
VPID=""
cleanup() {
  [ -n "$VPID" ] && kill -TERM "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null || true
  for n in rtr pod1 pod2 ext; do ip netns del "$P$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ns() { ip netns exec "$P$1" "${@:2}"; }
veth() { # veth <ns-a> <if-a> <ns-b> <if-b>
  ip link add "$P$2" netns "$P$1" type veth peer name "$P$4" netns "$P$3"
  ip -n "$P$1" link set "$P$2" up; ip -n "$P$3" link set "$P$4" up
  # A userspace forwarder receives frames, not the kernel's offload
  # super-packets: turn segmentation and checksum offloads off on test links.
  ns "$1" ethtool -K "$P$2" tso off gso off gro off tx off >/dev/null 2>&1 || true
  ns "$3" ethtool -K "$P$4" tso off gso off gro off tx off >/dev/null 2>&1 || true
}

echo "== topology (prefix $P)"
for n in rtr pod1 pod2 ext; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
veth rtr r1 pod1 e1
veth rtr r2 pod2 e2
veth rtr ru ext eu
for i in r1 r2 ru; do ns rtr sysctl -qw "net.ipv6.conf.$P$i.disable_ipv6=1"; done
ns pod1 ip addr add 198.18.10.11/24 dev "${P}e1"; ns pod1 ip -6 addr add 2001:db8:10::11/64 dev "${P}e1" nodad
ns pod2 ip addr add 198.18.10.12/24 dev "${P}e2"; ns pod2 ip -6 addr add 2001:db8:10::12/64 dev "${P}e2" nodad
ns ext  ip addr add 198.18.20.2/24 dev "${P}eu";  ns ext  ip -6 addr add 2001:db8:20::2/64 dev "${P}eu" nodad
for p in pod1 pod2; do ns $p ip route add default via 198.18.10.1; ns $p ip -6 route add default via 2001:db8:10::1; done
ns ext ip route add 198.18.10.0/24 via 198.18.20.1; ns ext ip -6 route add 2001:db8:10::/64 via 2001:db8:20::1

cat > "$WORK/vrouter.toml" <<CFG
[dataplane]
workers = 1

[[port]]
name = "pod1"
driver = "af-packet"
interface = "${P}r1"
[[port]]
name = "pod2"
driver = "af-packet"
interface = "${P}r2"
[[port]]
name = "uplink"
driver = "af-packet"
interface = "${P}ru"

[[bridge]]
name = "pods"
gateway = { addresses = ["198.18.10.1/24", "2001:db8:10::1/64"], mac = "02:76:72:00:0a:01" }

[[interface]]
name = "pod1"
bridge = "pods"
[[interface]]
name = "pod2"
bridge = "pods"
[[interface]]
name = "uplink"
addresses = ["198.18.20.1/24", "2001:db8:20::1/64"]
CFG

echo "== starting vrouterd"
# Not through the `ns` function: $! must be vrouterd's own PID (ip netns exec execs it).
ip netns exec "${P}rtr" "$VROUTERD" --config "$WORK/vrouter.toml" > "$WORK/vrouterd.out" 2>&1 &
VPID=$!
for _ in $(seq 100); do grep -q "vrouterd running" "$WORK/vrouterd.out" && break; sleep 0.05; done
grep -q "vrouterd running" "$WORK/vrouterd.out" || { cat "$WORK/vrouterd.out"; exit 1; }

declare -a SUMMARY
check_ping() { # check_ping <label> <ns> <args...>
  local label=$1 n=$2; shift 2
  local out; out=$(ns "$n" ping -c 5 -i 0.2 -W 2 "$@" 2>&1 || true)
  local line; line=$(echo "$out" | grep "packets transmitted" || echo "no reply")
  printf '  %-34s %s\n' "$label" "$line"
  SUMMARY+=("$(printf '%-34s %s' "$label" "$(echo "$line" | cut -d, -f1-3)")")
}

echo "== traffic"
check_ping "pod1 -> pod2 (bridged)"        pod1 198.18.10.12
check_ping "pod1 -> gateway"                pod1 198.18.10.1
check_ping "pod1 -> ext (routed)"           pod1 198.18.20.2
check_ping "ext -> pod2 (routed)"           ext  198.18.10.12
check_ping "pod2 -> ext (IPv6, routed)"     pod2 -6 2001:db8:20::2
echo "  traceroute pod1 -> ext:"
ns pod1 traceroute -n -q 1 -w 2 198.18.20.2 | sed 's/^/    /'
ns ext iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.3
IPERF=$(ns pod1 iperf3 -c 198.18.20.2 -t 5 -J)
MBPS=$(echo "$IPERF" | python3 -c 'import json,sys; d=json.load(sys.stdin)["end"]; print("%.0f Mbit/s, %d retransmits" % (d["sum_received"]["bits_per_second"]/1e6, d["sum_sent"]["retransmits"]))')
printf '  %-34s %s\n' "iperf3 TCP pod1 -> ext, 5 s" "$MBPS"
SUMMARY+=("$(printf '%-34s %s' "iperf3 TCP pod1 -> ext, 5 s" "$MBPS")")

echo "== stopping vrouterd"
kill -TERM "$VPID"; wait "$VPID" || true; VPID=""
echo
echo "================ vrouterd counters ================"
grep -v "INFO" "$WORK/vrouterd.out" || true
echo "================ summary ================"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
FWD=$(awk '/^ports:/{p=1;next} /^interfaces:/{p=0} p && $1!="name"{s+=$5} END{print s+0}' "$WORK/vrouterd.out")
echo "  vrouterd transmitted $FWD packets on its ports"
