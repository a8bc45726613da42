//! `pod-guard` through the pipeline on memory ports: a bridged pod
//! registered like vrouter-cni (static MAC on its port, endpoint on the
//! BVI) is checked at its port, for frames switched to another pod and for
//! ARP; removing the static MAC lifts the check from the port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use etherparse::PacketBuilder;
use serde_json::json;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::api::Api;
use vrouter_dataplane::graph::Counter;

const POD1: &str = "02:00:00:00:03:0a";
const POD2: &str = "02:00:00:00:03:0b";

fn cfg() -> &'static str {
    r#"
[[port]]
name = "p1"
driver = "memory"
[[port]]
name = "p2"
driver = "memory"
[[bridge]]
name = "pods"
gateway = { addresses = ["198.18.3.1/24", "2001:db8:3::1/64"], mac = "02:00:00:00:03:01" }
[[interface]]
name = "p1"
bridge = "pods"
[[interface]]
name = "p2"
bridge = "pods"
[[static-mac]]
bridge = "pods"
mac = "02:00:00:00:03:0b"
interface = "p2"
"#
}

fn udp4(src: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(POD1), mac(POD2))
        .ipv4(src, [198, 18, 3, 11], 64)
        .udp(1000, 2000)
        .write(&mut v, b"x")
        .unwrap();
    v
}

fn udp6(src: [u8; 16]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(POD1), mac(POD2))
        .ipv6(src, (0x2001_0db8_0003u128 << 80 | 11).to_be_bytes(), 64)
        .udp(1000, 2000)
        .write(&mut v, b"x")
        .unwrap();
    v
}

fn arp(sha: &str, spa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac(POD1));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&mac(sha));
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&spa);
    f
}

#[test]
fn bridged_pod_bound_on_the_bvi_is_checked_at_its_port() {
    let mut h = Harness::new(cfg());
    let mut a = api(&h, "guard");
    let own6 = (0x2001_0db8_0003u128 << 80 | 0x10).to_be_bytes();
    // Unbound: anything from p1 is switched to POD2 on p2.
    h.inject(0, udp4([198, 18, 3, 99]));
    assert_eq!(h.out(1).len(), 1, "{}", h.report());
    let run = |a: &mut Api, h: &mut Harness, op: Op| a.handle(&mut h.router, &op).unwrap();
    run(
        &mut a,
        &mut h,
        Op::StaticMacAdd(proto::StaticMac {
            bridge: "pods".into(),
            mac: POD1.into(),
            interface: "p1".into(),
        }),
    );
    let ep: proto::Endpoint = serde_json::from_value(json!({
        "namespace": "default", "name": "pod1", "ips": ["198.18.3.10", "2001:db8:3::10"],
        "mac": POD1, "interface": "bvi-pods",
    }))
    .unwrap();
    run(&mut a, &mut h, Op::EndpointAdd(ep));
    h.inject(0, udp4([198, 18, 3, 10]));
    assert_eq!(h.out(1).len(), 1, "own address: {}", h.report());
    h.inject(0, udp4([198, 18, 3, 99]));
    h.inject(0, udp6((0x2001_0db8_0003u128 << 80 | 99).to_be_bytes()));
    assert!(h.out(1).is_empty(), "spoofed sources are not switched");
    assert_eq!(h.counter(Counter::SpoofedSource), 2, "{}", h.report());
    h.inject(0, udp6(own6));
    assert_eq!(h.out(1).len(), 1, "own IPv6 address: {}", h.report());
    h.inject(0, arp(POD1, [198, 18, 3, 1]));
    assert!(h.out(1).is_empty(), "ARP claiming the gateway not flooded");
    assert_eq!(h.counter(Counter::SpoofedArp), 1);
    h.inject(0, arp(POD1, [198, 18, 3, 10]));
    assert_eq!(h.out(1).len(), 1, "own ARP flooded: {}", h.report());
    // Without the static MAC the binding stays on the BVI only.
    run(
        &mut a,
        &mut h,
        Op::StaticMacDel(proto::StaticMac {
            bridge: "pods".into(),
            mac: POD1.into(),
            interface: "p1".into(),
        }),
    );
    h.inject(0, udp4([198, 18, 3, 99]));
    assert_eq!(h.out(1).len(), 1, "{}", h.report());
    assert_eq!(h.counter(Counter::SpoofedSource), 2);
}
