//! vrouter-pktgen: send stamped test traffic over AF_XDP (or AF_PACKET),
//! receive it on another interface (another namespace if need be), and
//! report offered and delivered rates, loss, reordering, duplicates and
//! latency; or search the RFC 2544 throughput.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use vrouter_pktgen_tests::pktgen::engine::{
    Driver, Endpoint, Generator, Rfc2544Opts, RunOpts, RunResult,
};
use vrouter_pktgen_tests::pktgen::rxstats::{Latency, RxSummary};
use vrouter_pktgen_tests::pktgen::template::{
    self, IMIX, Proto, Range, TemplateSpec, Templates, VxlanSpec,
};

#[derive(Parser)]
#[command(
    name = "vrouter-pktgen",
    version,
    about = "Packet generator and receiver for benchmarking forwarders (AF_XDP, AF_PACKET)",
    long_about = "Packet generator and receiver for benchmarking forwarders.\n\n\
Frames are built once per flow and size; each copy carries an 18-byte stamp \
(magic, sequence number, send time) at the start of its L4 payload, from which \
the receiver counts loss, reordering, duplicates and latency. Sizes are Ethernet \
frame sizes with the 4-byte FCS (RFC 2544: a 64-byte frame is 60 bytes on veth).\n\n\
Examples (as root):\n  \
vrouter-pktgen send -i g0 --dst-mac 02:00:00:00:00:02 --rate 100000 --duration 5\n  \
vrouter-pktgen send -i g0 --rx-iface s0 --rx-netns sink --dst-mac 02:00:00:00:00:02 \\\n      \
--src 198.18.1.2-198.18.1.250 --dport 1000-1999 --rate max --count 1000000 --json\n  \
vrouter-pktgen send -i g0 --rx-iface s0 --rx-netns sink --dst-mac ... --rfc2544 --trial 2\n  \
vrouter-pktgen rx -i s0 --netns sink --idle 2"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send traffic (and receive it, with --rx-iface); --rfc2544 searches the throughput.
    Send(Box<SendArgs>),
    /// Receive and count traffic sent by another vrouter-pktgen.
    Rx(RxArgs),
}

#[derive(Args)]
struct SendArgs {
    /// Interface to send on.
    #[arg(short, long)]
    iface: String,
    /// Network namespace of --iface (a name under /var/run/netns).
    #[arg(long)]
    netns: Option<String>,
    /// Interface to receive the traffic on (may be --iface itself).
    #[arg(long)]
    rx_iface: Option<String>,
    /// Network namespace of --rx-iface.
    #[arg(long)]
    rx_netns: Option<String>,
    /// Port driver.
    #[arg(long, value_enum, default_value = "af-xdp")]
    driver: Driver,
    /// Queue of the interface to send on (AF_XDP).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Destination MAC (the next hop: the forwarder's port, or the sink).
    #[arg(long)]
    dst_mac: String,
    /// Source MAC (default: the interface's).
    #[arg(long)]
    src_mac: Option<String>,
    /// Give every frame its own pseudo-random, locally administered unicast
    /// source MAC (a hash of its sequence number): a MAC-table flood.
    #[arg(long, conflicts_with = "src_mac")]
    src_mac_random: bool,
    /// Source address or range A-B (IPv4 or IPv6).
    #[arg(long, default_value = "198.18.1.2")]
    src: String,
    /// Destination address or range A-B.
    #[arg(long, default_value = "198.18.2.2")]
    dst: String,
    /// Source port or range P-Q.
    #[arg(long, default_value = "1024")]
    sport: String,
    /// Destination port or range P-Q.
    #[arg(long, default_value = "9")]
    dport: String,
    /// L4 protocol (tcp: data segments, ACK|PSH, no handshake; syn: TCP
    /// SYNs; arp: ARP requests for --dst from --src; garp: gratuitous ARPs
    /// for --src. ARP frames carry no stamp: nothing counts them at the receiver).
    #[arg(long, value_enum, default_value = "udp")]
    proto: Proto,
    /// Frame size in bytes, FCS included.
    #[arg(long, default_value_t = 64, conflicts_with = "imix")]
    size: u16,
    /// IMIX: 64, 570 and 1518-byte frames, 7:4:1.
    #[arg(long)]
    imix: bool,
    /// Encapsulate in VXLAN with this VNI (outer IPv4/UDP 4789).
    #[arg(long)]
    vni: Option<u32>,
    /// Outer source address (the sending VTEP).
    #[arg(long, default_value = "198.18.0.1", requires = "vni")]
    vtep_src: String,
    /// Outer destination address (the receiving VTEP).
    #[arg(long, default_value = "198.18.0.2", requires = "vni")]
    vtep_dst: String,
    /// Inner source MAC.
    #[arg(long, default_value = "02:00:00:00:10:01", requires = "vni")]
    inner_src_mac: String,
    /// Inner destination MAC.
    #[arg(long, default_value = "02:00:00:00:10:02", requires = "vni")]
    inner_dst_mac: String,
    /// Packets per second, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
    /// Seconds to send (default 10 unless --count).
    #[arg(long)]
    duration: Option<f64>,
    /// Frames to send.
    #[arg(long)]
    count: Option<u64>,
    /// Frames per TX burst (32: what the kernel's AF_XDP copy mode sends per kick).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Milliseconds to keep receiving after the last frame.
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// With --rate: microseconds to sleep when no frame is due (0: spin, the
    /// most precise pacing; a few hundred leave the CPU to others).
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u64,
    /// Pin the generator to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// Search the highest rate with loss ≤ --loss-threshold (RFC 2544).
    #[arg(long, requires = "rx_iface")]
    rfc2544: bool,
    /// Loss ratio a trial may have and pass (0.0: zero loss).
    #[arg(long, default_value_t = 0.0)]
    loss_threshold: f64,
    /// Seconds per RFC 2544 trial.
    #[arg(long, default_value_t = 2.0)]
    trial: f64,
    /// Stop when the search bounds are within this percent of the upper one.
    #[arg(long, default_value_t = 1.0)]
    resolution: f64,
    /// Upper bound of the search in packets/s (default: what the generator offers flat out).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Most trials the search runs.
    #[arg(long, default_value_t = 20)]
    max_trials: usize,
    /// Run a failed search trial again up to this many times before its rate
    /// counts as failed (transient loss on a shared machine).
    #[arg(long, default_value_t = 0)]
    retries: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RxArgs {
    /// Interface to receive on.
    #[arg(short, long)]
    iface: String,
    /// Network namespace of --iface.
    #[arg(long)]
    netns: Option<String>,
    /// Port driver.
    #[arg(long, value_enum, default_value = "af-xdp")]
    driver: Driver,
    /// Queue (AF_XDP).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when nothing arrived for this many seconds (after the first frame).
    #[arg(long)]
    idle: Option<f64>,
    /// Loss is counted against this many frames sent (default: highest sequence number + 1).
    #[arg(long)]
    expect: Option<u64>,
    /// Pin to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vrouter-pktgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Send(a) => send(*a),
        Cmd::Rx(a) => rx(a),
    }
}

fn pin(core: Option<usize>) -> Result<()> {
    if let Some(c) = core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
    {
        bail!("cannot pin to CPU {c}");
    }
    Ok(())
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{what} must be a positive number of seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn send(a: SendArgs) -> Result<ExitCode> {
    let rate = match a.rate.as_str() {
        "max" => None,
        r => {
            let v: f64 = r
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .with_context(|| {
                    format!("--rate `{r}`: a positive number of packets/s or `max`")
                })?;
            Some(v)
        }
    };
    if !(0.0..=1.0).contains(&a.loss_threshold) {
        bail!("--loss-threshold must be a ratio in 0.0..=1.0");
    }
    let src = Range::parse_ip(&a.src)?;
    let dst = Range::parse_ip(&a.dst)?;
    let vxlan = match a.vni {
        Some(vni) => Some(VxlanSpec {
            vni,
            src: a
                .vtep_src
                .parse()
                .context("--vtep-src: not an IPv4 address")?,
            dst: a
                .vtep_dst
                .parse()
                .context("--vtep-dst: not an IPv4 address")?,
            inner_src_mac: template::parse_mac(&a.inner_src_mac)?,
            inner_dst_mac: template::parse_mac(&a.inner_dst_mac)?,
        }),
        None => None,
    };
    let tx = Endpoint {
        iface: a.iface.clone(),
        netns: a.netns.clone(),
        driver: a.driver,
        queue: a.queue,
    };
    let rxe = a.rx_iface.as_ref().map(|i| Endpoint {
        iface: i.clone(),
        netns: a.rx_netns.clone().or_else(|| a.netns.clone()),
        driver: a.driver,
        queue: 0,
    });
    let mut spec = TemplateSpec {
        src_mac: [0; 6],
        dst_mac: template::parse_mac(&a.dst_mac).context("--dst-mac")?,
        src,
        dst,
        sport: Range::parse_port(&a.sport)?,
        dport: Range::parse_port(&a.dport)?,
        proto: a.proto,
        vxlan,
        sizes: if a.imix {
            IMIX.to_vec()
        } else {
            vec![(a.size, 1)]
        },
    };
    let flows = template::flow_count(&spec);
    // Templates first: a bad one fails before any port is touched. The
    // source MAC is the interface's unless given, patched in once the
    // port is open.
    let templates = Templates::build(&spec)?;
    pin(a.core)?;
    let mut g = Generator::new(&tx, rxe.as_ref(), templates)?;
    spec.src_mac = match &a.src_mac {
        Some(m) => template::parse_mac(m).context("--src-mac")?,
        None => g.tx_info().0,
    };
    g.set_src_mac(spec.src_mac);
    g.set_random_src_mac(a.src_mac_random);
    let header = json!({
        "iface": a.iface, "netns": a.netns, "rx_iface": a.rx_iface, "rx_netns": rxe.as_ref().and_then(|r| r.netns.clone()),
        "driver": a.driver, "mode": g.tx_info().1, "proto": a.proto,
        "ip": if src.lo.is_ipv4() { "ipv4" } else { "ipv6" },
        "vni": a.vni, "sizes": spec.sizes, "flows": flows as u64, "src_mac_random": a.src_mac_random,
    });
    if a.rfc2544 {
        let res = g.rfc2544(&Rfc2544Opts {
            threshold: a.loss_threshold,
            trial: secs(a.trial, "--trial")?,
            resolution: a.resolution / 100.0,
            max_rate: a.max_rate.or(rate),
            max_trials: a.max_trials.max(1),
            retries: a.retries,
            batch: a.batch,
            drain: Duration::from_millis(a.drain_ms),
        });
        if a.json {
            println!("{}", json!({"config": header, "rfc2544": res}));
        } else {
            print_header(&header);
            println!("RFC 2544 search, loss threshold {}:", a.loss_threshold);
            println!(
                "  {:>12} {:>12} {:>12} {:>12} {:>10} {:>6} {:>10} {:>10}",
                "rate pps", "offered", "sent", "received", "loss", "pass", "p50 µs", "p99 µs"
            );
            for t in &res.trials {
                let (p50, p99) = t.latency.as_ref().map_or((0.0, 0.0), |l| {
                    (l.p50_ns as f64 / 1e3, l.p99_ns as f64 / 1e3)
                });
                println!(
                    "  {:>12} {:>12.0} {:>12} {:>12} {:>9.4}% {:>6} {:>10.1} {:>10.1}",
                    t.rate_pps.map_or("max".to_string(), |r| format!("{r:.0}")),
                    t.offered_pps,
                    t.sent,
                    t.received,
                    t.loss_ratio * 100.0,
                    if t.passed { "yes" } else { "no" },
                    p50,
                    p99
                );
            }
            println!(
                "throughput: {:.0} pps{}",
                res.throughput_pps,
                if res.limited_by_generator {
                    " (the generator's own maximum passed: the path may do more)"
                } else {
                    ""
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let duration = match (a.duration, a.count) {
        (Some(d), _) => Some(secs(d, "--duration")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let r = g.run(&RunOpts {
        rate,
        duration,
        count: a.count,
        batch: a.batch,
        drain: Duration::from_millis(a.drain_ms),
        idle_sleep: Duration::from_micros(a.idle_sleep_us),
    });
    if a.json {
        println!(
            "{}",
            json!({"config": header, "result": r, "cpu": process_cpu()})
        );
    } else {
        print_header(&header);
        print_run(&r);
    }
    if !r.rate_reached {
        eprintln!(
            "vrouter-pktgen: error: the requested rate of {:.0} pps was not reached: {:.0} pps offered",
            r.target_pps.unwrap_or(0.0),
            r.offered_pps
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// This process's user and system CPU seconds so far (from
/// /proc/self/stat, in USER_HZ = 100 ticks on Linux), for scripts that
/// separate the generator's cost from a forwarder's.
fn process_cpu() -> serde_json::Value {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    // utime and stime are fields 14 and 15: indexes 11 and 12 here.
    json!({"user_s": tick(11), "system_s": tick(12)})
}

fn print_header(h: &serde_json::Value) {
    println!(
        "vrouter-pktgen: {} on {}{} ({}), {} flows, sizes {}{}",
        h["proto"].as_str().unwrap_or(""),
        h["iface"].as_str().unwrap_or(""),
        h["netns"]
            .as_str()
            .map(|n| format!(" in {n}"))
            .unwrap_or_default(),
        h["mode"].as_str().unwrap_or(""),
        h["flows"],
        h["sizes"],
        h["vni"]
            .as_u64()
            .map(|v| format!(", VXLAN VNI {v}"))
            .unwrap_or_default()
    );
}

fn print_latency(l: &Option<Latency>) {
    if let Some(l) = l {
        println!(
            "latency   min {:.1} µs  p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs  mean {:.1} µs",
            l.min_ns as f64 / 1e3,
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            l.p999_ns as f64 / 1e3,
            l.max_ns as f64 / 1e3,
            l.mean_ns / 1e3
        );
    }
}

fn print_rx(r: &RxSummary) {
    println!(
        "received  {} ({} unique, {} duplicates, {} reordered, {} late, {} of an earlier trial, {} not ours)",
        r.received, r.unique, r.duplicates, r.reordered, r.late, r.stale, r.other
    );
    print_latency(&r.latency);
}

fn print_run(r: &RunResult) {
    println!(
        "sent      {} frames, {} bytes in {:.3} s: {:.0} pps{}",
        r.sent,
        r.sent_bytes,
        r.seconds,
        r.offered_pps,
        r.target_pps
            .map(|t| format!(" (target {t:.0})"))
            .unwrap_or_default()
    );
    if let Some(rx) = &r.rx {
        print_rx(rx);
        println!(
            "lost      {} ({:.4}%), delivered {:.0} pps",
            r.lost.unwrap_or(0),
            r.loss_ratio.unwrap_or(0.0) * 100.0,
            r.delivered_pps.unwrap_or(0.0)
        );
    }
}

fn rx(a: RxArgs) -> Result<ExitCode> {
    let ep = Endpoint {
        iface: a.iface.clone(),
        netns: a.netns.clone(),
        driver: a.driver,
        queue: a.queue,
    };
    if a.duration.is_none() && a.count.is_none() && a.idle.is_none() {
        bail!("give --duration, --count or --idle");
    }
    let duration = a.duration.map(|d| secs(d, "--duration")).transpose()?;
    let idle = a.idle.map(|d| secs(d, "--idle")).transpose()?;
    pin(a.core)?;
    // A receiver needs no templates; an empty set is never sent.
    let spec = TemplateSpec {
        src_mac: [0; 6],
        dst_mac: [0; 6],
        src: Range::parse_ip("198.18.0.1")?,
        dst: Range::parse_ip("198.18.0.2")?,
        sport: Range { lo: 1, hi: 1 },
        dport: Range { lo: 1, hi: 1 },
        proto: Proto::Udp,
        vxlan: None,
        sizes: vec![(64, 1)],
    };
    let mut g = Generator::new(&ep, None, Templates::build(&spec)?)?;
    let (s, secs) = g.receive(duration, a.count, idle);
    let expected = a.expect.unwrap_or(s.expected_by_seq);
    let lost = expected.saturating_sub(s.unique);
    if a.json {
        println!(
            "{}",
            json!({"iface": a.iface, "netns": a.netns, "driver": a.driver, "rx": s, "seconds": secs,
                   "expected": expected, "lost": lost,
                   "loss_ratio": if expected > 0 { lost as f64 / expected as f64 } else { 0.0 }})
        );
    } else {
        println!(
            "vrouter-pktgen rx on {}{}: {:.3} s from first to last frame",
            a.iface,
            a.netns.map(|n| format!(" in {n}")).unwrap_or_default(),
            secs
        );
        print_rx(&s);
        println!("lost      {lost} of {expected} expected");
    }
    Ok(ExitCode::SUCCESS)
}
