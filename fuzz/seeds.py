#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

    /usr/bin/python3 fuzz/seeds.py        (needs python3-scapy)

Real inputs only: frames built with scapy for the nodes of the `pipeline`
target (addresses and MACs match its configurations, see
fuzz_targets/pipeline.rs), the same frames and their inner headers for
`wire`, the request examples of docs/control-protocol.md for `control`,
conf/*.toml, the deploy configuration and the pipeline nodes' files for
`config`, and the netconfs of deploy/ and docs/cni.md for `cni`.
Re-running replaces the generated files (names are content hashes).
"""

import hashlib
import json
import os
import re
import sys

from scapy.all import (
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    VXLAN,
    Dot1Q,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    fragment,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
BCAST = "ff:ff:ff:ff:ff:ff"


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def common(src_mac, dst_mac, src4, dst4, src6, dst6, payload=b"x" * 32):
    """IPv4/IPv6 UDP, TCP, ICMP, fragments, options, extension headers."""
    e = Ether(src=src_mac, dst=dst_mac)
    out = [
        e / IP(src=src4, dst=dst4) / UDP(sport=40000, dport=9) / payload,
        e / IP(src=src4, dst=dst4, ttl=1) / UDP(sport=40000, dport=9) / payload,
        e / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        e / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=80, flags="A") / payload,
        e / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=80, flags="FA"),
        e / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=80, flags="R"),
        e / IP(src=src4, dst=dst4) / ICMP(type=8, id=1, seq=1) / payload,
        e / IP(src=src4, dst=dst4) / ICMP(type=0, id=1, seq=1) / payload,
        e / IP(src=src4, dst=dst4, flags="DF") / UDP(sport=1, dport=2) / (b"y" * 1450),
        e / IP(src=src4, dst=dst4, options=b"\x94\x04\x00\x00") / UDP(sport=1, dport=2) / payload,
        e / IP(src=src6 and src4, dst=dst4, proto=47) / payload,
        e / IPv6(src=src6, dst=dst6) / UDP(sport=40000, dport=9) / payload,
        e / IPv6(src=src6, dst=dst6, hlim=1) / UDP(sport=40000, dport=9) / payload,
        e / IPv6(src=src6, dst=dst6) / TCP(sport=40000, dport=80, flags="S"),
        e / IPv6(src=src6, dst=dst6) / ICMPv6EchoRequest(id=1, seq=1) / payload,
        e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2) / payload,
        e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrRouting() / UDP(sport=1, dport=2) / payload,
        e / IPv6(src=src6, dst=dst6) / (b"z" * 1400),
    ]
    big4 = IP(src=src4, dst=dst4) / UDP(sport=1, dport=2) / (b"f" * 1200)
    out += [e / f for f in fragment(big4, fragsize=600)]
    frag6 = IPv6(src=src6, dst=dst6) / IPv6ExtHdrFragment(id=7, m=1, offset=0) / UDP(sport=1, dport=2) / payload
    out.append(e / frag6)
    out.append(e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrFragment(id=7, m=0, offset=5, nh=17) / payload)
    return out


def arp(src_mac, src4, dst4, op=1, dst_mac=BCAST):
    hw = "00:00:00:00:00:00" if op == 1 else dst_mac
    return Ether(src=src_mac, dst=dst_mac) / ARP(op=op, hwsrc=src_mac, psrc=src4, hwdst=hw, pdst=dst4)


def nd(src_mac, src6, target, dst_mac=None, na=False):
    snm = "ff02::1:ff" + target.split(":")[-1].rjust(4, "0")[-2:]
    if na:
        return Ether(src=src_mac, dst=dst_mac) / IPv6(src=src6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=target, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=src_mac)
    return Ether(src=src_mac, dst=dst_mac or "33:33:ff:00:00:01") / IPv6(src=src6, dst=snm, hlim=255) / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)


def vxlan4(outer_src_mac, outer_dst_mac, src, dst, vni, inner, flags=0x08):
    return Ether(src=outer_src_mac, dst=outer_dst_mac) / IP(src=src, dst=dst) / UDP(sport=50000, dport=4789) / VXLAN(vni=vni, flags=flags) / inner


def vxlan6(outer_src_mac, outer_dst_mac, src, dst, vni, inner):
    return Ether(src=outer_src_mac, dst=outer_dst_mac) / IPv6(src=src, dst=dst) / UDP(sport=50000, dport=4789) / VXLAN(vni=vni) / inner


def pipeline_frames():
    """(mode, port, frame) for each node of fuzz_targets/pipeline.rs."""
    out = []
    # Mode 0 l2l3: br1/br2 bridged (BVI 02:..:0b, 198.18.3.1, 2001:db8:3::1), r1 routed.
    h1, h2, gw1 = "02:00:00:00:03:02", "02:00:00:00:03:03", "02:00:00:00:01:02"
    bvi, r1 = "02:00:00:00:00:0b", "02:00:00:00:00:03"
    for f in common(h1, h2, "198.18.3.2", "198.18.3.3", "2001:db8:3::2", "2001:db8:3::3"):
        out.append((0, 0, f))
    for f in common(h1, bvi, "198.18.3.2", "198.18.1.2", "2001:db8:3::2", "2001:db8:1::2")[:8]:
        out.append((0, 0, f))
    for f in common(gw1, r1, "198.18.1.2", "198.18.3.2", "2001:db8:1::2", "2001:db8:3::2"):
        out.append((0, 2, f))
    out += [
        (0, 0, arp(h1, "198.18.3.2", "198.18.3.1")),
        (0, 0, arp(h1, "198.18.3.2", "198.18.3.3")),
        (0, 1, arp(h2, "198.18.3.3", "198.18.3.2", op=2, dst_mac=h1)),
        (0, 2, arp(gw1, "198.18.1.2", "198.18.1.1")),
        (0, 2, arp(gw1, "198.18.1.2", "198.18.1.1", op=2, dst_mac=r1)),
        (0, 0, nd(h1, "2001:db8:3::2", "2001:db8:3::1")),
        (0, 2, nd(gw1, "fe80::1", "2001:db8:1::1")),
        (0, 2, nd(gw1, "2001:db8:1::2", "2001:db8:1::2", dst_mac="33:33:00:00:00:01", na=True)),
        (0, 2, Ether(src=gw1, dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS()),
        (0, 2, Ether(src=gw1, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA()),
        (0, 2, Ether(src=gw1, dst=r1) / Dot1Q(vlan=7) / IP(src="198.18.7.2", dst="198.18.7.1") / ICMP() / b"ping"),
        (0, 2, Ether(src=gw1, dst=BCAST) / Dot1Q(vlan=7) / ARP(op=1, hwsrc=gw1, psrc="198.18.7.2", pdst="198.18.7.1")),
        (0, 2, Ether(src=gw1, dst=r1) / Dot1Q(vlan=9) / IP(src="198.18.9.2", dst="198.18.3.2") / UDP()),
        (0, 0, Ether(src=h1, dst=h2) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="198.18.3.2", dst="198.18.3.3") / UDP()),
        (0, 2, Ether(src=gw1, dst=r1) / IP(src="198.18.1.2", dst="198.18.66.1") / UDP()),
        (0, 2, Ether(src=gw1, dst=r1) / IP(src="198.18.1.2", dst="198.18.1.1") / UDP(sport=1, dport=7)),
        (0, 0, Ether(src=h1, dst="01:00:5e:00:00:01") / IP(src="198.18.3.2", dst="224.0.0.1") / UDP()),
        (0, 0, Ether(src=h1, dst=BCAST, type=0x88CC) / (b"\x02\x07\x04" + b"\x00" * 40)),
    ]
    # Mode 1 vxlan4: pod1 bridged into VNI 100, pod2 routed (VNI 1), uplink 198.18.100.1.
    up, nb, nc, bvx, pod2gw = "02:00:00:00:0a:01", "02:00:00:00:0b:01", "02:00:00:00:0c:01", "02:00:00:00:0b:02", "02:00:00:00:02:01"
    p1, p2, vni1 = "02:00:00:00:01:0a", "02:00:00:00:02:02", "02:76:78:00:00:01"
    out += [
        (1, 0, Ether(src=p1, dst="02:00:00:00:0c:09") / IP(src="198.19.0.2", dst="198.19.0.9") / UDP(sport=1, dport=9) / b"l2 overlay"),
        (1, 0, Ether(src=p1, dst="02:00:00:00:0d:0d") / IP(src="198.19.0.2", dst="198.19.0.13") / UDP() / b"unknown"),
        (1, 0, arp(p1, "198.19.0.2", "198.19.0.9")),
        (1, 0, arp(p1, "198.19.0.2", "198.19.0.77")),
        (1, 1, Ether(src=p2, dst=pod2gw) / IP(src="198.19.1.2", dst="198.19.2.5") / UDP(sport=1, dport=9) / b"l3 overlay"),
        (1, 1, Ether(src=p2, dst=pod2gw) / IPv6(src="2001:db8:1::2", dst="2001:db8:2::5") / UDP() / b"l3 overlay 6"),
        (1, 1, Ether(src=p2, dst=pod2gw) / IP(src="198.19.1.2", dst="198.19.2.5", flags="DF") / UDP() / (b"b" * 1460)),
    ]
    inner_l2 = Ether(src="02:00:00:00:0c:09", dst=p1) / IP(src="198.19.0.9", dst="198.19.0.2") / UDP() / b"from remote"
    inner_bc = Ether(src="02:00:00:00:0c:0a", dst=BCAST) / ARP(op=1, hwsrc="02:00:00:00:0c:0a", psrc="198.19.0.10", pdst="198.19.0.2")
    inner_l3 = Ether(src=bvx, dst=vni1) / IP(src="198.19.2.5", dst="198.19.1.2") / UDP() / b"routed in"
    inner_l36 = Ether(src=bvx, dst=vni1) / IPv6(src="2001:db8:2::5", dst="2001:db8:1::2") / UDP() / b"routed in 6"
    out += [
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 100, inner_l2)),
        (1, 2, vxlan4(nc, up, "198.18.100.3", "198.18.100.1", 100, inner_bc)),
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 1, inner_l3)),
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 1, inner_l36)),
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 999, inner_l2)),
        (1, 2, vxlan4(nb, up, "198.18.100.9", "198.18.100.1", 100, inner_l2)),
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 100, inner_l2, flags=0x00)),
        (1, 2, vxlan4(nb, up, "198.18.100.2", "198.18.100.1", 100, Ether(src="02:00:00:00:0c:09", dst=p1) / Dot1Q(vlan=3) / IP() / UDP())),
        (1, 2, arp(nb, "198.18.100.2", "198.18.100.1")),
        (1, 2, Ether(src=nb, dst=up) / IP(src="198.18.100.2", dst="198.18.100.1") / ICMP() / b"ping"),
    ]
    # Mode 2 vxlan6: pod1 bridged into VNI 100 over 2001:db8:100::1.
    out += [
        (2, 0, Ether(src=p1, dst="02:00:00:00:0e:0e") / IP(src="198.19.0.2", dst="198.19.0.14") / UDP() / b"flooded over v6"),
        (2, 0, arp(p1, "198.19.0.2", "198.19.0.3")),
        (2, 1, vxlan6(nb, up, "2001:db8:100::2", "2001:db8:100::1", 100, inner_l2)),
        (2, 1, vxlan6(nb, up, "2001:db8:100::2", "2001:db8:100::1", 100, inner_bc)),
        (2, 1, vxlan6(nb, up, "2001:db8:100::9", "2001:db8:100::1", 100, inner_l2)),
        (2, 1, vxlan6(nb, up, "2001:db8:100::2", "2001:db8:100::1", 7, inner_l2)),
        (2, 1, nd(nb, "2001:db8:100::2", "2001:db8:100::1")),
    ]
    # Mode 3 pod: uplink routed 198.18.1.1, pod0/pod1 bridged behind BVI 198.18.10.1.
    upm, pbvi, pa, pb = "02:00:00:00:00:01", "02:00:00:00:00:0b", "02:00:00:00:10:02", "02:00:00:00:10:03"
    out += [
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.19.0.10") / TCP(sport=40000, dport=80, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.18.1.1") / TCP(sport=40001, dport=30080, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.18.10.3") / TCP(sport=40002, dport=5432, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.18.10.3") / TCP(sport=40003, dport=22, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.200.2", dst="198.18.10.3") / TCP(sport=40004, dport=5432, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.19.0.53") / UDP(sport=5353, dport=53) / b"dns?"),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.18.10.2") / ICMP() / b"ping pod"),
        (3, 1, Ether(src=pa, dst=pbvi) / IP(src="198.18.10.2", dst="198.19.0.10") / TCP(sport=41000, dport=80, flags="S")),
        (3, 1, Ether(src=pa, dst=pbvi) / IP(src="198.18.10.2", dst="198.18.1.2") / TCP(sport=8080, dport=40000, flags="SA")),
        (3, 1, Ether(src=pa, dst=pbvi) / IP(src="198.18.10.66", dst="198.18.1.2") / UDP() / b"spoofed ip"),
        (3, 1, Ether(src="02:00:00:00:66:66", dst=pbvi) / IP(src="198.18.10.2", dst="198.18.1.2") / UDP() / b"spoofed mac"),
        (3, 1, Ether(src=pa, dst=pb) / IP(src="198.18.10.2", dst="198.18.10.3") / TCP(sport=41001, dport=5432, flags="S")),
        (3, 2, Ether(src=pb, dst=pbvi) / IP(src="198.18.10.3", dst="198.19.0.10") / TCP(sport=42000, dport=80, flags="S")),
        (3, 1, arp(pa, "198.18.10.2", "198.18.10.1")),
        (3, 1, arp(pa, "198.18.10.66", "198.18.10.1")),
        (3, 2, Ether(src=pb, dst=pbvi) / IPv6(src="2001:db8:10::3", dst="2001:db8:10::1") / ICMPv6EchoRequest()),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.19.0.10", flags="MF", frag=0) / TCP(sport=40000, dport=80, flags="S")),
        (3, 0, Ether(src=gw1, dst=upm) / IP(src="198.18.1.2", dst="198.19.0.10", frag=100) / b"later fragment"),
    ]
    # Mode 4 ip6: net1 2001:db8:1::1, net2 2001:db8:2::1 (MTU 1400).
    n1, n2, h6 = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:01:02"
    for f in common(h6, n1, "198.18.1.2", "198.18.2.2", "2001:db8:1::2", "2001:db8:100::5"):
        out.append((4, 0, f))
    out += [
        (4, 0, Ether(src=h6, dst=n1) / IPv6(src="2001:db8:1::2", dst="2001:db8:2::9") / UDP() / b"glean"),
        (4, 0, Ether(src=h6, dst=n1) / IPv6(src="2001:db8:1::2", dst="2001:db8:66::1") / UDP() / b"unreachable"),
        (4, 0, Ether(src=h6, dst=n1) / IPv6(src="2001:db8:1::2", dst="2001:db8:1::1") / ICMPv6EchoRequest() / b"ping"),
        (4, 0, Ether(src=h6, dst=n1) / IPv6(src="2001:db8:1::2", dst="2001:db8:100::5") / UDP() / (b"m" * 1420)),
        (4, 0, nd(h6, "2001:db8:1::2", "2001:db8:1::1")),
        (4, 1, nd("02:00:00:00:02:02", "2001:db8:2::9", "2001:db8:2::9", dst_mac=n2, na=True)),
        (4, 1, Ether(src="02:00:00:00:02:02", dst=n2) / IPv6(src="2001:db8:100::5", dst="2001:db8:1::2") / ICMPv6DestUnreach() / IPv6(src="2001:db8:1::2", dst="2001:db8:100::5") / UDP()),
    ]
    return out


def pipeline_corpus(frames):
    for mode, port, f in frames:
        raw = bytes(f)
        write("pipeline", bytes([(port << 3) | mode]) + raw)
    # Vectors: several frames in one poll (bit 7 of the first byte).
    by_mode = {}
    for mode, port, f in frames:
        by_mode.setdefault(mode, []).append((port, bytes(f)))
    for mode, fs in by_mode.items():
        for start in range(0, len(fs), 8):
            v = bytes([0x80 | mode])
            for port, raw in fs[start:start + 8]:
                v += bytes([port]) + len(raw).to_bytes(2, "little") + raw
            write("pipeline", v)


def wire_corpus(frames):
    for _, _, f in frames:
        raw = bytes(f)
        write("wire", raw)
        # The inner headers at offset 0, as the views see them in the datapath.
        layer = f.payload
        while layer is not None and not isinstance(layer, (Raw,)) and len(bytes(layer)) > 0:
            write("wire", bytes(layer))
            layer = layer.payload if hasattr(layer, "payload") else None
            if layer is not None and layer.__class__.__name__ == "NoPayload":
                break


def control_corpus():
    doc = open(os.path.join(ROOT, "docs", "control-protocol.md")).read()
    lines = re.findall(r"q '(\{.*?\})'", doc)
    for line in lines:
        write("control", line + "\n")
    hello = '{"id":0,"op":"hello","args":{"version":1,"client":"fuzz"}}'
    # Sequences: each change, then a show of what it changed.
    changes = [l for l in lines if '"op":"show' not in l]
    shows = [l for l in lines if '"op":"show' in l]
    for i in range(0, len(changes), 4):
        write("control", "\n".join([hello] + changes[i:i + 4] + shows[:3]) + "\n")
    write("control", json.dumps({"id": 9, "op": "batch", "args": {"ops": [
        {"op": "route.add", "args": {"prefix": "198.19.9.0/24", "via": ["198.18.1.2"]}},
        {"op": "neighbor.add", "args": {"interface": "net1", "ip": "198.18.1.7", "mac": "02:00:00:00:01:07"}},
        {"op": "route.add", "args": {"prefix": "198.19.9.0/24", "via": ["198.18.1.2"]}},
    ]}}) + "\n")
    write("control", json.dumps({"id": 10, "op": "sync", "args": {
        "scope": "node/n2", "generation": 5,
        "routes": [{"prefix": "198.19.2.0/24", "via": ["198.18.1.2"]}, {"prefix": "2001:db8:9::/64", "via": ["2001:db8:1::2"]}],
        "neighbors": [{"interface": "net1", "ip": "198.18.1.2", "mac": "02:00:00:00:01:02"}],
        "endpoints": [{"namespace": "default", "name": "p", "ips": ["198.18.3.9"], "mac": "02:00:00:00:03:09", "interface": "pod1"}],
        "services": [{"namespace": "default", "name": "s", "ips": ["198.19.0.10"], "port": 80, "backends": [{"ip": "198.18.3.9", "port": 8080}]}],
        "policies": [{"namespace": "default", "name": "p", "pods": ["198.18.3.9"], "ingress": [{"peers": [{"ip_block": "198.18.0.0/16"}]}]}],
    }}) + "\n")
    write("control", '{"id":1,"op":"nope"}\n{"id":-1,"op":"show.ports"}\n{"op":1}\nnot json\n{"id":2,"op":"route.add","args":{"prefix":"198.19.0.0/33"}}\n')


def config_corpus():
    for d in ["conf"]:
        for n in sorted(os.listdir(os.path.join(ROOT, d))):
            if n.endswith(".toml"):
                write("config", open(os.path.join(ROOT, d, n)).read())
    cm = open(os.path.join(ROOT, "deploy", "vrouter-configmap.yaml")).read()
    m = re.search(r"vrouterd.toml: \|\n((?:    .*\n|\n)+)", cm)
    if m:
        write("config", "\n".join(l[4:] for l in m.group(1).splitlines()) + "\n")
    for doc in ["CONFIG.md", "SERVICES.md"]:
        text = open(os.path.join(ROOT, "docs", doc)).read()
        for block in re.findall(r"```toml\n(.*?)```", text, re.S):
            write("config", block)
    # The nodes of the pipeline and control targets (valid, rich files).
    for t in ["pipeline.rs", "control.rs"]:
        src = open(os.path.join(ROOT, "fuzz", "fuzz_targets", t)).read()
        for block in re.findall(r'const [A-Z0-9]+: &str = r#"(.*?)"#;', src, re.S):
            write("config", block)


def cni_corpus():
    lst = json.load(open(os.path.join(ROOT, "deploy", "10-vrouter.conflist")))
    conf = dict(lst["plugins"][0], name=lst["name"], cniVersion=lst["cniVersion"])
    write("cni", json.dumps(conf, indent=2))
    write("cni", json.dumps(lst, indent=2))
    v6 = dict(conf, ipam={"subnet": "2001:db8:10::/64"})
    write("cni", json.dumps(v6))
    write("cni", json.dumps(dict(conf, ipam={"subnet": "198.18.10.0/30"}, mtu=9000, ports={"count": 4096, "interface": "pod{}", "device": "vrpp{}"})))
    doc = open(os.path.join(ROOT, "docs", "cni.md")).read()
    for block in re.findall(r"```json\n(.*?)```", doc, re.S):
        write("cni", block)
    write("cni", "CNI_COMMAND=ADD\nCNI_CONTAINERID=abc123\nCNI_NETNS=/var/run/netns/x\nCNI_IFNAME=eth0\nCNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1\n")
    write("cni", "CNI_COMMAND=DEL\nCNI_CONTAINERID=abc123\nCNI_IFNAME=eth0\n")
    write("cni", "CNI_COMMAND=VERSION\n")


def main():
    frames = pipeline_frames()
    pipeline_corpus(frames)
    wire_corpus(frames)
    control_corpus()
    config_corpus()
    cni_corpus()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))), file=sys.stderr)


if __name__ == "__main__":
    main()
