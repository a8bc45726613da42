//! vrouter-agent: syncs the cluster's state into vrouterd (docs/agent.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use vrouter_agent::engine::{Engine, EngineConfig};
use vrouter_agent::kube_source;
use vrouter_agent::model::valid_mac;
use vrouter_agent::translate::{Config, Mode};

/// mimalloc: a full sync allocates and frees millions of small strings
/// (API objects, the compact copy, the scopes), where glibc's malloc spent
/// about a third of the agent's time (benches/RESULTS.md §8).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// The Kubernetes API server (kube-rs watchers).
    Kube,
    /// Flannel-style subnet leases in etcd.
    Etcd,
}

/// Syncs nodes, pods, services and network policies into vrouterd.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This node's name (the Node object).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// How pods of other nodes are reached.
    #[arg(long, value_enum, default_value = "overlay")]
    mode: Mode,
    /// vrouterd's control socket.
    #[arg(long, default_value = vrouter_control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where the cluster state comes from.
    #[arg(long, value_enum, default_value = "kube")]
    backend: Backend,
    /// A kubeconfig file; without it: in-cluster, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This node's VTEP address, published on its Node (overlay).
    #[arg(long)]
    vtep_ip: Option<IpAddr>,
    /// The MAC of this node's L3 VNI (the inner destination other nodes use).
    #[arg(long)]
    vtep_mac: Option<String>,
    /// The overlay's L3 VNI.
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// etcd backend: the endpoints (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// etcd backend: the key prefix.
    #[arg(long, default_value = "/vrouter.io/network")]
    etcd_prefix: String,
    /// etcd backend: this node's pod CIDR (its subnet lease).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// etcd backend: the lease TTL in seconds (renewed every third of it).
    #[arg(long, default_value_t = 10)]
    lease_ttl: i64,
    /// The least time between two applies (ms): a change after a quiet
    /// spell is applied at once, changes that follow within this time are
    /// collected and applied together.
    #[arg(long, default_value_t = 10)]
    debounce_ms: u64,
    /// The bridge domain pods are bridged into (the CNI netconf's
    /// `bridge`): their endpoints go on its routed interface `bvi-<bridge>`.
    #[arg(long, default_value = vrouter_control::naming::DEFAULT_POD_BRIDGE)]
    pod_bridge: String,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.node_name.is_empty() {
        bail!("--node-name must not be empty");
    }
    if !(1..=16_777_215).contains(&args.vni) {
        bail!("--vni {}: must be 1..=16777215", args.vni);
    }
    if let Some(m) = &args.vtep_mac
        && !valid_mac(m)
    {
        bail!("--vtep-mac {m}: not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    if args.vtep_ip.is_some() != args.vtep_mac.is_some() {
        bail!("--vtep-ip and --vtep-mac go together");
    }
    if args.backend == Backend::Etcd {
        if args.pod_cidr.is_none() || args.vtep_ip.is_none() {
            bail!(
                "--backend etcd needs --pod-cidr, --vtep-ip and --vtep-mac (this node's subnet lease)"
            );
        }
        if args.lease_ttl < 2 {
            bail!("--lease-ttl {}: at least 2 seconds", args.lease_ttl);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.backend == Backend::Etcd {
        #[cfg(feature = "etcd")]
        return run_etcd(args).await;
        #[cfg(not(feature = "etcd"))]
        bail!("--backend etcd: this vrouter-agent was built without the `etcd` feature");
    }
    let client = kube_source::client(args.kubeconfig.as_deref()).await?;
    let engine = Engine::start(
        &args.socket,
        Config {
            node: args.node_name.clone(),
            mode: args.mode,
            vni: args.vni,
            pod_bridge: args.pod_bridge.clone(),
        },
        EngineConfig {
            debounce: Duration::from_millis(args.debounce_ms),
            wait_for_sources: kube_source::KINDS,
            ..EngineConfig::default()
        },
    )
    .context("starting the sync thread")?;
    tracing::info!(node = %args.node_name, mode = ?args.mode, socket = %args.socket.display(), "vrouter-agent starting");
    if let (Some(ip), Some(mac)) = (args.vtep_ip, args.vtep_mac.clone()) {
        let c = client.clone();
        let node = args.node_name.clone();
        tokio::spawn(async move { kube_source::publish_vtep(c, &node, ip, &mac).await });
    }
    let tasks = kube_source::spawn_watchers(client, &engine.shared);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("stopping");
    for t in tasks {
        t.abort();
    }
    engine.stop();
    Ok(())
}

#[cfg(feature = "etcd")]
async fn run_etcd(args: Args) -> anyhow::Result<()> {
    use vrouter_agent::etcd_source::{EtcdConfig, SubnetLease, hold_lease, watch_subnets};
    let (Some(cidr), Some(ip), Some(mac)) =
        (args.pod_cidr.clone(), args.vtep_ip, args.vtep_mac.clone())
    else {
        bail!("--backend etcd needs --pod-cidr, --vtep-ip and --vtep-mac");
    };
    let cfg = EtcdConfig {
        endpoints: args.etcd_endpoints.clone(),
        prefix: args.etcd_prefix.clone(),
        lease: SubnetLease {
            node: args.node_name.clone(),
            pod_cidr: cidr,
            public_ip: ip,
            vtep_mac: mac,
        },
        ttl_s: args.lease_ttl,
    };
    let engine = Engine::start(
        &args.socket,
        Config {
            node: args.node_name.clone(),
            mode: args.mode,
            vni: args.vni,
            pod_bridge: args.pod_bridge.clone(),
        },
        EngineConfig {
            debounce: Duration::from_millis(args.debounce_ms),
            wait_for_sources: 1,
            ..EngineConfig::default()
        },
    )
    .context("starting the sync thread")?;
    tracing::info!(node = %args.node_name, mode = ?args.mode, endpoints = ?args.etcd_endpoints, "vrouter-agent starting (etcd)");
    let lease = tokio::spawn(hold_lease(cfg.clone()));
    let watch = tokio::spawn(watch_subnets(cfg, engine.shared.clone()));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("stopping");
    lease.abort();
    watch.abort();
    engine.stop();
    Ok(())
}
