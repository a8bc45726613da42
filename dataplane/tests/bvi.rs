//! A bridge domain with a routed gateway interface (BVI/IRB): pods in the
//! domain reach their gateway and are routed to and from other subnets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use etherparse::{Icmpv4Type, PacketBuilder};
use vrouter_dataplane::graph::Counter;

const GW: &str = "02:00:00:00:03:01";
const POD1: &str = "02:00:00:00:03:0a";
const POD2: &str = "02:00:00:00:03:0b";
const EXT: &str = "02:00:00:00:01:02";

fn cfg() -> &'static str {
    r#"
[[port]]
name = "p1"
driver = "memory"
[[port]]
name = "p2"
driver = "memory"
[[port]]
name = "up"
driver = "memory"
mac = "02:00:00:00:01:01"
[[bridge]]
name = "pods"
gateway = { addresses = ["198.18.3.1/24", "2001:db8:3::1/64"], mac = "02:00:00:00:03:01" }
[[interface]]
name = "p1"
bridge = "pods"
[[interface]]
name = "p2"
bridge = "pods"
[[interface]]
name = "up"
addresses = ["198.18.1.1/24"]
[[neighbor]]
interface = "up"
ip = "198.18.1.2"
mac = "02:00:00:00:01:02"
"#
}

fn arp(op: u16, eth_dst: &str, sha: &str, spa: [u8; 4], tha: &str, tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(eth_dst));
    f.extend_from_slice(&mac(sha));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac(sha));
    f.extend_from_slice(&spa);
    f.extend_from_slice(&mac(tha));
    f.extend_from_slice(&tpa);
    f
}

#[test]
fn pod_resolves_and_pings_its_gateway() {
    let mut h = Harness::new(cfg());
    h.inject(
        0,
        arp(
            1,
            "ff:ff:ff:ff:ff:ff",
            POD1,
            [198, 18, 3, 10],
            "00:00:00:00:00:00",
            [198, 18, 3, 1],
        ),
    );
    assert_eq!(
        h.out(1).len(),
        1,
        "the broadcast is still flooded to the other pod"
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1, "the gateway answered");
    assert_eq!(&out[0][6..12], &mac(GW));
    assert_eq!(&out[0][20..22], &[0, 2]);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(POD1), mac(GW))
        .ipv4([198, 18, 3, 10], [198, 18, 3, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, &[0; 32])
        .unwrap();
    h.inject(0, v);
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    assert!(matches!(
        icmp4(&out[0]).icmp_type(),
        Icmpv4Type::EchoReply(_)
    ));
    assert_eq!(&out[0][0..6], &mac(POD1));
    assert_eq!(h.out(1).len(), 0, "the reply is unicast in the bridge");
}

#[test]
fn routed_traffic_reaches_a_pod_through_the_bridge() {
    let mut h = Harness::new(cfg());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(EXT), mac("02:00:00:00:01:01"))
        .ipv4([198, 18, 1, 2], [198, 18, 3, 11], 64)
        .udp(5000, 80)
        .write(&mut v, &[7; 20])
        .unwrap();
    h.inject(2, v);
    // The gateway asks for the pod: a broadcast flooded to both members.
    let (a, b) = (h.out(0), h.out(1));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(&a[0][12..14], &[0x08, 0x06]);
    assert_eq!(&a[0][6..12], &mac(GW));
    // Pod 2 answers from p2; the held packet is routed into the bridge to it.
    h.inject(1, arp(2, GW, POD2, [198, 18, 3, 11], GW, [198, 18, 3, 1]));
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(POD2));
    assert_eq!(&out[0][6..12], &mac(GW));
    assert_eq!(out[0][14 + 8], 63, "routed: TTL decremented");
    assert_eq!(h.out(0).len(), 0, "known unicast: not flooded");
    assert_eq!(
        h.counter(Counter::L2Learned),
        1,
        "pod 2 learned; the gateway's MAC is static"
    );
}

#[test]
fn pod_traffic_is_routed_out_of_the_bridge() {
    let mut h = Harness::new(cfg());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(POD1), mac(GW))
        .ipv4([198, 18, 3, 10], [198, 18, 1, 2], 64)
        .udp(5000, 80)
        .write(&mut v, &[7; 20])
        .unwrap();
    h.inject(0, v);
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(EXT));
    assert_eq!(h.out(1).len(), 0);
}
