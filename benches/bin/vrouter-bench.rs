//! Runs one pipeline set-up in a tight loop for profiling (perf, callgrind)
//! and prints packets per second: `vrouter-bench <l2|ip4|ip6> [seconds]`,
//! or `vrouter-bench <pipeline> polls:N` for a fixed number of poll loops
//! (for `valgrind --tool=callgrind`, whose counts do not drift with load).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("l2");
    let arg = args.get(2).map(String::as_str).unwrap_or("5");
    let polls: Option<u64> = arg.strip_prefix("polls:").and_then(|n| n.parse().ok());
    let secs: f64 = arg.parse().unwrap_or(5.0);
    let t0 = Instant::now();
    let mut b = match which {
        "l2" => vrouter_benches::l2(65536),
        "l2-small" => vrouter_benches::l2(512),
        "ip4-small" => vrouter_benches::ip4(10_000, 512),
        "ip6-small" => vrouter_benches::ip6(10_000, 512),
        "ip4" => vrouter_benches::ip4(1_000_000, 65536),
        "ip6" => vrouter_benches::ip6(200_000, 65536),
        "vxlan-encap" => vrouter_benches::vxlan_encap(65536),
        "vxlan-decap" => vrouter_benches::vxlan_decap(65536),
        other => panic!("unknown pipeline {other}"),
    };
    eprintln!("setup: {:.1} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let c0 = cpu_ns();
    let mut n = 0u64;
    if let Some(p) = polls {
        let n = measured(&mut b, p);
        println!("{which}: {n} packets in {p} polls");
        return;
    }
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            n += b.poll() as u64;
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    // CPU time of this thread: on a loaded machine the wall-clock rate
    // counts time other processes held the core; this one does not.
    let cpu = cpu_ns().zip(c0).map(|(c1, c0)| (c1 - c0) as f64 / 1e9);
    println!(
        "{which}: {:.2} Mpps ({:.1} ns/packet){}",
        n as f64 / dt / 1e6,
        dt * 1e9 / n as f64,
        cpu.map_or(String::new(), |c| format!(
            ", on-CPU {:.2} Mpps ({:.1} ns/packet)",
            n as f64 / c / 1e6,
            c * 1e9 / n as f64
        ))
    );
}

/// The measured polls, a function of its own so that callgrind can count
/// only them: `valgrind --tool=callgrind --collect-atstart=no
/// --toggle-collect=vrouter_bench::measured ...`.
#[inline(never)]
fn measured(b: &mut vrouter_benches::Bench, polls: u64) -> u64 {
    let mut n = 0;
    for _ in 0..polls {
        n += b.poll() as u64;
    }
    n
}

/// Nanoseconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`).
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
