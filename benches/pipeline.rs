//! Criterion benches of whole pipelines on memory ports: one core, 64-byte
//! frames, bursts of 256, RX copy + graph + TX included (the memory port
//! copies each template frame into a buffer, as a NIC's DMA would).
//!
//! Covers: L2 bridge with learning on and 64k MACs; IPv4 routing through a
//! 1M-prefix FIB with random destinations; IPv6 routing with 200k prefixes;
//! VXLAN encapsulation (route to one of 16 remote nodes + encap + outer
//! route) and decapsulation (+ bridge to a pod, 64k learned inner sources).
//! Figures and commands: benches/RESULTS.md.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vrouter_benches::{Bench, ip4, ip6, l2, vxlan_decap, vxlan_encap};

fn run(c: &mut Criterion, name: &str, mut b: Bench) {
    // Measure the packets per poll once: L2 polls two ports.
    let per_poll = b.poll() as u64;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(per_poll));
    g.bench_function(name, |bench| bench.iter(|| b.poll()));
    g.finish();
    assert!(b.tx_packets() > 0, "{name}: nothing forwarded");
}

fn benches(c: &mut Criterion) {
    run(c, "l2-bridge-64k-macs", l2(65536));
    run(c, "ip4-route-1m-prefixes", ip4(1_000_000, 65536));
    run(c, "ip6-route-200k-prefixes", ip6(200_000, 65536));
    run(c, "vxlan-encap-route-16-nodes", vxlan_encap(65536));
    run(c, "vxlan-decap-bridge-64k-flows", vxlan_decap(65536));
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(pipeline);
