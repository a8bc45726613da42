//! IPv6 services, NetworkPolicy and anti-spoofing through the real pipeline
//! on memory ports, checked with etherparse: DNAT and reverse NAT of TCP and
//! UDP with valid checksums, REJECT as a TCP RST and as ICMPv6 port
//! unreachable, fragments to a VIP, policy with IPv6 ipBlocks, a spoofed
//! source and neighbour advertisements claiming another pod's address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::tcp6 as tcp;
use common::*;
use etherparse::{NetSlice, PacketBuilder, TransportSlice};
use serde_json::json;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::graph::Counter;

const B: &str = H2;

const CLIENT: [u8; 16] = ip6(0x2001_0db8_0001, 2);
const BACKEND: [u8; 16] = ip6(0x2001_0db8_0002, 2);
const VIP: [u8; 16] = ip6(0x2001_0db8_0099, 10);

const fn ip6(prefix48: u64, host: u16) -> [u8; 16] {
    let v = (prefix48 as u128) << 80 | host as u128;
    v.to_be_bytes()
}

fn s6(a: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

fn cfg() -> String {
    two_nets(
        None,
        &["198.18.1.1/24", "2001:db8:1::1/64"],
        &["198.18.2.1/24", "2001:db8:2::1/64"],
    ) + &neighbor("net1", "2001:db8:1::2", H1)
        + &neighbor("net2", "2001:db8:2::2", B)
        + r#"
[[route]]
prefix = "2001:db8:3::/64"
via = ["2001:db8:1::2"]
"#
}

fn service(name: &str, proto: &str, backends: &[[u8; 16]]) -> proto::Service {
    serde_json::from_value(json!({
        "namespace": "default", "name": name, "ips": ["198.19.0.10", s6(VIP)], "port": 80,
        "protocol": proto,
        "backends": backends.iter().map(|b| json!({"ip": s6(*b), "port": 8080}))
            .chain([json!({"ip": "198.18.2.2", "port": 8080})]).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn udp(src_mac: &str, dst_mac: &str, src: [u8; 16], dst: [u8; 16], sport: u16) -> Vec<u8> {
    udp6(src_mac, dst_mac, src, dst, 64, sport, 80, b"query")
}

/// (src, dst, sport, dport, flags) of an IPv6 TCP or UDP frame, asserting
/// its L4 checksum (mandatory for both over IPv6).
fn tuple(frame: &[u8]) -> ([u8; 16], [u8; 16], u16, u16, u8) {
    let p = decode(frame);
    let Some(NetSlice::Ipv6(ip)) = p.net else {
        panic!("not IPv6")
    };
    let h = ip.header().to_header();
    match p.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap(),
                "TCP checksum"
            );
            let fl = u8::from(t.rst()) << 2 | u8::from(t.ack()) << 4;
            (
                h.source,
                h.destination,
                t.source_port(),
                t.destination_port(),
                fl,
            )
        }
        Some(TransportSlice::Udp(u)) => {
            assert_ne!(u.checksum(), 0, "UDP over IPv6 needs a checksum");
            assert_eq!(
                u.checksum(),
                u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap(),
                "UDP checksum"
            );
            (
                h.source,
                h.destination,
                u.source_port(),
                u.destination_port(),
                0,
            )
        }
        _ => panic!("not TCP/UDP"),
    }
}

#[test]
fn dnat6_out_and_reverse_nat_back_for_tcp_and_udp() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "nat");
    a.handle(
        &mut h.router,
        &Op::ServiceAdd(service("web", "tcp", &[BACKEND])),
    )
    .unwrap();
    h.inject(0, tcp(H1, R1, CLIENT, VIP, 40000, 80, true, b""));
    let out = h.out(1);
    assert_eq!(out.len(), 1, "{}", h.report());
    assert_eq!(
        tuple(&out[0]),
        (CLIENT, BACKEND, 40000, 8080, 0),
        "DNAT to the IPv6 backend (never the IPv4 one)"
    );
    h.inject(1, tcp(B, R2, BACKEND, CLIENT, 8080, 40000, false, b"odd"));
    let back = h.out(0);
    assert_eq!(back.len(), 1, "{}", h.report());
    assert_eq!(
        tuple(&back[0]),
        (VIP, CLIENT, 80, 40000, 0),
        "reply from the VIP"
    );
    assert_eq!(h.counter(Counter::CtFlowCreated), 1);
    assert_eq!(h.worker.pipeline.conntrack6().len(), 1);
    assert_eq!(h.worker.pipeline.conntrack().len(), 0, "IPv4 table unused");

    a.handle(
        &mut h.router,
        &Op::ServiceAdd(service("dns", "udp", &[BACKEND])),
    )
    .unwrap();
    h.inject(0, udp(H1, R1, CLIENT, VIP, 5353));
    let out = h.out(1);
    assert_eq!(out.len(), 1, "{}", h.report());
    assert_eq!(tuple(&out[0]), (CLIENT, BACKEND, 5353, 8080, 0));
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(mac(B), mac(R2))
        .ipv6(BACKEND, CLIENT, 64)
        .udp(8080, 5353)
        .write(&mut reply, b"answer")
        .unwrap();
    h.inject(1, reply);
    let back = h.out(0);
    assert_eq!(back.len(), 1, "{}", h.report());
    assert_eq!(tuple(&back[0]), (VIP, CLIENT, 80, 5353, 0));

    // A UDP datagram without a checksum is invalid over IPv6: refused.
    let mut bad = udp(H1, R1, CLIENT, VIP, 5354);
    let at = 14 + 40 + 6;
    bad[at..at + 2].copy_from_slice(&[0, 0]);
    h.inject(0, bad);
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::CtMalformed), 1, "{}", h.report());

    // A fragment to the VIP is dropped and counted.
    let mut frag = Vec::new();
    PacketBuilder::ethernet2(mac(H1), mac(R1))
        .ipv6(CLIENT, VIP, 64)
        .udp(1, 80)
        .write(&mut frag, b"x")
        .unwrap();
    // Insert a Fragment header (first fragment, more follow).
    frag[14 + 6] = 44;
    let plen = u16::from_be_bytes([frag[18], frag[19]]) + 8;
    frag[18..20].copy_from_slice(&plen.to_be_bytes());
    frag.splice(54..54, [17, 0, 0, 1, 0, 0, 0, 7]);
    h.inject(0, frag);
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::CtFragment), 1, "{}", h.report());
}

#[test]
fn empty_ipv6_service_rejects_with_rst_and_icmpv6() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "rej");
    let mut s = service("web", "tcp", &[]);
    s.backends.clear();
    a.handle(&mut h.router, &Op::ServiceAdd(s)).unwrap();
    h.inject(0, tcp(H1, R1, CLIENT, VIP, 40000, 80, true, b""));
    let out = h.out(0);
    assert_eq!(out.len(), 1, "{}", h.report());
    let (src, dst, sport, dport, fl) = tuple(&out[0]);
    assert_eq!((src, dst, sport, dport), (VIP, CLIENT, 80, 40000));
    assert_eq!(fl, 0x14, "RST|ACK");
    assert_eq!(h.counter(Counter::SvcRejectSent), 1);
    let mut u = service("dns", "udp", &[]);
    u.backends.clear();
    a.handle(&mut h.router, &Op::ServiceAdd(u)).unwrap();
    h.inject(0, udp(H1, R1, CLIENT, VIP, 5353));
    let out = h.out(0);
    assert_eq!(out.len(), 1, "{}", h.report());
    let icmp = icmp6(&out[0]);
    assert_eq!(icmp.type_u8(), 1, "destination unreachable");
    assert_eq!(icmp.code_u8(), 4, "port unreachable");
    assert_eq!(h.counter(Counter::SvcNoEndpoints), 1);
}

#[test]
fn ipv6_policy_with_ip_block_except() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "pol");
    let policy: proto::Policy = serde_json::from_value(json!({
        "namespace": "default", "name": "b", "pods": [s6(BACKEND)],
        "ingress": [{"peers": [{"ip_block": "2001:db8::/32", "except": ["2001:db8:1::/64"]}],
                     "ports": [{"protocol": "tcp", "port": 8080}]}],
    }))
    .unwrap();
    a.handle(&mut h.router, &Op::PolicyAdd(policy)).unwrap();
    // From 2001:db8:1::2: in the except, denied.
    h.inject(0, tcp(H1, R1, CLIENT, BACKEND, 40000, 8080, true, b""));
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::PolicyDenied), 1, "{}", h.report());
    // From 2001:db8:3::2 (in the block, not in the except): allowed, and the
    // reply rides the flow.
    let other = ip6(0x2001_0db8_0003, 2);
    h.inject(0, tcp(H1, R1, other, BACKEND, 40001, 8080, true, b""));
    assert_eq!(h.out(1).len(), 1, "{}", h.report());
    h.inject(1, tcp(B, R2, BACKEND, other, 8080, 40001, false, b""));
    assert_eq!(h.out(0).len(), 1, "stateful reply");
    // Port not listed.
    h.inject(0, tcp(H1, R1, other, BACKEND, 40002, 9090, true, b""));
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::PolicyDenied), 2);
    // The IPv4 side of the same pod is not selected by an IPv6 pod list.
    let mut v4 = Vec::new();
    PacketBuilder::ethernet2(mac(H1), mac(R1))
        .ipv4([198, 18, 1, 2], [198, 18, 2, 2], 64)
        .tcp(1, 8080, 1, 1000)
        .syn()
        .write(&mut v4, b"")
        .unwrap();
    h.router
        .set_neighbor(
            1,
            "198.18.2.2".parse().unwrap(),
            "02:00:00:00:02:02".parse().unwrap(),
            true,
        )
        .unwrap();
    h.router.commit();
    h.inject(0, v4);
    assert_eq!(h.out(1).len(), 1, "{}", h.report());
}

#[test]
fn ipv6_anti_spoofing_source_and_neighbor_advertisements() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "spoof");
    let ep: proto::Endpoint = serde_json::from_value(json!({
        "namespace": "default", "name": "c", "ips": ["198.18.1.2", s6(CLIENT)],
        "mac": H1, "interface": "net1",
    }))
    .unwrap();
    a.handle(&mut h.router, &Op::EndpointAdd(ep)).unwrap();
    h.inject(0, tcp(H1, R1, CLIENT, BACKEND, 40000, 8080, true, b""));
    assert_eq!(h.out(1).len(), 1, "own address: {}", h.report());
    let spoofed = ip6(0x2001_0db8_0001, 99);
    h.inject(0, tcp(H1, R1, spoofed, BACKEND, 40000, 8080, true, b""));
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::SpoofedSource), 1, "{}", h.report());
    h.inject(
        0,
        tcp(
            "02:00:00:00:01:99",
            R1,
            CLIENT,
            BACKEND,
            40000,
            8080,
            true,
            b"",
        ),
    );
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::SpoofedSource), 2, "foreign MAC");
    // An unsolicited NA claiming another address, then the pod's own.
    let na = |target: [u8; 16]| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac(H1), [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(
                ip6(0xfe80_0000_0000, 1),
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                255,
            )
            .icmpv6(etherparse::Icmpv6Type::Unknown {
                type_u8: 136,
                code_u8: 0,
                bytes5to8: [0x20, 0, 0, 0],
            })
            .write(&mut v, &[&target[..], &[2, 1], &mac(H1)[..]].concat())
            .unwrap();
        v
    };
    h.inject(0, na(ip6(0x2001_0db8_0001, 1)));
    assert_eq!(h.counter(Counter::SpoofedNd), 1, "{}", h.report());
    h.inject(0, na(CLIENT));
    assert_eq!(
        h.counter(Counter::SpoofedNd),
        1,
        "own address: {}",
        h.report()
    );
}
