#!/bin/sh
# The pool of pod ports vrouter-cni hands out (docs/cni.md).
#
#   vrouter-pool.sh create N          veth pairs vrph<i> (vrouterd's end, polled
#                                     through af-packet) / vrpp<i> (the end a pod
#                                     gets), i in 0..N-1; existing pairs are kept,
#                                     so pods keep their ports across restarts
#   vrouter-pool.sh toml N GATEWAY    the [[port]], [[bridge]] and [[interface]]
#                                     sections of vrouterd's TOML: bridge "pods"
#                                     over ports pod<i>, gateway GATEWAY
#                                     (a.b.c.d/len, the podCIDR's first address)
#   vrouter-pool.sh delete N          removes the pairs (pods lose their network)
#
# The conflist must say  "ports": {"count": N, "interface": "pod{}", "device": "vrpp{}"}.
set -eu
usage() { echo "usage: $0 create N | toml N GATEWAY_CIDR | delete N" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 n=$2
case $n in '' | *[!0-9]*) usage ;; esac
i=0
case $cmd in
create)
  while [ "$i" -lt "$n" ]; do
    h=vrph$i p=vrpp$i
    if ! ip link show dev "$h" >/dev/null 2>&1; then
      ip link add "$h" type veth peer name "$p"
      # A userspace forwarder cannot pass on offloaded segments/checksums.
      ethtool -K "$p" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    fi
    ethtool -K "$h" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    sysctl -qw "net.ipv6.conf.$h.disable_ipv6=1" || true
    ip link set dev "$h" up
    i=$((i + 1))
  done
  ;;
toml)
  [ $# -eq 3 ] || usage
  while [ "$i" -lt "$n" ]; do
    printf '[[port]]\nname = "pod%s"\ndriver = "af-packet"\ninterface = "vrph%s"\n\n' "$i" "$i"
    i=$((i + 1))
  done
  printf '[[bridge]]\nname = "pods"\ngateway = { addresses = ["%s"] }\n\n' "$3"
  i=0
  while [ "$i" -lt "$n" ]; do
    printf '[[interface]]\nname = "pod%s"\nbridge = "pods"\n\n' "$i"
    i=$((i + 1))
  done
  ;;
delete)
  while [ "$i" -lt "$n" ]; do
    ip link del "vrph$i" 2>/dev/null || true
    i=$((i + 1))
  done
  ;;
*) usage ;;
esac
