#!/usr/bin/env bash
# The I/O floor, side by side (issue 5, item 3): vrouterd built with the
# dpdk feature on DPDK's in-memory vdevs, and dpdk-testpmd
# --forward-mode=macswap on the very same vdevs, in the same run:
#
#   net_pcap0,rx_pcap=F,infinite_rx=1  (a capture of 64-byte frames, replayed
#                                       from memory forever)  -> forwarder ->
#   net_null0,no-rx=1                  (frames dropped)
#
# No kernel, no veth: the ratio vrouterd / testpmd says how close each
# vrouterd pipeline is to the least a DPDK forwarder can do. Pipelines:
#   l2           bridge with learning, 2048 source MACs, unknown destination
#                (flooded to the one other port)
#   ipv4-1m      IPv4 routing, 1M /24 prefixes (loaded through the control
#                socket), random destinations over them
#   vxlan-encap  routed into VNI 100 (pending while vrouterd refuses the
#                [[vtep]]/[[vni]] keys)
# Both forwarders run one forwarding core (core 1). vrouterd's rate is the
# delta of its r1 tx-packets between two SIGUSR1 reports; testpmd's its
# port 0 Rx-pps. Targets (issue 5): >= 0.8 for L2, >= 0.7 for IPv4 and VXLAN.
#
# Usage: scripts/bench-floor.sh [-t SECONDS] [--no-record]
# Run as root. Temp files under a mktemp dir; processes stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=5
RECORD=1
CMDLINE="scripts/bench-floor.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    -t) SECS=$2; shift 2 ;;
    --no-record) RECORD=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/deps.sh
if ! pkg-config --exists libdpdk; then echo "bench-floor: needs libdpdk-dev (scripts/deps.sh)"; exit 1; fi
cargo build --release --locked -q -p vrouter-dataplane --bin vrouterd --features vrouter-dataplane/dpdk
VROUTERD="$PWD/target/release/vrouterd"
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/vrouter-bench-floor.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "/var/run/dpdk/bfl$$"* 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
stop_pid() { kill -TERM "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }
R0MAC=02:00:00:00:0a:01
NULLMAC=02:00:00:00:0b:01

# Captures of 2048 60-byte frames (64 with FCS), and 1M routes as control
# socket batches (1.0.0.0/24 .. 16.x.y.0/24 via 198.18.2.2).
"$PY" - "$WORK" "$R0MAC" <<'PY'
import random, struct, sys
work, r0mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', ''))
random.seed(5)
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def frame(dmac, smac, src, dst, sport, dport):
    ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 46, 0, 0x4000, 64, 17, 0, bytes(src), bytes(dst)))
    ip[10:12] = struct.pack('!H', csum(bytes(ip)))
    udp = struct.pack('!HHHH', sport, dport, 26, 0) + bytes(18)
    return dmac + smac + b'\x08\x00' + bytes(ip) + udp
def write(name, frames):
    with open(f'{work}/{name}.pcap', 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for fr in frames:
            f.write(struct.pack('<IIII', 0, 0, len(fr), len(fr)) + fr)
l2 = [frame(bytes([2, 0, 0, 2, i >> 8, i & 255]), bytes([2, 0, 0, 1, i >> 8, i & 255]),
            [198, 18, 1, 2], [198, 18, 2, 2], 1024 + i, 9) for i in range(2048)]
write('l2', l2)
def rnd_dst():
    k = random.randrange(1 << 20)
    return [1 + (k >> 16), (k >> 8) & 255, k & 255, random.randrange(1, 255)]
ip4 = [frame(r0mac, bytes([2, 0, 0, 1, 0, 1]), [198, 18, 1, 2], rnd_dst(), 1024 + (i & 1023), 9) for i in range(2048)]
write('ipv4', ip4)
with open(f'{work}/routes.jsonl', 'w') as f:
    f.write('{"id":0,"op":"hello","args":{"version":1}}\n')
    n, batch = 1 << 20, 5000
    for b in range(0, n, batch):
        ops = ','.join('{"op":"route.add","args":{"prefix":"%d.%d.%d.0/24","via":["198.18.2.2"]}}'
                       % (1 + (k >> 16), (k >> 8) & 255, k & 255) for k in range(b, min(b + batch, n)))
        f.write('{"id":%d,"op":"batch","args":{"ops":[%s]}}\n' % (1 + b // batch, ops))
PY

declare -a ROWS
vr_config() { # vr_config <pipeline>
  local pcap=$1; [ "$1" = l2 ] || pcap=ipv4
  # net_pcap's infinite_rx keeps every frame of the capture in an mbuf of
  # the port's mempool (half the worker's pool): a large pool leaves room.
  printf '[dataplane]\nworkers = 1\ncores = [1]\nframes = 65536\n[metrics]\nenabled = false\n[control]\nsocket = "%s/vr.sock"\n' "$WORK"
  printf '[[port]]\nname = "r0"\ndriver = "dpdk"\ndevice = "net_pcap0,rx_pcap=%s/%s.pcap,infinite_rx=1"\nmac = "%s"\n' "$WORK" "$pcap" "$R0MAC"
  printf '[[port]]\nname = "r1"\ndriver = "dpdk"\ndevice = "net_null0,no-rx=1"\nmac = "%s"\n' "$NULLMAC"
  case "$1" in
    l2) printf '[[bridge]]\nname = "b"\nmac-limit = 65536\n[[interface]]\nname = "r0"\nbridge = "b"\n[[interface]]\nname = "r1"\nbridge = "b"\n' ;;
    *) printf '[[interface]]\nname = "r0"\naddresses = ["198.18.1.1/24"]\n[[interface]]\nname = "r1"\naddresses = ["198.18.2.1/24"]\n'
       printf '[[neighbor]]\ninterface = "r1"\nip = "198.18.2.2"\nmac = "02:00:00:00:0c:01"\n' ;;
  esac
  [ "$1" = vxlan-encap ] && printf '[[vtep]]\nname = "vtep0"\nlocal = "198.18.2.1"\n[[vni]]\nvtep = "vtep0"\nvni = 100\nvrf = "default"\nroutes = [{ prefix = "0.0.0.0/3", remote = "198.18.2.2", mac = "02:00:00:00:20:02" }]\n'
  return 0
}
# r1's tx-packets in the last "ports:" table of vrouterd's report.
tx_r1() { awk '/^ports:/ {p = 1; next} /^[a-z]/ {p = 0} p && $1 == "r1" {v = $5} END {print v + 0}' "$WORK/vr.log"; }
run_vrouterd() { # run_vrouterd <pipeline>: prints Mpps (or a reason)
  vr_config "$1" > "$WORK/vr.toml"
  if ! "$VROUTERD" --config "$WORK/vr.toml" --check > "$WORK/check.log" 2>&1; then
    echo "pending: vrouterd --check refuses it ($(grep -v -e '^Error: invalid configuration' -e '^\s*$' "$WORK/check.log" | head -1 | sed 's/^.*vr.toml: //' | cut -c1-70))"; return
  fi
  rm -f "$WORK/vr.sock"
  "$VROUTERD" --config "$WORK/vr.toml" > "$WORK/vr.log" 2>&1 &
  local V=$!; PIDS+=("$V")
  for _ in $(seq 200); do grep -q "control socket listening" "$WORK/vr.log" && break; sleep 0.05; done
  if [ "$1" = ipv4-1m ]; then
    socat -t 60 - "UNIX-CONNECT:$WORK/vr.sock" < "$WORK/routes.jsonl" > "$WORK/routes.out"
    grep -q '"error"' "$WORK/routes.out" && { echo "route load failed: $(grep -m1 error "$WORK/routes.out" | cut -c1-80)"; stop_pid "$V"; return; }
  fi
  sleep 1
  kill -USR1 "$V"; sleep 0.3; local a0; a0=$(tx_r1); local t0; t0=$(date +%s.%N)
  sleep "$SECS"
  kill -USR1 "$V"; sleep 0.3; local a1; a1=$(tx_r1); local t1; t1=$(date +%s.%N)
  stop_pid "$V"; cp "$WORK/vr.log" "$WORK/vr-$1.log"
  awk -v a="$a0" -v b="$a1" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", (b-a)/(t1-t0)/1e6}'
}
run_testpmd() { # run_testpmd <pcap>: prints Mpps
  dpdk-testpmd -l 0-1 --main-lcore 0 --no-huge -m 1024 --no-pci --file-prefix "bfl$$" \
    --vdev "net_pcap0,rx_pcap=$WORK/$1.pcap,infinite_rx=1" --vdev "net_null0,no-rx=1" --log-level='.*,3' -- \
    --forward-mode=macswap --total-num-mbufs=16384 --nb-cores=1 --auto-start --stats-period=1 \
    > "$WORK/testpmd-$1.log" 2>&1 < /dev/null &
  local T=$!; PIDS+=("$T")
  sleep $((SECS + 2)); stop_pid "$T"
  # The last few per-second Rx-pps of port 0, averaged.
  grep -a "Rx-pps" "$WORK/testpmd-$1.log" | awk 'NR % 2 == 1 {print $2}' | tail -n "$SECS" |
    awk '{s += $1; n++} END {if (n) printf "%.2f", s / n / 1e6; else print "-"}'
}

echo "== the floor: $SECS s per forwarder, 64-byte frames replayed by net_pcap (infinite_rx) to net_null, one core"
for p in l2 ipv4-1m vxlan-encap; do
  pcap=ipv4; [ "$p" = l2 ] && pcap=l2
  tp=$(run_testpmd "$pcap")
  vr=$(run_vrouterd "$p")
  ratio=$(awk -v a="$vr" -v b="$tp" 'BEGIN{ if (a+0 > 0 && b+0 > 0) printf "%.2f", a/b; else print "-" }')
  target=0.7; [ "$p" = l2 ] && target=0.8
  met=$(awk -v r="$ratio" -v t="$target" 'BEGIN{ if (r == "-") print "-"; else if (r+0 >= t) print "met"; else print "missed" }')
  printf '%-12s testpmd macswap %6s Mpps  vrouterd %s Mpps  ratio %s (target >= %s: %s)\n' "$p" "$tp" "$vr" "$ratio" "$target" "$met"
  ROWS+=("| $p | $tp | $vr | $ratio | >= $target | $met |")
done
TABLE=$(
  echo "| pipeline | testpmd macswap Mpps | vrouterd Mpps | ratio | target | |"
  echo "|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do echo "$r"; done
)
echo; echo "$TABLE"
if [ "$RECORD" = 1 ]; then
  {
    echo
    echo "### bench-floor, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)"
    echo
    echo "Command: \`$CMDLINE\`. net_pcap (infinite_rx, 2048 64-byte frames) -> net_null, DPDK without hugepages, one forwarding core each, $SECS s."
    echo
    echo "$TABLE"
  } >> benches/RESULTS.md
  echo "(appended to benches/RESULTS.md)"
fi
