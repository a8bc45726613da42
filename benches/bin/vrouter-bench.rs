//! Runs one pipeline set-up in a tight loop for profiling (perf, callgrind)
//! and prints packets per second: `vrouter-bench <l2|ip4|ip6> [seconds]`,
//! or `vrouter-bench <pipeline> polls:N` for a fixed number of poll loops
//! (for `valgrind --tool=callgrind`, whose counts do not drift with load).
//! `dnat`/`dnat-base` and `policy`/`policy-one-pod` are the services set-ups
//! (issue 7, `vrouter_benches::svc`); `acl-export[-one-pod] DIR` writes the
//! policy set as `dpdk-test-acl` rules and trace (scripts/bench-acl.sh).
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
        "dnat" => vrouter_benches::svc::dnat(1 << 20, true),
        "dnat-base" => vrouter_benches::svc::dnat(1 << 20, false),
        "acl-export" | "acl-export-one-pod" => {
            // `vrouter-bench acl-export[-one-pod] DIR`: the policy set as
            // dpdk-test-acl rule and trace files (scripts/bench-acl.sh).
            let dir = std::path::Path::new(arg);
            let (r, t) = vrouter_benches::svc::write_acl(
                which == "acl-export-one-pod",
                &dir.join("rules"),
                &dir.join("trace"),
            )
            .unwrap();
            println!("{r} ACL rules, {t} traces in {}", dir.display());
            return;
        }
        "policy" | "policy-one-pod" => {
            return policy(which == "policy-one-pod", polls.unwrap_or(1000));
        }
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

/// `policy[-one-pod] [polls:N]`: classifies the 4096 tuples of the
/// services bench N times (default 1000) in [`measured_policy`] and prints
/// the classifications per second (loaded machines: count instructions).
fn policy(worst: bool, rounds: u64) {
    let (t, tuples) = vrouter_benches::svc::policies(worst);
    let t0 = Instant::now();
    let allowed = measured_policy(&t, &tuples, rounds);
    let n = rounds * tuples.len() as u64;
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "policy: {n} classifications ({allowed} allowed) in {rounds} rounds, {:.2} M/s",
        n as f64 / dt / 1e6
    );
}

/// The measured classifications (callgrind:
/// `--toggle-collect=vrouter_bench::measured_policy`).
#[inline(never)]
fn measured_policy(
    t: &vrouter_dataplane::policy::PolicyTable,
    tuples: &[(u32, u32, u8, u16)],
    rounds: u64,
) -> u64 {
    let mut allowed = 0;
    for _ in 0..rounds {
        for &(s, d, p, port) in tuples {
            allowed += u64::from(matches!(
                t.allow(s, d, p, port),
                vrouter_dataplane::policy::Verdict::Allow
            ));
        }
    }
    allowed
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
