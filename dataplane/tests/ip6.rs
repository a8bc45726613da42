//! IPv6 routing through the real pipeline: ND (NS/NA), forwarding, hop
//! limit, ICMPv6 errors, packet-too-big, echo, glean with solicitations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_arguments
)]

mod common;
use std::net::Ipv6Addr;

use common::*;
use etherparse::{Icmpv6Type, NetSlice, PacketBuilder};
use vrouter_dataplane::graph::Counter;

fn a(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

fn cfg() -> String {
    "[dataplane]\nglean-timeout-ms = 200\n".to_string()
        + &two_nets(Some(1400), &["2001:db8:1::1/64"], &["2001:db8:2::1/64"])
        + &neighbor("net2", "2001:db8:2::2", H2)
        + r#"[[route]]
prefix = "2001:db8:100::/48"
via = ["2001:db8:2::2"]
"#
}

fn udp6(src_mac: &str, dst_mac: &str, src: &str, dst: &str, hop: u8, payload: usize) -> Vec<u8> {
    common::udp6(
        src_mac,
        dst_mac,
        a(src),
        a(dst),
        hop,
        1000,
        9,
        &vec![0xcd; payload],
    )
}

/// A neighbour message (135 NS or 136 NA) with a link-layer option.
fn nd(
    kind: u8,
    eth_src: &str,
    eth_dst: &str,
    src: &str,
    dst: &str,
    target: &str,
    flags: u8,
    hop: u8,
) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0, flags, 0, 0, 0];
    icmp.extend_from_slice(&a(target));
    icmp.extend_from_slice(&[if kind == 135 { 1 } else { 2 }, 1]);
    icmp.extend_from_slice(&mac(eth_src));
    let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let sum = vrouter_wire::checksum::pseudo_header_v6(&s, &d, 58, icmp.len() as u32)
        + vrouter_wire::checksum::sum(&icmp);
    icmp[2..4].copy_from_slice(&vrouter_wire::checksum::finish(sum).to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&mac(eth_dst));
    f.extend_from_slice(&mac(eth_src));
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&icmp);
    f
}

fn learn_h1(h: &mut Harness) {
    h.inject(
        0,
        nd(
            136,
            H1,
            R1,
            "2001:db8:1::2",
            "2001:db8:1::1",
            "2001:db8:1::2",
            0x60,
            255,
        ),
    );
}

#[test]
fn neighbor_solicitation_for_router_gets_advertisement() {
    let mut h = Harness::new(&cfg());
    h.inject(
        0,
        nd(
            135,
            H1,
            "33:33:ff:00:00:01",
            "2001:db8:1::2",
            "ff02::1:ff00:1",
            "2001:db8:1::1",
            0,
            255,
        ),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    let icmp = icmp6(&out[0]);
    assert_eq!(icmp.type_u8(), 136);
    let p = decode(&out[0]);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), a("2001:db8:1::1"));
    assert_eq!(ip.header().destination(), a("2001:db8:1::2"));
    assert_eq!(ip.header().hop_limit(), 255);
    assert_eq!(&out[0][0..6], &mac(H1));
    let body = icmp.slice();
    assert_eq!(body[4] & 0xe0, 0xe0, "router, solicited, override");
    assert_eq!(&body[8..24], &a("2001:db8:1::1"));
    assert_eq!(&body[24..26], &[2, 1]);
    assert_eq!(&body[26..32], &mac(R1));
    assert_eq!(h.counter(Counter::NdAdvertSent), 1);
    assert_eq!(
        h.counter(Counter::NdLearned),
        1,
        "solicitor learned from its SLLA"
    );
    // Our link-local address is answered too.
    let ll = "fe80::ff:fe00:101"; // EUI-64 of 02:00:00:00:01:01
    h.inject(
        0,
        nd(
            135,
            H1,
            "33:33:ff:00:01:01",
            "fe80::2",
            "ff02::1:ff00:101",
            ll,
            0,
            255,
        ),
    );
    assert_eq!(h.out(0).len(), 1);
    // Hop limit other than 255 is refused (RFC 4861).
    h.inject(
        0,
        nd(
            135,
            H1,
            "33:33:ff:00:00:01",
            "2001:db8:1::2",
            "ff02::1:ff00:1",
            "2001:db8:1::1",
            0,
            64,
        ),
    );
    assert_eq!(h.counter(Counter::NdMalformed), 1);
    // Solicitations for someone else are not answered.
    h.inject(
        0,
        nd(
            135,
            H1,
            "33:33:ff:00:00:09",
            "2001:db8:1::2",
            "ff02::1:ff00:9",
            "2001:db8:1::9",
            0,
            255,
        ),
    );
    assert_eq!(h.counter(Counter::NdNotForUs), 1);
}

#[test]
fn forwarding_decrements_hop_limit() {
    let mut h = Harness::new(&cfg());
    let input = udp6(H1, R1, "2001:db8:1::2", "2001:db8:100::7", 64, 30);
    h.inject(0, input.clone());
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(H2));
    assert_eq!(&out[0][6..12], &mac(R2));
    assert_eq!(out[0][14 + 7], 63);
    assert_eq!(&out[0][14 + 8..], &input[14 + 8..]);
    decode(&out[0]);
}

#[test]
fn hop_limit_expiry_and_no_route_send_icmpv6_errors() {
    let mut h = Harness::new(&cfg());
    learn_h1(&mut h);
    h.inject(0, udp6(H1, R1, "2001:db8:1::2", "2001:db8:100::7", 1, 30));
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    assert!(matches!(
        icmp6(&out[0]).icmp_type(),
        Icmpv6Type::TimeExceeded(_)
    ));
    h.inject(0, udp6(H1, R1, "2001:db8:1::2", "2001:db8:99::1", 64, 30));
    let out = h.out(0);
    assert!(matches!(
        icmp6(&out[0]).icmp_type(),
        Icmpv6Type::DestinationUnreachable(_)
    ));
    assert_eq!(h.counter(Counter::Ip6HopLimitExpired), 1);
    assert_eq!(h.counter(Counter::Ip6NoRoute), 1);
}

#[test]
fn too_big_packet_gets_packet_too_big_with_mtu() {
    let mut h = Harness::new(&cfg());
    learn_h1(&mut h);
    h.inject(
        0,
        udp6(H1, R1, "2001:db8:1::2", "2001:db8:100::7", 64, 1400),
    );
    assert_eq!(h.out(1).len(), 0);
    let out = h.out(0);
    match icmp6(&out[0]).icmp_type() {
        Icmpv6Type::PacketTooBig { mtu } => assert_eq!(mtu, 1400),
        t => panic!("{t:?}"),
    }
    assert!(out[0].len() <= 14 + 1280);
    assert_eq!(h.counter(Counter::Ip6MtuExceeded), 1);
}

#[test]
fn echo_request_is_answered() {
    let mut h = Harness::new(&cfg());
    learn_h1(&mut h);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(H1), mac(R1))
        .ipv6(a("2001:db8:1::2"), a("2001:db8:1::1"), 64)
        .icmpv6_echo_request(3, 4)
        .write(&mut v, b"ping6")
        .unwrap();
    h.inject(0, v);
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    match icmp6(&out[0]).icmp_type() {
        Icmpv6Type::EchoReply(e) => assert_eq!((e.id, e.seq), (3, 4)),
        t => panic!("{t:?}"),
    }
    assert_eq!(h.counter(Counter::Ip6EchoReply), 1);
}

#[test]
fn glean_sends_solicitation_and_forwards_after_advertisement() {
    let mut h = Harness::new(&cfg());
    h.inject(1, udp6(H2, R2, "2001:db8:2::2", "2001:db8:1::50", 64, 10));
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    let icmp = icmp6(&out[0]);
    assert_eq!(icmp.type_u8(), 135);
    let p = decode(&out[0]);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        ip.header().destination(),
        a("ff02::1:ff00:50"),
        "solicited-node group"
    );
    assert_eq!(&out[0][0..6], &mac("33:33:ff:00:00:50"));
    assert_eq!(&icmp.slice()[8..24], &a("2001:db8:1::50"));
    let h50 = "02:00:00:00:01:50";
    h.inject(
        0,
        nd(
            136,
            h50,
            R1,
            "2001:db8:1::50",
            "2001:db8:1::1",
            "2001:db8:1::50",
            0x60,
            255,
        ),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1, "held packet released");
    assert_eq!(&out[0][0..6], &mac(h50));
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn link_local_destinations_are_not_forwarded() {
    let mut h = Harness::new(&cfg());
    h.inject(0, udp6(H1, R1, "2001:db8:1::2", "fe80::99", 64, 10));
    assert_eq!(h.out(1).len(), 0);
    assert_eq!(h.counter(Counter::Ip6NoRoute), 1);
    h.inject(0, udp6(H1, R1, "fe80::2", "2001:db8:100::7", 64, 10));
    assert_eq!(h.counter(Counter::Ip6BadSource), 1);
}

#[test]
fn bad_ipv6_headers_are_counted() {
    let mut h = Harness::new(&cfg());
    let good = udp6(H1, R1, "2001:db8:1::2", "2001:db8:100::7", 64, 30);
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x40;
    let mut long = good.clone();
    long[18..20].copy_from_slice(&3000u16.to_be_bytes());
    let short = good[..40].to_vec();
    let mut mcast_src = good.clone();
    mcast_src[22] = 0xff;
    for f in [bad_ver, long, short, mcast_src] {
        h.inject(0, f);
    }
    assert_eq!(h.counter(Counter::Ip6BadVersion), 1);
    assert_eq!(h.counter(Counter::Ip6Truncated), 2);
    assert_eq!(h.counter(Counter::Ip6BadSource), 1);
    assert_eq!(h.out(1).len(), 0);
}
