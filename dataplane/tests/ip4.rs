//! IPv4 routing through the real pipeline, with replies decoded by
//! etherparse: ARP, forwarding, TTL, ICMP errors, glean, ECMP, local delivery,
//! bad headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder};
use vrouter_dataplane::graph::Counter;

const H3: &str = "02:00:00:00:02:03"; // second gateway on net2

fn cfg() -> String {
    "[dataplane]\nglean-timeout-ms = 200\nicmp-burst = 1000\n".to_string()
        + &two_nets(Some(1400), &["198.18.1.1/24"], &["198.18.2.1/24"])
        + &neighbor("net2", "198.18.2.2", H2)
        + &neighbor("net2", "198.18.2.3", H3)
        + r#"[[route]]
prefix = "198.19.0.0/16"
via = ["198.18.2.2", "198.18.2.3"]
[[route]]
prefix = "198.19.255.0/24"
action = "drop"
"#
}

fn udp(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    sport: u16,
    payload: usize,
) -> Vec<u8> {
    udp4(
        src_mac,
        dst_mac,
        src,
        dst,
        ttl,
        sport,
        9,
        &vec![0xab; payload],
    )
}

fn arp(op: u16, sha: &str, spa: [u8; 4], tha: &str, tpa: [u8; 4], eth_dst: &str) -> Vec<u8> {
    pad60(common::arp(op, mac(eth_dst), mac(sha), spa, mac(tha), tpa))
}

#[test]
fn arp_request_for_router_gets_reply_and_sender_is_learned() {
    let mut h = Harness::new(&cfg());
    h.inject(
        0,
        arp(
            1,
            H1,
            [198, 18, 1, 2],
            "00:00:00:00:00:00",
            [198, 18, 1, 1],
            "ff:ff:ff:ff:ff:ff",
        ),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.len(), 42, "padding stripped");
    assert_eq!(&r[0..6], &mac(H1));
    assert_eq!(&r[6..12], &mac(R1));
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0, 2], "reply");
    assert_eq!(&r[22..28], &mac(R1));
    assert_eq!(&r[28..32], &[198, 18, 1, 1]);
    assert_eq!(&r[32..38], &mac(H1));
    assert_eq!(&r[38..42], &[198, 18, 1, 2]);
    assert_eq!(h.counter(Counter::ArpReplySent), 1);
    // The sender became a neighbour with a host route: traffic to it goes straight out.
    h.inject(
        1,
        udp(H2, R2, [198, 18, 2, 2], [198, 18, 1, 2], 64, 1000, 20),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(H1));
    assert_eq!(h.counter(Counter::GleanQueued), 0);
    // Requests for other hosts are not answered.
    h.inject(
        0,
        arp(
            1,
            H1,
            [198, 18, 1, 2],
            "00:00:00:00:00:00",
            [198, 18, 1, 9],
            "ff:ff:ff:ff:ff:ff",
        ),
    );
    assert_eq!(h.out(0).len(), 0);
    assert_eq!(h.counter(Counter::ArpNotForUs), 1);
}

#[test]
fn forwarding_decrements_ttl_and_rewrites_macs() {
    let mut h = Harness::new(&cfg());
    let input = udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 64, 1000, 18);
    h.inject(0, input.clone());
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    let p = decode(&out[0]);
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!()
    };
    assert_eq!(eth.source(), mac(R2));
    assert_eq!(eth.destination(), mac(H2));
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().ttl(), 63);
    assert_eq!(ip.header().destination(), [198, 18, 2, 2]);
    // Everything after the Ethernet header but TTL and checksum is unchanged.
    assert_eq!(&out[0][14 + 12..], &input[14 + 12..]);
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn ttl_expiry_sends_time_exceeded_from_ingress_address() {
    let mut h = Harness::new(&cfg());
    h.inject(
        0,
        udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 1, 1000, 18),
    );
    h.inject(
        0,
        udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 0, 1000, 18),
    );
    assert_eq!(h.out(1).len(), 0);
    assert_eq!(h.counter(Counter::Ip4TtlExpired), 2, "TTL 1 and TTL 0");
    // The error goes back towards 198.18.1.2, which must be resolved first.
    let out = h.out(0);
    assert_eq!(out.len(), 1, "ARP request for the sender");
    assert_eq!(&out[0][12..14], &[0x08, 0x06]);
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    let out = h.out(0);
    assert_eq!(
        out.len(),
        2,
        "held errors released after ARP reply\n{}",
        h.report()
    );
    let icmp = icmp4(&out[0]);
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    let p = decode(&out[0]);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [198, 18, 1, 1]);
    assert_eq!(ip.header().destination(), [198, 18, 1, 2]);
    // The quote starts with the original IP header.
    assert_eq!(&icmp.payload()[12..20], &[198, 18, 1, 2, 198, 18, 2, 2]);
    assert_eq!(h.counter(Counter::Icmp4ErrorSent), 2);
}

#[test]
fn no_route_sends_unreachable_and_blackhole_is_silent() {
    let mut h = Harness::new(&cfg());
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    h.inject(
        0,
        udp(H1, R1, [198, 18, 1, 2], [203, 0, 113, 1], 64, 1000, 18),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    match icmp4(&out[0]).icmp_type() {
        Icmpv4Type::DestinationUnreachable(h) => assert_eq!(h.code_u8(), 0, "net unreachable"),
        t => panic!("{t:?}"),
    }
    h.inject(
        0,
        udp(H1, R1, [198, 18, 1, 2], [198, 19, 255, 7], 64, 1000, 18),
    );
    assert_eq!(h.out(0).len() + h.out(1).len(), 0);
    assert_eq!(h.counter(Counter::Ip4Blackhole), 1);
    assert_eq!(h.counter(Counter::Ip4NoRoute), 1);
}

#[test]
fn mtu_exceeded_with_df_sends_frag_needed_without_df_drops() {
    let mut h = Harness::new(&cfg());
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    // net2 has MTU 1400: 1450-byte IP packet. etherparse sets DF by default.
    h.inject(
        0,
        udp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 18, 2, 2],
            64,
            1000,
            1450 - 28,
        ),
    );
    assert_eq!(h.out(1).len(), 0);
    let out = h.out(0);
    match icmp4(&out[0]).icmp_type() {
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
        ) => assert_eq!(next_hop_mtu, 1400),
        t => panic!("{t:?}"),
    }
    assert!(out[0].len() <= 14 + 576, "quote bounded by 576 bytes");
    let mut no_df = udp(
        H1,
        R1,
        [198, 18, 1, 2],
        [198, 18, 2, 2],
        64,
        1000,
        1450 - 28,
    );
    no_df[20] &= !0x40;
    let c = vrouter_wire::checksum::checksum(&{
        let mut hdr = no_df[14..34].to_vec();
        hdr[10] = 0;
        hdr[11] = 0;
        hdr
    });
    no_df[24..26].copy_from_slice(&c.to_be_bytes());
    h.inject(0, no_df);
    assert_eq!(h.counter(Counter::Ip4FragmentNeeded), 1);
    // Exactly the MTU passes.
    h.inject(
        0,
        udp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 18, 2, 2],
            64,
            1000,
            1400 - 28,
        ),
    );
    assert_eq!(h.out(1).len(), 1);
}

#[test]
fn echo_request_to_router_is_answered() {
    let mut h = Harness::new(&cfg());
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(H1), mac(R1))
        .ipv4([198, 18, 1, 2], [198, 18, 2, 1], 64) // the router's address on the other interface
        .icmpv4_echo_request(7, 9)
        .write(&mut v, b"hello router")
        .unwrap();
    h.inject(0, v);
    let out = h.out(0);
    assert_eq!(out.len(), 1, "{}", h.report());
    let icmp = icmp4(&out[0]);
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (7, 9)),
        t => panic!("{t:?}"),
    }
    assert_eq!(icmp.payload(), b"hello router");
    let p = decode(&out[0]);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [198, 18, 2, 1]);
    assert_eq!(h.counter(Counter::Ip4EchoReply), 1);
}

#[test]
fn udp_to_router_gets_port_unreachable() {
    let mut h = Harness::new(&cfg());
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    h.inject(
        0,
        udp(H1, R1, [198, 18, 1, 2], [198, 18, 1, 1], 64, 33434, 10),
    );
    let out = h.out(0);
    match icmp4(&out[0]).icmp_type() {
        Icmpv4Type::DestinationUnreachable(h) => assert_eq!(h.code_u8(), 3),
        t => panic!("{t:?}"),
    }
}

#[test]
fn glean_resolves_then_forwards_held_packets_in_order() {
    let mut h = Harness::new(&cfg());
    for k in 0..3 {
        h.send(
            1,
            udp(H2, R2, [198, 18, 2, 2], [198, 18, 1, 50], 64, 2000 + k, 10),
        );
    }
    h.run();
    let out = h.out(0);
    assert_eq!(out.len(), 1, "one ARP request for three packets");
    assert_eq!(&out[0][0..6], &[0xff; 6]);
    assert_eq!(&out[0][38..42], &[198, 18, 1, 50]);
    assert_eq!(h.counter(Counter::GleanQueued), 3);
    h.inject(
        0,
        arp(
            2,
            "02:00:00:00:01:50",
            [198, 18, 1, 50],
            R1,
            [198, 18, 1, 1],
            R1,
        ),
    );
    let out = h.out(0);
    assert_eq!(out.len(), 3);
    for (k, f) in out.iter().enumerate() {
        assert_eq!(&f[0..6], &mac("02:00:00:00:01:50"));
        assert_eq!(
            u16::from_be_bytes([f[34], f[35]]),
            2000 + k as u16,
            "order kept"
        );
    }
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn glean_times_out_and_counts() {
    let mut h = Harness::new(&cfg());
    h.inject(
        1,
        udp(H2, R2, [198, 18, 2, 2], [198, 18, 1, 60], 64, 2000, 10),
    );
    std::thread::sleep(std::time::Duration::from_millis(250));
    for _ in 0..3 {
        h.run();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(h.counter(Counter::GleanTimeout), 1);
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn ecmp_spreads_flows_and_keeps_each_flow_on_one_path() {
    let mut h = Harness::new(&cfg());
    let mut per_gw = std::collections::HashMap::new();
    for flow in 0..64u16 {
        for _ in 0..3 {
            h.send(
                0,
                udp(
                    H1,
                    R1,
                    [198, 18, 1, 2],
                    [198, 19, 0, 1],
                    64,
                    1000 + flow,
                    10,
                ),
            );
        }
        h.run();
        let out = h.out(1);
        assert_eq!(out.len(), 3);
        let gws: std::collections::HashSet<_> = out.iter().map(|f| f[0..6].to_vec()).collect();
        assert_eq!(gws.len(), 1, "one flow, one path");
        *per_gw.entry(gws.into_iter().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(per_gw.len(), 2, "both gateways used");
    assert!(per_gw.values().all(|&n| n >= 16), "{per_gw:?}");
    assert!(per_gw.contains_key(&mac(H2)[..]) && per_gw.contains_key(&mac(H3)[..]));
}

#[test]
fn bad_headers_are_dropped_with_their_reason() {
    let mut h = Harness::new(&cfg());
    let good = udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 64, 1000, 18);
    let mut bad_csum = good.clone();
    bad_csum[24] ^= 0xff;
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x65;
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let truncated = good[..30].to_vec();
    let mut martian = udp(H1, R1, [127, 0, 0, 1], [198, 18, 2, 2], 64, 1000, 18);
    martian.truncate(martian.len());
    for f in [
        bad_csum,
        bad_ver,
        bad_ihl,
        long_total,
        short_total,
        truncated,
        martian,
    ] {
        h.inject(0, f);
    }
    assert_eq!(h.out(1).len(), 0);
    assert_eq!(h.counter(Counter::Ip4BadChecksum), 1);
    assert_eq!(h.counter(Counter::Ip4BadVersion), 1);
    assert_eq!(h.counter(Counter::Ip4BadIhl), 1);
    assert_eq!(h.counter(Counter::Ip4Truncated), 2);
    assert_eq!(h.counter(Counter::Ip4BadLength), 1);
    assert_eq!(h.counter(Counter::Ip4BadSource), 1);
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn fragments_are_forwarded_but_not_delivered_locally() {
    let mut h = Harness::new(&cfg());
    let mut frag = udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 64, 1000, 18);
    frag[20] = 0x20; // MF
    frag[24] = 0;
    frag[25] = 0;
    let c = vrouter_wire::checksum::checksum(&frag[14..34]);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    h.inject(0, frag.clone());
    assert_eq!(h.out(1).len(), 1, "routers forward fragments as they are");
    frag[30..34].copy_from_slice(&[198, 18, 1, 1]);
    frag[24] = 0;
    frag[25] = 0;
    let c = vrouter_wire::checksum::checksum(&frag[14..34]);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    h.inject(0, frag);
    assert_eq!(h.counter(Counter::Ip4LocalFragment), 1);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut h = Harness::new(&cfg().replace("icmp-burst = 1000", "icmp-burst = 5\nicmp-rate = 1"));
    h.inject(0, arp(2, H1, [198, 18, 1, 2], R1, [198, 18, 1, 1], R1));
    for _ in 0..20 {
        h.send(
            0,
            udp(H1, R1, [198, 18, 1, 2], [198, 18, 2, 2], 1, 1000, 18),
        );
    }
    h.run();
    assert_eq!(h.out(0).len(), 5);
    assert_eq!(h.counter(Counter::Icmp4RateLimited), 15);
    assert_eq!(h.counter(Counter::Ip4TtlExpired), 20);
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut h = Harness::new(&cfg());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(H1), mac(R1))
        .ipv4([198, 18, 1, 2], [198, 18, 2, 2], 1)
        .icmpv4(Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut v, &[0x45; 28])
        .unwrap();
    h.inject(0, v);
    assert_eq!(h.counter(Counter::Icmp4ErrorSuppressed), 1);
    assert_eq!(h.out(0).len(), 0);
}
