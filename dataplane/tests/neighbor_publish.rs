//! Neighbours learned on the data path survive control-plane churn: the
//! soak's topology (three pods in a bridge behind a BVI, a routed pod whose
//! endpoint is churned, a routed uplink, a ClusterIP service) on memory
//! ports, the soak's churn cycle applied through the control API (2000 IPv4
//! and 200 IPv6 routes, the service's backends replaced, 50 services added
//! and deleted, the endpoint added and deleted) with aging ticks between
//! the steps; after every step, traffic to and from each learned neighbour
//! is forwarded at once to the neighbour's MAC, with no packet held for
//! resolution and no ARP/ND request sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::net::{IpAddr, Ipv6Addr};

use common::*;
use etherparse::PacketBuilder;
use serde_json::json;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::graph::Counter;

const BVI: &str = "02:76:72:00:0a:01";
const UP: &str = "02:76:72:00:14:01";
const POD1: &str = "02:00:00:00:0a:11";
const POD2: &str = "02:00:00:00:0a:12";
const POD4: &str = "02:00:00:00:0b:02";
const EXT: &str = "02:00:00:00:14:02";
/// Port indexes, in configuration order.
const P1: usize = 0;
const P2: usize = 1;
const P4: usize = 3;
const UPL: usize = 4;

fn cfg() -> &'static str {
    r#"
[[port]]
name = "pod1"
driver = "memory"
[[port]]
name = "pod2"
driver = "memory"
[[port]]
name = "pod3"
driver = "memory"
[[port]]
name = "pod4"
driver = "memory"
[[port]]
name = "uplink"
driver = "memory"
mac = "02:76:72:00:14:01"
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
name = "pod3"
bridge = "pods"
[[interface]]
name = "pod4"
addresses = ["198.18.11.1/24"]
[[interface]]
name = "uplink"
addresses = ["198.18.20.1/24", "2001:db8:20::1/64"]
[[service]]
namespace = "soak"
name = "udp9"
ips = ["198.19.0.10"]
port = 9
protocol = "udp"
backends = [{ ip = "198.18.10.13", port = 9 }, { ip = "198.18.10.30", port = 9 }]
"#
}

fn op(v: serde_json::Value) -> Op {
    serde_json::from_value(v).unwrap()
}

fn batch(ops: Vec<serde_json::Value>) -> Op {
    Op::Batch(proto::Batch {
        ops: ops
            .into_iter()
            .map(|v| proto::BatchOp { op: op(v) })
            .collect(),
    })
}

fn arp_request(src_mac: &str, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac(src_mac));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac(src_mac));
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// A neighbour solicitation from `src` (link-layer `src_mac`) for `target`,
/// unicast to `dst_mac`, with the source link-layer option.
fn solicit(src_mac: &str, dst_mac: &str, src: &str, target: &str) -> Vec<u8> {
    let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), target.parse().unwrap());
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&d.octets());
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&mac(src_mac));
    let sum = vrouter_wire::checksum::pseudo_header_v6(&s, &d, 58, icmp.len() as u32)
        + vrouter_wire::checksum::sum(&icmp);
    icmp[2..4].copy_from_slice(&vrouter_wire::checksum::finish(sum).to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&mac(dst_mac));
    f.extend_from_slice(&mac(src_mac));
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&icmp);
    f
}

fn udp4(src_mac: &str, dst_mac: &str, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv4(src, dst, 64)
        .udp(1024, 9)
        .write(&mut v, &[0x5a; 64])
        .unwrap();
    v
}

fn udp6(src_mac: &str, dst_mac: &str, src: &str, dst: &str) -> Vec<u8> {
    let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv6(s.octets(), d.octets(), 64)
        .udp(1024, 9)
        .write(&mut v, &[0x5a; 200])
        .unwrap();
    v
}

fn drain(h: &mut Harness) {
    for p in 0..5 {
        h.out(p);
    }
}

/// The pods and the uplink's host make themselves known the way their
/// kernels do: an ARP request or a neighbour solicitation for the router.
fn learn(h: &mut Harness) {
    h.inject(P1, arp_request(POD1, [198, 18, 10, 11], [198, 18, 10, 1]));
    h.inject(P2, solicit(POD2, BVI, "2001:db8:10::12", "2001:db8:10::1"));
    h.inject(P4, arp_request(POD4, [198, 18, 11, 2], [198, 18, 11, 1]));
    h.inject(UPL, arp_request(EXT, [198, 18, 20, 2], [198, 18, 20, 1]));
    h.inject(UPL, solicit(EXT, UP, "2001:db8:20::2", "2001:db8:20::1"));
    drain(h);
}

/// The learned neighbours the control plane holds: (interface, IP, MAC).
fn learned(h: &Harness) -> Vec<(String, IpAddr, String)> {
    let t = h.router.tables();
    h.router
        .neighbors()
        .into_iter()
        .filter(|(_, _, n)| !n.is_static)
        .map(|(i, ip, n)| (t.ifaces[i as usize].name.clone(), ip, n.mac.to_string()))
        .collect()
}

/// One packet each way per learned neighbour; each must leave at once on
/// the neighbour's port with its MAC, nothing held, nothing asked.
fn forwards(h: &mut Harness, step: &str, pod4: bool) {
    let held = h.counter(Counter::GleanQueued);
    let asked = h.counter(Counter::ArpRequestSent) + h.counter(Counter::NdSolicitSent);
    let mut cases = vec![
        (
            "ext -> pod1",
            UPL,
            udp4(EXT, UP, [198, 18, 20, 2], [198, 18, 10, 11]),
            P1,
            POD1,
        ),
        (
            "ext -> pod2 (IPv6)",
            UPL,
            udp6(EXT, UP, "2001:db8:20::2", "2001:db8:10::12"),
            P2,
            POD2,
        ),
        (
            "pod1 -> ext",
            P1,
            udp4(POD1, BVI, [198, 18, 10, 11], [198, 18, 20, 2]),
            UPL,
            EXT,
        ),
        (
            "pod2 -> ext (IPv6)",
            P2,
            udp6(POD2, BVI, "2001:db8:10::12", "2001:db8:20::2"),
            UPL,
            EXT,
        ),
        (
            "pod4 -> ext",
            P4,
            udp4(
                POD4,
                "02:00:00:00:00:00",
                [198, 18, 11, 2],
                [198, 18, 20, 2],
            ),
            UPL,
            EXT,
        ),
    ];
    // The routed pod's port has the default MAC of port 3.
    let pod4_port_mac = vrouter_dataplane::port::default_mac(P4 as u16);
    cases[4].2[0..6].copy_from_slice(&pod4_port_mac.octets());
    if pod4 {
        cases.push((
            "ext -> pod4",
            UPL,
            udp4(EXT, UP, [198, 18, 20, 2], [198, 18, 11, 2]),
            P4,
            POD4,
        ));
    }
    for (what, from, frame, to, dst) in cases {
        h.inject(from, frame);
        let out = h.out(to);
        assert_eq!(out.len(), 1, "{step}: {what} not forwarded\n{}", h.report());
        assert_eq!(&out[0][0..6], &mac(dst), "{step}: {what} to the wrong MAC");
        decode(&out[0]);
        drain(h);
    }
    assert_eq!(
        h.counter(Counter::GleanQueued),
        held,
        "{step}: a packet to a learned neighbour waited for resolution\n{}",
        h.report()
    );
    assert_eq!(
        h.counter(Counter::ArpRequestSent) + h.counter(Counter::NdSolicitSent),
        asked,
        "{step}: a learned neighbour was asked for again"
    );
}

#[test]
fn learned_neighbours_survive_route_service_and_endpoint_churn() {
    let mut h = Harness::new(cfg());
    let mut a = api(&h, "nbpub");
    learn(&mut h);
    let known = learned(&h);
    assert_eq!(
        known.len(),
        5,
        "pod1, pod2, pod4, ext (IPv4 and IPv6): {known:?}"
    );
    forwards(&mut h, "after learning", true);

    let v4: Vec<String> = (0..2000)
        .map(|i| format!("198.19.{}.{}/32", 128 + i / 256, i % 256))
        .collect();
    let v6: Vec<String> = (0..200)
        .map(|i| format!("2001:db8:ff{:02x}:{:x}::/64", i / 256, i % 256))
        .collect();
    let routes_add =
        || {
            let mut ops: Vec<_> = v4
                .iter()
                .map(|p| json!({"op": "route.add", "args": {"prefix": p, "via": ["198.18.20.2"]}}))
                .collect();
            ops.extend(v6.iter().map(
                |p| json!({"op": "route.add", "args": {"prefix": p, "via": ["2001:db8:20::2"]}}),
            ));
            batch(ops)
        };
    let routes_del = || {
        batch(
            v4.iter()
                .chain(v6.iter())
                .map(|p| json!({"op": "route.del", "args": {"prefix": p}}))
                .collect(),
        )
    };
    let services_add = || {
        batch(
            (0..50)
                .map(|i| {
                    json!({"op": "service.add", "args": {"namespace": "soak", "name": format!("extra{i}"),
                        "ips": [format!("198.19.3.{}", i + 1)], "port": 80, "protocol": "tcp",
                        "backends": [{"ip": "198.18.10.13", "port": 8080}]}})
                })
                .collect(),
        )
    };
    let services_del = || {
        batch(
            (0..50)
                .map(|i| json!({"op": "service.del", "args": {"namespace": "soak", "name": format!("extra{i}")}}))
                .collect(),
        )
    };
    let endpoint = json!({"namespace": "soak", "name": "pod4", "ips": ["198.18.11.2"],
        "mac": POD4, "interface": "pod4"});
    let mut now_s = 1;
    for cycle in 0..3 {
        let steps: Vec<(&str, Op)> = vec![
            ("routes.add", routes_add()),
            (
                "endpoint.add",
                op(json!({"op": "endpoint.add", "args": endpoint})),
            ),
            (
                "service.replace",
                op(
                    json!({"op": "service.replace", "args": {"namespace": "soak", "name": "udp9",
                "ips": ["198.19.0.10"], "port": 9, "protocol": "udp",
                "backends": [{"ip": "198.18.10.13", "port": 9}, {"ip": format!("198.18.10.{}", 30 + cycle), "port": 9}]}}),
                ),
            ),
            ("services.add", services_add()),
            ("routes.del", routes_del()),
            ("services.del", services_del()),
            (
                "endpoint.del",
                op(json!({"op": "endpoint.del", "args": {"namespace": "soak", "name": "pod4"}})),
            ),
        ];
        for (name, o) in steps {
            a.handle(&mut h.router, &o)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            h.router.tick(now_s);
            now_s += 1;
            // The endpoint's static neighbour replaced pod4's learned one;
            // deleting the endpoint removes it (pod4 is resolved again by
            // its next packet, as in the soak).
            let pod4 = name != "endpoint.del";
            forwards(&mut h, &format!("cycle {cycle}, after {name}"), pod4);
        }
        // pod4 makes itself known again, as its kernel does.
        h.inject(P4, arp_request(POD4, [198, 18, 11, 2], [198, 18, 11, 1]));
        drain(&mut h);
        assert_eq!(learned(&h), known, "cycle {cycle}: learned neighbours");
    }
}
