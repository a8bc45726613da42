//! Criterion benches of services and policy (issue 7; figures in
//! benches/RESULTS.md):
//!
//! - `service-dnat-1m-flows`: the whole pipeline on memory ports (RX copy,
//!   ip4-input, ip4-conntrack, ip4-lookup, rewrite, TX), one core, 64-byte
//!   UDP frames to a ClusterIP with 16 backends, 1M distinct flows already
//!   tracked (every packet is a conntrack hit with DNAT); and the same
//!   frames routed to a backend address with no service configured
//!   (`ip4-conntrack` not visited), the baseline of this machine.
//! - `policy-classify-1k-rules`: the classifier alone (a connection's first
//!   packet): 100 policies × 10 rules over 1000 selected pods, peers as pod
//!   IP sets and ipBlocks with except, port ranges; and the worst case of
//!   one pod selected by all 1000 rules.
//! - `maglev-rebuild-1k-backends`: one service's table, 65537 and 16381 slots.
//! - conntrack memory for 1M flows is printed (allocation and RSS growth).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use vrouter_benches::Bench;
use vrouter_dataplane::conntrack::{ConnTrack, Geometry, Timeouts};
use vrouter_dataplane::policy::{
    IpSet, PodRules, PolicyInfo, PolicyTable, Rule, RuleSet, prefix_range,
};
use vrouter_dataplane::port::memory::MemoryPort;
use vrouter_dataplane::service::{BackendSpec, ServiceSpec, maglev};

const CFG: &str = r#"
[[port]]
name = "in"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "out"
driver = "memory"
mac = "02:00:00:00:02:01"
[[interface]]
name = "in"
addresses = ["198.18.0.1/16"]
[[interface]]
name = "out"
addresses = ["198.19.0.1/16"]
"#;

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

/// The DNAT pipeline with `flows` flows tracked; with `service` false the
/// same frames go straight to a backend address (plain routing, the
/// baseline on the same machine).
fn dnat(flows: usize, service: bool) -> Bench {
    let mut cfg = CFG.to_string();
    for g in 0..16 {
        cfg += &format!(
            "[[neighbor]]\ninterface = \"out\"\nip = \"198.19.0.{}\"\nmac = \"02:00:00:00:03:{g:02x}\"\n",
            g + 2
        );
    }
    let mut b = Bench::new(&cfg, vec![Vec::new(), Vec::new()]);
    let before = rss_kib();
    b.worker
        .pipeline
        .set_conntrack(ConnTrack::new(flows + flows / 8, 0, Timeouts::default()));
    let dst = if service {
        [198, 18, 200, 10]
    } else {
        [198, 19, 0, 2]
    };
    if service {
        b.router.svc.set_service(
            "default/web",
            ServiceSpec {
                ips: vec![Ipv4Addr::new(198, 18, 200, 10).into()],
                port: 80,
                proto: 17,
                node_port: 0,
                local_only: false,
                affinity_s: 0,
                backends: (0..16)
                    .map(|g| BackendSpec {
                        ip: Ipv4Addr::new(198, 19, 0, g + 2).into(),
                        port: 8080,
                        weight: 1,
                        local: true,
                    })
                    .collect(),
            },
        );
    }
    b.router.commit();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut frames: Vec<Vec<u8>> = (0..flows)
        .map(|k| {
            // Clients 198.18.1.0 - 198.18.16.255, 4096 ports each.
            let host = 256 + (k / 4096) as u32;
            let src = Ipv4Addr::from(0xc612_0000 | host);
            let mut v = Vec::with_capacity(60);
            PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x10], [0x02, 0, 0, 0, 1, 1])
                .ipv4(src.octets(), dst, 64)
                .udp(10000 + (k % 4096) as u16, 80)
                .write(&mut v, &[0u8; 18])
                .unwrap();
            v
        })
        .collect();
    for i in (1..frames.len()).rev() {
        frames.swap(i, rng.gen_range(0..=i));
    }
    b.worker.ports[0] = Box::new(MemoryPort::replay(
        0,
        "in",
        "02:00:00:00:01:01".parse().unwrap(),
        frames,
    ));
    // One pass creates every flow.
    for _ in 0..flows.div_ceil(256) + 1 {
        b.poll();
    }
    let ct = b.worker.pipeline.conntrack();
    eprintln!(
        "conntrack: {} flows tracked; table for {} flows allocates {:.1} MiB; RSS grew {:.1} MiB (with the replayed frames)",
        ct.len(),
        ct.capacity(),
        Geometry::for_flows(ct.capacity()).bytes() as f64 / (1 << 20) as f64,
        (rss_kib().saturating_sub(before)) as f64 / 1024.0,
    );
    eprintln!(
        "conntrack: 1M flows need {:.1} MiB",
        Geometry::for_flows(1 << 20).bytes() as f64 / (1 << 20) as f64
    );
    b
}

/// 100 policies × 10 rules, each policy selecting 10 pods.
fn policies(worst: bool) -> (PolicyTable, Vec<(u32, u32, u8, u16)>) {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut t = PolicyTable {
        counters: (0..1000).map(|_| AtomicU64::new(0)).collect(),
        ..PolicyTable::default()
    };
    let pod = |k: u32| 0xc612_0000 | (k + 256);
    let mut rules_of_policy = Vec::new();
    for p in 0..100u32 {
        t.policies.push(PolicyInfo {
            name: format!("ns/p{p}"),
            rule_names: (0..10).map(|r| format!("ingress {r}")).collect(),
            first_counter: p * 10,
            denied: AtomicU64::new(0),
        });
        let rules: Vec<Rule> = (0..10u32)
            .map(|r| {
                let mut peers: Vec<(u32, u32)> = (0..20)
                    .map(|_| {
                        let a = pod(rng.gen_range(0..1000));
                        (a, a)
                    })
                    .collect();
                peers.push(prefix_range(0xc613_0000 | (rng.gen_range(0..256) << 8), 24));
                let lo = rng.gen_range(1000..60000);
                Rule {
                    policy: p,
                    counter: p * 10 + r,
                    peers: Some(IpSet::new(peers, vec![prefix_range(0xc613_0080, 25)])),
                    ports: vec![(6, lo, lo + rng.gen_range(0..100)), (17, 53, 53)],
                }
            })
            .collect();
        rules_of_policy.push(rules);
    }
    if worst {
        let all: Vec<Rule> = rules_of_policy.into_iter().flatten().collect();
        t.pods.insert(
            pod(0),
            PodRules {
                ingress: Some(std::sync::Arc::new(RuleSet::new(&all))),
                ..PodRules::default()
            },
        );
    } else {
        for (p, rules) in rules_of_policy.into_iter().enumerate() {
            let shared = std::sync::Arc::new(RuleSet::new(&rules));
            for k in 0..10u32 {
                t.pods.insert(
                    pod(p as u32 * 10 + k),
                    PodRules {
                        ingress: Some(shared.clone()),
                        ..PodRules::default()
                    },
                );
            }
        }
    }
    let tuples = (0..4096)
        .map(|_| {
            let src = if rng.gen_bool(0.5) {
                pod(rng.gen_range(0..1000))
            } else {
                0xc613_0000 | rng.gen_range(0..65536)
            };
            let dst = if worst {
                pod(0)
            } else {
                pod(rng.gen_range(0..1000))
            };
            (src, dst, 6u8, rng.gen_range(1000..61000) as u16)
        })
        .collect();
    (t, tuples)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("services");
    for (name, service) in [
        ("service-dnat-1m-flows", true),
        ("baseline-route-1m-flows-no-service", false),
    ] {
        let mut b = dnat(1 << 20, service);
        let per_poll = b.poll() as u64;
        g.throughput(Throughput::Elements(per_poll));
        g.bench_function(name, |bench| bench.iter(|| b.poll()));
        assert!(b.tx_packets() > 0);
    }
    for (name, worst) in [
        ("policy-classify-1k-rules", false),
        ("policy-classify-1k-rules-one-pod", true),
    ] {
        let (t, tuples) = policies(worst);
        g.throughput(Throughput::Elements(tuples.len() as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut allowed = 0u32;
                for &(s, d, p, port) in &tuples {
                    allowed += u32::from(matches!(
                        t.allow(s, d, p, port),
                        vrouter_dataplane::policy::Verdict::Allow
                    ));
                }
                allowed
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let ids: Vec<u64> = (0..1000u32)
        .map(|k| maglev::backend_id(0xc612_0000 + u128::from(k), 8080))
        .collect();
    let w = vec![1u16; 1000];
    for m in [65537u32, 16381] {
        g.bench_function(format!("maglev-rebuild-1k-backends-{m}"), |bench| {
            bench.iter(|| maglev::build(&ids, &w, m))
        });
    }
    g.finish();
}

criterion_group! {
    name = services;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(services);
