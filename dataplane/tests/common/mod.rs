//! The fixtures of the pipeline tests (dataplane/tests/*.rs) and of the
//! `pipeline` fuzz target (fuzz/fuzz_targets/pipeline.rs, which includes this
//! file with `#[path]`): a single-threaded harness (the real router, worker
//! and pipeline on in-memory ports, driven step by step), configuration
//! snippets, a control socket on the harness's router, and frame builders.
//! Packets are built and decoded with etherparse, an independent
//! implementation. Only crates both users depend on may be used here
//! (vrouter-dataplane, vrouter-wire, vrouter-control, etherparse).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etherparse::{
    Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};
use vrouter_dataplane::api::{Api, ApiConfig, PortInfo};
use vrouter_dataplane::config::{Config, PollMode};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::graph::Counter;
use vrouter_dataplane::port::memory::{MemoryPort, RxQueue, TxCapture};
use vrouter_dataplane::port::{Port, PortStats, default_mac};
use vrouter_dataplane::report;
use vrouter_dataplane::worker::Worker;

/// The router's MAC on net1 (port 0) and net2 (port 1) of [`two_nets`].
pub const R1: &str = "02:00:00:00:01:01";
pub const R2: &str = "02:00:00:00:02:01";
/// A host on net1 and one on net2.
pub const H1: &str = "02:00:00:00:01:02";
pub const H2: &str = "02:00:00:00:02:02";

pub struct Harness {
    pub router: Router,
    pub worker: Worker,
    rx: Vec<RxQueue>,
    tx: Vec<TxCapture>,
    /// Each port's counters.
    pub stats: Vec<Arc<PortStats>>,
}

pub fn mac(s: &str) -> [u8; 6] {
    s.parse::<vrouter_wire::MacAddr>().unwrap().octets()
}

impl Harness {
    /// Builds a router from `cfg` (TOML; every port must be `driver = "memory"`).
    pub fn new(cfg: &str) -> Harness {
        Self::with_frames(cfg, 8192)
    }

    /// Like [`Harness::new`], with a worker pool of `frames` frames.
    pub fn with_frames(cfg: &str, frames: u32) -> Harness {
        let cfg = Config::parse("test.toml", cfg).unwrap_or_else(|e| panic!("config: {e}"));
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let (mut rx, mut tx, mut stats) = (Vec::new(), Vec::new(), Vec::new());
        for (k, p) in cfg.ports.iter().enumerate() {
            let m = p.mac.as_deref().map_or(default_mac(k as u16), |m| {
                m.parse().unwrap_or_else(|e| panic!("mac: {e}"))
            });
            let (port, r, t) = MemoryPort::queue(k as u16, &p.name, m);
            stats.push(port.stats().clone());
            ports.push(Box::new(port));
            rx.push(r);
            tx.push(t);
        }
        let macs: Vec<_> = ports.iter().map(|p| Some(p.mac())).collect();
        let router =
            Router::from_config(&cfg, &macs, "test.toml").unwrap_or_else(|e| panic!("router: {e}"));
        let worker = Worker::new(
            router.shared().clone(),
            ports,
            frames,
            PollMode::Busy,
            Duration::ZERO,
        )
        .unwrap_or_else(|e| panic!("worker: {e}"));
        // The worker is driven from this thread: the router must not wait for it.
        worker.link.running.store(false, Ordering::SeqCst);
        Harness {
            router,
            worker,
            rx,
            tx,
            stats,
        }
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.rx.len()
    }

    /// Frames the ports received or counted as RX drops.
    pub fn rx_seen(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.rx_packets.load(Ordering::Relaxed) + s.rx_dropped.load(Ordering::Relaxed))
            .sum()
    }

    pub fn send(&mut self, port: usize, frame: Vec<u8>) {
        self.rx[port].lock().unwrap().push_back(frame);
    }

    /// Polls and applies events until nothing moves.
    pub fn run(&mut self) {
        for _ in 0..20 {
            let n = self.worker.poll_once();
            let e = self.router.process_events();
            if n == 0 && e == 0 && self.rx.iter().all(|q| q.lock().unwrap().is_empty()) {
                // One more poll lets held packets see a new generation.
                self.worker.poll_once();
                if self.router.process_events() == 0 {
                    return;
                }
            }
        }
    }

    /// Sends one frame and runs.
    pub fn inject(&mut self, port: usize, frame: Vec<u8>) {
        self.send(port, frame);
        self.run();
    }

    /// Frames transmitted on `port` since the last call.
    pub fn out(&mut self, port: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.tx[port].lock().unwrap())
    }

    pub fn counter(&self, c: Counter) -> u64 {
        report::counter(&self.router.shared().worker_links(), c)
    }

    pub fn report(&self) -> String {
        report::render(
            self.router.tables(),
            &[],
            &self.router.shared().worker_links(),
        )
    }

    pub fn frames_in_use(&self) -> usize {
        self.worker.pool.outstanding()
    }
}

/// Parses a frame with etherparse and checks every checksum it carries.
pub fn decode(frame: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse: {e:?} {frame:02x?}"));
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = Ipv4HeaderSlice::from_slice(ip.header().slice())
                .unwrap()
                .to_header();
            assert_eq!(
                h.calc_header_checksum(),
                h.header_checksum,
                "IPv4 header checksum"
            );
            if let Some(TransportSlice::Icmpv4(icmp)) = &p.transport {
                assert_eq!(
                    icmp.icmp_type().calc_checksum(icmp.payload()),
                    icmp.checksum(),
                    "ICMPv4 checksum"
                );
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            if let Some(TransportSlice::Icmpv6(icmp)) = &p.transport {
                let h = ip.header();
                assert!(
                    icmp.is_checksum_valid(h.source(), h.destination()),
                    "ICMPv6 checksum"
                );
            }
        }
        _ => {}
    }
    p
}

pub fn icmp4(frame: &[u8]) -> Icmpv4Slice<'_> {
    match decode(frame).transport {
        Some(TransportSlice::Icmpv4(i)) => i,
        other => panic!("not ICMPv4: {other:?}"),
    }
}

pub fn icmp6(frame: &[u8]) -> Icmpv6Slice<'_> {
    match decode(frame).transport {
        Some(TransportSlice::Icmpv6(i)) => i,
        other => panic!("not ICMPv6: {other:?}"),
    }
}

pub fn queue_len(q: &VecDeque<Vec<u8>>) -> usize {
    q.len()
}

/// The `[[port]]` tables of memory ports: (name, MAC, MTU).
pub fn memory_ports(ports: &[(&str, &str, Option<u16>)]) -> String {
    let mut s = String::new();
    for (name, mac, mtu) in ports {
        s += &format!("[[port]]\nname = \"{name}\"\ndriver = \"memory\"\nmac = \"{mac}\"\n");
        if let Some(m) = mtu {
            s += &format!("mtu = {m}\n");
        }
    }
    s
}

/// An `[[interface]]` table with `addresses`.
pub fn interface(name: &str, addresses: &[&str]) -> String {
    let a: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[interface]]\nname = \"{name}\"\naddresses = [{}]\n",
        a.join(", ")
    )
}

/// A static `[[neighbor]]`.
pub fn neighbor(interface: &str, ip: &str, mac: &str) -> String {
    format!("[[neighbor]]\ninterface = \"{interface}\"\nip = \"{ip}\"\nmac = \"{mac}\"\n")
}

/// The usual router of two networks: memory ports net1 (MAC [`R1`]) and
/// net2 ([`R2`], MTU `net2_mtu` if set), addressed `net1` and `net2`.
pub fn two_nets(net2_mtu: Option<u16>, net1: &[&str], net2: &[&str]) -> String {
    memory_ports(&[("net1", R1, None), ("net2", R2, net2_mtu)])
        + &interface("net1", net1)
        + &interface("net2", net2)
}

/// The router's ports as the control socket lists them (memory ports).
pub fn port_infos(router: &Router) -> Vec<PortInfo> {
    router
        .tables()
        .ports
        .iter()
        .map(|p| PortInfo {
            name: p.name.clone(),
            driver: "memory".into(),
            mac: vrouter_wire::MacAddr::ZERO,
            stats: Vec::new(),
        })
        .collect()
}

/// A control socket in the temporary directory, named after `tag` and this
/// process, listing `ports`.
pub fn bind_api(tag: &str, ports: Vec<PortInfo>, allowed_uids: Vec<u32>, max: usize) -> Api {
    let path = std::env::temp_dir().join(format!("vrouter-{tag}-{}.sock", std::process::id()));
    Api::bind(
        ApiConfig {
            path,
            allowed_uids,
            allowed_gids: vec![],
            max_connections: max,
        },
        ports,
    )
    .unwrap_or_else(|e| panic!("control socket {tag}: {e}"))
}

/// A control socket on the harness's router (root only, 4 connections).
pub fn api(h: &Harness, tag: &str) -> Api {
    bind_api(tag, port_infos(&h.router), vec![0], 4)
}

/// An Ethernet + IPv4 + UDP frame.
#[allow(clippy::too_many_arguments)]
pub fn udp4(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv4(src, dst, ttl)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap_or_else(|e| panic!("udp4: {e}"));
    v
}

/// An Ethernet + IPv6 + UDP frame.
#[allow(clippy::too_many_arguments)]
pub fn udp6(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 16],
    dst: [u8; 16],
    hop: u8,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv6(src, dst, hop)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap_or_else(|e| panic!("udp6: {e}"));
    v
}

/// An Ethernet + IPv4 + TCP segment (seq 1, window 1000, TTL 64), a SYN
/// if `syn`.
#[allow(clippy::too_many_arguments)]
pub fn tcp4(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000);
    if syn {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload)
        .unwrap_or_else(|e| panic!("tcp4: {e}"));
    v
}

/// As [`tcp4`] over IPv6 (hop limit 64).
#[allow(clippy::too_many_arguments)]
pub fn tcp6(
    src_mac: &str,
    dst_mac: &str,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(src_mac), mac(dst_mac))
        .ipv6(src, dst, 64)
        .tcp(sport, dport, 1, 1000);
    if syn {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload)
        .unwrap_or_else(|e| panic!("tcp6: {e}"));
    v
}

/// An ARP packet (`op` 1 request, 2 reply) in an Ethernet frame to
/// `eth_dst` from `sha`, unpadded (42 bytes); see [`pad60`].
pub fn arp(
    op: u16,
    eth_dst: [u8; 6],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut f = eth_dst.to_vec();
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// `f` padded with zeros to Ethernet's 60-byte minimum (without FCS).
pub fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}
