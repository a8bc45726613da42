//! vrouterd: the vRouter data-plane daemon.
//!
//! Reads a TOML configuration, opens the ports, starts the workers and runs
//! the control loop (neighbour learning, MAC aging) until SIGINT or SIGTERM,
//! or — when every port replays a capture — until the input is exhausted.
//! Prints its counters on exit and on SIGUSR1.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use vrouter_dataplane::api::{Api, ApiConfig, PortInfo};
use vrouter_dataplane::config::{Config, Driver, ZeroCopy, parse_mac};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::metrics::{self, MetricsServer};
use vrouter_dataplane::obs::LinkWatch;
use vrouter_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use vrouter_dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};
use vrouter_dataplane::port::memory::MemoryPort;
use vrouter_dataplane::port::pcap::PcapPort;
use vrouter_dataplane::port::tap::TapPort;
use vrouter_dataplane::port::{Port, PortStats, default_mac};
use vrouter_dataplane::report;
use vrouter_dataplane::worker::Worker;

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
input has been processed."
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
    /// Log filter (tracing syntax, e.g. `info`, `vrouter_dataplane=debug`).
    #[arg(long, default_value = "info", env = "VROUTER_LOG")]
    log: String,
}

/// Opens every port (one object per queue) with the worker each goes to.
fn open_ports(cfg: &Config, workers: usize) -> Result<Vec<(usize, Box<dyn Port>)>> {
    let mut ports: Vec<(usize, Box<dyn Port>)> = Vec::new();
    for (k, p) in cfg.ports.iter().enumerate() {
        let idx = k as u16;
        let configured_mac = p.mac.as_deref().and_then(|m| parse_mac(m, true).ok());
        let mac = configured_mac.unwrap_or_else(|| default_mac(idx));
        let interface = p.interface.clone().unwrap_or_else(|| p.name.clone());
        match p.driver {
            Driver::Pcap => ports.push((
                k % workers,
                Box::new(PcapPort::open(
                    idx,
                    &p.name,
                    mac,
                    p.rx_pcap.as_deref().and_then(|x| x.to_str()),
                    p.tx_pcap.as_deref().and_then(|x| x.to_str()),
                )?),
            )),
            Driver::Memory => ports.push((
                k % workers,
                Box::new(MemoryPort::replay(idx, &p.name, mac, Vec::new())),
            )),
            Driver::AfPacket => {
                for q in 0..p.queues {
                    let c = AfPacketConfig {
                        interface: interface.clone(),
                        fanout: (p.queues > 1).then_some(idx),
                        block_timeout_ms: 1,
                        mac: configured_mac,
                    };
                    let w = if p.queues > 1 {
                        q as usize % workers
                    } else {
                        k % workers
                    };
                    ports.push((w, Box::new(AfPacketPort::open(idx, &p.name, &c)?)));
                }
            }
            #[cfg(feature = "dpdk")]
            Driver::Dpdk => {
                let pci = cfg.ports.iter().any(|p| {
                    p.driver == Driver::Dpdk
                        && p.device.as_deref().is_some_and(|d| !d.starts_with("net_"))
                });
                vrouter_dataplane::port::dpdk::eal_init(&cfg.dpdk.eal_args, pci)
                    .map_err(|e| anyhow::anyhow!(e))?;
                for q in 0..p.queues {
                    let c = vrouter_dataplane::port::dpdk::DpdkConfig {
                        device: p.device.clone().unwrap_or_default(),
                        queue: q,
                        queues: p.queues,
                        rx_desc: cfg.dpdk.rx_desc.unwrap_or(1024),
                        tx_desc: cfg.dpdk.tx_desc.unwrap_or(1024),
                        mac: configured_mac,
                    };
                    let w = if p.queues > 1 {
                        q as usize % workers
                    } else {
                        k % workers
                    };
                    ports.push((
                        w,
                        Box::new(vrouter_dataplane::port::dpdk::DpdkPort::open(
                            idx, &p.name, &c,
                        )?),
                    ));
                }
            }
            #[cfg(not(feature = "dpdk"))]
            Driver::Dpdk => anyhow::bail!("port {}: this vrouterd was built without DPDK", p.name),
            Driver::Tap => ports.push((
                k % workers,
                Box::new(TapPort::open(idx, &p.name, &interface, mac)?),
            )),
            Driver::AfXdp => {
                for q in 0..p.queues {
                    let c = AfXdpConfig {
                        interface: interface.clone(),
                        queue: u32::from(q),
                        ring_size: p.ring_size,
                        require_zero_copy: p.zero_copy == ZeroCopy::Required,
                        mac: configured_mac,
                        xdp_mode: p.xdp_mode,
                        busy_poll_us: p.busy_poll_us,
                        busy_poll_budget: p.busy_poll_budget,
                    };
                    let w = if p.queues > 1 {
                        q as usize % workers
                    } else {
                        k % workers
                    };
                    ports.push((w, Box::new(AfXdpPort::open(idx, &p.name, &c)?)));
                }
            }
        }
    }
    Ok(ports)
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
    let ports = open_ports(&cfg, nworkers).context("opening ports")?;
    let mut macs: Vec<Option<vrouter_wire::MacAddr>> = vec![None; cfg.ports.len()];
    for (_, p) in &ports {
        macs[p.index() as usize] = Some(p.mac());
    }
    let mut router = Router::from_config(&cfg, &macs, &file)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    if args.check {
        println!("{file}: configuration is valid");
        return Ok(());
    }
    let shared = router.shared().clone();
    let offline = !ports.is_empty() && cfg.ports.iter().all(|p| p.driver == Driver::Pcap);
    let port_stats: Vec<(String, Arc<PortStats>)> = ports
        .iter()
        .map(|(_, p)| (p.name().to_string(), p.stats().clone()))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())
        .context("installing signal handlers")?;

    let mut per_worker: Vec<Vec<Box<dyn Port>>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (w, p) in ports {
        per_worker[w].push(p);
    }
    let mut handles = Vec::new();
    for (w, ports) in per_worker.into_iter().enumerate() {
        let mut worker = Worker::new(
            shared.clone(),
            ports,
            cfg.dataplane.frames,
            cfg.dataplane.poll,
            Duration::from_micros(cfg.dataplane.idle_sleep_us),
        )
        .context("creating worker")?;
        let ct = cfg.service_settings();
        worker
            .pipeline
            .set_conntrack(vrouter_dataplane::conntrack::ConnTrack::new(
                ct.max_flows / nworkers.max(1),
                ct.pod_quota,
                ct.timeouts,
            ));
        worker
            .pipeline
            .set_conntrack6(vrouter_dataplane::conntrack::ConnTrack6::new(
                ct.max_flows_ip6 / nworkers.max(1),
                ct.pod_quota,
                ct.timeouts,
            ));
        let core = cfg.dataplane.cores.get(w).copied();
        handles.push(
            std::thread::Builder::new()
                .name(format!("vrouter-w{w}"))
                .spawn(move || {
                    if let Some(c) = core
                        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
                    {
                        tracing::warn!(worker = w, core = c, "could not pin worker");
                    }
                    worker.run(offline);
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
            name: p.name.clone(),
            driver: format!("{:?}", p.driver).to_lowercase(),
            mac: macs
                .get(k)
                .copied()
                .flatten()
                .unwrap_or_else(|| default_mac(k as u16)),
            stats: port_stats
                .iter()
                .filter(|(n, _)| *n == p.name)
                .map(|(_, s)| s.clone())
                .collect(),
        })
        .collect();
    let mut api = if cfg.control.socket.is_empty() {
        None
    } else {
        let mut uids = cfg.control.allowed_uids.clone();
        uids.push(nix_uid());
        let mut a = Api::bind(
            ApiConfig {
                path: cfg.control.socket.clone().into(),
                allowed_uids: uids,
                allowed_gids: cfg.control.allowed_gids.clone(),
                max_connections: cfg.control.max_connections,
            },
            infos.clone(),
        )
        .context("control socket")?;
        a.set_event_backlog(cfg.control.event_backlog);
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
