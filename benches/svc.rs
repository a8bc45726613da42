//! Set-ups of the services benches (issue 7), shared by
//! `benches/services.rs` (criterion) and `vrouter-bench dnat|policy`
//! (callgrind): the DNAT pipeline with 1M tracked flows and its baseline,
//! and the 1k-rule NetworkPolicy table with its lookup tuples.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etherparse::PacketBuilder;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use vrouter_dataplane::conntrack::{ConnTrack, Geometry, Timeouts};
use vrouter_dataplane::policy::{
    IpSet, PodRules, PolicyInfo, PolicyTable, Rule, RuleSet, prefix_range,
};
use vrouter_dataplane::port::memory::MemoryPort;
use vrouter_dataplane::service::{BackendSpec, ServiceSpec};

use crate::Bench;

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
pub fn dnat(flows: usize, service: bool) -> Bench {
    let mut cfg = CFG.to_string();
    for g in 0..16 {
        cfg += &format!(
            "[[neighbor]]\ninterface = \"out\"\nip = \"198.19.0.{}\"\nmac = \"02:00:00:00:03:{g:02x}\"\n",
            g + 2
        );
    }
    let mut b = Bench::new(&cfg, vec![Vec::new(), Vec::new()]);
    let before = rss_kib();
    // Flows must outlive the set-up, even under valgrind (a minute or more),
    // or the measured packets are misses that re-create their flows.
    let timeouts = Timeouts {
        udp: 3600,
        udp_stream: 3600,
        ..Timeouts::default()
    };
    b.worker
        .pipeline
        .set_conntrack(ConnTrack::new(flows + flows / 8, 0, timeouts));
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

/// The 1000 rules and the lookup tuples: `(policy rules, tuples)`.
type PolicySet = (Vec<Vec<Rule>>, Vec<(u32, u32, u8, u16)>);

/// A selected pod's address.
fn pod(k: u32) -> u32 {
    0xc612_0000 | (k + 256)
}

/// The pods policy `p` selects (all rules select pod 0 in the worst case).
fn selected(p: u32, worst: bool) -> Vec<u32> {
    if worst {
        vec![pod(0)]
    } else {
        (0..10).map(|k| pod(p * 10 + k)).collect()
    }
}

/// 100 policies × 10 ingress rules (peers: 20 pods and a /24 with an
/// `except`; a TCP port range and UDP 53), and 4096 (src, dst, proto, port)
/// tuples to classify.
fn policy_set(worst: bool) -> PolicySet {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut rules_of_policy = Vec::new();
    for p in 0..100u32 {
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
    (rules_of_policy, tuples)
}

/// 100 policies × 10 rules, each policy selecting 10 pods (`worst`: one
/// pod selected by all 1000 rules), compiled, and 4096 (src, dst, proto,
/// port) tuples to classify.
pub fn policies(worst: bool) -> (PolicyTable, Vec<(u32, u32, u8, u16)>) {
    let (rules_of_policy, tuples) = policy_set(worst);
    let mut t = PolicyTable {
        counters: (0..1000).map(|_| AtomicU64::new(0)).collect(),
        ..PolicyTable::default()
    };
    for p in 0..100u32 {
        t.policies.push(PolicyInfo {
            name: format!("ns/p{p}"),
            rule_names: (0..10).map(|r| format!("ingress {r}")).collect(),
            first_counter: p * 10,
            denied: AtomicU64::new(0),
        });
    }
    if worst {
        let all: Vec<Rule> = rules_of_policy.into_iter().flatten().collect();
        t.pods.insert(
            pod(0),
            PodRules {
                ingress: Some(Arc::new(RuleSet::new(&all))),
                ..PodRules::default()
            },
        );
    } else {
        for (p, rules) in rules_of_policy.into_iter().enumerate() {
            let shared = Arc::new(RuleSet::new(&rules));
            for a in selected(p as u32, false) {
                t.pods.insert(
                    a,
                    PodRules {
                        ingress: Some(shared.clone()),
                        ..PodRules::default()
                    },
                );
            }
        }
    }
    (t, tuples)
}

/// The CIDR prefixes covering the inclusive interval `lo..=hi`.
fn prefixes(lo: u32, hi: u32) -> Vec<(u32, u8)> {
    let (mut lo, hi) = (u64::from(lo), u64::from(hi));
    let mut out = Vec::new();
    while lo <= hi {
        // The largest block aligned at `lo` that ends within `hi`.
        let mut k = if lo == 0 {
            32
        } else {
            lo.trailing_zeros().min(32)
        };
        while lo + (1u64 << k) - 1 > hi {
            k -= 1;
        }
        out.push((lo as u32, (32 - k) as u8));
        lo += 1u64 << k;
    }
    out
}

/// Writes the policy set as `dpdk-test-acl` input (ClassBench format):
/// `rules` (one 5-tuple rule per selected-pod prefix × peer prefix × port
/// range, in rule order, so the first match is the same rule) and `trace`
/// (the bench's tuples, source port 40000). Returns (rules, traces).
pub fn write_acl(worst: bool, rules: &Path, trace: &Path) -> std::io::Result<(usize, usize)> {
    let (rules_of_policy, tuples) = policy_set(worst);
    let ip = |a: u32| Ipv4Addr::from(a);
    let mut out = String::new();
    let mut n = 0;
    for (p, rs) in rules_of_policy.iter().enumerate() {
        let pods = selected(p as u32, worst);
        let mut dsts = Vec::new();
        for run in pods.chunk_by(|a, b| b.wrapping_sub(*a) == 1) {
            dsts.extend(prefixes(run[0], run[run.len() - 1]));
        }
        for r in rs {
            let srcs: Vec<(u32, u8)> = match &r.peers {
                None => vec![(0, 0)],
                Some(set) => set.iter().flat_map(|(lo, hi)| prefixes(lo, hi)).collect(),
            };
            let ports: Vec<(u8, u16, u16)> = if r.ports.is_empty() {
                vec![(0, 0, u16::MAX)]
            } else {
                r.ports.clone()
            };
            for &(d, dl) in &dsts {
                for &(s, sl) in &srcs {
                    for &(proto, lo, hi) in &ports {
                        let mask = if proto == 0 { 0 } else { 0xff };
                        out += &format!(
                            "@{}/{sl} {}/{dl} 0 : 65535 {lo} : {hi} {proto}/0x{mask:02x}\n",
                            ip(s),
                            ip(d)
                        );
                        n += 1;
                    }
                }
            }
        }
    }
    std::fs::write(rules, out)?;
    let mut tr = String::new();
    for &(s, d, proto, port) in &tuples {
        tr += &format!("{s:#x} {d:#x} 40000 {port} {proto}\n");
    }
    std::fs::write(trace, tr)?;
    Ok((n, tuples.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_become_exact_prefixes() {
        assert_eq!(prefixes(0, u32::MAX), vec![(0, 0)]);
        assert_eq!(prefixes(5, 5), vec![(5, 32)]);
        assert_eq!(prefixes(0x100, 0x1ff), vec![(0x100, 24)]);
        let p = prefixes(0x104, 0x10d);
        assert_eq!(p, vec![(0x104, 30), (0x108, 30), (0x10c, 31)]);
        // Every address of a random interval is covered exactly once.
        for (lo, hi) in [(3u32, 77u32), (0xfff0, 0x1_0010), (u32::MAX - 5, u32::MAX)] {
            let mut covered = 0u64;
            for (a, len) in prefixes(lo, hi) {
                let size = 1u64 << (32 - len);
                assert_eq!(u64::from(a) % size, 0, "aligned");
                assert!(u64::from(a) >= u64::from(lo) && u64::from(a) + size - 1 <= u64::from(hi));
                covered += size;
            }
            assert_eq!(covered, u64::from(hi - lo) + 1);
        }
    }
}
