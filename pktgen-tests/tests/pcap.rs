//! vrouterd offline: scapy writes the input captures, vrouterd replays them
//! through its pcap ports and writes what it transmits, and tshark decodes
//! the output, packet by packet, checksums included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use vrouter_pktgen_tests::*;

const PY: &str = "/usr/bin/python3";

fn tools() -> bool {
    let ok = have("tshark")
        && sh_out(&format!("{PY} -c 'import scapy.all'"))
            .status
            .success();
    if !ok {
        eprintln!("skipped: needs tshark and python3-scapy (scripts/deps.sh installs them)");
    }
    ok
}

/// Runs a scapy program with `d` (the scratch dir) as its working directory.
fn scapy(d: &Path, program: &str) {
    let script = d.join("gen.py");
    std::fs::write(&script, format!("from scapy.all import *\n{program}")).unwrap();
    sh(&format!("cd {} && {PY} {}", d.display(), script.display()));
}

/// tshark fields of every frame of `file`, one Vec per frame.
fn fields(file: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let f: String = names.iter().map(|n| format!(" -e {n}")).collect();
    let out = sh(&format!(
        "tshark -r {} -o ip.check_checksum:TRUE -T fields -E separator='|' -E occurrence=f{f} 2>/dev/null",
        file.display()
    ));
    out.lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn run_vrouterd(d: &Path, cfg: &str) -> String {
    let c = d.join("vrouter.toml");
    std::fs::write(&c, format!("{cfg}\n[control]\nsocket = \"\"\n")).unwrap();
    let out = sh_out(&format!(
        "cd {} && timeout 60 {} --config {}",
        d.display(),
        vrouterd().display(),
        c.display()
    ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vrouterd failed:\n{text}");
    text
}

const R1: &str = "02:00:00:00:01:01";
const H1: &str = "02:00:00:00:01:02";

#[test]
fn routed_capture_in_capture_out() {
    if !tools() {
        return;
    }
    let t = Topology::new();
    let d = t.dir();
    scapy(
        d,
        &format!(
            r#"
r1, h1 = "{R1}", "{H1}"
pkts = [
  Ether(src=h1, dst="ff:ff:ff:ff:ff:ff")/ARP(op=1, hwsrc=h1, psrc="198.18.1.2", pdst="198.18.1.1"),
  Ether(src=h1, dst=r1)/IP(src="198.18.1.2", dst="198.18.1.1")/ICMP(type=8, id=7, seq=1)/b"ping",
  Ether(src=h1, dst=r1)/IP(src="198.18.1.2", dst="198.18.2.2", ttl=64)/UDP(sport=1111, dport=2222)/Raw(b"x"*20),
  Ether(src=h1, dst=r1)/IP(src="198.18.1.2", dst="198.18.2.2", ttl=1)/UDP(sport=1111, dport=2222)/Raw(b"y"*20),
  Ether(src=h1, dst=r1)/IP(src="198.18.1.2", dst="203.0.113.9")/UDP(sport=1, dport=2),
  Ether(src=h1, dst=r1)/IP(src="198.18.1.2", dst="198.18.2.2", chksum=0x1234)/UDP(sport=1, dport=2),
  Ether(src=h1, dst="33:33:ff:00:00:01")/IPv6(src="2001:db8:1::2", dst="ff02::1:ff00:1", hlim=255)/ICMPv6ND_NS(tgt="2001:db8:1::1")/ICMPv6NDOptSrcLLAddr(lladdr=h1),
  Ether(src=h1, dst=r1)/IPv6(src="2001:db8:1::2", dst="2001:db8:2::2", hlim=64)/UDP(sport=3, dport=4)/Raw(b"z"*10),
]
wrpcap("in-net1.pcap", pkts)
wrpcap("in-net2.pcap", [])
"#
        ),
    );
    let report = run_vrouterd(
        d,
        r#"
[[port]]
name = "net1"
driver = "pcap"
rx-pcap = "in-net1.pcap"
tx-pcap = "out-net1.pcap"
mac = "02:00:00:00:01:01"
[[port]]
name = "net2"
driver = "pcap"
rx-pcap = "in-net2.pcap"
tx-pcap = "out-net2.pcap"
mac = "02:00:00:00:02:01"
[[interface]]
name = "net1"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "net2"
addresses = ["198.18.2.1/24", "2001:db8:2::1/64"]
[[neighbor]]
interface = "net2"
ip = "198.18.2.2"
mac = "02:00:00:00:02:02"
[[neighbor]]
interface = "net2"
ip = "2001:db8:2::2"
mac = "02:00:00:00:02:02"
"#,
    );
    let f = [
        "eth.src",
        "eth.dst",
        "arp.opcode",
        "ip.src",
        "ip.dst",
        "ip.ttl",
        "ip.checksum.status",
        "icmp.type",
        "icmp.code",
        "icmp.checksum.status",
        "icmpv6.type",
        "icmpv6.checksum.status",
        "ipv6.hlim",
        "udp.dstport",
    ];
    let net1 = fields(&d.join("out-net1.pcap"), &f);
    let net2 = fields(&d.join("out-net2.pcap"), &f);
    let col =
        |row: &Vec<String>, name: &str| row[f.iter().position(|x| *x == name).unwrap()].clone();
    // net1 gets an ARP reply, an echo reply, a time exceeded, a net
    // unreachable and a neighbour advertisement. The replies addressed to
    // 198.18.1.2 wait for its ARP entry (learned from the same burst's ARP
    // request), so they follow the NA, and the router may also have asked
    // for that address itself (ARP requests are left out here).
    let net1: Vec<_> = net1
        .into_iter()
        .filter(|r| col(r, "arp.opcode") != "1")
        .collect();
    assert_eq!(net1.len(), 5, "{net1:?}\n{report}");
    assert_eq!(col(&net1[0], "arp.opcode"), "2");
    assert_eq!(col(&net1[0], "eth.dst"), H1);
    assert_eq!(col(&net1[1], "icmpv6.type"), "136");
    assert_eq!(col(&net1[1], "icmpv6.checksum.status"), "1");
    assert_eq!(
        (col(&net1[2], "icmp.type"), col(&net1[2], "ip.src")),
        ("0".into(), "198.18.1.1".into())
    );
    assert_eq!(
        (col(&net1[3], "icmp.type"), col(&net1[3], "icmp.code")),
        ("11".into(), "0".into())
    );
    assert_eq!(
        col(&net1[3], "udp.dstport"),
        "2222",
        "the error quotes the original"
    );
    assert_eq!(
        (col(&net1[4], "icmp.type"), col(&net1[4], "icmp.code")),
        ("3".into(), "0".into())
    );
    for row in &net1[2..5] {
        assert_eq!(
            col(row, "ip.checksum.status"),
            "1",
            "IPv4 checksum good: {row:?}"
        );
        assert_eq!(
            col(row, "icmp.checksum.status"),
            "1",
            "ICMP checksum good: {row:?}"
        );
        assert_eq!(col(row, "ip.dst"), "198.18.1.2");
        assert_eq!(col(row, "eth.dst"), H1);
    }
    // net2 gets the two forwarded packets, TTL/hop limit decremented.
    assert_eq!(net2.len(), 2, "{net2:?}\n{report}");
    assert_eq!(
        (col(&net2[0], "ip.ttl"), col(&net2[0], "ip.checksum.status")),
        ("63".into(), "1".into())
    );
    assert_eq!(col(&net2[0], "eth.dst"), "02:00:00:00:02:02");
    assert_eq!(col(&net2[0], "eth.src"), "02:00:00:00:02:01");
    assert_eq!(col(&net2[0], "udp.dstport"), "2222");
    assert_eq!(col(&net2[1], "ipv6.hlim"), "63");
    assert_eq!(counter(&report, "ip4-bad-checksum"), 1, "{report}");
}

#[test]
fn bridged_capture_in_capture_out() {
    if !tools() {
        return;
    }
    let t = Topology::new();
    let d = t.dir();
    scapy(
        d,
        r#"
a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
wrpcap("in-a.pcap", [Ether(src=a, dst="ff:ff:ff:ff:ff:ff")/ARP(op=1, hwsrc=a, psrc="198.18.0.1", pdst="198.18.0.2"),
                     Ether(src=a, dst=b)/IP(src="198.18.0.1", dst="198.18.0.2")/UDP()/b"later"])
wrpcap("in-b.pcap", [Ether(src=b, dst=a)/ARP(op=2, hwsrc=b, psrc="198.18.0.2", hwdst=a, pdst="198.18.0.1")])
wrpcap("in-c.pcap", [])
"#,
    );
    let report = run_vrouterd(
        d,
        r#"
[[port]]
name = "a"
driver = "pcap"
rx-pcap = "in-a.pcap"
tx-pcap = "out-a.pcap"
[[port]]
name = "b"
driver = "pcap"
rx-pcap = "in-b.pcap"
tx-pcap = "out-b.pcap"
[[port]]
name = "c"
driver = "pcap"
rx-pcap = "in-c.pcap"
tx-pcap = "out-c.pcap"
[[bridge]]
name = "br"
[[interface]]
name = "a"
bridge = "br"
[[interface]]
name = "b"
bridge = "br"
[[interface]]
name = "c"
bridge = "br"
"#,
    );
    let f = ["eth.src", "eth.dst", "arp.opcode", "udp.dstport"];
    let (a, b, c) = (
        fields(&d.join("out-a.pcap"), &f),
        fields(&d.join("out-b.pcap"), &f),
        fields(&d.join("out-c.pcap"), &f),
    );
    // The broadcast reached b and c; b's reply reached only a; a's unicast
    // to b (b is learned by then or flooded: the ports run in one burst)
    // reached b.
    assert_eq!(a.len(), 1, "{a:?}\n{report}");
    assert_eq!(a[0][2], "2");
    assert!(
        b.iter().any(|r| r[2] == "1") && b.iter().any(|r| r[1] == "02:00:00:00:00:0b"),
        "{b:?}"
    );
    assert!(c.iter().any(|r| r[2] == "1"), "{c:?}");
    assert_eq!(counter(&report, "l2-learned"), 2, "{report}");
}
