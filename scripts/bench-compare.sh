#!/usr/bin/env bash
# Side-by-side benchmark of vrouterd and its peers, on one veth topology,
# in one run:
#
#   [gen] g0 ==veth== r0 [forwarder under test] r1 ==veth== s0 [sink]
#
# vrouter-pktgen (pinned to core 0) sends on g0 and receives on s0 (AF_XDP
# both, one process), so it measures offered and delivered rates, loss and
# latency itself. Each forwarder runs pinned to core 1 where it can be:
#
#   vrouterd-af-xdp     vrouterd, AF_XDP ports
#   vrouterd-af-packet  vrouterd, AF_PACKET ports
#   vrouterd-dpdk       vrouterd, DPDK net_af_packet vdevs (when `vrouterd --version` says dpdk)
#   kernel              Linux IPv4 forwarding (IPv4 case)
#   linux-bridge        a Linux bridge (L2 case)
#   linux-vxlan         a Linux VXLAN device + IPv4 forwarding (VXLAN cases)
#   ovs-dpdk            OVS userspace datapath, PMD on core 1, AF_XDP ports; VXLAN cases
#                       with OVS's userspace tunnelling (br-phy + br-int), when
#                       ovs-vswitchd with DPDK is installed (else a "skipped" row)
#
# Cases: l2 (bridged to the sink's MAC), ipv4 (routed, 10k flows to
# 198.19.0.0/16 via the sink), vxlan-encap (the IPv4 frames routed into VNI
# 100 towards the sink's VTEP 198.18.2.2), vxlan-decap (VXLAN frames from
# VTEP 198.18.1.2 to the forwarder's VTEP 198.18.1.1, inner routed to the
# sink). vrouterd's VXLAN cases need the [[vtep]]/[[vni]] keys
# (docs/CONFIG.md); where `vrouterd --check` refuses them the row says
# "pending".
#
# For each (case, forwarder): a run at the same offered rate (--rate, 64-byte
# frames) gives offered, delivered, loss, latency p50/p99/p99.9 and the cost
# per packet; then an RFC 2544 search gives the zero-loss rate. Cost:
# polling forwarders report their own busy cycles per packet (vrouterd's
# busy-poll accounting through SIGUSR1, OVS's pmd-stats-show); for the
# kernel forwarders, CPU time of the whole system except the generator
# process, per delivered packet, at the CPU's clock (marked *: it includes
# the sink's receive). Then vrouterd's figures as ratios to each peer's.
# The tables, the machine and the command are appended to benches/RESULTS.md
# unless --no-record.
#
# Usage: [VROUTERD=path] [VR_DATAPLANE_EXTRA='key = value'] scripts/bench-compare.sh [--quick] [--no-record]
#          [-t SECONDS] [--rate PPS] [-f FORWARDERS] [-c CASES]
#   --quick: 2 s runs and a short search (about 3 minutes in all);
#   default: 5 s runs, 1 s trials (about 8 minutes).
#   VR_DATAPLANE_EXTRA: lines added to vrouterd's [dataplane] section
#   (e.g. 'control-cores = [1]'), to compare settings.
# Run as root. Everything is named bc<pid>*; processes are stopped by PID,
# namespaces removed and hugepages (if reserved here) given back on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=5
TRIAL=1
TRIALS=8
RATE=100000
FWDS="vrouterd-af-xdp,vrouterd-af-packet,vrouterd-dpdk,kernel,linux-bridge,linux-vxlan,ovs-dpdk"
CASES="l2,ipv4,vxlan-encap,vxlan-decap"
RECORD=1
CMDLINE="scripts/bench-compare.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SECS=2; TRIAL=0.5; TRIALS=6; shift ;;
    --no-record) RECORD=0; shift ;;
    -t) SECS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    -f) FWDS=$2; shift 2 ;;
    -c) CASES=$2; shift 2 ;;
    -h|--help) sed -n '2,46p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/deps.sh
FEAT=()
pkg-config --exists libdpdk 2>/dev/null && FEAT=(--features vrouter-dataplane/dpdk)
# VROUTERD=path runs another vrouterd build (e.g. a branch's) instead.
if [ -z "${VROUTERD:-}" ]; then
  cargo build --release --locked -q -p vrouter-dataplane --bin vrouterd "${FEAT[@]}"
  VROUTERD="$PWD/target/release/vrouterd"
fi
cargo build --release --locked -q -p vrouter-pktgen-tests --bin vrouter-pktgen
PG="$PWD/target/release/vrouter-pktgen"
P="bc$$"
WORK=$(mktemp -d /tmp/vrouter-bench-compare.XXXXXX)
PIDS=()
HUGE_BEFORE=""
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  for n in gen rtr sink; do ip netns del "$P$n" 2>/dev/null || true; done
  huge_release
  rm -rf "/var/run/dpdk/${P}"* 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK"
}
# Hugepages for OVS-DPDK (its EAL runs --in-memory, which refuses
# --no-huge): reserved for the OVS rows only, on a private hugetlbfs mount,
# and given back right after (and on exit).
HUGE_MNT=""
huge_reserve() { # huge_reserve <pages>
  HUGE_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
  echo $((HUGE_BEFORE + $1)) > /proc/sys/vm/nr_hugepages
  HUGE_MNT="$WORK/huge"; mkdir -p "$HUGE_MNT"; mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_MNT"
}
huge_release() {
  if [ -n "$HUGE_MNT" ]; then rm -f "$HUGE_MNT"/* 2>/dev/null || true; umount "$HUGE_MNT" 2>/dev/null || true; HUGE_MNT=""; fi
  if [ -n "$HUGE_BEFORE" ]; then echo "$HUGE_BEFORE" > /proc/sys/vm/nr_hugepages; HUGE_BEFORE=""; fi
}
trap cleanup EXIT INT TERM
ns() { ip netns exec "$P$1" "${@:2}"; }
stop_pid() { kill -TERM "$1" 2>/dev/null || true; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }

for n in gen rtr sink; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
ip link add "${P}g0" netns "${P}gen" type veth peer name "${P}r0" netns "${P}rtr"
ip link add "${P}r1" netns "${P}rtr" type veth peer name "${P}s0" netns "${P}sink"
for x in "gen g0" "rtr r0" "rtr r1" "sink s0"; do
  set -- $x
  ip -n "$P$1" link set "$P$2" up
  ns "$1" ethtool -K "$P$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ns "$1" sysctl -qw "net.ipv6.conf.$P$2.disable_ipv6=1"
done
for n in gen rtr sink; do ns "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0; done
mac_of() { ip -n "$P$1" link show "$P$2" | awk '/link\/ether/{print $2}'; }
R0MAC=$(mac_of rtr r0); R1MAC=$(mac_of rtr r1); SMAC=$(mac_of sink s0); GMAC=$(mac_of gen g0)
VNIMAC=02:76:78:00:00:64       # vrouterd's default inner MAC of VNI 100
REMOTE_INNER=02:00:00:00:20:02 # the sink VTEP's inner MAC (encap)
MHZ=$(awk -F: '/cpu MHz/{printf "%d", $2; exit}' /proc/cpuinfo)
[ -n "$MHZ" ] && [ "$MHZ" -gt 0 ] || MHZ=2600
HAS_DPDK=0; "$VROUTERD" --version | grep -q dpdk && HAS_DPDK=1

busy_jiffies() { awk '/^cpu /{print $4+$7+$8}' /proc/stat; }  # system + irq + softirq

# Frames of each case (64 bytes, 10k flows).
template() {
  case "$1" in
    l2) echo "--dst-mac $SMAC --src 198.18.1.2-198.18.1.101 --dst 198.18.2.2 --dport 1000-1099" ;;
    ipv4|vxlan-encap) echo "--dst-mac $R0MAC --src 198.18.1.2 --dst 198.19.0.1-198.19.0.100 --dport 1000-1099" ;;
    vxlan-decap) echo "--dst-mac $R0MAC --vni 100 --vtep-src 198.18.1.2 --vtep-dst 198.18.1.1 --inner-dst-mac $VNIMAC --src 198.18.254.2 --dst 198.19.0.1-198.19.0.100 --dport 1000-1099 --size 114" ;;
  esac
}
pg() { # pg <case> <extra args...>: vrouter-pktgen, JSON to stdout
  # shellcheck disable=SC2046
  "$PG" send -i "${P}g0" --netns "${P}gen" --rx-iface "${P}s0" --rx-netns "${P}sink" --core 0 \
    $(template "$1") "${@:2}" --json 2>>"$WORK/pktgen.err" || true
}

declare -a ROWS
RESULTS="$WORK/results.tsv"; : > "$RESULTS"
# measure <case> <forwarder> <cost-fn>: a fixed-rate run, then the search.
measure() {
  local c=$1 f=$2 cost=$3
  sleep 1
  local j0; j0=$(busy_jiffies)
  local out; out=$(pg "$c" --rate "$RATE" --duration "$SECS" --drain-ms 300)
  local j1; j1=$(busy_jiffies)
  if [ -z "$out" ]; then record "$c" "$f" "- - - - - - - -" "pktgen failed: $(tail -1 "$WORK/pktgen.err")"; return; fi
  local r; r=$(jq -r '.result | [(.offered_pps|floor), (.delivered_pps|floor), (.loss_ratio*100), (.rx.latency.p50_ns // 0), (.rx.latency.p99_ns // 0), (.rx.latency.p999_ns // 0), .rx.unique] | @tsv' <<<"$out")
  local delivered_pkts; delivered_pkts=$(cut -f7 <<<"$r")
  # System CPU except the generator's own system time (its kicks and copies).
  local gen_j; gen_j=$(jq -r '.cpu.system_s' <<<"$out" | awk -v hz="$(getconf CLK_TCK)" '{printf "%d", $1*hz}')
  SYS_CYC=$(awk -v j=$((j1 - j0)) -v g="$gen_j" -v hz="$(getconf CLK_TCK)" -v p="$delivered_pkts" -v m="$MHZ" \
    'BEGIN{ s=(j-g>0)?j-g:0; if (p>0) printf "%.0f*", s/hz*1e9/p*m/1000; else print "-" }')
  local cyc; cyc=$($cost)
  local s; s=$(pg "$c" --rfc2544 --trial "$TRIAL" --max-trials "$TRIALS" --resolution 5 --drain-ms 200)
  local zl; zl=$(jq -r '.rfc2544.throughput_pps|floor' <<<"$s" 2>/dev/null || echo -)
  local lim; lim=$(jq -r 'if .rfc2544.limited_by_generator then ">=" else "" end' <<<"$s" 2>/dev/null || true)
  record "$c" "$f" "$(cut -f1-6 <<<"$r" | tr '\t' ' ') ${lim}${zl} ${cyc:--}" ""
}
record() { # record <case> <fwd> "<offered delivered loss p50 p99 p999 zl cyc>" <note>
  local c=$1 f=$2; set -- $3 "$4"
  local off=$1 del=$2 loss=$3 p50=$4 p99=$5 p999=$6 zl=$7 cyc=$8; shift 8; local note="$*"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$f" "$off" "$del" "$loss" "$p50" "$p99" "$p999" "$zl" "$cyc" "$note" >> "$RESULTS"
  if [ -n "$note" ]; then printf '%-12s %-19s %s\n' "$c" "$f" "$note"
  else printf '%-12s %-19s offered %8s delivered %8s loss %6.2f%%  p50/p99/p99.9 %6.1f/%6.1f/%6.1f us  zero-loss %9s pps  cycles/pkt %s\n' \
    "$c" "$f" "$off" "$del" "$loss" "$(us "$p50")" "$(us "$p99")" "$(us "$p999")" "$zl" "$cyc"; fi
}
us() { awk -v n="$1" 'BEGIN{printf "%.1f", n/1000}'; }
skip() { record "$1" "$2" "- - - - - - - -" "$3"; }

# ---- vrouterd -------------------------------------------------------------
vr_ports() { # vr_ports <driver>
  for i in 0 1; do
    if [ "$1" = dpdk ]; then
      # net_af_packet: DPDK's net_af_xdp cannot create its UMEM without hugepages here.
      printf '[[port]]\nname = "r%s"\ndriver = "dpdk"\ndevice = "net_af_packet%s,iface=%sr%s,framecnt=4096,qdisc_bypass=1"\n' "$i" "$i" "$P" "$i"
    else
      printf '[[port]]\nname = "r%s"\ndriver = "%s"\ninterface = "%sr%s"\n' "$i" "$1" "$P" "$i"
    fi
  done
}
vr_config() { # vr_config <case> <driver>
  # (Metrics stay on their default: the listener is inside the rtr namespace.)
  printf '[dataplane]\nworkers = 1\ncores = [1]\n%s\n[control]\nsocket = "%s/vr.sock"\n' "${VR_DATAPLANE_EXTRA:-}" "$WORK"
  vr_ports "$2"
  case "$1" in
    l2) printf '[[bridge]]\nname = "b"\n[[interface]]\nname = "r0"\nbridge = "b"\n[[interface]]\nname = "r1"\nbridge = "b"\n' ;;
    ipv4|vxlan-encap|vxlan-decap)
      printf '[[interface]]\nname = "r0"\naddresses = ["198.18.1.1/24"]\n[[interface]]\nname = "r1"\naddresses = ["198.18.2.1/24"]\n'
      printf '[[neighbor]]\ninterface = "r1"\nip = "198.18.2.2"\nmac = "%s"\n' "$SMAC" ;;
  esac
  case "$1" in
    ipv4|vxlan-decap) printf '[[route]]\nprefix = "198.19.0.0/16"\nvia = ["198.18.2.2"]\n' ;;
  esac
  case "$1" in
    vxlan-encap) printf '[[vtep]]\nname = "vtep0"\nlocal = "198.18.2.1"\n[[vni]]\nvtep = "vtep0"\nvni = 100\nvrf = "default"\nroutes = [{ prefix = "198.19.0.0/16", remote = "198.18.2.2", mac = "%s" }]\n' "$REMOTE_INNER" ;;
    vxlan-decap) printf '[[vtep]]\nname = "vtep0"\nlocal = "198.18.1.1"\n[[vni]]\nvtep = "vtep0"\nvni = 100\nvrf = "default"\nmac = "%s"\nremotes = ["198.18.1.2"]\n' "$VNIMAC" ;;
  esac
}
VR=""
vr_cost() {
  kill -USR1 "$VR" 2>/dev/null || true; sleep 0.3
  awk -F': ' '/busy cycles per received packet/{v=$2} END{if (v!="") printf "%.0f", v}' "$WORK/vr.log"
}
run_vrouterd() { # run_vrouterd <case> <driver>
  local f="vrouterd-$2"
  if [ "$2" = dpdk ] && [ "$HAS_DPDK" = 0 ]; then skip "$1" "$f" "skipped: vrouterd built without dpdk"; return; fi
  vr_config "$1" "$2" > "$WORK/vr.toml"
  if ! ip netns exec "${P}rtr" "$VROUTERD" --config "$WORK/vr.toml" --check > "$WORK/vr-check.log" 2>&1; then
    local why; why=$(grep -v -e '^Error: invalid configuration' -e '^\s*$' "$WORK/vr-check.log" | head -1 | sed 's/^.*vr.toml: //' | cut -c1-90 || true)
    case "$1:$why" in
      vxlan-*:*vtep*|vxlan-*:*vni*) skip "$1" "$f" "pending: this vrouterd has no [[vtep]]/[[vni]] ($why)" ;;
      *) skip "$1" "$f" "config refused: ${why:-$(head -1 "$WORK/vr-check.log")}" ;;
    esac
    return
  fi
  ip netns exec "${P}rtr" "$VROUTERD" --config "$WORK/vr.toml" > "$WORK/vr.log" 2>&1 &
  VR=$!; PIDS+=("$VR")
  for _ in $(seq 200); do grep -q "vrouterd running" "$WORK/vr.log" && break; kill -0 "$VR" 2>/dev/null || break; sleep 0.05; done
  if ! grep -q "vrouterd running" "$WORK/vr.log"; then skip "$1" "$f" "vrouterd did not start: $(tail -1 "$WORK/vr.log")"; stop_pid "$VR"; return; fi
  measure "$1" "$f" vr_cost
  stop_pid "$VR"; cp "$WORK/vr.log" "$WORK/vr-$1-$2.log"
}

# ---- Linux ----------------------------------------------------------------
sys_cost() { echo "$SYS_CYC"; }
rtr_reset() {
  ns rtr sysctl -qw net.ipv4.ip_forward=0
  for i in r0 r1; do ns rtr ip addr flush dev "$P$i"; ns rtr ip neigh flush dev "$P$i" 2>/dev/null || true; done
  ns rtr ip link del "${P}br" 2>/dev/null || true
  ns rtr ip link del "${P}vx" 2>/dev/null || true
  ns rtr sh -c "echo 0 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" 2>/dev/null || true
}
linux_ip() {
  ns rtr ip addr add 198.18.1.1/24 dev "${P}r0"; ns rtr ip addr add 198.18.2.1/24 dev "${P}r1"
  ns rtr ip neigh replace 198.18.2.2 lladdr "$SMAC" dev "${P}r1" nud permanent
  ns rtr sysctl -qw net.ipv4.ip_forward=1
  # RPS: the forwarding work on core 1, away from the generator.
  ns rtr sh -c "echo 2 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" || true
}
run_linux() { # run_linux <case> <forwarder>
  local c=$1 f=$2
  case "$c:$f" in
    l2:linux-bridge)
      ns rtr ip link add "${P}br" type bridge
      ns rtr ip link set "${P}r0" master "${P}br"; ns rtr ip link set "${P}r1" master "${P}br"
      ns rtr ip link set "${P}br" up
      ns rtr sh -c "echo 2 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" || true ;;
    ipv4:kernel)
      linux_ip; ns rtr ip route add 198.19.0.0/16 via 198.18.2.2 ;;
    vxlan-encap:linux-vxlan)
      linux_ip
      ns rtr ip link add "${P}vx" type vxlan id 100 local 198.18.2.1 remote 198.18.2.2 dstport 4789 dev "${P}r1"
      ns rtr ip link set "${P}vx" up
      ns rtr ip addr add 198.18.255.254/24 dev "${P}vx"
      ns rtr ip neigh replace 198.18.255.1 lladdr "$REMOTE_INNER" dev "${P}vx" nud permanent
      ns rtr ip route add 198.19.0.0/16 via 198.18.255.1 dev "${P}vx" onlink ;;
    vxlan-decap:linux-vxlan)
      linux_ip
      ns rtr ip link add "${P}vx" type vxlan id 100 local 198.18.1.1 dstport 4789 dev "${P}r0"
      ns rtr ip link set "${P}vx" address "$VNIMAC" up
      ns rtr ip addr add 198.18.254.1/24 dev "${P}vx"
      ns rtr sysctl -qw "net.ipv4.conf.${P}vx.rp_filter=0"
      ns rtr ip route add 198.19.0.0/16 via 198.18.2.2 ;;
    *) return ;;
  esac
  measure "$c" "$f" sys_cost
  rtr_reset
}

# ---- OVS-DPDK ---------------------------------------------------------------
OVS_OK=0
# Debian's DPDK build of ovs-vswitchd (the default alternative may be the plain one).
OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
[ -x "$OVS_VSWITCHD" ] || OVS_VSWITCHD=$(command -v ovs-vswitchd || true)
if [ -n "$OVS_VSWITCHD" ] && "$OVS_VSWITCHD" --version 2>/dev/null | grep -q DPDK; then OVS_OK=1; fi
OVS_D=""; OVS_CTL=""; OV=""
ovs_setup() { # ovs_setup <case>: a private ovsdb-server + ovs-vswitchd (own rundir, db, logs)
  local c=$1 d="$OVS_D"
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
  ip netns exec "${P}rtr" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" \
    --unixctl="$d/ovsdb.ctl" --log-file="$d/ovsdb.log" > /dev/null 2>&1 &
  PIDS+=("$!"); sleep 0.5
  local vs=(ovs-vsctl --db="unix:$d/db.sock" --no-wait)
  "${vs[@]}" init || return 1
  # EAL without hugepages on this machine; the PMD on core 1 (mask 0x2), the
  # main thread on core 0.
  "${vs[@]}" set Open_vSwitch . other_config:dpdk-init=true other_config:pmd-cpu-mask=0x2 \
    other_config:dpdk-lcore-mask=0x1 other_config:dpdk-socket-mem=512 other_config:dpdk-socket-limit=512 \
    "other_config:dpdk-extra=--no-pci --huge-dir=$HUGE_MNT" || return 1
  ip netns exec "${P}rtr" "$OVS_VSWITCHD" "unix:$d/db.sock" --pidfile="$d/vswitchd.pid" --unixctl="$d/vswitchd.ctl" \
    --log-file="$d/vswitchd.log" > /dev/null 2>&1 &
  OV=$!; PIDS+=("$OV")
  OVS_CTL="$d/vswitchd.ctl"
  for _ in $(seq 100); do [ -S "$OVS_CTL" ] && break; sleep 0.1; done
  sleep 1
  kill -0 "$OV" 2>/dev/null || { echo "ovs-vswitchd exited: $(grep -E 'ERR|EMER' "$d/vswitchd.log" | tail -1)"; return 1; }
  local vsw=(ovs-vsctl --db="unix:$d/db.sock" --timeout=15)
  case "$c" in vxlan-*) ovs_vxlan "$c"; return ;; esac
  "${vsw[@]}" add-br br0 -- set bridge br0 datapath_type=netdev || return 1
  "${vsw[@]}" add-port br0 "${P}r0" -- set interface "${P}r0" type=afxdp ofport_request=1 || return 1
  "${vsw[@]}" add-port br0 "${P}r1" -- set interface "${P}r1" type=afxdp ofport_request=2 || return 1
  if [ "$c" = ipv4 ]; then
    ovs-ofctl del-flows "unix:$d/br0.mgmt" || return 1
    ovs-ofctl add-flow "unix:$d/br0.mgmt" \
      "in_port=1,ip,nw_dst=198.19.0.0/16,actions=mod_dl_src:$R1MAC,mod_dl_dst:$SMAC,dec_ttl,output:2" || return 1
  fi
  ovs-appctl -t "$OVS_CTL" dpif-netdev/pmd-stats-clear > /dev/null || return 1
}
# OVS userspace ("native") tunnelling, as its docs set it up: the underlay
# port in br-phy, whose internal port carries the VTEP address (so OVS's
# route table, read from this namespace's kernel, finds the tunnel's next
# hop), the VXLAN port and the pod-side port in br-int, OpenFlow rules doing
# the same routing as vrouterd's (rewrite MACs, dec_ttl). Encap: r0 in
# br-int, r1 underlay towards the sink VTEP 198.18.2.2. Decap: r0 underlay
# (br-phy takes r0's MAC, which the generator's outer frames are sent to),
# r1 in br-int towards the sink.
ovs_vxlan() { # ovs_vxlan <case>
  local c=$1 d="$OVS_D" pod under local_ip remote_ip
  local vsw=(ovs-vsctl --db="unix:$d/db.sock" --timeout=15)
  if [ "$c" = vxlan-encap ]; then pod=r0; under=r1; local_ip=198.18.2.1; remote_ip=198.18.2.2
  else pod=r1; under=r0; local_ip=198.18.1.1; remote_ip=198.18.1.2; fi
  local under_mac; under_mac=$(mac_of rtr "$under")
  "${vsw[@]}" add-br br-phy -- set bridge br-phy datapath_type=netdev "other-config:hwaddr=$under_mac" || return 1
  "${vsw[@]}" add-port br-phy "$P$under" -- set interface "$P$under" type=afxdp || return 1
  ns rtr ip addr add "$local_ip/24" dev br-phy || return 1
  ns rtr ip link set br-phy up || return 1
  "${vsw[@]}" add-br br-int -- set bridge br-int datapath_type=netdev || return 1
  "${vsw[@]}" add-port br-int "$P$pod" -- set interface "$P$pod" type=afxdp ofport_request=1 || return 1
  "${vsw[@]}" add-port br-int vx0 -- set interface vx0 type=vxlan ofport_request=2 \
    "options:remote_ip=$remote_ip" "options:local_ip=$local_ip" options:key=100 || return 1
  local remote_mac=$SMAC; [ "$c" = vxlan-decap ] && remote_mac=$GMAC
  ovs-appctl -t "$OVS_CTL" tnl/arp/set br-phy "$remote_ip" "$remote_mac" || return 1
  ovs-ofctl del-flows "unix:$d/br-int.mgmt" || return 1
  if [ "$c" = vxlan-encap ]; then
    ovs-ofctl add-flow "unix:$d/br-int.mgmt" \
      "in_port=1,ip,nw_dst=198.19.0.0/16,actions=mod_dl_src:$VNIMAC,mod_dl_dst:$REMOTE_INNER,dec_ttl,output:2" || return 1
  else
    ovs-ofctl add-flow "unix:$d/br-int.mgmt" \
      "in_port=2,ip,nw_dst=198.19.0.0/16,actions=mod_dl_src:$R1MAC,mod_dl_dst:$SMAC,dec_ttl,output:1" || return 1
  fi
  ovs-appctl -t "$OVS_CTL" tnl/ports/show || true
  ovs-appctl -t "$OVS_CTL" ovs/route/show | grep -F "$local_ip" || true
  ovs-appctl -t "$OVS_CTL" dpif-netdev/pmd-stats-clear > /dev/null || return 1
}
run_ovs() { # run_ovs <case>
  local c=$1
  if [ "$OVS_OK" = 0 ]; then skip "$c" ovs-dpdk "skipped: ovs-vswitchd with DPDK not installed (apt-get install openvswitch-switch-dpdk)"; return; fi
  OVS_D="$WORK/ovs-$c"; mkdir -p "$OVS_D"
  export OVS_RUNDIR="$OVS_D" OVS_LOGDIR="$OVS_D" OVS_DBDIR="$OVS_D" OVS_SYSCONFDIR="$OVS_D" OVS_PKGDATADIR=/usr/share/openvswitch
  huge_reserve 300
  if ovs_setup "$c" > "$OVS_D/setup.log" 2>&1; then
    measure "$c" ovs-dpdk ovs_cost
  else
    skip "$c" ovs-dpdk "skipped: OVS did not start: $(tail -1 "$OVS_D/setup.log" | cut -c1-100)"
  fi
  ovs-appctl -t "$OVS_CTL" exit > /dev/null 2>&1 || true
  [ -n "$OV" ] && stop_pid "$OV"
  local db; db=$(cat "$OVS_D/ovsdb.pid" 2>/dev/null || true); [ -n "$db" ] && stop_pid "$db"
  unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR OVS_SYSCONFDIR OVS_PKGDATADIR
  # OVS's afxdp ports can leave their XDP program on our veths (seen after
  # the VXLAN cases: the next Linux row then lost everything).
  for i in r0 r1; do ns rtr ip link set dev "$P$i" xdp off 2>/dev/null || true; done
  huge_release
}
ovs_cost() { # the PMD's processing (busy) cycles per packet, like vrouterd's busy cycles
  ovs-appctl -t "$OVS_CTL" dpif-netdev/pmd-stats-show 2>/dev/null |
    awk -F: '/avg processing cycles per packet/{split($2, a, " "); v = a[1] + 0} END{if (v) printf "%.0f", v}'
}

# ---- the generator itself ---------------------------------------------------
# vrouter-pktgen flat out next to dpdk-testpmd txonly (AF_XDP vdev), both on
# core 0 sending 64-byte frames on g0; r0 (nothing attached, no address)
# counts what arrives and the kernel drops it.
gen_compare() {
  local a0 a1 pg_pps tp_pps=-
  a0=$(ns rtr cat "/sys/class/net/${P}r0/statistics/rx_packets")
  "$PG" send -i "${P}g0" --netns "${P}gen" --core 0 --dst-mac "$R0MAC" --src 198.18.1.2-198.18.1.101 \
    --dst 198.18.2.2 --dport 1000-1099 --rate max --duration "$SECS" --json > "$WORK/gen.json" 2>>"$WORK/pktgen.err" || true
  a1=$(ns rtr cat "/sys/class/net/${P}r0/statistics/rx_packets")
  pg_pps=$(jq -r --argjson n $((a1 - a0)) '$n / .result.seconds | floor' "$WORK/gen.json" 2>/dev/null || echo -)
  if command -v dpdk-testpmd >/dev/null; then
    ip netns exec "${P}gen" dpdk-testpmd -l 0-1 --main-lcore 1 --no-huge -m 512 --no-pci --file-prefix "${P}gen" \
      --vdev "net_af_xdp0,iface=${P}g0" --log-level='.*,3' -- --forward-mode=txonly --txpkts=60 \
      --eth-peer="0,$R0MAC" --tx-ip=198.18.1.2,198.18.2.2 --txonly-multi-flow --total-num-mbufs=16384 \
      --nb-cores=1 --auto-start --stats-period=1 > "$WORK/testpmd-gen.log" 2>&1 < /dev/null &
    local T=$!; PIDS+=("$T"); sleep 2
    a0=$(ns rtr cat "/sys/class/net/${P}r0/statistics/rx_packets"); sleep "$SECS"
    a1=$(ns rtr cat "/sys/class/net/${P}r0/statistics/rx_packets"); stop_pid "$T"
    tp_pps=$(( (a1 - a0) / SECS ))
  fi
  GEN_LINE="generator, 64-byte frames (60 on veth) on AF_XDP, core 0, as counted by the receiving veth: vrouter-pktgen $pg_pps pps, dpdk-testpmd txonly $tp_pps pps"
  echo "$GEN_LINE"
}

# ---- run --------------------------------------------------------------------
echo "== bench-compare: $SECS s at $RATE pps offered (64-byte frames, 10k flows), RFC 2544 trials of $TRIAL s; generator vrouter-pktgen AF_XDP on core 0"
[ "$HAS_DPDK" = 1 ] || echo "   (vrouterd without dpdk: vrouterd-dpdk rows skipped)"
gen_compare
for c in ${CASES//,/ }; do
  for f in ${FWDS//,/ }; do
    case "$f" in
      vrouterd-af-xdp) run_vrouterd "$c" af-xdp ;;
      vrouterd-af-packet) run_vrouterd "$c" af-packet ;;
      vrouterd-dpdk) run_vrouterd "$c" dpdk ;;
      kernel) [ "$c" = ipv4 ] && run_linux "$c" kernel ;;
      linux-bridge) [ "$c" = l2 ] && run_linux "$c" linux-bridge ;;
      linux-vxlan) case "$c" in vxlan-*) run_linux "$c" linux-vxlan ;; esac ;;
      ovs-dpdk) run_ovs "$c" ;;
      *) echo "unknown forwarder $f" >&2; exit 2 ;;
    esac
  done
done

TABLE=$(
  echo "| case | forwarder | offered pps | delivered pps | loss | zero-loss pps (RFC 2544) | p50 µs | p99 µs | p99.9 µs | cycles/pkt |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{ if ($11 != "") printf "| %s | %s | %s |\n", $1, $2, $11;
    else printf "| %s | %s | %s | %s | %.2f%% | %s | %.1f | %.1f | %.1f | %s |\n", $1, $2, $3, $4, $5, $9, $6/1000, $7/1000, $8/1000, $10 }' "$RESULTS"
)
RATIOS=$(
  echo "| case | vrouterd | peer | cycles/pkt ratio (lower is better) | zero-loss rate ratio | p99 ratio (lower is better) | targets (issue 5, vs OVS-DPDK on AF_XDP ports) |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '
    function num(x) { gsub(/[^0-9.]/, "", x); return x + 0 }
    function ratio(a, b) { return (num(a) > 0 && num(b) > 0) ? sprintf("%.2f", num(a) / num(b)) : "-" }
    $11 == "" { k = $1; if ($2 ~ /^vrouterd/) { v[k] = v[k] " " NR } else { p[k] = p[k] " " NR } row[NR] = $0 }
    END {
      for (k in v) { nv = split(v[k], vs, " "); np = split(p[k], ps, " ")
        for (i = 1; i <= nv; i++) for (j = 1; j <= np; j++) {
          split(row[vs[i]], a, "\t"); split(row[ps[j]], b, "\t")
          c = ratio(a[10], b[10]); l = ratio(a[7], b[7]); t = ""
          if (a[2] == "vrouterd-af-xdp" && b[2] == "ovs-dpdk")
            t = sprintf("cycles <= 0.8x: %s; p99 <= 1x: %s", c == "-" ? "-" : (c + 0 <= 0.8 ? "met" : "MISSED"),
                        l == "-" ? "-" : (l + 0 <= 1.0 ? "met" : "MISSED"))
          printf "| %s | %s | %s | %s | %s | %s | %s |\n", k, a[2], b[2], c, ratio(a[9], b[9]), l, t } } }' "$RESULTS" | sort
)
echo; echo "$TABLE"; echo; echo "$RATIOS"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "### bench-compare, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)"
    echo
    echo "Command: \`$CMDLINE\`. Generator: vrouter-pktgen, AF_XDP (copy mode) on g0, receiving on s0, core 0;"
    echo "forwarders on core 1. Fixed-rate runs of $SECS s at $RATE pps (64-byte frames; VXLAN decap: 114-byte outer frames), 10k flows;"
    echo "zero-loss rate: RFC 2544 binary search, $TRIAL s trials, at most $TRIALS trials, 5% resolution (\">=\": the generator's maximum passed)."
    echo "cycles/pkt: the forwarder's own busy cycles per packet (vrouterd: busy polls; OVS: pmd-stats-show);"
    echo "\\* = system CPU time except the generator, per delivered packet, at ${MHZ} MHz (sink receive included)."
    echo "The $GEN_LINE."
    echo
    echo "$TABLE"
    echo
    echo "$RATIOS"
  } >> benches/RESULTS.md
  echo "(appended to benches/RESULTS.md)"
fi
