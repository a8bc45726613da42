//! Endpoint churn end to end: a local Kubernetes API server (the list/watch
//! mock of agent/tests/mockapi) serving N Services with one EndpointSlice
//! of M ready endpoints each, the agent's real kube-rs watchers and engine,
//! and a real vrouterd (started here). Measures:
//!
//! - full sync: from the watchers' start (list) to vrouterd acknowledging
//!   every service scope;
//! - single endpoint change: from the API server emitting the MODIFIED
//!   EndpointSlice to vrouterd acknowledging the changed scope (p50/p99);
//! - the real `vrouter-agent` binary's RSS after its full sync of the same
//!   cluster (a separate process, so the mock's copies do not count).
//!
//! cargo build --release -p vrouter-agent --example churn_e2e && \
//!   target/release/examples/churn_e2e --services 10000 --endpoints 10

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/mockapi/mod.rs"]
mod mockapi;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mockapi::{MockApi, NAMESPACES, NODES, SERVICES, SLICES};
use serde_json::{Value, json};
use vrouter_agent::engine::{Engine, EngineConfig};
use vrouter_agent::kube_source;
use vrouter_agent::translate::{Config, Mode};
use vrouter_control::{Client, Op};
use vrouter_pktgen_tests::Daemon;

/// The agent's allocator (its binary's; the mock API server in this
/// process uses it too). mimalloc: a full sync allocates and frees millions of small strings
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
    /// Single-endpoint changes to time.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Pause between two changes (ms), so each is a change after a quiet
    /// spell, as a single endpoint change is.
    #[arg(long, default_value_t = 30)]
    gap_ms: u64,
    /// vrouterd's Maglev table size (a prime above 100 x the backends).
    #[arg(long, default_value_t = 1021)]
    maglev: u32,
    /// Also measure the real agent binary's memory (path to vrouter-agent).
    #[arg(long)]
    agent_bin: Option<std::path::PathBuf>,
}

fn ip(i: usize) -> String {
    let i = i % (1 << 17);
    format!("198.{}.{}.{}", 18 + (i >> 16), (i >> 8) & 255, i & 255)
}

fn service(s: usize) -> Value {
    json!({"metadata": {"namespace": "bench", "name": format!("svc{s}")},
           "spec": {"clusterIP": format!("10.{}.{}.{}", (s >> 16) & 255, (s >> 8) & 255, s & 255),
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn slice(s: usize, n: usize, gen_: usize) -> Value {
    let eps: Vec<Value> = (0..n)
        .map(|e| {
            json!({"addresses": [ip(s * n + e + gen_)],
                   "nodeName": if e % 3 == 0 { "n1" } else { "n2" },
                   "conditions": {"ready": true}})
        })
        .collect();
    json!({"metadata": {"namespace": "bench", "name": format!("svc{s}-x"),
                        "labels": {"kubernetes.io/service-name": format!("svc{s}")}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": eps})
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A log line without its ANSI colour codes.
fn plain(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut esc = false;
    for ch in l.chars() {
        match (esc, ch) {
            (false, '\x1b') => esc = true,
            (false, c) => out.push(c),
            (true, 'm') => esc = false,
            (true, _) => {}
        }
    }
    out
}

/// Services vrouterd shows (one call: at 10k services the answer is about
/// 9 MiB and takes vrouterd's control thread a while, so it is not polled).
fn services_in(c: &mut Client) -> anyhow::Result<usize> {
    Ok(c.call(Op::ShowServices)?.as_array().map_or(0, Vec::len))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let d = Daemon::start(
        &format!(
            "[[port]]\nname = \"net1\"\ndriver = \"memory\"\n[[interface]]\nname = \"net1\"\naddresses = [\"198.18.0.1/24\"]\n[services]\nmaglev-table-size = {}\n",
            a.maglev
        ),
        "",
    );
    let api = MockApi::start().await;
    api.apply(
        NODES,
        json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "198.19.1.0/24"}}),
    );
    api.apply(
        NODES,
        json!({"metadata": {"name": "n2"}, "spec": {"podCIDR": "198.19.2.0/24"}}),
    );
    api.apply(NAMESPACES, json!({"metadata": {"name": "bench"}}));
    for s in 0..a.services {
        api.apply(SERVICES, service(s));
        api.apply(SLICES, slice(s, a.endpoints, 0));
    }
    let dir = d.dir.clone();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, api.kubeconfig())?;
    let client = kube_source::client(Some(&kc)).await?;
    let engine = Engine::start(
        &d.socket(),
        Config {
            node: "n1".into(),
            mode: Mode::HostGw,
            vni: 1,
            pod_bridge: "pods".into(),
        },
        EngineConfig {
            wait_for_sources: kube_source::KINDS,
            recheck: Duration::from_secs(3600),
            ..EngineConfig::default()
        },
    )?;
    let t0 = Instant::now();
    let tasks = kube_source::spawn_watchers(client, &engine.shared);
    let mut vc = Client::connect(&d.socket(), "churn")?;
    let deadline = t0 + Duration::from_secs(300);
    let full = loop {
        // vrouterd's acknowledgements of the full resync added every
        // service object.
        let st = engine.status();
        if let Some(done) = st.last_done
            && st.full_resyncs >= 1
            && st.last.added as usize >= a.services
        {
            break done.duration_since(t0);
        }
        if let Some(e) = st.last_error {
            eprintln!("engine: {e}");
        }
        if Instant::now() > deadline {
            bail!("full sync not done in 300 s: {:?}", engine.status());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let st = engine.status();
    let shown = services_in(&mut vc)?;
    if shown != a.services {
        bail!("vrouterd shows {shown} services, not {}", a.services);
    }
    println!(
        "{} services x {} endpoints = {} backends: full sync (list → vrouterd ack) {:.0} ms; {} applies, {:.1} MiB sent in the last",
        a.services,
        a.endpoints,
        a.services * a.endpoints,
        full.as_secs_f64() * 1e3,
        st.applies,
        st.last.bytes as f64 / 1048576.0
    );
    // Single endpoint changes.
    let mut lat = Vec::with_capacity(a.changes);
    for i in 0..a.changes {
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
        let s = (i * 7919) % a.services;
        let before = engine.status().applies;
        let t = Instant::now();
        api.apply(SLICES, slice(s, a.endpoints, 1_000 + i));
        let done = loop {
            let st = engine.status();
            if st.applies > before
                && let Some(done) = st.last_done
            {
                if st.last.scopes != 1 || st.last.changed != 1 {
                    bail!("change {i}: expected one scope with one changed service: {st:?}");
                }
                break done;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("change {i} not applied in 30 s: {st:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        lat.push(done.saturating_duration_since(t));
    }
    // The last change is in vrouterd.
    let last = (a.changes.saturating_sub(1) * 7919) % a.services;
    let want = ip(last * a.endpoints + 1_000 + a.changes.saturating_sub(1));
    let shown = vc.call(Op::ShowServices)?.to_string();
    if a.changes > 0 && !shown.contains(&format!("{want}:8080")) {
        bail!("vrouterd lacks the last change's backend {want}");
    }
    lat.sort();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "single endpoint change, API event → vrouterd ack ({} samples, {} ms apart): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        a.gap_ms,
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!("vrouterd RSS: {} MiB", rss_kib(d.pid()) / 1024);
    for t in tasks {
        t.abort();
    }
    engine.stop();
    // The first vrouterd's busy-polling worker would hold a vCPU against
    // the second one's: stop it first.
    // (Its directory goes with it: the kubeconfig is written again in the
    // second one's.)
    let kubeconfig = std::fs::read(&kc)?;
    drop(d);
    // The real agent binary against the same API server, for its memory.
    if let Some(bin) = a.agent_bin {
        let d2 = Daemon::start(
            &format!(
                "[[port]]\nname = \"net1\"\ndriver = \"memory\"\n[[interface]]\nname = \"net1\"\naddresses = [\"198.18.0.1/24\"]\n[services]\nmaglev-table-size = {}\n",
                a.maglev
            ),
            "",
        );
        let dir = d2.dir.clone();
        let kc = dir.join("kubeconfig");
        std::fs::write(&kc, &kubeconfig)?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let mut child = std::process::Command::new(&bin)
            .args(["--node-name", "n1", "--mode", "host-gw", "--kubeconfig"])
            .arg(&kc)
            .arg("--socket")
            .arg(d2.socket())
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting vrouter-agent")?;
        let t = Instant::now();
        // The agent logs each apply; the full resync's is `full=true`.
        let agent_log = dir.join("agent.log");
        while !std::fs::read_to_string(&agent_log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let l = plain(l);
                l.contains("applied") && l.contains("full=true")
            })
        {
            if t.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                bail!("vrouter-agent did not sync in 300 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let synced = t.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_kib(child.id());
        let mut vc2 = Client::connect(&d2.socket(), "churn")?;
        let shown = services_in(&mut vc2)?;
        // SIGINT by PID: the agent stops its watchers and engine.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
        if shown != a.services {
            bail!(
                "vrouterd of vrouter-agent shows {shown} services, not {}",
                a.services
            );
        }
        println!(
            "vrouter-agent binary RSS after its full sync: {} MiB ({:.1} s to sync)",
            rss / 1024,
            synced.as_secs_f64()
        );
    }
    Ok(())
}
