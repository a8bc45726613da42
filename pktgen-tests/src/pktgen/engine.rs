//! Ports, the send/receive loop and the RFC 2544 search.
//!
//! One thread does everything: it builds a burst of frames from the
//! templates (pool buffers, no allocation), stamps them, hands the burst to
//! the TX port (one ring kick), polls the TX port for completions and the RX
//! port for arrivals, and spins on the clock between bursts when paced. On a
//! small machine that keeps the generator on one core, next to the
//! forwarder under test rather than competing with it.
//!
//! Pacing is by token: after `t` seconds, `rate × t` frames are due; each
//! burst sends what is due (at most `batch`). The clock is read once per
//! burst (vDSO, no syscall); every frame of a burst carries that time.

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use vrouter_buf::{FramePool, PacketBuf};
use vrouter_dataplane::pkt::Pkt;
use vrouter_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use vrouter_dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};
use vrouter_dataplane::port::{AttachCtx, Port, PortStats, sys};

use super::PktgenError;
use super::rxstats::{RxStats, RxSummary};
use super::template::{self, Templates};

/// How frames reach the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// AF_XDP socket (zero-copy where the driver has it, copy mode on veth).
    AfXdp,
    /// AF_PACKET with memory-mapped rings (any interface).
    AfPacket,
}

/// An interface to send or receive on.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub iface: String,
    /// Network namespace (a name under /var/run/netns), if not ours.
    pub netns: Option<String>,
    pub driver: Driver,
    pub queue: u32,
}

impl Endpoint {
    fn ns_label(&self) -> String {
        self.netns
            .as_ref()
            .map(|n| format!(" (netns {n})"))
            .unwrap_or_default()
    }
}

/// An open port with its own frame pool.
pub struct OpenPort {
    pub port: Box<dyn Port>,
    pub pool: FramePool,
    pub stats: Arc<PortStats>,
    /// "zero-copy", "copy" (AF_XDP) or "af-packet".
    pub mode: String,
    pub mtu: u32,
    pub mac: [u8; 6],
}

/// Frames per port pool (32 MiB).
const POOL_FRAMES: u32 = 16384;
/// Descriptors per AF_XDP ring: 4096 frames of slack, 40 ms at 100 kpps,
/// when the receiving thread is descheduled.
const RING_SIZE: u32 = 4096;

/// Enters a network namespace for as long as the guard lives.
struct NsGuard {
    orig: File,
}

impl NsGuard {
    fn enter(ns: &str) -> Result<NsGuard, PktgenError> {
        let sys_err = |what: String| move |source| PktgenError::Sys { what, err: source };
        let orig = File::open("/proc/thread-self/ns/net")
            .map_err(sys_err("opening /proc/thread-self/ns/net".into()))?;
        let path = format!("/var/run/netns/{ns}");
        let f = File::open(&path).map_err(sys_err(format!("network namespace `{ns}` ({path})")))?;
        sys::set_netns(&f).map_err(sys_err(format!("entering network namespace `{ns}`")))?;
        Ok(NsGuard { orig })
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = sys::set_netns(&self.orig);
    }
}

/// Opens `ep` (entering its namespace for the set-up only: a socket stays
/// in the namespace it was created in).
pub fn open_port(ep: &Endpoint, index: u16) -> Result<OpenPort, PktgenError> {
    let _ns = match &ep.netns {
        Some(n) => Some(NsGuard::enter(n)?),
        None => None,
    };
    let perr = |err| PktgenError::Port {
        iface: ep.iface.clone(),
        ns: ep.ns_label(),
        err,
    };
    // A clear error for a missing interface before anything is set up.
    sys::ifindex(&ep.iface).map_err(|err| PktgenError::Sys {
        what: format!("interface `{}`{}", ep.iface, ep.ns_label()),
        err,
    })?;
    let mtu = sys::if_mtu(&ep.iface).map_err(|err| PktgenError::Sys {
        what: format!("reading the MTU of `{}`", ep.iface),
        err,
    })?;
    let mut pool = FramePool::new(POOL_FRAMES).map_err(|e| PktgenError::Config(e.to_string()))?;
    let name = format!("pktgen{index}");
    let (port, mode): (Box<dyn Port>, String) = match ep.driver {
        Driver::AfXdp => {
            let cfg = AfXdpConfig {
                interface: ep.iface.clone(),
                queue: ep.queue,
                ring_size: RING_SIZE,
                require_zero_copy: false,
                mac: None,
                xdp_mode: Default::default(),
                busy_poll_us: 0,
                busy_poll_budget: 64,
            };
            // A socket just closed on this queue (the previous run) is
            // released by the kernel asynchronously: binding meanwhile
            // fails with EBUSY. Try again for up to 3 s.
            let mut tries = 0;
            let p = loop {
                let mut p = AfXdpPort::open(index, &name, &cfg).map_err(perr)?;
                match p.attach(&mut pool, &mut AttachCtx::default()) {
                    Ok(()) => break p,
                    Err(e) if tries < 30 && is_busy(&e) => {
                        drop(p);
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                        pool = FramePool::new(POOL_FRAMES)
                            .map_err(|e| PktgenError::Config(e.to_string()))?;
                    }
                    Err(e) => return Err(perr(e)),
                }
            };
            let mode = p.mode.to_string();
            (Box::new(p), mode)
        }
        Driver::AfPacket => {
            let cfg = AfPacketConfig {
                interface: ep.iface.clone(),
                fanout: None,
                block_timeout_ms: 1,
                mac: None,
            };
            let mut p = AfPacketPort::open(index, &name, &cfg).map_err(perr)?;
            p.attach(&mut pool, &mut AttachCtx::default())
                .map_err(perr)?;
            (Box::new(p), "af-packet".to_string())
        }
    };
    let stats = port.stats().clone();
    let mac = port.mac().0;
    Ok(OpenPort {
        port,
        pool,
        stats,
        mode,
        mtu,
        mac,
    })
}

fn is_busy(e: &vrouter_dataplane::port::PortError) -> bool {
    matches!(e, vrouter_dataplane::port::PortError::Sys { source, .. }
        if source.raw_os_error() == Some(16))
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME: one clock for every
/// process of the host, so a separate receiver can compute latency).
#[inline(always)]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How long and how fast one run (or trial) sends.
#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    /// Packets per second; `None`: as fast as the port takes them.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Frames per TX burst.
    pub batch: usize,
    /// How long to keep receiving after the last frame left.
    pub drain: Duration,
    /// Sleep when no frame is due at the requested rate (zero: spin, the
    /// most precise pacing; non-zero leaves the CPU to others, as a soak on
    /// a shared machine needs).
    pub idle_sleep: Duration,
}

/// What one run sent and received.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Requested packets/s (None: max).
    pub target_pps: Option<f64>,
    pub sent: u64,
    pub sent_bytes: u64,
    pub seconds: f64,
    /// Frames per second actually offered.
    pub offered_pps: f64,
    /// False when a requested rate was missed by more than 5%.
    pub rate_reached: bool,
    /// Bursts the TX port could not take whole (ring full: sent again).
    pub tx_ring_full: u64,
    pub rx: Option<RxSummary>,
    /// Frames lost: sent − received once (None without a receiver).
    pub lost: Option<u64>,
    pub loss_ratio: Option<f64>,
    /// Frames per second received (unique), over the sending time.
    pub delivered_pps: Option<f64>,
}

/// The generator: a TX port, an optional RX port, the templates.
pub struct Generator {
    tx: OpenPort,
    /// None: no receiver; `rx_on_tx`: frames arriving on the TX port count.
    rx: Option<OpenPort>,
    rx_on_tx: bool,
    templates: Templates,
    stats: RxStats,
    trial: u64,
    flow: usize,
    pat: usize,
    bufs: Vec<PacketBuf>,
    pkts: Vec<Pkt>,
    /// Every frame gets its own source MAC (`template::random_mac`).
    random_src_mac: bool,
}

impl Generator {
    /// A generator sending on `tx` and, if `rx` is given, receiving there
    /// (the same interface and namespace as `tx` share one port).
    pub fn new(
        tx: &Endpoint,
        rx: Option<&Endpoint>,
        templates: Templates,
    ) -> Result<Generator, PktgenError> {
        let txp = open_port(tx, 0)?;
        let ip_len = templates.max_ip_len;
        if ip_len > txp.mtu as usize {
            return Err(PktgenError::Config(format!(
                "the template does not fit the MTU of `{}`: its largest frame carries a {ip_len}-byte IP packet, the MTU is {} (use smaller --size, or raise the MTU)",
                tx.iface, txp.mtu
            )));
        }
        let same = rx.is_some_and(|r| r.iface == tx.iface && r.netns == tx.netns);
        let rxp = match rx {
            Some(r) if !same => Some(open_port(r, 1)?),
            _ => None,
        };
        Ok(Generator {
            tx: txp,
            rx: rxp,
            rx_on_tx: same,
            templates,
            stats: RxStats::new(),
            trial: 0,
            flow: 0,
            pat: 0,
            bufs: Vec::with_capacity(1024),
            pkts: Vec::with_capacity(1024),
            random_src_mac: false,
        })
    }

    /// The TX port's MAC address and mode.
    pub fn tx_info(&self) -> ([u8; 6], &str) {
        (self.tx.mac, &self.tx.mode)
    }

    /// The RX port's mode, if there is a separate one.
    pub fn rx_mode(&self) -> Option<&str> {
        self.rx.as_ref().map(|r| r.mode.as_str())
    }

    /// Sets the source MAC of every frame (the outer one for VXLAN).
    pub fn set_src_mac(&mut self, mac: [u8; 6]) {
        self.templates.set_src_mac(mac);
    }

    /// Gives every frame its own pseudo-random source MAC (a MAC-table
    /// flood); the ARP sender address follows it.
    pub fn set_random_src_mac(&mut self, on: bool) {
        self.random_src_mac = on;
    }

    /// True if something receives.
    pub fn receives(&self) -> bool {
        self.rx.is_some() || self.rx_on_tx
    }

    /// Polls both ports once: TX completions and kicks, arrivals counted.
    #[inline]
    fn poll(&mut self) {
        let n = self
            .tx
            .port
            .rx_burst(&mut self.tx.pool, &mut self.pkts, 256);
        if n > 0 {
            // The clock is read only when something arrived.
            let now = now_ns();
            for p in self.pkts.drain(..) {
                if self.rx_on_tx {
                    count(&mut self.stats, p.buf.data(), now);
                }
                self.tx.pool.free(p.buf);
            }
        }
        if let Some(rx) = &mut self.rx {
            let n = rx.port.rx_burst(&mut rx.pool, &mut self.pkts, 256);
            if n > 0 {
                let now = now_ns();
                for p in self.pkts.drain(..) {
                    count(&mut self.stats, p.buf.data(), now);
                    rx.pool.free(p.buf);
                }
            }
        }
    }

    /// Sends for `o.duration` or `o.count` frames at `o.rate`, as trial
    /// `self.trial` (sequence numbers `trial << 48 | n`), then drains.
    pub fn run(&mut self, o: &RunOpts) -> RunResult {
        self.stats.reset(self.trial);
        let seq_base = self.trial << 48;
        let batch = o.batch.clamp(1, 1024);
        let ring_full0 = self.tx.stats.snapshot().tx_ring_full;
        let (mut sent, mut bytes) = (0u64, 0u64);
        // One clock read per burst: it paces and it stamps.
        let start = now_ns();
        let mut elapsed;
        loop {
            let now = now_ns();
            elapsed = Duration::from_nanos(now.saturating_sub(start));
            if o.duration.is_some_and(|d| elapsed >= d) || o.count.is_some_and(|c| sent >= c) {
                break;
            }
            let mut want = batch as u64;
            if let Some(r) = o.rate {
                let due = (elapsed.as_secs_f64() * r) as u64 + 1;
                want = want.min(due.saturating_sub(sent));
            }
            if let Some(c) = o.count {
                want = want.min(c - sent);
            }
            if want > 0 {
                let (acc, b) = self.burst(seq_base | sent, want as usize, now);
                sent += acc;
                bytes += b;
            }
            self.poll();
            if want == 0 && !o.idle_sleep.is_zero() {
                std::thread::sleep(o.idle_sleep);
            }
        }
        let seconds = elapsed.as_secs_f64();
        // Drain: until everything sent has arrived, or the drain time ends.
        let drain_end = Instant::now() + o.drain;
        while self.receives() && Instant::now() < drain_end {
            self.poll();
            if self.receives() && self.stats.unique() >= sent {
                break;
            }
        }
        if !self.receives() {
            // Let the kernel finish the TX ring before the caller reads.
            let end = Instant::now() + Duration::from_millis(20);
            while Instant::now() < end {
                self.poll();
            }
        }
        let offered = if seconds > 0.0 {
            sent as f64 / seconds
        } else {
            0.0
        };
        let rate_reached = o.rate.is_none_or(|r| offered >= 0.95 * r);
        let rx = self.receives().then(|| self.stats.summary());
        let lost = rx.as_ref().map(|r| sent.saturating_sub(r.unique));
        RunResult {
            target_pps: o.rate,
            sent,
            sent_bytes: bytes,
            seconds,
            offered_pps: offered,
            rate_reached,
            tx_ring_full: self.tx.stats.snapshot().tx_ring_full - ring_full0,
            loss_ratio: lost.map(|l| {
                if sent > 0 {
                    l as f64 / sent as f64
                } else {
                    0.0
                }
            }),
            delivered_pps: rx.as_ref().map(|r| {
                if seconds > 0.0 {
                    r.unique as f64 / seconds
                } else {
                    0.0
                }
            }),
            rx,
            lost,
        }
    }

    /// Builds up to `n` frames (sequence numbers from `seq`, time `ts`) and hands them
    /// to the TX port. Returns (frames and bytes the port took): frames it
    /// refused (ring full) are not counted, and their sequence numbers are
    /// used again by the next burst.
    #[inline]
    fn burst(&mut self, seq: u64, n: usize, ts: u64) -> (u64, u64) {
        let t = &self.templates;
        let (mut flow, mut pat) = (self.flow, self.pat);
        let mut lens = 0u64;
        let random_mac = self.random_src_mac;
        for i in 0..n {
            let Some(mut b) = self.tx.pool.alloc() else {
                break;
            };
            let class = usize::from(t.pattern[pat]);
            let (f, src) = t.frame(flow, class);
            match b.append(src.len()) {
                Ok(d) => {
                    d.copy_from_slice(src);
                    template::stamp(f, d, seq + i as u64, ts);
                    if random_mac {
                        let m = template::random_mac(seq + i as u64);
                        d[6..12].copy_from_slice(&m);
                        if d[12..14] == [0x08, 0x06] {
                            d[22..28].copy_from_slice(&m);
                        }
                    }
                }
                Err(_) => {
                    self.tx.pool.free(b);
                    break;
                }
            }
            lens += src.len() as u64;
            self.bufs.push(b);
            flow += 1;
            if flow == t.flows {
                flow = 0;
            }
            pat += 1;
            if pat == t.pattern.len() {
                pat = 0;
            }
        }
        let built = self.bufs.len() as u64;
        let before = self
            .tx
            .stats
            .tx_packets
            .load(std::sync::atomic::Ordering::Relaxed);
        self.tx.port.tx_burst(&mut self.tx.pool, &mut self.bufs);
        let took = self
            .tx
            .stats
            .tx_packets
            .load(std::sync::atomic::Ordering::Relaxed)
            - before;
        if took == built {
            self.flow = flow;
            self.pat = pat;
            (took, lens)
        } else {
            // Bytes of the frames taken: recompute from the pattern.
            let mut b = 0u64;
            let (mut fl, mut p) = (self.flow, self.pat);
            for _ in 0..took {
                b += u64::from(t.frame(fl, usize::from(t.pattern[p])).0.len);
                fl = (fl + 1) % t.flows;
                p = (p + 1) % t.pattern.len();
            }
            self.flow = fl;
            self.pat = p;
            (took, b)
        }
    }

    /// The RFC 2544 throughput search: trials of `trial` at a rate found by
    /// binary search between 0 and the highest rate the generator offers
    /// (or `max_rate`), until the bounds are within `resolution` (a
    /// fraction of the upper bound) or `max_trials` trials ran. Returns the
    /// highest rate whose loss ratio was at most `threshold`, and the trials.
    pub fn rfc2544(&mut self, s: &Rfc2544Opts) -> Rfc2544Result {
        let mut trials: Vec<Trial> = Vec::new();
        // The upper bound: what the generator offers flat out, or the cap.
        let first = self.trial(s, s.max_rate);
        trials.push(first.clone());
        let (mut lo, mut hi);
        let mut best: Option<Trial> = None;
        if first.passed {
            return Rfc2544Result {
                threshold: s.threshold,
                throughput_pps: first.offered_pps,
                limited_by_generator: s.max_rate.is_none()
                    || first.offered_pps < 0.98 * s.max_rate.unwrap_or(0.0),
                best: Some(first),
                trials,
            };
        }
        hi = first.offered_pps;
        lo = 0.0;
        while trials.len() < s.max_trials && hi - lo > s.resolution * hi && hi > 1.0 {
            let mid = (lo + hi) / 2.0;
            let mut t = self.trial(s, Some(mid));
            trials.push(t.clone());
            // A failed trial may be run again (transient loss: another
            // process took the forwarder's core for a moment).
            for _ in 0..s.retries {
                if t.passed {
                    break;
                }
                t = self.trial(s, Some(mid));
                trials.push(t.clone());
            }
            if t.passed {
                lo = mid;
                best = Some(t);
            } else {
                hi = mid;
            }
        }
        Rfc2544Result {
            threshold: s.threshold,
            throughput_pps: lo,
            limited_by_generator: false,
            best,
            trials,
        }
    }

    /// One RFC 2544 trial at `rate` (None: max).
    fn trial(&mut self, s: &Rfc2544Opts, rate: Option<f64>) -> Trial {
        self.trial += 1;
        let r = self.run(&RunOpts {
            rate,
            duration: Some(s.trial),
            count: None,
            batch: s.batch,
            drain: s.drain,
            idle_sleep: Duration::ZERO,
        });
        let loss = r.loss_ratio.unwrap_or(1.0);
        Trial {
            rate_pps: rate,
            offered_pps: r.offered_pps,
            sent: r.sent,
            received: r.rx.as_ref().map_or(0, |x| x.unique),
            loss_ratio: loss,
            passed: loss <= s.threshold,
            latency: r.rx.as_ref().and_then(|x| x.latency.clone()),
        }
    }

    /// Receives only (no sending) for `duration`, `count` frames, or until
    /// nothing arrived for `idle` after the first frame.
    pub fn receive(
        &mut self,
        duration: Option<Duration>,
        count: Option<u64>,
        idle: Option<Duration>,
    ) -> (RxSummary, f64) {
        self.stats.reset(0);
        self.rx_on_tx = true;
        let start = Instant::now();
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let mut seen = 0u64;
        loop {
            self.poll();
            let now = Instant::now();
            let r = self.stats.received + self.stats.stale;
            if r != seen {
                seen = r;
                last = now;
                first.get_or_insert(now);
            }
            if duration.is_some_and(|d| now - start >= d)
                || count.is_some_and(|c| self.stats.unique() >= c)
                || (first.is_some() && idle.is_some_and(|i| now - last >= i))
            {
                break;
            }
        }
        let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
        (self.stats.summary(), secs)
    }
}

/// Counts one received frame.
#[inline(always)]
fn count(s: &mut RxStats, data: &[u8], now: u64) {
    match template::parse_stamp(data) {
        Some((seq, ts)) => s.record(seq, ts, now, data.len()),
        None => s.other(),
    }
}

/// Options of the RFC 2544 search.
#[derive(Debug, Clone, Copy)]
pub struct Rfc2544Opts {
    pub threshold: f64,
    pub trial: Duration,
    pub resolution: f64,
    pub max_rate: Option<f64>,
    pub max_trials: usize,
    /// Times a failed trial of the search is run again before its rate
    /// counts as failed.
    pub retries: usize,
    pub batch: usize,
    pub drain: Duration,
}

/// One trial of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub rate_pps: Option<f64>,
    pub offered_pps: f64,
    pub sent: u64,
    pub received: u64,
    pub loss_ratio: f64,
    pub passed: bool,
    pub latency: Option<super::rxstats::Latency>,
}

/// The result of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Rfc2544Result {
    pub threshold: f64,
    /// Highest rate with loss ≤ threshold (0: none passed).
    pub throughput_pps: f64,
    /// The generator's own maximum passed: the forwarder may do more.
    pub limited_by_generator: bool,
    /// The passing trial at that rate.
    pub best: Option<Trial>,
    pub trials: Vec<Trial>,
}
