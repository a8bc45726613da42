#!/usr/bin/env bash
# Installs what vRouter needs to build, test and run its demo on Debian 12,
# as root. Idempotent: packages already present are skipped, and a Rust
# toolchain already on PATH is kept.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang            # C shims, bindgen
  iproute2 iputils-ping iperf3 tcpdump tshark  # real peers and decoders
  ethtool                                      # offloads off on test veths
  traceroute socat nftables                    # probes, control socket, drops
  python3 python3-scapy                        # independent packet builder
  python3-yaml                                 # deploy/ manifests syntax check
  python3-prometheus-client curl               # metrics endpoint parser
  libpcap-dev                                  # (pcap files are read natively; kept for tcpdump tooling)
  libxdp-dev libbpf-dev xdp-tools              # AF_XDP
  libdpdk-dev dpdk dpdk-dev                    # DPDK port, testpmd, test-fib
  openvswitch-switch-dpdk                      # OVS-DPDK peer of scripts/bench-compare.sh
  etcd-server protobuf-compiler                # agent's etcd backend: test server, etcd-client's protos
  bpftool                                      # soak.sh: XDP programs attached and loaded
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  # Installing packages must not start system services (openvswitch-switch
  # would start a system OVS): bench-compare.sh runs its own, privately.
  # A policy-rc.d that denies starts is put in place for the install only,
  # unless one exists already.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  rc=0
  apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  if [ $own_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ $rc != 0 ]; then exit $rc; fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "deps: installing the Rust toolchain with rustup"
    apt-get install -y -q curl ca-certificates
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
# bpffs for libxdp (AF_XDP ports); harmless if already mounted.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
# cargo-fuzz for the fuzz targets (fuzz/, scripts/fuzz.sh); builds with the
# stable toolchain (`-s none`).
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
