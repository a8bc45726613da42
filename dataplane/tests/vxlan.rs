//! VXLAN through the real pipeline: encapsulation checked byte by byte with
//! etherparse, decapsulation of crafted frames, the security boundary
//! (unknown VNI / VTEP, bad headers), VNI isolation, split horizon, the flow
//! hash in the source port, and the inner MTU (ICMP frag-needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vrouter_dataplane::graph::Counter;

const POD1: &str = "02:00:00:00:01:02"; // bridged pod on port 0
const POD2: &str = "02:00:00:00:02:02"; // routed pod on port 1
const UP: &str = "02:00:00:00:0a:01"; // router on the underlay (port 2)
const NODE_B: &str = "02:00:00:00:0a:02"; // remote VTEP 198.18.100.2
const NODE_C: &str = "02:00:00:00:0a:03"; // remote VTEP 198.18.100.3
const B_VX: &str = "02:00:00:00:0b:02"; // node B's VXLAN device (L3 VNI)
const REMOTE_POD: &str = "02:00:00:00:0c:01"; // a pod behind node B (L2 VNI)
const VNI1_MAC: &str = "02:76:78:00:00:01"; // our inner MAC of VNI 1 (default)

fn cfg() -> String {
    memory_ports(&[("pod1", R1, None), ("pod2", R2, None), ("uplink", UP, None)])
        + r#"[[bridge]]
name = "ov"
[[interface]]
name = "pod1"
bridge = "ov"
[[interface]]
name = "pod2"
addresses = ["198.19.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "uplink"
addresses = ["198.18.100.1/24"]
"# + &neighbor("uplink", "198.18.100.2", NODE_B)
        + &neighbor("uplink", "198.18.100.3", NODE_C)
        + &neighbor("pod2", "198.19.1.2", POD2)
        + &neighbor("pod2", "2001:db8:1::2", POD2)
        + &format!(
            r#"[[vtep]]
name = "vtep0"
local = "198.18.100.1"
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "ov"
flood = ["198.18.100.2", "198.18.100.3"]
remote-macs = [{{ mac = "02:00:00:00:0c:09", remote = "198.18.100.3", ip = "198.19.0.9" }}]
[[vni]]
vtep = "vtep0"
vni = 1
vrf = "default"
routes = [
  {{ prefix = "198.19.2.0/24", remote = "198.18.100.2", mac = "{B_VX}" }},
  {{ prefix = "2001:db8:2::/64", remote = "198.18.100.2", mac = "{B_VX}" }},
]
"#
        )
}

fn udp_frame(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    payload: usize,
) -> Vec<u8> {
    udp4(
        src_mac,
        dst_mac,
        src,
        dst,
        64,
        sport,
        9,
        &vec![0xab; payload],
    )
}

/// A VXLAN frame from remote VTEP `src` (a valid UDP checksum).
fn vxlan_frame(src: [u8; 4], vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![flags, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(NODE_B), mac(UP))
        .ipv4(src, [198, 18, 100, 1], 64)
        .udp(50000, 4789)
        .write(&mut v, &payload)
        .unwrap();
    v
}

/// What an encapsulated frame says: outer IPv4 dst, TTL, DF, UDP source
/// port, UDP checksum, VNI, and the inner frame.
struct Outer {
    eth_dst: [u8; 6],
    dst: [u8; 4],
    ttl: u8,
    df: bool,
    sport: u16,
    csum: u16,
    vni: u32,
    inner: Vec<u8>,
}

fn outer(frame: &[u8]) -> Outer {
    let p = decode(frame);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    assert_eq!(h.source(), [198, 18, 100, 1]);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(u.destination_port(), 4789);
    assert_eq!(usize::from(u.length()), 8 + u.payload().len());
    let vx = u.payload();
    assert_eq!(vx[0], 0x08, "I flag only");
    assert_eq!(&vx[1..4], &[0, 0, 0]);
    assert_eq!(vx[7], 0);
    Outer {
        eth_dst: frame[0..6].try_into().unwrap(),
        dst: h.destination(),
        ttl: h.ttl(),
        df: h.dont_fragment(),
        sport: u.source_port(),
        csum: u.checksum(),
        vni: u32::from_be_bytes([0, vx[4], vx[5], vx[6]]),
        inner: vx[8..].to_vec(),
    }
}

#[test]
fn broadcast_is_replicated_head_end_to_the_flood_list() {
    let mut h = Harness::new(&cfg());
    let f = udp_frame(
        POD1,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 1],
        [198, 19, 0, 255],
        1000,
        30,
    );
    h.inject(0, f.clone());
    let mut out: Vec<Outer> = h.out(2).iter().map(|f| outer(f)).collect();
    out.sort_by_key(|o| o.dst);
    assert_eq!(out.len(), 2);
    for (o, (dst, eth)) in out
        .iter()
        .zip([([198, 18, 100, 2], NODE_B), ([198, 18, 100, 3], NODE_C)])
    {
        assert_eq!(o.dst, dst);
        assert_eq!(o.eth_dst, mac(eth));
        assert_eq!(o.ttl, 64, "configured TTL on the wire");
        assert!(o.df);
        assert!((49152..=65535).contains(&o.sport), "{}", o.sport);
        assert_eq!(o.csum, 0, "UDP checksum zero over IPv4");
        assert_eq!(o.vni, 100);
        assert_eq!(o.inner, f, "inner frame unchanged");
    }
    assert_eq!(out[0].sport, out[1].sport, "one flow, one source port");
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn decap_delivers_learns_the_remote_vtep_and_unicast_goes_back_to_it() {
    let mut h = Harness::new(&cfg());
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner));
    assert_eq!(h.out(0), vec![inner.clone()], "inner frame to the pod");
    assert_eq!(h.counter(Counter::L2Learned), 1);
    // The reply is unicast to node B only (the learned MAC → tunnel).
    let reply = udp_frame(POD1, REMOTE_POD, [198, 19, 0, 1], [198, 19, 0, 9], 9, 20);
    h.inject(0, reply.clone());
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    let o = outer(&out[0]);
    assert_eq!((o.dst, o.vni, o.inner), ([198, 18, 100, 2], 100, reply));
    let r = h.report();
    assert!(r.contains("vxlan100-198.18.100.2"), "{r}");
}

#[test]
fn frames_from_the_overlay_are_not_flooded_back_into_it() {
    let mut h = Harness::new(&cfg());
    let inner = udp_frame(
        REMOTE_POD,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 9],
        [198, 19, 0, 255],
        7,
        20,
    );
    h.inject(2, vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner));
    assert_eq!(h.out(0).len(), 1, "to the local pod");
    assert!(h.out(2).is_empty(), "never to node C or back to node B");
}

#[test]
fn unknown_vni_vtep_and_bad_headers_are_dropped_and_counted() {
    let mut h = Harness::new(&cfg());
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 200, 0x08, &inner));
    assert_eq!(h.counter(Counter::VxlanUnknownVni), 1);
    h.inject(2, vxlan_frame([198, 18, 100, 9], 100, 0x08, &inner));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 1);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 100, 0x00, &inner));
    assert_eq!(h.counter(Counter::VxlanBadHeader), 1);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner[..10]));
    assert_eq!(h.counter(Counter::VxlanBadHeader), 2);
    let mut bad = vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    h.inject(2, bad);
    assert_eq!(h.counter(Counter::VxlanBadChecksum), 1);
    // VNI isolation: node B is a VTEP of VNI 1 too, but a frame of VNI 1
    // never reaches bridge `ov` (here: not addressed to VNI 1's MAC).
    h.inject(2, vxlan_frame([198, 18, 100, 2], 1, 0x08, &inner));
    assert_eq!(h.counter(Counter::VxlanNotForUs), 1);
    // Node C is in VNI 100's flood list, but not a VTEP of VNI 1.
    h.inject(2, vxlan_frame([198, 18, 100, 3], 1, 0x08, &inner));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 2);
    assert!(h.out(0).is_empty(), "nothing reached the pod");
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::L2Learned), 0);
    assert_eq!(h.frames_in_use(), 0);
}

/// Rewrites the outer IPv4 header checksum of a frame after a change.
fn fix_ip_checksum(f: &mut [u8]) {
    f[24..26].fill(0);
    let mut s: u32 = f[14..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
}

/// Every named counter and every interface's figures, to compare two runs.
fn figures(h: &Harness) -> Vec<u64> {
    let links = h.router.shared().worker_links();
    let mut v: Vec<u64> = Counter::ALL
        .iter()
        .map(|&c| vrouter_dataplane::report::counter(&links, c))
        .collect();
    for i in 0..h.router.tables().ifaces.len() as u16 {
        let c = vrouter_dataplane::report::iface(&links, i);
        v.extend([c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes, c.drops]);
    }
    v
}

/// `vxlan4-input`'s one-pass fast path takes frames with a zero UDP
/// checksum (what Linux sends); those with one take the general path. Both
/// must decide alike: the same frames, once with a valid checksum and once
/// with none, give the same output on every port, the same counters and the
/// same per-interface (per-tunnel) figures: good frames, unknown VNI,
/// unknown VTEP, VNI isolation, bad flags and lengths, inner VLAN tags,
/// fragments, and the L3 VNI.
#[test]
fn decap_fast_path_decides_as_the_general_path() {
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    let bcast = udp_frame(
        REMOTE_POD,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 9],
        [198, 19, 0, 255],
        7,
        20,
    );
    let mut vlan = inner.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    let routed = udp_frame(B_VX, VNI1_MAC, [198, 19, 2, 5], [198, 19, 1, 2], 7, 20);
    let b = [198, 18, 100, 2];
    let c = [198, 18, 100, 3];
    let mut frames = vec![
        vxlan_frame(b, 100, 0x08, &inner),
        vxlan_frame(c, 100, 0x08, &inner),
        vxlan_frame(b, 100, 0x08, &bcast),
        vxlan_frame(b, 200, 0x08, &inner),
        vxlan_frame([198, 18, 100, 9], 100, 0x08, &inner),
        vxlan_frame(b, 100, 0x00, &inner),
        vxlan_frame(b, 100, 0x08, &inner[..10]),
        vxlan_frame(b, 100, 0x08, &vlan),
        vxlan_frame(b, 1, 0x08, &inner),
        vxlan_frame(c, 1, 0x08, &inner),
        vxlan_frame(b, 1, 0x08, &routed),
    ];
    // A first fragment (MF), and one with Ethernet padding.
    let mut mf = vxlan_frame(b, 100, 0x08, &inner);
    mf[20] |= 0x20;
    fix_ip_checksum(&mut mf);
    frames.push(mf);
    let mut padded = vxlan_frame(b, 100, 0x08, &inner);
    padded.extend_from_slice(&[0; 6]);
    frames.push(padded);
    // A UDP length that disagrees with the IP total length.
    let mut ulen = vxlan_frame(b, 100, 0x08, &inner);
    ulen[39] -= 1;
    frames.push(ulen);
    let (mut slow, mut fast) = (Harness::new(&cfg()), Harness::new(&cfg()));
    for (k, f) in frames.into_iter().enumerate() {
        let mut z = f.clone();
        z[40..42].fill(0);
        slow.inject(2, f);
        fast.inject(2, z);
        for port in 0..3 {
            assert_eq!(slow.out(port), fast.out(port), "frame {k}, port {port}");
        }
        assert_eq!(figures(&slow), figures(&fast), "frame {k}");
    }
    assert_eq!(fast.counter(Counter::L2Learned), 1);
    assert_eq!(fast.counter(Counter::VxlanUnknownVni), 1);
    assert_eq!(fast.counter(Counter::VxlanUnknownVtep), 2);
    assert_eq!(fast.counter(Counter::VxlanNotForUs), 1);
    assert_eq!(fast.counter(Counter::VxlanInnerVlan), 1);
    assert_eq!(fast.counter(Counter::VxlanBadHeader), 3);
    assert_eq!(fast.counter(Counter::VxlanBadChecksum), 0);
    assert_eq!(fast.frames_in_use(), 0);
}

/// Routed packets into the overlay go from `ip4-rewrite` straight to
/// `vxlan4-encap`, and are still counted as sent on their tunnel.
#[test]
fn routed_packets_into_a_tunnel_are_counted_on_it() {
    let mut h = Harness::new(&cfg());
    let tunnel = h
        .router
        .tables()
        .ifaces
        .iter()
        .position(|f| f.name == "vxlan1-198.18.100.2")
        .expect("the VNI 1 tunnel to node B") as u16;
    for sport in 0..5 {
        h.inject(
            1,
            udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], sport, 20),
        );
    }
    assert_eq!(h.out(2).len(), 5);
    let c = vrouter_dataplane::report::iface(&h.router.shared().worker_links(), tunnel);
    assert_eq!((c.tx_packets, c.tx_bytes), (5, 5 * (14 + 20 + 8 + 20)));
}

/// The fast path (`ethernet-input` straight to `vxlan4-input` on the VTEP's
/// interface) checks the outer IPv4 header as `ip4-input` does: what it
/// does not take goes to `ip4-input`, with the same counters as before.
#[test]
fn outer_ipv4_errors_on_the_vtep_interface_are_counted_as_ip4_input_does() {
    let mut h = Harness::new(&cfg());
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    let mut bad = vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner);
    bad[14 + 10] ^= 0x01;
    h.inject(2, bad);
    assert_eq!(h.counter(Counter::Ip4BadChecksum), 1);
    h.inject(2, vxlan_frame([127, 0, 0, 1], 100, 0x08, &inner));
    assert_eq!(h.counter(Counter::Ip4BadSource), 1);
    let mut short = vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner);
    short.truncate(short.len() - 1);
    h.inject(2, short);
    assert_eq!(h.counter(Counter::Ip4Truncated), 1);
    assert!(h.out(0).is_empty(), "nothing reached the pod");
    assert_eq!(h.counter(Counter::L2Learned), 0);
    // Ethernet padding after the outer packet is trimmed, not delivered.
    let mut padded = vxlan_frame([198, 18, 100, 2], 100, 0x08, &inner);
    padded.extend_from_slice(&[0; 6]);
    h.inject(2, padded);
    assert_eq!(h.out(0), vec![inner], "inner frame to the pod");
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn l3_overlay_routes_into_the_tunnel_with_flow_hashed_source_ports() {
    let mut h = Harness::new(&cfg());
    let mut ports = std::collections::HashSet::new();
    for sport in 1000..1032 {
        h.inject(
            1,
            udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], sport, 20),
        );
        let out = h.out(2);
        assert_eq!(out.len(), 1);
        let o = outer(&out[0]);
        assert_eq!((o.dst, o.vni), ([198, 18, 100, 2], 1));
        assert_eq!(
            &o.inner[0..6],
            &mac(B_VX),
            "inner dst: node B's VXLAN device"
        );
        assert_eq!(&o.inner[6..12], &mac(VNI1_MAC));
        let inner = SlicedPacket::from_ethernet(&o.inner).unwrap();
        let Some(NetSlice::Ipv4(ip)) = inner.net else {
            panic!()
        };
        assert_eq!(ip.header().ttl(), 63, "inner TTL decremented once");
        ports.insert(o.sport);
    }
    assert!(ports.len() > 8, "source ports: {ports:?}");
    // The same flow keeps its port.
    h.inject(
        1,
        udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 20),
    );
    h.inject(
        1,
        udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 20),
    );
    let out = h.out(2);
    assert_eq!(outer(&out[0]).sport, outer(&out[1]).sport);
}

#[test]
fn l3_overlay_decap_routes_to_the_pod() {
    let mut h = Harness::new(&cfg());
    let inner = udp_frame(B_VX, VNI1_MAC, [198, 19, 2, 5], [198, 19, 1, 2], 7, 20);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 1, 0x08, &inner));
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(POD2));
    let p = decode(&out[0]);
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [198, 19, 2, 5]);
    assert_eq!(ip.header().ttl(), 63);
}

#[test]
fn oversized_df_packet_into_the_overlay_gets_frag_needed_with_the_inner_mtu() {
    let mut h = Harness::new(&cfg());
    // 1500-byte IP packet; the inner MTU is 1500 - 50.
    let mut f = udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 1472);
    f[20] |= 0x40; // DF
    f[24..26].fill(0);
    let c = etherparse::Ipv4HeaderSlice::from_slice(&f[14..34])
        .unwrap()
        .to_header()
        .calc_header_checksum();
    f[24..26].copy_from_slice(&c.to_be_bytes());
    h.inject(1, f);
    assert!(h.out(2).is_empty());
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    let icmp = icmp4(&out[0]);
    match icmp.icmp_type() {
        Icmpv4Type::DestinationUnreachable(d) => {
            assert_eq!(
                d,
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1450
                }
            )
        }
        t => panic!("{t:?}"),
    }
    assert_eq!(h.counter(Counter::Ip4MtuExceeded), 1);
    // 1450 bytes pass.
    h.inject(
        1,
        udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 1422),
    );
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 14 + 1450 + 50);
}

#[test]
fn bad_vxlan_config_is_refused_with_the_key() {
    let bad = cfg()
        .replace("local = \"198.18.100.1\"", "local = \"198.18.100.7\"")
        .replace("vni = 100\n", "vni = 16777216\n");
    let e = vrouter_dataplane::config::Config::parse("t.toml", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml: vtep[0].local: 198.18.100.7 is not an address of a routed interface"),
        "{e}"
    );
    assert!(
        e.contains("t.toml: vni[0].vni: 16777216 is out of range"),
        "{e}"
    );
    let both = cfg().replace(
        "bridge = \"ov\"\nflood",
        "bridge = \"ov\"\nvrf = \"default\"\nflood",
    );
    let e = vrouter_dataplane::config::Config::parse("t.toml", &both)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vni[0]: a VNI is bound to exactly one of"),
        "{e}"
    );
}

#[test]
fn flood_list_and_remote_macs_change_at_run_time() {
    let mut h = Harness::new(&cfg());
    let d: std::net::IpAddr = "198.18.100.4".parse().unwrap();
    let c: std::net::IpAddr = "198.18.100.3".parse().unwrap();
    h.router
        .set_neighbor(2, d, "02:00:00:00:0a:04".parse().unwrap(), true)
        .unwrap();
    assert!(h.router.vxlan_flood_add("vtep0", 100, d).unwrap());
    assert!(
        !h.router.vxlan_flood_add("vtep0", 100, d).unwrap(),
        "already there"
    );
    // C stays accepted while a static remote MAC points to it.
    let pinned: vrouter_wire::MacAddr = "02:00:00:00:0c:09".parse().unwrap();
    h.router.vxlan_flood_del("vtep0", 100, c).unwrap();
    assert!(
        h.router
            .vxlan_tunnels()
            .iter()
            .any(|t| t.remote == c && t.accepted && !t.flood)
    );
    h.router.vxlan_flood_add("vtep0", 100, c).unwrap();
    h.router.vxlan_mac_del("vtep0", 100, pinned, c).unwrap();
    h.router.vxlan_flood_del("vtep0", 100, c).unwrap();
    h.router.commit();
    let bcast = udp_frame(
        POD1,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 1],
        [198, 19, 0, 255],
        1000,
        30,
    );
    h.inject(0, bcast);
    let mut dsts: Vec<[u8; 4]> = h.out(2).iter().map(|f| outer(f).dst).collect();
    dsts.sort();
    assert_eq!(dsts, vec![[198, 18, 100, 2], [198, 18, 100, 4]]);
    // Node C is no longer accepted; node D is.
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    h.inject(2, vxlan_frame([198, 18, 100, 3], 100, 0x08, &inner));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 1);
    h.inject(2, vxlan_frame([198, 18, 100, 4], 100, 0x08, &inner));
    assert_eq!(h.out(0).len(), 1);
    // A static remote MAC sends unicast to its VTEP (no learning needed).
    let m: vrouter_wire::MacAddr = "02:00:00:00:0d:01".parse().unwrap();
    h.router.vxlan_mac_add("vtep0", 100, m, d, None).unwrap();
    h.router.commit();
    h.inject(
        0,
        udp_frame(
            POD1,
            "02:00:00:00:0d:01",
            [198, 19, 0, 1],
            [198, 19, 0, 7],
            1,
            20,
        ),
    );
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    assert_eq!(outer(&out[0]).dst, [198, 18, 100, 4]);
    assert!(
        h.router.vxlan_mac_add("vtep0", 100, m, c, None).is_err(),
        "C is not a remote any more"
    );
    h.router.vxlan_mac_del("vtep0", 100, m, d).unwrap();
    assert!(h.router.vxlan_mac_del("vtep0", 100, m, d).is_err());
    assert!(
        h.router.vxlan_flood_add("vtep0", 1, d).is_err(),
        "L3 VNI has no flood list"
    );
    assert!(h.router.vxlan_flood_add("vtep0", 7, d).is_err(), "no VNI 7");
}

fn arp_request(sha: &str, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(1, [0xff; 6], mac(sha), spa, [0; 6], tpa)
}

#[test]
fn arp_for_a_known_remote_endpoint_is_answered_locally() {
    let mut h = Harness::new(&cfg());
    h.inject(0, arp_request(POD1, [198, 19, 0, 1], [198, 19, 0, 9]));
    assert!(h.out(2).is_empty(), "not replicated into the overlay");
    let out = h.out(0);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(&r[0..6], &mac(POD1));
    assert_eq!(&r[6..12], &mac("02:00:00:00:0c:09"));
    assert_eq!(&r[20..22], &[0, 2], "reply");
    assert_eq!(&r[22..28], &mac("02:00:00:00:0c:09"));
    assert_eq!(&r[28..32], &[198, 19, 0, 9]);
    assert_eq!(&r[32..38], &mac(POD1));
    assert_eq!(&r[38..42], &[198, 19, 0, 1]);
    assert_eq!(h.counter(Counter::VxlanArpSuppressed), 1);
    // An unknown target floods to the remote VTEPs as usual.
    h.inject(0, arp_request(POD1, [198, 19, 0, 1], [198, 19, 0, 8]));
    assert_eq!(h.out(2).len(), 2);
    // Requests from the overlay are not answered here.
    let req = arp_request(REMOTE_POD, [198, 19, 0, 7], [198, 19, 0, 9]);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 100, 0x08, &req));
    assert_eq!(h.out(0), vec![req]);
    assert!(h.out(2).is_empty());
    assert_eq!(h.counter(Counter::VxlanArpSuppressed), 1);
}

#[test]
fn ipv6_inner_over_the_l3_overlay_and_packet_too_big() {
    let mut h = Harness::new(&cfg());
    let frame = |payload: usize| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac(POD2), mac(R2))
            .ipv6(
                "2001:db8:1::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8:2::5"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                64,
            )
            .udp(1000, 9)
            .write(&mut v, &vec![0xab; payload])
            .unwrap();
        v
    };
    h.inject(1, frame(100));
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    let o = outer(&out[0]);
    assert_eq!((o.dst, o.vni), ([198, 18, 100, 2], 1));
    assert_eq!(&o.inner[12..14], &[0x86, 0xdd]);
    assert_eq!(o.inner[14 + 7], 63, "inner hop limit decremented");
    // 1500-byte IPv6 packet: packet too big, MTU 1450.
    h.inject(1, frame(1500 - 48));
    assert!(h.out(2).is_empty());
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    let icmp = icmp6(&out[0]);
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1450 }
    );
}

fn cfg6() -> String {
    memory_ports(&[("pod1", R1, None), ("uplink", UP, None)])
        + r#"[[bridge]]
name = "ov"
[[interface]]
name = "pod1"
bridge = "ov"
[[interface]]
name = "uplink"
addresses = ["2001:db8:100::1/64"]
"# + &neighbor("uplink", "2001:db8:100::2", NODE_B)
        + r#"[[vtep]]
name = "vtep6"
local = "2001:db8:100::1"
ttl = 10
dscp = 10
[[vni]]
vtep = "vtep6"
vni = 100
bridge = "ov"
flood = ["2001:db8:100::2"]
"#
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn vxlan6_frame(src: &str, vni: u32, inner: &[u8], zero_csum: bool) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(NODE_B), mac(UP))
        .ipv6(v6(src), v6("2001:db8:100::1"), 64)
        .udp(50000, 4789)
        .write(&mut v, &payload)
        .unwrap();
    if zero_csum {
        v[14 + 40 + 6..14 + 40 + 8].fill(0);
    }
    v
}

#[test]
fn ipv6_underlay_encap_has_a_valid_udp_checksum_and_decap_checks_it() {
    let mut h = Harness::new(&cfg6());
    assert_eq!(
        h.router.tables().vxlan.vteps[0].inner_mtu,
        1430,
        "1500 - 70"
    );
    let f = udp_frame(
        POD1,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 1],
        [198, 19, 0, 255],
        1000,
        30,
    );
    h.inject(0, f.clone());
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    let p = decode(&out[0]);
    assert_eq!(&out[0][0..6], &mac(NODE_B));
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    let ih = ip.header().to_header();
    assert_eq!(ih.source, v6("2001:db8:100::1"));
    assert_eq!(ih.destination, v6("2001:db8:100::2"));
    assert_eq!(ih.hop_limit, 10);
    assert_eq!(ih.traffic_class, 10 << 2, "fixed DSCP");
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(u.destination_port(), 4789);
    assert!((49152..=65535).contains(&u.source_port()));
    assert_ne!(u.checksum(), 0);
    assert_eq!(
        u.to_header().calc_checksum_ipv6(&ih, u.payload()).unwrap(),
        u.checksum(),
        "UDP checksum over IPv6"
    );
    assert_eq!(&u.payload()[0..8], &[0x08, 0, 0, 0, 0, 0, 100, 0]);
    assert_eq!(&u.payload()[8..], &f[..]);
    // Decap: checksummed and zero-checksum packets are accepted, a wrong
    // checksum and an unknown VTEP are not.
    let inner = udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20);
    h.inject(1, vxlan6_frame("2001:db8:100::2", 100, &inner, false));
    h.inject(1, vxlan6_frame("2001:db8:100::2", 100, &inner, true));
    assert_eq!(h.out(0), vec![inner.clone(), inner.clone()]);
    let mut bad = vxlan6_frame("2001:db8:100::2", 100, &inner, false);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    h.inject(1, bad);
    assert_eq!(h.counter(Counter::VxlanBadChecksum), 1);
    h.inject(1, vxlan6_frame("2001:db8:100::9", 100, &inner, false));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 1);
    h.inject(1, vxlan6_frame("2001:db8:100::2", 101, &inner, false));
    assert_eq!(h.counter(Counter::VxlanUnknownVni), 1);
    assert!(h.out(0).is_empty());
    // The reply goes back over IPv6 to the learned VTEP.
    h.inject(
        0,
        udp_frame(POD1, REMOTE_POD, [198, 19, 0, 1], [198, 19, 0, 9], 9, 20),
    );
    assert_eq!(h.out(1).len(), 1);
    // A family mismatch in the configuration is refused.
    let bad = cfg6().replace(
        "flood = [\"2001:db8:100::2\"]",
        "flood = [\"198.18.100.2\"]",
    );
    let e = vrouter_dataplane::config::Config::parse("t.toml", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vni[0].flood[0]: `198.18.100.2` is not of the VTEP's address family"),
        "{e}"
    );
}

#[test]
fn an_unresolved_remote_vtep_is_resolved_by_arp_and_the_held_packet_follows() {
    let cfg = cfg().replace(
        "flood = [\"198.18.100.2\", \"198.18.100.3\"]",
        "flood = [\"198.18.100.5\"]",
    );
    let mut h = Harness::new(&cfg);
    let f = udp_frame(
        POD1,
        "ff:ff:ff:ff:ff:ff",
        [198, 19, 0, 1],
        [198, 19, 0, 255],
        1000,
        30,
    );
    h.inject(0, f.clone());
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(&r[12..14], &[0x08, 0x06], "ARP request on the underlay");
    assert_eq!(&r[38..42], &[198, 18, 100, 5]);
    assert_eq!(h.counter(Counter::GleanQueued), 1);
    // The reply resolves the VTEP; the held, encapsulated frame leaves.
    let mut reply = mac(UP).to_vec();
    reply.extend_from_slice(&mac("02:00:00:00:0a:05"));
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac("02:00:00:00:0a:05"));
    reply.extend_from_slice(&[198, 18, 100, 5]);
    reply.extend_from_slice(&mac(UP));
    reply.extend_from_slice(&[198, 18, 100, 1]);
    h.inject(2, reply);
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    let o = outer(&out[0]);
    assert_eq!(
        (o.eth_dst, o.dst, o.ttl),
        (mac("02:00:00:00:0a:05"), [198, 18, 100, 5], 64)
    );
    assert_eq!(o.inner, f);
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn an_inner_mtu_above_what_the_underlay_carries_drops_outer_packets_counted() {
    let cfg = cfg().replace(
        "local = \"198.18.100.1\"\n",
        "local = \"198.18.100.1\"\ninner-mtu = 1480\n",
    );
    let mut h = Harness::new(&cfg);
    // 1480-byte inner IP packet: the outer one would be 1530 bytes.
    h.inject(
        1,
        udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 1452),
    );
    assert!(h.out(2).is_empty());
    assert!(h.out(1).is_empty(), "no ICMP error about an outer packet");
    assert_eq!(
        h.counter(Counter::Ip4FragmentNeeded) + h.counter(Counter::Ip4MtuExceeded),
        1
    );
    // 1450 still fits.
    h.inject(
        1,
        udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 2, 5], 1000, 1422),
    );
    assert_eq!(h.out(2).len(), 1);
    assert_eq!(h.frames_in_use(), 0);
}

/// Hostile VXLAN: mutated encapsulated frames (flags, VNI, lengths, inner
/// headers, truncation) from known and unknown VTEPs, over both underlay
/// families, never panic and never leak a frame.
#[test]
fn hostile_vxlan_never_panics_or_leaks() {
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    let mut rng = SmallRng::seed_from_u64(4789);
    for (cfg, port, v6) in [(cfg(), 2usize, false), (cfg6(), 1, true)] {
        let mut h = Harness::new(&cfg);
        let inner = [
            udp_frame(REMOTE_POD, POD1, [198, 19, 0, 9], [198, 19, 0, 1], 7, 20),
            udp_frame(B_VX, VNI1_MAC, [198, 19, 2, 5], [198, 19, 1, 2], 7, 20),
            arp_request(REMOTE_POD, [198, 19, 0, 7], [198, 19, 0, 9]),
        ];
        for n in 0..20_000u32 {
            let vni = [100, 1, 200, rng.gen_range(0..1 << 24)][rng.gen_range(0..4)];
            let base = &inner[rng.gen_range(0..inner.len())];
            let mut f = if v6 {
                let src = ["2001:db8:100::2", "2001:db8:100::9"][rng.gen_range(0..2)];
                vxlan6_frame(src, vni, base, rng.gen_bool(0.5))
            } else {
                let src =
                    [[198, 18, 100, 2], [198, 18, 100, 3], [198, 18, 100, 9]][rng.gen_range(0..3)];
                vxlan_frame(src, vni, 0x08, base)
            };
            // Mostly past the outer IP header, with the UDP checksum zeroed,
            // so mutations reach the VXLAN header and the inner frame.
            let l4 = if v6 { 14 + 40 } else { 14 + 20 };
            for _ in 0..rng.gen_range(0..4) {
                let from = if rng.gen_bool(0.8) { l4 } else { 0 };
                let at = rng.gen_range(from..f.len());
                f[at] = rng.r#gen();
            }
            if rng.gen_bool(0.7) && f.len() >= l4 + 8 {
                f[l4 + 6..l4 + 8].fill(0);
            }
            if rng.gen_bool(0.2) {
                let len = rng.gen_range(0..f.len());
                f.truncate(len);
            }
            h.send(port, f);
            if n % 256 == 0 {
                h.run();
                for p in 0..=port {
                    h.out(p);
                }
            }
        }
        h.run();
        // Only packets waiting for a neighbour (mutated inner destinations
        // routed into glean) are still out of the pool.
        assert_eq!(h.frames_in_use(), h.worker.pipeline.held(), "leaked frames");
        assert!(h.counter(Counter::VxlanUnknownVni) > 0);
        assert!(h.counter(Counter::VxlanUnknownVtep) > 0);
        assert_eq!(h.counter(Counter::GraphLost), 0);
        assert!(h.counter(Counter::VxlanBadHeader) > 0);
        assert!(
            h.counter(Counter::L2Learned) > 0,
            "mutated frames got through too"
        );
    }
}

fn api(tag: &str) -> vrouter_dataplane::api::Api {
    bind_api(&format!("vx-{tag}"), Vec::new(), vec![0], 4)
}

fn overlay_route(prefix: &str, remote: &str, mac: &str) -> vrouter_control::proto::Route {
    vrouter_control::proto::Route {
        prefix: prefix.into(),
        remote: Some(remote.into()),
        mac: Some(mac.into()),
        ..Default::default()
    }
}

const C_VX: &str = "02:00:00:00:0b:03"; // node C's VXLAN device (L3 VNI)

#[test]
fn overlay_routes_over_the_control_socket() {
    use vrouter_control::proto::{self, Op, code};
    let mut h = Harness::new(&cfg());
    let mut a = api("ovl");
    let to_c = || udp_frame(POD2, R2, [198, 19, 1, 2], [198, 19, 3, 5], 1000, 20);
    let from_c = udp_frame(C_VX, VNI1_MAC, [198, 19, 3, 5], [198, 19, 1, 2], 7, 20);
    // Node C is not a remote VTEP of VNI 1 yet: its traffic is refused.
    h.inject(2, vxlan_frame([198, 18, 100, 3], 1, 0x08, &from_c));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 1);
    assert!(h.out(1).is_empty());

    // route.add with `remote`: VNI from the VRF's binding (VNI 1).
    a.handle(
        &mut h.router,
        &Op::RouteAdd(overlay_route("198.19.3.0/24", "198.18.100.3", C_VX)),
    )
    .unwrap();
    h.inject(1, to_c());
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    let o = outer(&out[0]);
    assert_eq!((o.dst, o.vni), ([198, 18, 100, 3], 1));
    assert_eq!(&o.eth_dst, &mac(NODE_C), "outer: node C's underlay MAC");
    assert_eq!(&o.inner[0..6], &mac(C_VX), "inner dst: node C's device");
    assert_eq!(&o.inner[6..12], &mac(VNI1_MAC));
    // ... and node C is accepted from now on.
    h.inject(2, vxlan_frame([198, 18, 100, 3], 1, 0x08, &from_c));
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][0..6], &mac(POD2));

    // IPv6 inner prefix, VNI given explicitly.
    let mut r6 = overlay_route("2001:db8:3::/64", "198.18.100.3", C_VX);
    r6.vni = Some(1);
    r6.vtep = Some("vtep0".into());
    a.handle(&mut h.router, &Op::RouteAdd(r6)).unwrap();
    let shown = a
        .handle(
            &mut h.router,
            &Op::ShowOverlayRoutes(proto::OverlaySel::default()),
        )
        .unwrap();
    let list = shown.as_array().unwrap();
    let prefixes: Vec<&str> = list.iter().map(|r| r["prefix"].as_str().unwrap()).collect();
    assert_eq!(
        prefixes,
        [
            "198.19.2.0/24",
            "198.19.3.0/24",
            "2001:db8:2::/64",
            "2001:db8:3::/64"
        ],
        "{shown}"
    );
    let c = list
        .iter()
        .find(|r| r["prefix"] == "198.19.3.0/24")
        .unwrap();
    assert_eq!(
        (
            &c["remote"],
            &c["mac"],
            &c["vni"],
            &c["vtep"],
            &c["interface"]
        ),
        (
            &"198.18.100.3".into(),
            &C_VX.into(),
            &1.into(),
            &"vtep0".into(),
            &"vxlan1-198.18.100.3".into()
        )
    );

    // Errors: unknown VNI / VTEP, an L2 VNI, missing MAC, our own VTEP,
    // the wrong family, an existing route, a tunnel as plain `interface`.
    let err = |h: &mut Harness, a: &mut vrouter_dataplane::api::Api, r: proto::Route| {
        a.handle(&mut h.router, &Op::RouteAdd(r)).unwrap_err()
    };
    let mut r = overlay_route("198.19.9.0/24", "198.18.100.3", C_VX);
    r.vni = Some(7);
    let e = err(&mut h, &mut a, r.clone());
    assert_eq!(e.code, code::NOT_FOUND, "{e:?}");
    assert!(e.message.contains("VNI 7: no such VNI"), "{e:?}");
    r.vni = None;
    r.vtep = Some("vtep9".into());
    let e = err(&mut h, &mut a, r.clone());
    assert_eq!(e.code, code::NOT_FOUND, "{e:?}");
    assert!(e.message.contains("vtep vtep9: no such VTEP"), "{e:?}");
    r.vtep = None;
    r.vni = Some(100);
    let e = err(&mut h, &mut a, r.clone());
    assert_eq!(e.code, code::INVALID, "{e:?}");
    assert!(e.message.contains("L2 VNI"), "{e:?}");
    r.vni = None;
    r.mac = None;
    let e = err(&mut h, &mut a, r.clone());
    assert!(e.message.contains("needs `mac`"), "{e:?}");
    let e = err(
        &mut h,
        &mut a,
        overlay_route("198.19.9.0/24", "198.18.100.1", C_VX),
    );
    assert!(e.message.contains("not a remote unicast VTEP"), "{e:?}");
    let e = err(
        &mut h,
        &mut a,
        overlay_route("198.19.9.0/24", "2001:db8::1", C_VX),
    );
    assert!(e.message.contains("not a remote unicast VTEP"), "{e:?}");
    let e = err(
        &mut h,
        &mut a,
        overlay_route("198.19.3.0/24", "198.18.100.3", C_VX),
    );
    assert_eq!(e.code, code::EXISTS, "{e:?}");
    let e = err(
        &mut h,
        &mut a,
        proto::Route {
            prefix: "198.19.9.0/24".into(),
            interface: Some("vxlan1-198.18.100.3".into()),
            ..Default::default()
        },
    );
    assert!(e.message.contains("overlay route"), "{e:?}");

    // A batch that fails undoes its overlay route (and the acceptance).
    let mut bad = overlay_route("198.19.9.0/24", "198.18.100.4", C_VX);
    bad.vni = Some(7);
    let e = a
        .handle(
            &mut h.router,
            &Op::Batch(proto::Batch {
                ops: vec![
                    proto::BatchOp {
                        op: Op::RouteAdd(overlay_route("198.19.4.0/24", "198.18.100.4", C_VX)),
                    },
                    proto::BatchOp {
                        op: Op::RouteAdd(bad),
                    },
                ],
            }),
        )
        .unwrap_err();
    assert!(e.message.starts_with("op 1:"), "{e:?}");
    assert!(
        !h.router
            .overlay_routes(None)
            .iter()
            .any(|r| r.remote.to_string() == "198.18.100.4")
    );
    assert!(
        h.router
            .vxlan_tunnels()
            .iter()
            .all(|t| t.remote.to_string() != "198.18.100.4" || !t.accepted),
        "a failed batch leaves no accepted remote"
    );

    // route.del: the route goes, and so does node C's acceptance (it was
    // accepted only for this route; the IPv6 one still points at it, so
    // remove both).
    for p in ["198.19.3.0/24", "2001:db8:3::/64"] {
        a.handle(
            &mut h.router,
            &Op::RouteDel(proto::RouteKey {
                vrf: None,
                prefix: p.into(),
            }),
        )
        .unwrap();
    }
    h.inject(1, to_c());
    assert!(h.out(2).is_empty());
    assert_eq!(h.counter(Counter::Ip4NoRoute), 1);
    assert_eq!(h.out(1).len(), 1, "ICMP unreachable back to the pod");
    h.inject(2, vxlan_frame([198, 18, 100, 3], 1, 0x08, &from_c));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 2);
    // A configured route's remote stays accepted after its route is gone.
    a.handle(
        &mut h.router,
        &Op::RouteDel(proto::RouteKey {
            vrf: None,
            prefix: "198.19.2.0/24".into(),
        }),
    )
    .unwrap();
    let from_b = udp_frame(B_VX, VNI1_MAC, [198, 19, 2, 5], [198, 19, 1, 2], 7, 20);
    h.inject(2, vxlan_frame([198, 18, 100, 2], 1, 0x08, &from_b));
    assert_eq!(h.out(1).len(), 1);

    // sync: a scope of overlay routes; the same state again changes
    // nothing; a new MAC replaces; an empty scope removes.
    let sync = |gen_: u64, routes: Vec<proto::Route>| {
        Op::Sync(proto::Sync {
            scope: "agent/routes".into(),
            generation: gen_,
            routes,
            neighbors: vec![],
            endpoints: vec![],
            services: vec![],
            policies: vec![],
        })
    };
    let v = a
        .handle(
            &mut h.router,
            &sync(
                1,
                vec![overlay_route("198.19.3.0/24", "198.18.100.3", C_VX)],
            ),
        )
        .unwrap();
    assert_eq!(v["added"], 1, "{v}");
    let v = a
        .handle(
            &mut h.router,
            &sync(
                2,
                vec![overlay_route("198.19.3.0/24", "198.18.100.3", C_VX)],
            ),
        )
        .unwrap();
    assert_eq!(v["unchanged"], 1, "{v}");
    let v = a
        .handle(
            &mut h.router,
            &sync(
                3,
                vec![overlay_route(
                    "198.19.3.0/24",
                    "198.18.100.3",
                    "02:00:00:00:0b:33",
                )],
            ),
        )
        .unwrap();
    assert_eq!(v["changed"], 1, "{v}");
    h.inject(1, to_c());
    let out = h.out(2);
    assert_eq!(out.len(), 1);
    assert_eq!(&outer(&out[0]).inner[0..6], &mac("02:00:00:00:0b:33"));
    let v = a.handle(&mut h.router, &sync(4, vec![])).unwrap();
    assert_eq!(v["removed"], 1, "{v}");
    assert!(
        h.router
            .overlay_routes(None)
            .iter()
            .all(|r| r.prefix.to_string() != "198.19.3.0")
    );
    h.inject(2, vxlan_frame([198, 18, 100, 3], 1, 0x08, &from_c));
    assert_eq!(h.counter(Counter::VxlanUnknownVtep), 3);
}
