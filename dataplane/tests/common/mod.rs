//! A single-threaded harness: the real router, worker and pipeline on
//! in-memory ports, driven step by step. Packets are built and decoded with
//! etherparse, an independent implementation.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etherparse::{
    Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice, NetSlice, SlicedPacket, TransportSlice,
};
use vrouter_dataplane::config::{Config, PollMode};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::graph::Counter;
use vrouter_dataplane::port::memory::{MemoryPort, RxQueue, TxCapture};
use vrouter_dataplane::port::{Port, default_mac};
use vrouter_dataplane::report;
use vrouter_dataplane::worker::Worker;

pub struct Harness {
    pub router: Router,
    pub worker: Worker,
    rx: Vec<RxQueue>,
    tx: Vec<TxCapture>,
}

pub fn mac(s: &str) -> [u8; 6] {
    s.parse::<vrouter_wire::MacAddr>().unwrap().octets()
}

impl Harness {
    /// Builds a router from `cfg` (TOML; every port must be `driver = "memory"`).
    pub fn new(cfg: &str) -> Harness {
        let cfg = Config::parse("test.toml", cfg).unwrap_or_else(|e| panic!("{e}"));
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let (mut rx, mut tx) = (Vec::new(), Vec::new());
        for (k, p) in cfg.ports.iter().enumerate() {
            let m = p
                .mac
                .as_deref()
                .map_or(default_mac(k as u16), |m| m.parse().unwrap());
            let (port, r, t) = MemoryPort::queue(k as u16, &p.name, m);
            ports.push(Box::new(port));
            rx.push(r);
            tx.push(t);
        }
        let macs: Vec<_> = ports.iter().map(|p| Some(p.mac())).collect();
        let router =
            Router::from_config(&cfg, &macs, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let worker = Worker::new(
            router.shared().clone(),
            ports,
            8192,
            PollMode::Busy,
            Duration::ZERO,
        )
        .unwrap();
        // The worker is driven from this thread: the router must not wait for it.
        worker.link.running.store(false, Ordering::SeqCst);
        Harness {
            router,
            worker,
            rx,
            tx,
        }
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
