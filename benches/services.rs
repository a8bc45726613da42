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

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vrouter_benches::svc::{dnat, policies};
use vrouter_dataplane::service::maglev;

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
