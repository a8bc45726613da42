//! vrouterd: the vRouter data-plane daemon.
//!
//! Reads a TOML configuration, opens the ports, starts the workers and runs
//! the control loop (neighbour learning, MAC aging) until SIGINT or SIGTERM,
//! or — when every port replays a capture — until the input is exhausted.
//! Prints its counters on exit and on SIGUSR1.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use vrouter_buf::FramePool;
use vrouter_dataplane::api::{Api, ApiConfig, PortInfo, Snapshot};
use vrouter_dataplane::config::{Config, Driver, ZeroCopy, parse_mac};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::handover::{self, Channel, HandoverError, Msg, Shape, WorkerOffer};
use vrouter_dataplane::metrics::{self, MetricsServer};
use vrouter_dataplane::obs::LinkWatch;
use vrouter_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use vrouter_dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};
use vrouter_dataplane::port::memory::MemoryPort;
use vrouter_dataplane::port::pcap::PcapPort;
use vrouter_dataplane::port::tap::TapPort;
use vrouter_dataplane::port::{Port, PortStats, default_mac};
use vrouter_dataplane::report;
use vrouter_dataplane::worker::{TakeoverFds, Worker};

/// The vRouter data-plane daemon.
/// The version, with the optional features built in.
const VERSION: &str = if cfg!(feature = "dpdk") {
    concat!(env!("CARGO_PKG_VERSION"), " (features: dpdk)")
} else {
    env!("CARGO_PKG_VERSION")
};

#[derive(Parser, Debug)]
#[command(
    version = VERSION,
    about,
    long_about = "The vRouter data-plane daemon: bridges, routes and \
answers ARP/ND/ICMP in userspace, polling its ports.\n\n\
Configuration: a TOML file (examples in conf/; keys documented in docs/CONFIG.md).\n\
Signals: SIGINT/SIGTERM stop cleanly and print counters; SIGUSR1 prints counters.\n\
Offline mode: when every port is a pcap port, vrouterd stops by itself once all \
input has been processed.\n\n\
Hot restart: `vrouterd --config X --takeover` (same ports and workers as the running \
vrouterd) takes over from the running vrouterd without dropping AF_XDP traffic: it \
receives its state, frame pools and AF_XDP sockets over the handover socket, the \
old one stops and exits 0 (docs/HOT-RESTART.md)."
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/vrouter/vrouter.toml")]
    config: PathBuf,
    /// Validate the configuration and exit (status 0 if valid).
    #[arg(long)]
    check: bool,
    /// Stop after this many seconds (0 = run until signalled or input ends).
    #[arg(long, default_value_t = 0)]
    run_for: u64,
    /// Take over from the vrouterd listening on this handover socket (default:
    /// `[control] handover-socket`, or next to the control socket:
    /// `vrouterd.sock` → `vrouterd.handover.sock`).
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "")]
    takeover: Option<String>,
    /// Log filter (tracing syntax, e.g. `info`, `vrouter_dataplane=debug`).
    #[arg(long, default_value = "info", env = "VROUTER_LOG")]
    log: String,
}

/// The port objects to open, in order: (worker, configured port, queue).
/// The order is the same in every vrouterd with the same ports, which is
/// what lets a new one match the descriptors handed over to it.
fn plan_ports(cfg: &Config, workers: usize) -> Vec<(usize, usize, u16)> {
    let mut plan = Vec::new();
    for (k, p) in cfg.ports.iter().enumerate() {
        match p.driver {
            Driver::Pcap | Driver::Memory | Driver::Tap => plan.push((k % workers, k, 0)),
            Driver::AfPacket | Driver::Dpdk | Driver::AfXdp => {
                for q in 0..p.queues {
                    let w = if p.queues > 1 {
                        q as usize % workers
                    } else {
                        k % workers
                    };
                    plan.push((w, k, q));
                }
            }
        }
    }
    plan
}

fn xdp_config(cfg: &Config, k: usize, q: u16) -> AfXdpConfig {
    let p = &cfg.ports[k];
    AfXdpConfig {
        interface: p.interface.clone().unwrap_or_else(|| p.name.clone()),
        queue: u32::from(q),
        ring_size: p.ring_size,
        require_zero_copy: p.zero_copy == ZeroCopy::Required,
        mac: p.mac.as_deref().and_then(|m| parse_mac(m, true).ok()),
        xdp_mode: p.xdp_mode,
        busy_poll_us: p.busy_poll_us,
        busy_poll_budget: p.busy_poll_budget,
    }
}

/// Opens queue `q` of configured port `k`.
fn open_port(cfg: &Config, k: usize, q: u16) -> Result<Box<dyn Port>> {
    let p = &cfg.ports[k];
    let idx = k as u16;
    let configured_mac = p.mac.as_deref().and_then(|m| parse_mac(m, true).ok());
    let mac = configured_mac.unwrap_or_else(|| default_mac(idx));
    let interface = p.interface.clone().unwrap_or_else(|| p.name.clone());
    Ok(match p.driver {
        Driver::Pcap => Box::new(PcapPort::open(
            idx,
            &p.name,
            mac,
            p.rx_pcap.as_deref().and_then(|x| x.to_str()),
            p.tx_pcap.as_deref().and_then(|x| x.to_str()),
        )?),
        Driver::Memory => Box::new(MemoryPort::replay(idx, &p.name, mac, Vec::new())),
        Driver::AfPacket => {
            let c = AfPacketConfig {
                interface,
                fanout: (p.queues > 1).then_some(idx),
                block_timeout_ms: 1,
                mac: configured_mac,
            };
            Box::new(AfPacketPort::open(idx, &p.name, &c)?)
        }
        #[cfg(feature = "dpdk")]
        Driver::Dpdk => {
            let pci = cfg.ports.iter().any(|p| {
                p.driver == Driver::Dpdk
                    && p.device.as_deref().is_some_and(|d| !d.starts_with("net_"))
            });
            vrouter_dataplane::port::dpdk::eal_init(&cfg.dpdk.eal_args, pci)
                .map_err(|e| anyhow::anyhow!(e))?;
            let c = vrouter_dataplane::port::dpdk::DpdkConfig {
                device: p.device.clone().unwrap_or_default(),
                queue: q,
                queues: p.queues,
                rx_desc: cfg.dpdk.rx_desc.unwrap_or(1024),
                tx_desc: cfg.dpdk.tx_desc.unwrap_or(1024),
                mac: configured_mac,
            };
            Box::new(vrouter_dataplane::port::dpdk::DpdkPort::open(
                idx, &p.name, &c,
            )?)
        }
        #[cfg(not(feature = "dpdk"))]
        Driver::Dpdk => anyhow::bail!("port {}: this vrouterd was built without DPDK", p.name),
        Driver::Tap => Box::new(TapPort::open(idx, &p.name, &interface, mac)?),
        Driver::AfXdp => Box::new(AfXdpPort::open(idx, &p.name, &xdp_config(cfg, k, q))?),
    })
}

/// A takeover in progress in the new vrouterd, up to the switch-over.
struct Incoming {
    ch: Channel,
    old_pid: u32,
    /// Per worker: the pool's memfd and frame count.
    pools: Vec<(OwnedFd, u32)>,
    /// Adopted AF_XDP ports, by (worker, position).
    xdp: HashMap<(usize, usize), (OwnedFd, OwnedFd)>,
    snapshot: Snapshot,
    macs: Vec<Option<vrouter_wire::MacAddr>>,
}

/// Connects to the running vrouterd and receives its offer (nothing in the
/// old one changes until `Ready`).
fn takeover_begin(cfg: &Config, path: &std::path::Path, nworkers: usize) -> Result<Incoming> {
    if let Some(why) = handover::unsupported(cfg) {
        anyhow::bail!("cannot take over: {why}");
    }
    let mut ch = Channel::connect(path)?;
    ch.send(
        &Msg::Hello {
            version: handover::VERSION,
            daemon: VERSION.to_string(),
            pid: std::process::id(),
            shape: Shape::of(cfg),
        },
        &[],
    )?;
    let (msg, fds) = ch.recv(Duration::from_secs(30))?;
    let (old_pid, snapshot, macs, workers) = match msg {
        Msg::Refuse { reason } => return Err(HandoverError::Refused(reason).into()),
        Msg::Offer {
            version,
            daemon,
            pid,
            snapshot,
            macs,
            workers,
        } => {
            if version != handover::VERSION {
                return Err(HandoverError::Version {
                    ours: handover::VERSION,
                    theirs: version,
                    peer: format!("vrouterd {daemon}, pid {pid}"),
                }
                .into());
            }
            tracing::info!(old_pid = pid, old_version = %daemon, "taking over");
            (pid, snapshot, macs, workers)
        }
        other => anyhow::bail!("handover protocol: expected an offer, got {other:?}"),
    };
    if workers.len() != nworkers || macs.len() != cfg.ports.len() {
        anyhow::bail!(
            "handover protocol: the offer has {} workers and {} ports, this configuration {nworkers} and {}",
            workers.len(),
            macs.len(),
            cfg.ports.len()
        );
    }
    let want: usize = workers.iter().map(|w| 1 + 2 * w.ports.len()).sum();
    if fds.len() != want {
        anyhow::bail!(
            "handover protocol: {} descriptors received, {want} expected",
            fds.len()
        );
    }
    let mut fds = fds.into_iter();
    let mut pools = Vec::new();
    let mut xdp = HashMap::new();
    for (w, o) in workers.iter().enumerate() {
        let memfd = fds.next().context("handover: missing pool descriptor")?;
        pools.push((memfd, o.frames));
        for &pos in &o.ports {
            let sock = fds.next().context("handover: missing socket")?;
            let map = fds.next().context("handover: missing XSKMAP")?;
            xdp.insert((w, pos), (sock, map));
        }
    }
    let macs = macs
        .iter()
        .map(|m| parse_mac(m, true).ok())
        .collect::<Vec<_>>();
    Ok(Incoming {
        ch,
        old_pid,
        pools,
        xdp,
        snapshot,
        macs,
    })
}

/// The old vrouterd's side, up to the switch-over: checks the new one and
/// sends it the state and the descriptors, then waits for `Ready`.
fn takeover_offer(
    ch: &mut Channel,
    cfg: &Config,
    api: Option<&Api>,
    router: &Router,
    fds: &[Option<TakeoverFds>],
    macs: &[vrouter_wire::MacAddr],
) -> Result<u32, HandoverError> {
    let (pid, uid, _) = ch.peer().map_err(|error| HandoverError::Io {
        what: "peer credentials",
        error,
    })?;
    if uid != 0 && uid != nix_uid() {
        let reason = format!("uid {uid} may not take over");
        ch.send(
            &Msg::Refuse {
                reason: reason.clone(),
            },
            &[],
        )?;
        return Err(HandoverError::Refused(reason));
    }
    let (msg, _) = ch.recv(Duration::from_secs(10))?;
    let Msg::Hello {
        version,
        daemon,
        shape,
        ..
    } = msg
    else {
        return Err(HandoverError::Protocol(format!(
            "expected hello, got {msg:?}"
        )));
    };
    let refuse = |ch: &mut Channel, reason: String| -> HandoverError {
        let _ = ch.send(
            &Msg::Refuse {
                reason: reason.clone(),
            },
            &[],
        );
        HandoverError::Refused(reason)
    };
    if version != handover::VERSION {
        let _ = ch.send(
            &Msg::Refuse {
                reason: format!(
                    "handover protocol version mismatch: the running vrouterd {VERSION} speaks {}, the new one ({daemon}) {version}",
                    handover::VERSION
                ),
            },
            &[],
        );
        return Err(HandoverError::Version {
            ours: handover::VERSION,
            theirs: version,
            peer: format!("vrouterd {daemon}, pid {pid}"),
        });
    }
    if let Err(e) = Shape::of(cfg).check(&shape) {
        return Err(refuse(ch, e));
    }
    if let Some(why) = handover::unsupported(cfg) {
        return Err(refuse(ch, why));
    }
    let mut raw = Vec::new();
    let mut workers = Vec::new();
    for f in fds {
        let Some(f) = f else {
            return Err(refuse(
                ch,
                "the running vrouterd's frame pools are private memory (memfd failed at start)"
                    .into(),
            ));
        };
        raw.push(f.memfd.as_raw_fd());
        for (_, s, m) in &f.ports {
            raw.push(s.as_raw_fd());
            raw.push(m.as_raw_fd());
        }
        workers.push(WorkerOffer {
            frames: f.frames,
            ports: f.ports.iter().map(|(k, _, _)| *k).collect(),
        });
    }
    if raw.len() > vrouter_dataplane::port::sys::MAX_FDS {
        return Err(refuse(
            ch,
            format!(
                "{} descriptors to hand over, at most {}",
                raw.len(),
                vrouter_dataplane::port::sys::MAX_FDS
            ),
        ));
    }
    ch.send(
        &Msg::Offer {
            version: handover::VERSION,
            daemon: VERSION.to_string(),
            pid: std::process::id(),
            snapshot: api.map(|a| a.snapshot(router)).unwrap_or_default(),
            macs: macs.iter().map(|m| m.to_string()).collect(),
            workers,
        },
        &raw,
    )?;
    // The new vrouterd builds its tables now; this one keeps forwarding.
    let (msg, _) = ch.recv(Duration::from_secs(120))?;
    match msg {
        Msg::Ready => Ok(pid as u32),
        other => Err(HandoverError::Protocol(format!(
            "expected ready, got {other:?}"
        ))),
    }
}

/// Binds the handover socket (mode 0600, non-blocking).
fn bind_handover(path: &std::path::Path) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "handover socket {}: another vrouterd is listening",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("handover socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let l =
        UnixListener::bind(path).with_context(|| format!("handover socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_default())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let file = args.config.display().to_string();
    let cfg =
        Config::load(&args.config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let nworkers = cfg.dataplane.workers;
    // Unpinned workers get the CPUs vrouterd started with back.
    let startup_cpus = vrouter_dataplane::port::sys::thread_affinity().unwrap_or_default();
    let control_cpus = control_cpus(&cfg);
    pin_control(&control_cpus);
    let plan = plan_ports(&cfg, nworkers);
    let handover_path = handover::socket_path(&cfg);

    // A takeover adopts the AF_XDP ports now and opens the others only
    // after the switch-over (the old vrouterd still has them).
    let mut incoming = match &args.takeover {
        Some(p) if !args.check => {
            let path = if p.is_empty() {
                handover_path.clone().context(
                    "--takeover: no handover socket (set [control] handover-socket or give its path)",
                )?
            } else {
                PathBuf::from(p)
            };
            Some(takeover_begin(&cfg, &path, nworkers).context("taking over")?)
        }
        _ => None,
    };
    let mut opened: Vec<(usize, Option<Box<dyn Port>>)> = Vec::new();
    let mut position = vec![0usize; nworkers];
    for &(w, k, q) in &plan {
        let pos = position[w];
        position[w] += 1;
        let port = match incoming.as_mut() {
            None => Some(open_port(&cfg, k, q).context("opening ports")?),
            Some(inc) if cfg.ports[k].driver == Driver::AfXdp => {
                let (sock, map) = inc.xdp.remove(&(w, pos)).with_context(|| {
                    format!(
                        "taking over: the running vrouterd did not hand over port {} queue {q}",
                        cfg.ports[k].name
                    )
                })?;
                Some(Box::new(
                    AfXdpPort::adopt(
                        k as u16,
                        &cfg.ports[k].name,
                        &xdp_config(&cfg, k, q),
                        sock,
                        map,
                    )
                    .context("taking over")?,
                ) as Box<dyn Port>)
            }
            Some(_) => None,
        };
        opened.push((w, port));
    }
    // Again: DPDK's EAL init pins the calling thread to its main lcore.
    pin_control(&control_cpus);
    let mut macs: Vec<Option<vrouter_wire::MacAddr>> = vec![None; cfg.ports.len()];
    if let Some(inc) = &incoming {
        macs.clone_from(&inc.macs);
    }
    for p in opened.iter().filter_map(|(_, p)| p.as_ref()) {
        macs[p.index() as usize] = Some(p.mac());
    }
    let mut router = Router::from_config(&cfg, &macs, &file)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    if args.check {
        println!("{file}: configuration is valid");
        return Ok(());
    }
    let shared = router.shared().clone();
    let offline = !plan.is_empty() && cfg.ports.iter().all(|p| p.driver == Driver::Pcap);

    let stop = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())
        .context("installing signal handlers")?;

    let port_info = |p: &vrouter_dataplane::config::PortCfg, k: usize| PortInfo {
        name: p.name.clone(),
        driver: format!("{:?}", p.driver).to_lowercase(),
        mac: macs
            .get(k)
            .copied()
            .flatten()
            .unwrap_or_else(|| default_mac(k as u16)),
        stats: Vec::new(),
    };
    let api_cfg = ApiConfig {
        path: cfg.control.socket.clone().into(),
        allowed_uids: {
            let mut uids = cfg.control.allowed_uids.clone();
            uids.push(nix_uid());
            uids
        },
        allowed_gids: cfg.control.allowed_gids.clone(),
        max_connections: cfg.control.max_connections,
    };
    let ct = cfg.service_settings();
    // Each worker's IPv4 and IPv6 connection-tracking tables.
    let new_ct = || {
        (
            vrouter_dataplane::conntrack::ConnTrack::new(
                ct.max_flows / nworkers.max(1),
                ct.pod_quota,
                ct.timeouts,
            ),
            vrouter_dataplane::conntrack::ConnTrack6::new(
                ct.max_flows_ip6 / nworkers.max(1),
                ct.pod_quota,
                ct.timeouts,
            ),
        )
    };
    // Taking over: apply the old state and prepare everything the workers
    // need, then tell the old vrouterd to stop and take its frames.
    let mut api_unbound = None;
    let mut pools: Vec<Option<FramePool>> = (0..nworkers).map(|_| None).collect();
    let mut cts: Vec<_> = Vec::new();
    if let Some(mut inc) = incoming.take() {
        let infos: Vec<PortInfo> = cfg
            .ports
            .iter()
            .enumerate()
            .map(|(k, p)| port_info(p, k))
            .collect();
        let mut a = Api::unbound(api_cfg.clone(), infos).context("control socket")?;
        let n = a.restore(&mut router, &inc.snapshot).map_err(|e| {
            anyhow::anyhow!(
                "taking over: applying the running vrouterd's state: {}",
                e.message
            )
        })?;
        tracing::info!(
            changes = n,
            scopes = inc.snapshot.scopes.len(),
            "state of the running vrouterd applied"
        );
        api_unbound = Some(a);
        cts = (0..nworkers).map(|_| new_ct()).collect();
        inc.ch.send(&Msg::Ready, &[]).context("taking over")?;
        let (msg, _) = inc
            .ch
            .recv(Duration::from_secs(30))
            .context("taking over: waiting for the switch-over")?;
        let t0 = std::time::Instant::now();
        let Msg::Switch { lent } = msg else {
            anyhow::bail!("taking over: expected the switch-over, got {msg:?}");
        };
        if lent.len() != nworkers {
            anyhow::bail!(
                "taking over: the switch-over has {} workers, not {nworkers}",
                lent.len()
            );
        }
        for (w, ((memfd, frames), lent)) in inc.pools.drain(..).zip(&lent).enumerate() {
            pools[w] = Some(
                FramePool::from_shared(memfd, frames, lent)
                    .context("taking over the frame pool")?,
            );
        }
        for (slot, &(_, k, q)) in opened.iter_mut().zip(&plan) {
            if let Some(p) = slot.1.as_mut() {
                // Ours now: a normal stop detaches the program.
                p.set_keep_on_drop(false);
            }
            if slot.1.is_none() {
                slot.1 =
                    Some(open_port(&cfg, k, q).context("reopening ports after the switch-over")?);
            }
        }
        tracing::info!(
            old_pid = inc.old_pid,
            prepare_us = t0.elapsed().as_micros() as u64,
            "switch-over: pools and ports taken"
        );
        incoming = Some(inc);
    }

    let ports: Vec<(usize, Box<dyn Port>)> = opened
        .into_iter()
        .filter_map(|(w, p)| p.map(|p| (w, p)))
        .collect();
    let port_stats: Vec<(String, Arc<PortStats>)> = ports
        .iter()
        .map(|(_, p)| (p.name().to_string(), p.stats().clone()))
        .collect();
    let mut per_worker: Vec<Vec<Box<dyn Port>>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (w, p) in ports {
        per_worker[w].push(p);
    }
    let mut handles = Vec::new();
    let mut takeover_fds: Vec<Option<TakeoverFds>> = Vec::new();
    let mut cts = cts.into_iter();
    for (w, ports) in per_worker.into_iter().enumerate() {
        let poll = cfg.dataplane.poll;
        let sleep = Duration::from_micros(cfg.dataplane.idle_sleep_us);
        let mut worker = match pools[w].take() {
            Some(pool) => Worker::with_pool(shared.clone(), ports, pool, poll, sleep),
            None => Worker::new(shared.clone(), ports, cfg.dataplane.frames, poll, sleep),
        }
        .context("creating worker")?;
        let (ct4, ct6) = cts.next().unwrap_or_else(new_ct);
        worker.pipeline.set_conntrack(ct4);
        worker.pipeline.set_conntrack6(ct6);
        takeover_fds.push(match worker.takeover_fds() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%e, "this vrouterd cannot be taken over");
                None
            }
        });
        let core = cfg.dataplane.cores.get(w).copied();
        let unpin = (core.is_none() && !control_cpus.is_empty()).then(|| startup_cpus.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("vrouter-w{w}"))
                .spawn(move || {
                    if let Some(c) = core
                        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
                    {
                        tracing::warn!(worker = w, core = c, "could not pin worker");
                    }
                    if let Some(cpus) = unpin.filter(|c| !c.is_empty())
                        && let Err(e) = vrouter_dataplane::port::sys::set_thread_affinity(&cpus)
                    {
                        tracing::warn!(worker = w, %e, "could not unpin worker");
                    }
                    worker.run(offline);
                    worker
                })
                .context("spawning worker")?,
        );
    }
    tracing::info!(
        workers = nworkers,
        ports = port_stats.len(),
        offline,
        "vrouterd running"
    );

    let infos: Vec<PortInfo> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(k, p)| PortInfo {
            stats: port_stats
                .iter()
                .filter(|(n, _)| *n == p.name)
                .map(|(_, s)| s.clone())
                .collect(),
            ..port_info(p, k)
        })
        .collect();
    let mut api = if cfg.control.socket.is_empty() {
        None
    } else {
        let mut a = match api_unbound.take() {
            Some(mut a) => {
                a.set_ports(infos.clone());
                a
            }
            None => Api::unbound(api_cfg.clone(), infos.clone()).context("control socket")?,
        };
        a.set_event_backlog(cfg.control.event_backlog);
        a.listen().context("control socket")?;
        tracing::info!(socket = %a.path().display(), "control socket listening");
        Some(a)
    };

    let mut links = LinkWatch::new(kernel_links(&cfg));
    links.poll();
    let mut metrics = if cfg.metrics.enabled {
        match MetricsServer::bind(&cfg.metrics.listen) {
            Ok(m) => {
                tracing::info!(listen = %cfg.metrics.listen, "metrics endpoint listening");
                Some(m)
            }
            // Forwarding matters more than metrics: run without them.
            Err(e) => {
                tracing::error!(%e, "metrics endpoint disabled");
                None
            }
        }
    } else {
        None
    };
    let mut handover_listener = match &handover_path {
        Some(p) if !offline => match bind_handover(p) {
            Ok(l) => Some(l),
            Err(e) if incoming.is_some() => {
                tracing::error!(%e, "hot restart of this vrouterd disabled");
                None
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };
    if let Some(mut inc) = incoming.take() {
        if let Err(e) = inc.ch.send(
            &Msg::Done {
                pid: std::process::id(),
            },
            &[],
        ) {
            tracing::warn!(%e, "telling the old vrouterd we are done");
        }
        tracing::info!(old_pid = inc.old_pid, "took over from the old vrouterd");
    }
    let port_macs: Vec<vrouter_wire::MacAddr> = (0..cfg.ports.len())
        .map(|k| macs[k].unwrap_or_else(|| default_mac(k as u16)))
        .collect();

    let started = std::time::Instant::now();
    let print = |router: &Router| {
        let pc: Vec<_> = port_stats
            .iter()
            .map(|(n, s)| (n.clone(), s.snapshot()))
            .collect();
        print!(
            "{}",
            report::render(router.tables(), &pc, &shared.worker_links())
        );
    };
    let mut last_tick = std::time::Instant::now();
    let mut last_accept = last_tick;
    loop {
        let busy = router.process_events() > 0;
        let tick = last_tick.elapsed() >= Duration::from_secs(1);
        if tick {
            router.tick((shared.now() / 1_000_000_000) as u32);
            last_tick = std::time::Instant::now();
        }
        match api.as_mut() {
            Some(a) => {
                for n in router.take_notices() {
                    a.publish_notice(&n);
                }
                if tick {
                    for (port, iface, up) in links.poll() {
                        tracing::info!(port, iface, up, "link state changed");
                        a.publish_link(&port, &iface, up);
                    }
                }
            }
            None => {
                router.take_notices();
            }
        }
        if let Some(m) = metrics.as_mut() {
            let api_stats = api.as_ref().map(|a| a.stats);
            m.serve(|| metrics::render(&router, &infos, links.states(), api_stats.as_ref()));
        }
        if usr1.swap(false, Ordering::Relaxed) {
            print(&router);
        }
        if stop.load(Ordering::Relaxed)
            || (args.run_for > 0 && started.elapsed().as_secs() >= args.run_for)
        {
            shared.stop.store(true, Ordering::SeqCst);
        }
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        // A failed accept still costs the kernel a socket: look for a new
        // vrouterd every 10 ms, not on every pass of this loop.
        let accept_due = last_accept.elapsed() >= Duration::from_millis(10);
        if accept_due {
            last_accept = std::time::Instant::now();
        }
        if let Some(conn) = handover_listener
            .as_ref()
            .filter(|_| accept_due)
            .and_then(|l| l.accept().ok())
        {
            let mut ch = match Channel::accepted(conn.0) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "handover connection");
                    continue;
                }
            };
            tracing::info!("a new vrouterd asks to take over");
            match takeover_offer(
                &mut ch,
                &cfg,
                api.as_ref(),
                &router,
                &takeover_fds,
                &port_macs,
            ) {
                Err(e) => {
                    tracing::warn!(%e, "takeover abandoned before the switch-over; still forwarding");
                    continue;
                }
                Ok(new_pid) => {
                    // The switch-over: stop at a vector boundary, keep the
                    // kernel objects, release the sockets, give the frames.
                    let t0 = std::time::Instant::now();
                    shared.stop.store(true, Ordering::SeqCst);
                    let mut lent = Vec::new();
                    // Dropped after the switch-over (their memory is big).
                    let mut stopped = Vec::new();
                    for h in handles.drain(..) {
                        match h.join() {
                            Ok(mut w) => {
                                lent.push(w.hand_over());
                                stopped.push(w);
                            }
                            Err(_) => {
                                tracing::error!("a worker panicked");
                                lent.push(Vec::new());
                            }
                        }
                    }
                    api = None;
                    drop(metrics.take());
                    drop(handover_listener.take());
                    if let Some(p) = &handover_path {
                        let _ = std::fs::remove_file(p);
                    }
                    let stopped_us = t0.elapsed().as_micros() as u64;
                    if let Err(e) = ch.send(&Msg::Switch { lent }, &[]) {
                        tracing::error!(%e, new_pid, "switch-over failed after this vrouterd stopped: forwarding is down");
                        router.process_events();
                        print(&router);
                        anyhow::bail!("hot restart failed after the switch-over: {e}");
                    }
                    match ch.recv(Duration::from_secs(30)) {
                        Ok((Msg::Done { pid }, _)) => {
                            tracing::info!(new_pid = pid, stopped_us, "handed over; exiting");
                        }
                        Ok((other, _)) => tracing::warn!(?other, "handover: unexpected message"),
                        Err(e) => {
                            tracing::error!(%e, new_pid, "the new vrouterd did not confirm the takeover");
                            anyhow::bail!("hot restart: the new vrouterd did not confirm: {e}");
                        }
                    }
                    drop(api);
                    drop(stopped);
                    router.process_events();
                    print(&router);
                    return Ok(());
                }
            }
        }
        match api.as_mut() {
            Some(a) => {
                a.poll(
                    &mut router,
                    Duration::from_micros(if busy { 0 } else { 500 }),
                );
            }
            None if !busy => std::thread::sleep(Duration::from_micros(200)),
            None => {}
        }
    }
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a worker panicked");
        }
    }
    router.process_events();
    print(&router);
    Ok(())
}

/// The CPUs for vrouterd's non-worker threads (`[dataplane] control-cores`;
/// by default those it may run on minus the workers' cores, so the control
/// loop, which wakes every 500 µs, never preempts a busy-polling worker).
/// Empty: leave them unpinned.
fn control_cpus(cfg: &Config) -> Vec<usize> {
    if let Some(c) = &cfg.dataplane.control_cores {
        return c.clone();
    }
    if cfg.dataplane.cores.is_empty() {
        return Vec::new();
    }
    match vrouter_dataplane::port::sys::thread_affinity() {
        Ok(all) => all
            .into_iter()
            .filter(|c| !cfg.dataplane.cores.contains(c))
            .collect(),
        Err(e) => {
            tracing::warn!(%e, "reading the CPU affinity; control threads not pinned");
            Vec::new()
        }
    }
}

fn pin_control(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    match vrouter_dataplane::port::sys::set_thread_affinity(cpus) {
        Ok(()) => tracing::debug!(?cpus, "control threads pinned"),
        Err(e) => tracing::warn!(%e, ?cpus, "could not pin the control threads"),
    }
}

/// The kernel interfaces behind ports, for link-state events: (port, interface).
fn kernel_links(cfg: &Config) -> Vec<(String, String)> {
    cfg.ports
        .iter()
        .filter_map(|p| match p.driver {
            Driver::AfPacket | Driver::AfXdp | Driver::Tap => Some((
                p.name.clone(),
                p.interface.clone().unwrap_or_else(|| p.name.clone()),
            )),
            Driver::Dpdk => p
                .device
                .as_deref()
                .and_then(|d| d.split(',').find_map(|kv| kv.strip_prefix("iface=")))
                .map(|i| (p.name.clone(), i.to_string())),
            Driver::Pcap | Driver::Memory => None,
        })
        .collect()
}

/// The effective uid of this process (allowed on the control socket).
fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(0)
}
