//! Observability shared by a worker and the control thread: the packet
//! trace (VPP-style), the drop and port capture, link-state watching, and
//! the helpers the control thread uses to describe packets.
//!
//! A worker owns the writing side. Tracing and capture cost one atomic load
//! per poll loop while they are off. When armed, the worker copies fixed-size
//! records into preallocated lock-free queues (`ArrayQueue`), never
//! allocating; a full queue loses the record and counts it. The control
//! thread drains the queues when a client asks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;

use crate::graph::{ARENA, Counter, NodeId, Queues};
use crate::pkt::{Disposition, Pkt, flags};

/// Bytes of a packet's start a trace keeps (on entry and on exit).
pub const TRACE_HDR: usize = 80;
/// Node steps a trace keeps per packet; later ones are counted, not kept.
pub const TRACE_STEPS: usize = 12;
/// Packets traced at once in one graph run (copies included).
pub const TRACE_SLOTS: usize = 64;
/// Received packets a worker marks for tracing per poll loop at most.
pub const TRACE_MARK_MAX: u32 = 32;
/// Finished traces a worker can hand over before the control thread reads them.
pub const TRACE_QUEUE: usize = 256;
/// Bytes of a captured packet kept.
pub const CAPTURE_SNAP: usize = 256;
/// Captured packets a worker can hand over before the control thread reads them.
pub const CAPTURE_QUEUE: usize = 1024;

/// `Step::next` for a packet handed to its output port.
pub const NEXT_TX: u8 = 0xfd;
/// `Step::next` for a packet held (neighbour resolution).
pub const NEXT_HELD: u8 = 0xfe;
/// `Step::next` for a packet that left the graph (dropped, or consumed).
pub const NEXT_NONE: u8 = 0xff;

/// One node's decision about a traced packet, with the metadata it left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// The node (`NodeId as u8`).
    pub node: u8,
    /// The next node (`NodeId as u8`) or `NEXT_*`.
    pub next: u8,
    /// The drop reason (`Counter` index) when the next node is `drop`.
    pub drop: u16,
    pub rx_if: u16,
    pub tx_if: u16,
    pub tx_port: u16,
    pub domain: u16,
    pub nh: u32,
}

/// Everything recorded about one traced packet.
#[derive(Debug, Clone, Copy)]
pub struct PktTrace {
    /// Arena index of the packet in the run it was traced in.
    pub index: u16,
    pub rx_port: u16,
    pub len_in: u16,
    pub len_out: u16,
    /// Steps recorded (at most `TRACE_STEPS` are kept).
    pub steps: u16,
    pub step: [Step; TRACE_STEPS],
    pub hdr_in: [u8; TRACE_HDR],
    pub hdr_out: [u8; TRACE_HDR],
    /// Final `Disposition as u8`.
    pub disposition: u8,
    pub tx_port: u16,
    pub drop: u16,
    /// Monotonic time (ns) of the run.
    pub now: u64,
}

impl Default for PktTrace {
    fn default() -> Self {
        PktTrace {
            index: 0,
            rx_port: 0,
            len_in: 0,
            len_out: 0,
            steps: 0,
            step: [Step::default(); TRACE_STEPS],
            hdr_in: [0; TRACE_HDR],
            hdr_out: [0; TRACE_HDR],
            disposition: 0,
            tx_port: u16::MAX,
            drop: 0,
            now: 0,
        }
    }
}

fn copy_hdr(dst: &mut [u8; TRACE_HDR], p: &Pkt) -> u16 {
    let d = p.buf.data();
    let n = d.len().min(TRACE_HDR);
    dst[..n].copy_from_slice(&d[..n]);
    d.len().min(usize::from(u16::MAX)) as u16
}

/// A graph's trace scratch: at most `TRACE_SLOTS` packets per run. Only
/// touched when `active` (set when a traced packet enters a run).
pub struct Tracer {
    /// True while the current run has traced packets.
    pub active: bool,
    slot_of: Box<[u8; ARENA]>,
    slots: Box<[PktTrace; TRACE_SLOTS]>,
    used: usize,
    /// Traced packets that found no slot in a run.
    pub overflow: u64,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            active: false,
            slot_of: Box::new([u8::MAX; ARENA]),
            slots: Box::new([PktTrace::default(); TRACE_SLOTS]),
            used: 0,
            overflow: 0,
        }
    }
}

impl Tracer {
    /// Called before `node` runs over `input`: opens a slot for each traced
    /// packet seen for the first time in this run.
    pub fn before(&mut self, pkts: &[Pkt], input: &[u16]) {
        for &i in input {
            let Some(p) = pkts.get(usize::from(i)) else {
                continue;
            };
            if p.meta.flags & flags::TRACED == 0 || self.slot_of[usize::from(i)] != u8::MAX {
                continue;
            }
            if self.used >= TRACE_SLOTS {
                self.overflow += 1;
                continue;
            }
            let t = &mut self.slots[self.used];
            *t = PktTrace {
                index: i,
                rx_port: p.meta.rx_port,
                ..PktTrace::default()
            };
            t.len_in = copy_hdr(&mut t.hdr_in, p);
            self.slot_of[usize::from(i)] = self.used as u8;
            self.used += 1;
        }
    }

    /// Called after `node` ran over `input`: records where each traced
    /// packet went and the metadata the node left.
    pub fn after(&mut self, node: NodeId, pkts: &[Pkt], input: &[u16], q: &Queues) {
        for &i in input {
            let s = self.slot_of[usize::from(i)];
            if s == u8::MAX {
                continue;
            }
            let Some(p) = pkts.get(usize::from(i)) else {
                continue;
            };
            let next = match p.meta.disposition {
                Disposition::Tx => NEXT_TX,
                Disposition::Held => NEXT_HELD,
                Disposition::Drop => NEXT_NONE,
                Disposition::InFlight => NodeId::ALL
                    .iter()
                    .find(|&&n| q.get(n).as_slice().contains(&i))
                    .map_or(NEXT_NONE, |&n| n as u8),
            };
            let t = &mut self.slots[usize::from(s)];
            if let Some(st) = t.step.get_mut(usize::from(t.steps)) {
                *st = Step {
                    node: node as u8,
                    next,
                    drop: p.meta.drop,
                    rx_if: p.meta.rx_if,
                    tx_if: p.meta.tx_if,
                    tx_port: p.meta.tx_port,
                    domain: p.meta.domain,
                    nh: p.meta.nh,
                };
            }
            t.steps = t.steps.saturating_add(1);
        }
    }

    /// Ends a run: completes each trace with the packet's fate and hands it
    /// to `sink`, then forgets the slots.
    pub fn finish(&mut self, pkts: &[Pkt], now: u64, mut sink: impl FnMut(&PktTrace)) {
        for t in self.slots[..self.used].iter_mut() {
            self.slot_of[usize::from(t.index)] = u8::MAX;
            if let Some(p) = pkts.get(usize::from(t.index)) {
                t.len_out = copy_hdr(&mut t.hdr_out, p);
                t.disposition = p.meta.disposition as u8;
                t.tx_port = p.meta.tx_port;
                t.drop = p.meta.drop;
            }
            t.now = now;
            sink(t);
        }
        self.used = 0;
        self.active = false;
    }
}

/// What a capture records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CaptureMode {
    Off = 0,
    /// Every dropped packet (with its reason), while room lasts.
    Drops = 1,
    /// Packets received and transmitted on one port.
    Port = 2,
}

/// Direction of a captured packet.
pub const DIR_RX: u8 = 0;
pub const DIR_TX: u8 = 1;
pub const DIR_DROP: u8 = 2;

/// One captured packet.
#[derive(Debug, Clone, Copy)]
pub struct CaptureRecord {
    /// Monotonic time (ns, the data path's clock).
    pub now: u64,
    /// Length on the wire.
    pub len: u16,
    /// Bytes kept in `data`.
    pub caplen: u16,
    pub port: u16,
    /// Drop reason (`Counter` index) for `DIR_DROP`.
    pub reason: u16,
    pub dir: u8,
    pub data: [u8; CAPTURE_SNAP],
}

/// A worker's observability state, shared with the control thread.
pub struct WorkerObs {
    /// Received packets still to mark for tracing.
    pub trace_budget: AtomicU32,
    pub traces: ArrayQueue<PktTrace>,
    /// Traces lost: queue full or no slot in a run.
    pub trace_lost: AtomicU64,
    /// `CaptureMode as u8`.
    pub capture_mode: AtomicU8,
    /// The port of `CaptureMode::Port`.
    pub capture_port: AtomicU16,
    pub capture: ArrayQueue<CaptureRecord>,
    /// Captured packets lost because the queue was full.
    pub capture_lost: AtomicU64,
    /// Keep one matching packet in this many (0 or 1: every one).
    pub capture_every: AtomicU32,
    /// Matching packets seen while armed (written by the worker only).
    capture_seen: AtomicU64,
}

impl std::fmt::Debug for WorkerObs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerObs")
            .field("trace_budget", &self.trace_budget)
            .field("capture_mode", &self.capture_mode)
            .finish()
    }
}

impl Default for WorkerObs {
    fn default() -> Self {
        WorkerObs {
            trace_budget: AtomicU32::new(0),
            traces: ArrayQueue::new(TRACE_QUEUE),
            trace_lost: AtomicU64::new(0),
            capture_mode: AtomicU8::new(CaptureMode::Off as u8),
            capture_port: AtomicU16::new(0),
            capture: ArrayQueue::new(CAPTURE_QUEUE),
            capture_lost: AtomicU64::new(0),
            capture_every: AtomicU32::new(1),
            capture_seen: AtomicU64::new(0),
        }
    }
}

impl WorkerObs {
    /// Hands over a finished trace (worker side).
    #[inline]
    pub fn push_trace(&self, t: &PktTrace) {
        if self.traces.push(*t).is_err() {
            self.trace_lost.fetch_add(1, Relaxed);
        }
    }

    /// Takes up to `want` from the trace budget; returns how many were taken.
    #[inline]
    pub fn take_budget(&self, want: u32) -> u32 {
        let mut got = 0;
        let _ = self.trace_budget.fetch_update(Relaxed, Relaxed, |b| {
            got = b.min(want);
            Some(b - got)
        });
        got
    }

    /// Copies `p` into the capture queue (worker side).
    #[inline]
    pub fn capture(&self, p: &Pkt, dir: u8, port: u16, now: u64) {
        let every = u64::from(self.capture_every.load(Relaxed).max(1));
        let seen = self.capture_seen.load(Relaxed);
        self.capture_seen.store(seen.wrapping_add(1), Relaxed);
        if !seen.is_multiple_of(every) {
            return;
        }
        let d = p.buf.data();
        let n = d.len().min(CAPTURE_SNAP);
        let mut r = CaptureRecord {
            now,
            len: d.len().min(usize::from(u16::MAX)) as u16,
            caplen: n as u16,
            port,
            reason: p.meta.drop,
            dir,
            data: [0; CAPTURE_SNAP],
        };
        r.data[..n].copy_from_slice(&d[..n]);
        if self.capture.push(r).is_err() {
            self.capture_lost.fetch_add(1, Relaxed);
        }
    }

    /// Captures what the mode asks for among `pkts` after a graph run
    /// (dropped packets, or those transmitted on the port).
    pub fn capture_after_run(&self, mode: u8, pkts: &[Pkt], now: u64) {
        let port = self.capture_port.load(Relaxed);
        for p in pkts {
            if mode == CaptureMode::Drops as u8 && p.meta.disposition == Disposition::Drop {
                self.capture(p, DIR_DROP, p.meta.rx_port, now);
            } else if mode == CaptureMode::Port as u8
                && p.meta.disposition == Disposition::Tx
                && p.meta.tx_port == port
            {
                self.capture(p, DIR_TX, port, now);
            }
        }
    }
}

// ---- describing packets (control thread) ----

fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A one-line summary of a frame's headers (`02:..→02:.. IPv4 198.18.1.2 →
/// 198.18.2.2 ttl 64 ICMP echo-request`), from as many bytes as are given.
pub fn summarize(frame: &[u8], len: usize) -> String {
    if frame.len() < 14 {
        return format!("runt frame, {len} bytes");
    }
    let mut s = format!("{} → {}", mac_text(&frame[6..12]), mac_text(&frame[0..6]));
    let mut et = u16::from_be_bytes([frame[12], frame[13]]);
    let mut off = 14;
    if et == 0x8100 && frame.len() >= 18 {
        s += &format!(
            " vlan {}",
            u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff
        );
        et = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    let l3 = &frame[off..];
    let (proto, l4) = match et {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            s += &format!(
                " IPv4 {} → {} ttl {}",
                Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]),
                Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]),
                l3[8]
            );
            (l3[9], l3.get(ihl..).unwrap_or(&[]))
        }
        0x86dd if l3.len() >= 40 => {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&l3[o..o + 16]);
                Ipv6Addr::from(b)
            };
            s += &format!(" IPv6 {} → {} hlim {}", a(8), a(24), l3[7]);
            (l3[6], &l3[40..])
        }
        0x0806 if l3.len() >= 28 => {
            let op = u16::from_be_bytes([l3[6], l3[7]]);
            s += &format!(
                " ARP {} {} tell {}",
                if op == 1 { "who-has" } else { "reply" },
                Ipv4Addr::new(l3[24], l3[25], l3[26], l3[27]),
                Ipv4Addr::new(l3[14], l3[15], l3[16], l3[17])
            );
            return s + &format!(", {len} bytes");
        }
        _ => {
            return s + &format!(" ethertype 0x{et:04x}, {len} bytes");
        }
    };
    match proto {
        6 | 17 if l4.len() >= 4 => {
            s += &format!(
                " {} {} → {}",
                if proto == 6 { "TCP" } else { "UDP" },
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]])
            );
        }
        1 | 58 if !l4.is_empty() => {
            let name = match (proto, l4[0]) {
                (1, 8) | (58, 128) => "echo-request".to_string(),
                (1, 0) | (58, 129) => "echo-reply".to_string(),
                (1, 3) | (58, 1) => "unreachable".to_string(),
                (1, 11) | (58, 3) => "time-exceeded".to_string(),
                (58, 135) => "neighbor-solicit".to_string(),
                (58, 136) => "neighbor-advert".to_string(),
                (_, t) => format!("type {t}"),
            };
            s += &format!(" {} {name}", if proto == 1 { "ICMP" } else { "ICMPv6" });
        }
        p => s += &format!(" proto {p}"),
    }
    s + &format!(", {len} bytes")
}

/// The description of a synthetic packet for `trace packet`.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 1 (ICMP; ICMPv6 for IPv6), 6 or 17.
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    /// Payload bytes after the L4 header.
    pub payload: usize,
}

fn csum_fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn csum_add(mut s: u32, b: &[u8]) -> u32 {
    let mut c = b.chunks_exact(2);
    for w in &mut c {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = c.remainder() {
        s += u32::from(*x) << 8;
    }
    s
}

/// Builds the frame of a synthetic packet, with correct checksums.
pub fn build_frame(s: &Synthetic) -> Result<Vec<u8>, String> {
    if s.src.is_ipv4() != s.dst.is_ipv4() {
        return Err("source and destination are of different families".into());
    }
    let v6 = s.dst.is_ipv6();
    let proto = if v6 && s.proto == 1 { 58 } else { s.proto };
    let mut l4 = match proto {
        17 => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&s.sport.to_be_bytes());
            h[2..4].copy_from_slice(&s.dport.to_be_bytes());
            h
        }
        6 => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&s.sport.to_be_bytes());
            h[2..4].copy_from_slice(&s.dport.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = 0x02; // SYN
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        1 | 58 => {
            let mut h = vec![0u8; 8];
            h[0] = if proto == 1 { 8 } else { 128 };
            h[4..6].copy_from_slice(&s.sport.to_be_bytes());
            h[6..8].copy_from_slice(&1u16.to_be_bytes());
            h
        }
        p => return Err(format!("protocol {p} is not icmp, tcp or udp")),
    };
    l4.resize(l4.len() + s.payload, 0);
    let l4len = l4.len();
    if proto == 17 {
        l4[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
    }
    let mut pseudo = 0u32;
    let l3 = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let total = 20 + l4len;
            if total > 1500 {
                return Err("packet larger than 1500 bytes".into());
            }
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = s.ttl;
            h[9] = proto;
            h[12..16].copy_from_slice(&a.octets());
            h[16..20].copy_from_slice(&b.octets());
            let c = csum_fold(csum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            if proto != 1 {
                pseudo = csum_add(csum_add(0, &a.octets()), &b.octets())
                    + u32::from(proto)
                    + l4len as u32;
            }
            h
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            if 40 + l4len > 1500 {
                return Err("packet larger than 1500 bytes".into());
            }
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = s.ttl;
            h[8..24].copy_from_slice(&a.octets());
            h[24..40].copy_from_slice(&b.octets());
            pseudo =
                csum_add(csum_add(0, &a.octets()), &b.octets()) + u32::from(proto) + l4len as u32;
            h
        }
        _ => return Err("source and destination are of different families".into()),
    };
    let co = match proto {
        17 => 6,
        6 => 16,
        _ => 2,
    };
    let c = csum_fold(csum_add(pseudo, &l4));
    let c = if proto == 17 && c == 0 { 0xffff } else { c };
    l4[co..co + 2].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(18 + l3.len() + l4len);
    f.extend_from_slice(&s.dst_mac);
    f.extend_from_slice(&s.src_mac);
    if let Some(v) = s.vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    f.extend_from_slice(&l3);
    f.extend_from_slice(&l4);
    Ok(f)
}

/// The name of a drop reason index.
pub fn reason_name(i: u16) -> &'static str {
    Counter::from_index(i).map_or("unknown", Counter::name)
}

// ---- link state ----

/// Watches the link state of kernel-backed ports (`/sys/class/net/<if>`).
#[derive(Debug)]
pub struct LinkWatch {
    /// (port name, kernel interface, last known state).
    ports: Vec<(String, String, Option<bool>)>,
    root: std::path::PathBuf,
}

impl LinkWatch {
    /// Watches `ports`: (port name, kernel interface).
    pub fn new(ports: Vec<(String, String)>) -> LinkWatch {
        LinkWatch {
            ports: ports.into_iter().map(|(p, i)| (p, i, None)).collect(),
            root: "/sys/class/net".into(),
        }
    }

    /// Reads sysfs under `root` instead (tests).
    pub fn with_root(mut self, root: impl Into<std::path::PathBuf>) -> LinkWatch {
        self.root = root.into();
        self
    }

    fn read(&self, iface: &str) -> bool {
        let dir = self.root.join(iface);
        let oper = std::fs::read_to_string(dir.join("operstate")).unwrap_or_default();
        match oper.trim() {
            "up" => true,
            // Interfaces without operstate support (tun/tap, some virtual
            // ones): trust the carrier.
            "unknown" => {
                std::fs::read_to_string(dir.join("carrier")).is_ok_and(|c| c.trim() == "1")
            }
            _ => false,
        }
    }

    /// Reads every watched link; returns the ports whose state changed since
    /// the last call (the first call reports nothing, it learns the states).
    pub fn poll(&mut self) -> Vec<(String, String, bool)> {
        let mut changed = Vec::new();
        for k in 0..self.ports.len() {
            let up = self.read(&self.ports[k].1);
            let (name, iface, last) = &mut self.ports[k];
            if let Some(was) = *last
                && was != up
            {
                changed.push((name.clone(), iface.clone(), up));
            }
            *last = Some(up);
        }
        changed
    }

    /// Last known states: (port name, up).
    pub fn states(&self) -> impl Iterator<Item = (&str, bool)> {
        self.ports
            .iter()
            .filter_map(|(n, _, s)| s.map(|s| (n.as_str(), s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frames_parse_and_summarize() {
        let s = Synthetic {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan: None,
            src: "198.18.1.2".parse().unwrap(),
            dst: "198.18.2.2".parse().unwrap(),
            proto: 17,
            sport: 1234,
            dport: 53,
            ttl: 64,
            payload: 10,
        };
        let f = build_frame(&s).unwrap();
        assert_eq!(f.len(), 14 + 20 + 8 + 10);
        // IPv4 header checksum verifies.
        assert_eq!(csum_fold(csum_add(0, &f[14..34])), 0);
        let t = summarize(&f, f.len());
        assert!(
            t.contains("IPv4 198.18.1.2 → 198.18.2.2 ttl 64 UDP 1234 → 53"),
            "{t}"
        );
        let s6 = Synthetic {
            src: "2001:db8:1::2".parse().unwrap(),
            dst: "2001:db8:2::2".parse().unwrap(),
            proto: 1,
            ..s.clone()
        };
        let f = build_frame(&s6).unwrap();
        let t = summarize(&f, f.len());
        assert!(t.contains("ICMPv6 echo-request"), "{t}");
        let bad = Synthetic {
            dst: "2001:db8::1".parse().unwrap(),
            ..s
        };
        assert!(build_frame(&bad).is_err());
        assert!(summarize(&[0; 4], 4).contains("runt"));
    }

    #[test]
    fn link_watch_reports_changes_only() {
        let dir = std::env::temp_dir().join(format!("vrouter-lw-{}", std::process::id()));
        let eth = dir.join("x0");
        std::fs::create_dir_all(&eth).unwrap();
        std::fs::write(eth.join("operstate"), "up\n").unwrap();
        let mut w = LinkWatch::new(vec![("a".into(), "x0".into()), ("b".into(), "gone".into())])
            .with_root(&dir);
        assert!(w.poll().is_empty());
        std::fs::write(eth.join("operstate"), "down\n").unwrap();
        assert_eq!(w.poll(), vec![("a".into(), "x0".into(), false)]);
        assert!(w.poll().is_empty());
        let states: Vec<_> = w.states().collect();
        assert_eq!(states, vec![("a", false), ("b", false)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn take_budget_never_underflows() {
        let o = WorkerObs::default();
        o.trace_budget.store(5, Relaxed);
        assert_eq!(o.take_budget(3), 3);
        assert_eq!(o.take_budget(3), 2);
        assert_eq!(o.take_budget(3), 0);
        assert_eq!(o.trace_budget.load(Relaxed), 0);
    }
}
