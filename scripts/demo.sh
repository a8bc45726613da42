#!/usr/bin/env bash
# The vRouter demo: a three-node overlay network in namespaces, real traffic.
#
#   pod1a pod1b            pod2a                       pod3
#      |    |                |                           |
#   [ node1: vrouterd ]  [ node2: vrouterd ]   [ node3: Linux kernel VXLAN ]
#   [  + vrouter-agent ] [  + vrouter-agent ]  [  (Flannel-style, vx1)     ]
#            \                  |                       /
#             +------ underlay switch 198.18.100.0/24 -+     etcd on 127.0.0.1
#
# - etcd (Debian's etcd-server) runs on loopback with a temp data dir; each
#   node's agent holds its subnet lease there (pod CIDR, VTEP IP and MAC)
#   and the vrouterd nodes' agents turn the others' leases into overlay
#   routes (VXLAN VNI 1) through vrouterd's control socket. Node3 is a
#   kernel VXLAN node whose lease is held by an agent in mode `none`.
# - Pods are made by running vrouter-cni exactly as a container runtime
#   does (CNI_* environment, netconf on stdin), from a pool of veth ports.
# - Traffic: ping across nodes (vrouterd <-> vrouterd, vrouterd <-> kernel),
#   iperf3 TCP across nodes over VXLAN, a ClusterIP service on node1 whose
#   backend is a pod of node2, reached from a pod of node1.
# - A summary: per-node forwarded packets, VXLAN encap/decap, service hits.
#
# Everything it creates is named vk<pid>* and removed on exit (trap);
# processes are stopped by PID. Run as root on Debian 12; about a minute
# once built. DEMO_SKIP_BUILD=1 uses the binaries already in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DEMO_SKIP_BUILD:-}" ]; then
  source scripts/deps.sh
  echo "== building vrouterd, vrouterctl, vrouter-cni, vrouter-agent (release)"
  cargo build --release --locked -q -p vrouter-dataplane --bin vrouterd \
    -p vrouter-control --bin vrouterctl -p vrouter-cni -p vrouter-agent
fi
BIN="${DEMO_BIN:-$PWD/target/release}"
for b in vrouterd vrouterctl vrouter-cni vrouter-agent; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build first)" >&2; exit 1; }
done
command -v etcd >/dev/null || { echo "etcd not found (apt-get install etcd-server)" >&2; exit 1; }

P="vk$$"
WORK="$(mktemp -d /tmp/vrouter-demo.XXXXXX)"
EPORT=$((20000 + $$ % 20000)); EPEER=$((EPORT + 1))
PIDS=()
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null && wait "${PIDS[$i]}" 2>/dev/null || true
  done
  for n in n1 n2 n3 sw p1a p1b p2a p3; do ip netns del "$P$n" 2>/dev/null || true; done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
# A bound on the whole run: the demo never hangs a terminal or CI.
( sleep "${DEMO_TIMEOUT:-240}" & wait $!; kill -TERM $$ ) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!
PIDS+=("$WATCHDOG")

ns() { ip netns exec "$P$1" "${@:2}"; }
quiet() { # offloads off: a userspace forwarder receives frames, not super-packets
  ns "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}
veth() { # veth <ns-a> <if-a> <ns-b> <if-b>
  ip link add "$P$2" netns "$P$1" type veth peer name "$P$4" netns "$P$3"
  ip -n "$P$1" link set "$P$2" up; ip -n "$P$3" link set "$P$4" up
  quiet "$1" "$P$2"; quiet "$3" "$P$4"
}
ctl() { "$BIN/vrouterctl" -s "$WORK/$1.sock" "${@:2}"; }
wait_for() { # wait_for <seconds> <what> <command...>
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: $what did not happen in ${t}s" >&2; return 1
}

echo "== topology (prefix $P)"
for n in n1 n2 n3 sw p1a p1b p2a p3; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
ns sw ip link add "${P}br" type bridge; ns sw ip link set "${P}br" up
for k in 1 2 3; do
  veth "n$k" "u$k" sw "s$k"
  ns sw ip link set "$P""s$k" master "${P}br"
done

# Nodes 1 and 2: vrouterd owns the uplink and a pool of pod ports (veth
# pairs h<i>/p<i> in the node's namespace; the CNI plugin hands out p<i>).
node_toml() { # node_toml <k> <ports>
  local k=$1 n=$2 i
  printf '[dataplane]\nworkers = 1\n\n'
  for ((i = 0; i < n; i++)); do
    printf '[[port]]\nname = "pod%d"\ndriver = "af-packet"\ninterface = "%sh%d"\n' "$i" "$P$k" "$i"
  done
  printf '[[port]]\nname = "uplink"\ndriver = "af-packet"\ninterface = "%su%d"\n\n' "$P" "$k"
  printf '[[bridge]]\nname = "pods"\ngateway = { addresses = ["198.19.%d.1/24"], mac = "02:76:72:00:0%d:01", mtu = 1450 }\n' "$k" "$k"
  for ((i = 0; i < n; i++)); do printf '[[interface]]\nname = "pod%d"\nbridge = "pods"\nmtu = 1450\n' "$i"; done
  printf '[[interface]]\nname = "uplink"\naddresses = ["198.18.100.%d/24"]\n\n' "$k"
  printf '[[vtep]]\nname = "vtep0"\nlocal = "198.18.100.%d"\n' "$k"
  printf '[[vni]]\nvtep = "vtep0"\nvni = 1\nvrf = "default"\nmac = "02:76:78:00:00:0%d"\n\n' "$k"
  printf '[metrics]\nenabled = false\n[control]\nsocket = "%s/n%d.sock"\n' "$WORK" "$k"
}
for k in 1 2; do
  npods=$((k == 1 ? 2 : 1))
  for ((i = 0; i < npods; i++)); do
    ip -n "${P}n$k" link add "$P${k}h$i" type veth peer name "$P${k}p$i"
    ip -n "${P}n$k" link set "$P${k}h$i" up
    quiet "n$k" "$P${k}h$i"; quiet "n$k" "$P${k}p$i"
  done
  node_toml "$k" "$npods" > "$WORK/n$k.toml"
  ip netns exec "${P}n$k" "$BIN/vrouterd" --config "$WORK/n$k.toml" > "$WORK/n$k.out" 2>&1 &
  PIDS+=("$!"); eval "VPID$k=$!"
  cat > "$WORK/n$k.conf" <<CONF
{"cniVersion": "1.0.0", "name": "${P}net$k", "type": "vrouter-cni",
 "socket": "$WORK/n$k.sock", "bridge": "pods", "mtu": 1450,
 "ports": {"count": $npods, "interface": "pod{}", "device": "$P${k}p{}"},
 "ipam": {"subnet": "198.19.$k.0/24", "gateway": "198.19.$k.1", "dataDir": "$WORK/ipam$k"}}
CONF
done
for k in 1 2; do
  wait_for 30 "vrouterd on node$k" grep -q "vrouterd running" "$WORK/n$k.out" || { cat "$WORK/n$k.out"; exit 1; }
done

# Node 3: the Linux kernel's VXLAN, Flannel style (routes via vx1 onlink,
# a static neighbour and FDB entry per remote node).
ns n3 sysctl -qw net.ipv4.ip_forward=1
ns n3 ip addr add 198.18.100.3/24 dev "${P}u3"
ns n3 ip link add vx1 address 02:76:78:00:00:03 type vxlan id 1 local 198.18.100.3 \
  dev "${P}u3" dstport 4789 nolearning
ns n3 ip link set vx1 up
ns n3 ip addr add 198.19.3.0/32 dev vx1
for k in 1 2; do
  ns n3 ip neigh add "198.19.$k.0" lladdr "02:76:78:00:00:0$k" dev vx1 nud permanent
  ns n3 bridge fdb append "02:76:78:00:00:0$k" dev vx1 dst "198.18.100.$k"
  ns n3 ip route add "198.19.$k.0/24" via "198.19.$k.0" dev vx1 onlink
done
veth n3 g3 p3 e3
ns n3 ip addr add 198.19.3.1/24 dev "${P}g3"
ns p3 ip addr add 198.19.3.2/24 dev "${P}e3"; ns p3 ip link set "${P}e3" mtu 1450
ns p3 ip route add default via 198.19.3.1

echo "== etcd on 127.0.0.1:$EPORT (data in $WORK/etcd)"
etcd --name "$P" --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
  --listen-peer-urls "http://127.0.0.1:$EPEER" --initial-advertise-peer-urls "http://127.0.0.1:$EPEER" \
  --initial-cluster "$P=http://127.0.0.1:$EPEER" > "$WORK/etcd.log" 2>&1 < /dev/null &
PIDS+=("$!")
wait_for 30 "etcd" curl -sf "http://127.0.0.1:$EPORT/health" || { tail "$WORK/etcd.log"; exit 1; }

echo "== agents (etcd backend, overlay mode)"
agent() { # agent <k> <mode> <socket>
  RUST_LOG=info "$BIN/vrouter-agent" --node-name "node$1" --backend etcd --mode "$2" --socket "$3" \
    --etcd-endpoints "http://127.0.0.1:$EPORT" --etcd-prefix "/$P/network" --lease-ttl 6 \
    --pod-cidr "198.19.$1.0/24" --vtep-ip "198.18.100.$1" --vtep-mac "02:76:78:00:00:0$1" \
    > "$WORK/agent$1.log" 2>&1 &
  PIDS+=("$!")
}
agent 1 overlay "$WORK/n1.sock"
agent 2 overlay "$WORK/n2.sock"
agent 3 none "$WORK/none.sock"   # node3 only holds its lease (a kernel node)
for k in 1 2; do
  others=$(for j in 1 2 3; do [ "$j" = "$k" ] || echo "198.19.$j.0/24"; done)
  wait_for 30 "overlay routes on node$k" bash -c \
    "out=\$('$BIN/vrouterctl' -s '$WORK/n$k.sock' show overlay-routes); for p in $(echo $others); do grep -q \"\$p\" <<<\"\$out\" || exit 1; done"
  echo "  node$k overlay routes (from the other nodes' leases):"
  ctl "n$k" show overlay-routes | sed 's/^/    /'
done

echo "== pods (vrouter-cni, as a runtime runs it)"
cni() { # cni <node k> <ADD|DEL> <pod>
  ip netns exec "${P}n$1" env CNI_COMMAND="$2" CNI_CONTAINERID="$P$3" CNI_NETNS="/var/run/netns/$P$3" \
    CNI_IFNAME=eth0 CNI_PATH="$BIN" VROUTER_CNI_LOG=warn CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$3" \
    "$BIN/vrouter-cni" < "$WORK/n$1.conf"
}
declare -A IP
for spec in 1:p1a 1:p1b 2:p2a; do
  k=${spec%%:*} pod=${spec#*:}
  res=$(cni "$k" ADD "$pod")
  IP[$pod]=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])' <<<"$res")
  printf '  %-5s on node%s: %s\n' "$pod" "$k" "${IP[$pod]}"
done
IP[p3]=198.19.3.2

declare -a SUMMARY
check_ping() { # check_ping <label> <ns> <dst>
  local out line
  out=$(ns "$2" ping -c 5 -i 0.2 -W 2 "$3" 2>&1 || true)
  line=$(grep "packets transmitted" <<<"$out" || echo "no reply")
  printf '  %-42s %s\n' "$1" "$line"
  SUMMARY+=("$(printf '%-42s %s' "$1" "$(cut -d, -f1-3 <<<"$line")")")
}
echo "== traffic"
check_ping "p1a -> p1b (node1, bridged)"           p1a "${IP[p1b]}"
check_ping "p1a -> p2a (node1 -> node2, VXLAN)"    p1a "${IP[p2a]}"
check_ping "p2a -> p1b (node2 -> node1, VXLAN)"    p2a "${IP[p1b]}"
check_ping "p1a -> p3 (node1 -> kernel node3)"     p1a "${IP[p3]}"
check_ping "p3 -> p2a (kernel node3 -> node2)"     p3  "${IP[p2a]}"
# Not through `ns`: $! must be the server's own PID (ip netns exec execs it).
ip netns exec "${P}p2a" iperf3 -s -1 >/dev/null 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
sleep 0.5
MBPS=$(ns p1a iperf3 -c "${IP[p2a]}" -t 5 -J | python3 -c 'import json,sys; d=json.load(sys.stdin)["end"]; print("%.0f Mbit/s, %d retransmits" % (d["sum_received"]["bits_per_second"]/1e6, d["sum_sent"]["retransmits"]))') || MBPS="failed"
printf '  %-42s %s\n' "iperf3 TCP p1a -> p2a (VXLAN), 5 s" "$MBPS"
SUMMARY+=("$(printf '%-42s %s' "iperf3 TCP p1a -> p2a (VXLAN), 5 s" "$MBPS")")

# A ClusterIP service on node1 whose backend is p2a on node2. The etcd
# backend carries node subnets only (docs/agent.md), so the service is
# added with vrouterctl; with the Kubernetes backend the agent syncs it.
mkdir -p "$WORK/www"; echo "hello from p2a on node2" > "$WORK/www/index.html"
ip netns exec "${P}p2a" python3 -m http.server 8080 --bind "${IP[p2a]}" --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=("$!")
ctl n1 service add "{\"namespace\":\"default\",\"name\":\"web\",\"ips\":[\"198.19.200.10\"],\"port\":80,\"backends\":[{\"ip\":\"${IP[p2a]}\",\"port\":8080,\"local\":false}]}" >/dev/null
wait_for 10 "the backend's HTTP server" ns p2a python3 -c "import socket; socket.create_connection(('${IP[p2a]}', 8080), 1)"
HITS=0
for _ in 1 2 3 4 5; do
  if ns p1a python3 -c 'import urllib.request,sys; r=urllib.request.urlopen("http://198.19.200.10/", timeout=3).read().decode(); sys.exit(0 if "p2a" in r else 1)' 2>/dev/null; then
    HITS=$((HITS + 1))
  fi
done
printf '  %-42s %s\n' "ClusterIP 198.19.200.10:80 from p1a" "$HITS/5 HTTP requests answered by p2a (node2)"
SUMMARY+=("$(printf '%-42s %s' "ClusterIP 198.19.200.10:80 from p1a" "$HITS/5 answered by p2a on node2")")
echo "  node1 services:"
ctl n1 show services | sed 's/^/    /'

# Per-node figures, read from the control sockets before stopping.
stats() { # stats <k>: forwarded packets, VXLAN encap, decap, conntrack flows
  local ports vteps ct
  ports=$(ctl "n$1" --json show ports); vteps=$(ctl "n$1" --json show vteps); ct=$(ctl "n$1" --json show conntrack)
  python3 - "$ports" "$vteps" "$ct" <<'PY'
import json, sys
ports, vteps, ct = (json.loads(a) for a in sys.argv[1:4])
tx = sum(p.get("tx_packets", 0) for p in ports)
enc = sum(v.get("tx_packets", 0) for v in vteps)
dec = sum(v.get("rx_packets", 0) for v in vteps)
print(tx, enc, dec, ct.get("flows", 0))
PY
}
declare -a NODESUM
for k in 1 2; do
  read -r tx enc dec flows < <(stats "$k")
  NODESUM+=("$(printf 'node%s (vrouterd): %7s packets transmitted on its ports, VXLAN: %6s encapsulated, %6s decapsulated, %s conntrack flows' "$k" "$tx" "$enc" "$dec" "$flows")")
done
K3=$(ns n3 ip -s -j link show vx1 | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["tx"]["packets"], s["rx"]["packets"])')
NODESUM+=("$(printf 'node3 (kernel):   vx1 sent %s, received %s VXLAN packets' ${K3})")

echo "== pods removed (vrouter-cni DEL)"
for spec in 1:p1a 1:p1b 2:p2a; do cni "${spec%%:*}" DEL "${spec#*:}" && echo "  ${spec#*:}: deleted"; done

echo "== stopping"
for k in 1 2; do eval "kill -TERM \$VPID$k"; eval "wait \$VPID$k" || true; done
echo
echo "================ summary ================"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
for l in "${NODESUM[@]}"; do echo "  $l"; done
kill "$WATCHDOG" 2>/dev/null || true
