//! Set-ups shared by the benches and the `vrouter-bench` profiling binary:
//! a router and a worker on replaying memory ports, with tables filled to
//! the sizes the targets name (64k MACs, 1M IPv4 prefixes, 200k IPv6
//! prefixes). Everything is deterministic (fixed seeds).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use etherparse::PacketBuilder;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use vrouter_dataplane::config::{Config, PollMode};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::port::Port;
use vrouter_dataplane::port::memory::MemoryPort;
use vrouter_dataplane::worker::Worker;

pub mod svc;

/// A router and one worker driven from the calling thread.
pub struct Bench {
    pub router: Router,
    pub worker: Worker,
}

impl Bench {
    /// Builds from a config whose ports are all `memory`, replaying `frames[k]` on port k.
    pub fn new(cfg: &str, frames: Vec<Vec<Vec<u8>>>) -> Bench {
        let cfg = Config::parse("bench.toml", cfg).unwrap();
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let mut frames = frames.into_iter();
        for (k, p) in cfg.ports.iter().enumerate() {
            let mac = p
                .mac
                .as_deref()
                .map_or(vrouter_dataplane::port::default_mac(k as u16), |m| {
                    m.parse().unwrap()
                });
            ports.push(Box::new(MemoryPort::replay(
                k as u16,
                &p.name,
                mac,
                frames.next().unwrap_or_default(),
            )));
        }
        let macs: Vec<_> = ports.iter().map(|p| Some(p.mac())).collect();
        let router = Router::from_config(&cfg, &macs, "bench.toml").unwrap();
        let worker = Worker::new(
            router.shared().clone(),
            ports,
            16384,
            PollMode::Busy,
            Duration::ZERO,
        )
        .unwrap();
        worker.link.running.store(false, Ordering::SeqCst);
        Bench { router, worker }
    }

    /// One poll loop; returns packets received.
    #[inline]
    pub fn poll(&mut self) -> usize {
        self.worker.poll_once()
    }

    /// Packets transmitted on all ports so far.
    pub fn tx_packets(&self) -> u64 {
        self.worker
            .ports
            .iter()
            .map(|p| p.stats().snapshot().tx_packets)
            .sum()
    }
}

fn mac_n(prefix: u8, n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, prefix, b[0], b[1], b[2], b[3]]
}

/// A 64-byte frame (60 bytes + FCS the port does not carry).
fn l2_frame(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut v = Vec::with_capacity(60);
    PacketBuilder::ethernet2(src, dst)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1024, 1024)
        .write(&mut v, &[0u8; 18])
        .unwrap();
    v
}

/// L2: a bridge domain with two ports and `macs` stations, half behind each
/// port; every frame goes from a random station on one side to a random
/// station on the other. All stations are learned before measuring.
pub fn l2(macs: u32) -> Bench {
    let cfg = format!(
        r#"
[[port]]
name = "a"
driver = "memory"
[[port]]
name = "b"
driver = "memory"
[[bridge]]
name = "br"
mac-limit = {}
mac-age = 0
[[interface]]
name = "a"
bridge = "br"
[[interface]]
name = "b"
bridge = "br"
"#,
        macs + 16
    );
    let half = macs / 2;
    let mut rng = SmallRng::seed_from_u64(1);
    let mut side = |from: u8, to: u8| -> Vec<Vec<u8>> {
        // Every station of `from` appears as a source once; destinations random.
        let mut v: Vec<Vec<u8>> = (0..half)
            .map(|i| l2_frame(mac_n(from, i), mac_n(to, rng.gen_range(0..half))))
            .collect();
        // Shuffle so consecutive frames hit unrelated buckets.
        for i in (1..v.len()).rev() {
            v.swap(i, rng.gen_range(0..=i));
        }
        v
    };
    let (fa, fb) = (side(0xa, 0xb), side(0xb, 0xa));
    let mut b = Bench::new(&cfg, vec![fa, fb]);
    // Learn every station (one pass over each side) and settle.
    for _ in 0..(half as usize / 256 + 2) * 2 {
        b.poll();
    }
    b
}

/// Routes on the uplink side all use one of `GATEWAYS` neighbours.
pub const GATEWAYS: u32 = 16;

fn router_cfg(v6: bool) -> String {
    let mut c = String::from(
        r#"
[[port]]
name = "in"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "out"
driver = "memory"
mac = "02:00:00:00:02:01"
[[interface]]
name = "in"
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
[[interface]]
name = "out"
addresses = ["198.19.0.1/16", "2001:db8:1::1/64"]
"#,
    );
    for g in 0..GATEWAYS {
        let ip = if v6 {
            format!("2001:db8:1::{:x}", g + 2)
        } else {
            format!("198.19.0.{}", g + 2)
        };
        c += &format!(
            "[[neighbor]]\ninterface = \"out\"\nip = \"{ip}\"\nmac = \"02:00:00:00:03:{:02x}\"\n",
            g
        );
    }
    c
}

/// IPv4 prefixes with a BGP-like length mix (most /24, some longer), from a
/// fixed seed. Host bits are cleared.
pub fn ipv4_prefixes(n: usize, seed: u64) -> Vec<(Ipv4Addr, u8)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = match rng.gen_range(0..100) {
                0..=54 => 24,
                55..=69 => rng.gen_range(20..24),
                70..=84 => rng.gen_range(16..20),
                85..=89 => rng.gen_range(8..16),
                _ => rng.gen_range(25..=32),
            };
            let a: u32 = rng.r#gen::<u32>() & (u32::MAX << (32 - len));
            (Ipv4Addr::from(a), len)
        })
        .collect()
}

/// IPv6 prefixes clustered as real tables are (allocations under a few
/// thousand /32s, mostly /48 and /32-/44, some /56-/64).
pub fn ipv6_prefixes(n: usize, seed: u64) -> Vec<(Ipv6Addr, u8)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let parents: Vec<u128> = (0..4096)
        .map(|_| {
            (0x2000u128 | rng.gen_range(0..0x1000)) << 112 | (rng.r#gen::<u16>() as u128) << 96
        })
        .collect();
    (0..n)
        .map(|_| {
            let len = match rng.gen_range(0..100) {
                0..=49 => 48,
                50..=74 => rng.gen_range(32..48),
                75..=89 => rng.gen_range(49..=56),
                _ => rng.gen_range(57..=64),
            };
            let p = parents[rng.gen_range(0..parents.len())] | (rng.r#gen::<u128>() >> 32);
            (Ipv6Addr::from(p & (u128::MAX << (128 - len))), len)
        })
        .collect()
}

fn ip4_frame(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(60);
    PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x10], [0x02, 0, 0, 0, 1, 1])
        .ipv4([198, 18, 0, 16], dst.octets(), 64)
        .udp(sport, 4000)
        .write(&mut v, &[0u8; 18])
        .unwrap();
    v
}

fn ip6_frame(dst: Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x10], [0x02, 0, 0, 0, 1, 1])
        .ipv6(
            "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets(),
            dst.octets(),
            64,
        )
        .udp(sport, 4000)
        .write(&mut v, &[0u8; 2])
        .unwrap();
    v
}

/// IPv4 routing: `routes` prefixes spread over the gateways, plus a default
/// route; `flows` frames with random destinations.
pub fn ip4(routes: usize, flows: usize) -> Bench {
    let mut b = Bench::new(&router_cfg(false), vec![Vec::new(), Vec::new()]);
    let gws: Vec<IpAddr> = (0..GATEWAYS)
        .map(|g| IpAddr::V4(Ipv4Addr::new(198, 19, 0, g as u8 + 2)))
        .collect();
    b.router
        .add_static_route(
            0,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            &gws[..1],
            None,
            None,
        )
        .unwrap();
    for (k, (p, l)) in ipv4_prefixes(routes, 42).into_iter().enumerate() {
        let _ =
            b.router
                .add_static_route(0, IpAddr::V4(p), l, &gws[k % gws.len()..][..1], None, None);
    }
    b.router.commit();
    let mut rng = SmallRng::seed_from_u64(7);
    let frames = (0..flows)
        .map(|k| {
            // Avoid our own subnets (local delivery is another bench).
            let mut d: u32 = rng.r#gen();
            while d >> 16 == 0xc612 || d >> 16 == 0xc613 {
                d = rng.r#gen();
            }
            ip4_frame(Ipv4Addr::from(d), 1024 + (k % 60000) as u16)
        })
        .collect();
    b.worker.ports[0] = Box::new(MemoryPort::replay(
        0,
        "in",
        "02:00:00:00:01:01".parse().unwrap(),
        frames,
    ));
    b
}

/// IPv6 routing: `routes` prefixes plus a default route; destinations drawn
/// inside the installed prefixes (half) and anywhere (half, the default).
pub fn ip6(routes: usize, flows: usize) -> Bench {
    let mut b = Bench::new(&router_cfg(true), vec![Vec::new(), Vec::new()]);
    let gws: Vec<IpAddr> = (0..GATEWAYS)
        .map(|g| IpAddr::V6(format!("2001:db8:1::{:x}", g + 2).parse().unwrap()))
        .collect();
    b.router
        .add_static_route(
            0,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            0,
            &gws[..1],
            None,
            None,
        )
        .unwrap();
    let prefixes = ipv6_prefixes(routes, 43);
    for (k, (p, l)) in prefixes.iter().enumerate() {
        let _ = b.router.add_static_route(
            0,
            IpAddr::V6(*p),
            *l,
            &gws[k % gws.len()..][..1],
            None,
            None,
        );
    }
    b.router.commit();
    let mut rng = SmallRng::seed_from_u64(8);
    let frames = (0..flows)
        .map(|k| {
            let d = if k % 2 == 0 {
                let (p, l) = prefixes[rng.gen_range(0..prefixes.len())];
                u128::from(p) | (rng.r#gen::<u128>() >> l)
            } else {
                (0x2000u128 << 112) | (rng.r#gen::<u128>() >> 4)
            };
            ip6_frame(Ipv6Addr::from(d), 1024 + (k % 60000) as u16)
        })
        .collect();
    b.worker.ports[0] = Box::new(MemoryPort::replay(
        0,
        "in",
        "02:00:00:00:01:01".parse().unwrap(),
        frames,
    ));
    b
}

/// Remote nodes of the VXLAN benches (one VTEP and one pod /24 each).
pub const VXLAN_NODES: u32 = 16;

fn vxlan_cfg() -> String {
    let mut c = String::from(
        r#"
[[port]]
name = "pod"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "up"
driver = "memory"
mac = "02:00:00:00:02:01"
[[interface]]
name = "pod"
addresses = ["198.18.0.1/24"]
[[interface]]
name = "up"
addresses = ["198.19.0.1/24"]
[[bridge]]
name = "ov"
mac-age = 0
mac-limit = 131072
[[port]]
name = "l2pod"
driver = "memory"
mac = "02:00:00:00:03:01"
[[interface]]
name = "l2pod"
bridge = "ov"
[[static-mac]]
bridge = "ov"
mac = "02:00:00:00:00:aa"
interface = "l2pod"
[[vtep]]
name = "vtep0"
local = "198.19.0.1"
"#,
    );
    let mut routes = Vec::new();
    let mut flood = Vec::new();
    for n in 0..VXLAN_NODES {
        c += &format!(
            "[[neighbor]]\ninterface = \"up\"\nip = \"198.19.0.{}\"\nmac = \"02:00:00:00:04:{:02x}\"\n",
            n + 2,
            n
        );
        routes.push(format!(
            "{{ prefix = \"198.18.{}.0/24\", remote = \"198.19.0.{}\", mac = \"02:00:00:00:05:{:02x}\" }}",
            n + 16,
            n + 2,
            n
        ));
        flood.push(format!("\"198.19.0.{}\"", n + 2));
    }
    c += &format!(
        "[[vni]]\nvtep = \"vtep0\"\nvni = 1\nvrf = \"default\"\nroutes = [{}]\n",
        routes.join(", ")
    );
    c += &format!(
        "[[vni]]\nvtep = \"vtep0\"\nvni = 100\nbridge = \"ov\"\nflood = [{}]\n",
        flood.join(", ")
    );
    c
}

/// VXLAN encapsulation: 64-byte frames from a routed pod to random pods of
/// the remote nodes (route lookup, inner rewrite, encap, outer lookup and
/// rewrite), `flows` distinct 5-tuples.
pub fn vxlan_encap(flows: usize) -> Bench {
    let mut rng = SmallRng::seed_from_u64(9);
    let frames = (0..flows)
        .map(|k| {
            let dst = Ipv4Addr::new(
                198,
                18,
                16 + rng.gen_range(0..VXLAN_NODES) as u8,
                rng.gen_range(2..250),
            );
            ip4_frame(dst, 1024 + (k % 60000) as u16)
        })
        .collect();
    Bench::new(&vxlan_cfg(), vec![frames, Vec::new(), Vec::new()])
}

/// VXLAN decapsulation into a bridge: 64-byte inner frames from the remote
/// nodes' VTEPs (VNI 100, UDP checksum 0 as Linux sends) to a pod behind a
/// static MAC; the inner sources (`flows` of them) are learned first.
pub fn vxlan_decap(flows: usize) -> Bench {
    let mut rng = SmallRng::seed_from_u64(10);
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|k| {
            let node = rng.gen_range(0..VXLAN_NODES);
            let inner = l2_frame(mac_n(0xc, k as u32), [0x02, 0, 0, 0, 0, 0xaa]);
            let mut payload = vec![0x08, 0, 0, 0, 0, 0, 100, 0];
            payload.extend_from_slice(&inner);
            let mut v = Vec::with_capacity(128);
            PacketBuilder::ethernet2([0x02, 0, 0, 0, 4, node as u8], [0x02, 0, 0, 0, 2, 1])
                .ipv4([198, 19, 0, node as u8 + 2], [198, 19, 0, 1], 64)
                .udp(49152 + rng.gen_range(0..16384), 4789)
                .write(&mut v, &payload)
                .unwrap();
            v[14 + 20 + 6..14 + 20 + 8].fill(0);
            v
        })
        .collect();
    let mut b = Bench::new(&vxlan_cfg(), vec![Vec::new(), frames, Vec::new()]);
    for _ in 0..(flows / 256 + 2) {
        b.poll();
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VXLAN set-ups forward every packet (a bench that drops measures
    /// nothing).
    #[test]
    fn vxlan_setups_forward_everything() {
        for (name, mut b) in [("encap", vxlan_encap(512)), ("decap", vxlan_decap(512))] {
            let tx0 = b.tx_packets();
            let mut rx = 0;
            for _ in 0..4 {
                rx += b.poll() as u64;
            }
            assert!(rx > 0, "{name}");
            assert_eq!(b.tx_packets() - tx0, rx, "{name}: packets dropped");
        }
    }
}
