//! Hostile input: a million random and mutated frames through every kind of
//! interface (bridged, routed, BVI, VLAN) must never panic, never leak a
//! frame, and every frame must be accounted for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use vrouter_dataplane::graph::Counter;

const CFG: &str = r#"
[dataplane]
glean-timeout-ms = 0
[[port]]
name = "br1"
driver = "memory"
[[port]]
name = "br2"
driver = "memory"
[[port]]
name = "r1"
driver = "memory"
[[bridge]]
name = "b"
mac-limit = 1000
gateway = { addresses = ["198.18.3.1/24", "2001:db8:3::1/64"] }
[[interface]]
name = "br1"
bridge = "b"
[[interface]]
name = "br2"
bridge = "b"
[[interface]]
name = "r1"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "r1.7"
port = "r1"
vlan = 7
addresses = ["198.18.7.1/24"]
[[neighbor]]
interface = "r1"
ip = "198.18.1.2"
mac = "02:00:00:00:01:02"
[[route]]
prefix = "0.0.0.0/0"
via = ["198.18.1.2"]
"#;

/// Real frames to mutate: IPv4/IPv6 UDP, ICMP, ARP, ND, tagged.
fn seeds() -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let m = |s| mac(s);
    let mut out = Vec::new();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(m("02:00:00:00:01:02"), m("02:76:72:00:00:02"))
        .ipv4([198, 18, 1, 2], [198, 18, 3, 9], 64)
        .udp(1, 2)
        .write(&mut v, &[1; 30])
        .unwrap();
    out.push(v.clone());
    v.clear();
    PacketBuilder::ethernet2(m("02:00:00:00:01:02"), m("02:76:72:00:00:02"))
        .ipv4([198, 18, 1, 2], [198, 18, 1, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, &[1; 30])
        .unwrap();
    out.push(v.clone());
    v.clear();
    PacketBuilder::ethernet2(m("02:00:00:00:01:02"), m("33:33:00:00:00:01"))
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1],
            255,
        )
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(
            &mut v,
            &[
                0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 0, 0, 0, 1, 2,
            ],
        )
        .unwrap();
    out.push(v.clone());
    v.clear();
    PacketBuilder::ethernet2(m("02:00:00:00:03:02"), m("ff:ff:ff:ff:ff:ff"))
        .single_vlan(etherparse::VlanId::try_new(7).unwrap())
        .ipv4([198, 18, 7, 2], [198, 18, 7, 1], 1)
        .udp(1, 2)
        .write(&mut v, &[1; 30])
        .unwrap();
    out.push(v.clone());
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&m("02:00:00:00:03:02"));
    arp.extend_from_slice(&[
        8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 3, 2, 198, 18, 3, 2, 0, 0, 0, 0, 0, 0, 198, 18,
        3, 1,
    ]);
    out.push(arp);
    out
}

#[test]
fn a_million_hostile_frames_never_panic_or_leak() {
    let mut h = Harness::new(CFG);
    let seeds = seeds();
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let total = 1_000_000;
    let mut sent = 0u64;
    while sent < total {
        for _ in 0..256 {
            let f: Vec<u8> = if rng.gen_bool(0.3) {
                let len = rng.gen_range(0..300);
                (0..len).map(|_| rng.r#gen()).collect()
            } else {
                let mut f = seeds[rng.gen_range(0..seeds.len())].clone();
                for _ in 0..rng.gen_range(1..6) {
                    match rng.gen_range(0..3) {
                        0 if !f.is_empty() => {
                            let k = rng.gen_range(0..f.len());
                            f[k] = rng.r#gen();
                        }
                        1 => f.truncate(rng.gen_range(0..=f.len())),
                        _ => f.extend((0..rng.gen_range(0..40)).map(|_| rng.r#gen::<u8>())),
                    }
                }
                f
            };
            h.send(rng.gen_range(0..3), f);
            sent += 1;
        }
        h.run();
        for p in 0..3 {
            h.out(p);
        }
    }
    h.run();
    h.worker.shutdown();
    assert_eq!(h.frames_in_use(), 0, "no frame leaked");
    assert_eq!(h.counter(Counter::GraphLost), 0);
    assert_eq!(h.counter(Counter::GraphLoop), 0);
    assert!(h.counter(Counter::EthRunt) > 0 && h.counter(Counter::Ip4BadChecksum) > 0);
}
