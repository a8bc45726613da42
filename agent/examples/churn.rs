//! Endpoint churn: N services × M endpoints from EndpointSlice objects to
//! vrouterd's acknowledgement, then single-endpoint changes (p50/p99), and
//! the agent's memory.
//!
//! cargo run --release -p vrouter-agent --example churn -- --services 10000 --endpoints 10 [--socket S]
//!
//! Without `--socket` only the agent's side (extraction, translation,
//! encoding) is timed. With it, the services are synced to that vrouterd
//! (which must have the services ops).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::discovery::v1::{
    Endpoint as K8sEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vrouter_agent::model::{self, Cluster, ServiceInfo, ServicePort};
use vrouter_agent::sync::Applier;
use vrouter_agent::translate::{Config, Mode, Translator};

/// mimalloc: a full sync allocates and frees millions of small strings
/// (API objects, the compact copy, the scopes), where glibc's malloc spent
/// about a third of the agent's time (benches/RESULTS.md §8).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// Single-endpoint changes to time.
    #[arg(long, default_value_t = 200)]
    changes: usize,
}

fn ip(i: usize) -> String {
    // 198.18.0.0/15: 131072 addresses; wrap (the addresses need not be unique).
    let i = i % (1 << 17);
    format!("198.{}.{}.{}", 18 + (i >> 16), (i >> 8) & 255, i & 255)
}

fn slice(s: usize, n: usize, gen_: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(format!("svc{s}-x")),
            labels: Some([(model::LABEL_SERVICE_NAME.to_string(), format!("svc{s}"))].into()),
            resource_version: Some(gen_.to_string()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: (0..n)
            .map(|e| K8sEndpoint {
                addresses: vec![ip(s * n + e + gen_)],
                node_name: Some(if e % 3 == 0 { "n1".into() } else { "n2".into() }),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = Config {
        node: "n1".into(),
        mode: Mode::HostGw,
        vni: 1,
        pod_bridge: "pods".into(),
    };
    let rss0 = rss_kib();
    // The API objects, as the watcher hands them over.
    let slices: Vec<EndpointSlice> = (0..a.services).map(|s| slice(s, a.endpoints, 0)).collect();
    let t0 = Instant::now();
    let mut c = Cluster::default();
    for s in 0..a.services {
        c.services.insert(
            format!("bench/svc{s}"),
            ServiceInfo {
                namespace: "bench".into(),
                name: format!("svc{s}"),
                ips: vec![format!("198.19.{}.{}", (s >> 8) & 255, s & 255).parse()?],
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    protocol: "TCP".into(),
                    node_port: None,
                }],
                external_local: false,
                affinity_timeout_s: None,
            },
        );
    }
    for sl in &slices {
        if let Some((k, v)) = model::slice_info(sl) {
            c.slices.insert(k, v);
        }
    }
    drop(slices);
    let t_extract = t0.elapsed();
    let t1 = Instant::now();
    let mut tr = Translator::new(cfg);
    tr.update(&mut c);
    let d = tr.desired().clone();
    let t_translate = t1.elapsed();
    println!(
        "{} services x {} endpoints = {} backends: extract {:.1} ms, translate {:.1} ms",
        a.services,
        a.endpoints,
        d.backends(),
        t_extract.as_secs_f64() * 1e3,
        t_translate.as_secs_f64() * 1e3
    );
    let bytes: usize = d
        .scopes
        .values()
        .map(|s| {
            serde_json::to_string(&s.services)
                .map(|j| j.len())
                .unwrap_or(0)
        })
        .sum();
    println!("encoded services: {:.1} MiB", bytes as f64 / 1048576.0);
    println!(
        "agent RSS: {} MiB (+{} MiB for the cluster copy and one desired state)",
        rss_kib() / 1024,
        rss_kib().saturating_sub(rss0) / 1024
    );
    let Some(sock) = a.socket else {
        return Ok(());
    };
    let mut ap = Applier::new(&sock);
    let t2 = Instant::now();
    let st = ap.apply(&d, true).context("full sync")?;
    let t_sync = t2.elapsed();
    println!(
        "full sync: {} scopes, {} added, {:.1} MiB sent, {:.1} ms to vrouterd's ack; total from objects {:.1} ms",
        st.scopes,
        st.added,
        st.bytes as f64 / 1048576.0,
        t_sync.as_secs_f64() * 1e3,
        (t_extract + t_translate + t_sync).as_secs_f64() * 1e3
    );
    // Single endpoint changes: a slice changes one endpoint; extract,
    // translate what changed (one Service), apply the changed scope.
    let mut lat: Vec<Duration> = Vec::new();
    for i in 0..a.changes {
        let s = (i * 7919) % a.services;
        let sl = slice(s, a.endpoints, i + 1);
        let t = Instant::now();
        if let Some((k, v)) = model::slice_info(&sl) {
            c.set_slice(k, Some(v));
        }
        let changed = tr.update(&mut c);
        let st = ap
            .apply_scopes(tr.desired(), false, Some(&changed))
            .context("incremental sync")?;
        lat.push(t.elapsed());
        if st.scopes != 1 {
            anyhow::bail!("expected one scope to change, {} did", st.scopes);
        }
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "single endpoint change ({} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!("agent RSS after: {} MiB", rss_kib() / 1024);
    Ok(())
}
