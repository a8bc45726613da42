//! Criterion benches of the FIBs (`vrouter-fib`).
//!
//! Covers:
//! - `fib4/lookup_batch_256`: [`Fib4Table::lookup_batch`] on runs of 256
//!   destinations through a 1M-prefix IPv4 FIB; `fib4/lookup`: single lookups
//!   of the same addresses, for comparison.
//! - `fib4/insert_1M`, `fib4/delete_1M`: installing 1M routes into an empty FIB
//!   and removing them again (throughput in routes/s).
//! - `fib6/lookup_batch_256`, `fib6/lookup`: the same for IPv6 with 200k prefixes;
//!   `fib6/insert_200k`.
//! - Before criterion runs, one pass over the whole lookup set timed per burst
//!   with the TSC, exactly as `dpdk-test-fib` times `rte_fib_lookup_bulk`
//!   (bursts of 64), printed as "cycles/lookup" next to the TSC rate, so the
//!   figures can be set beside DPDK's.
//!
//! Data (set `VROUTER_FIB_*` to use files written by `dpdk-test-fib -w/-u`):
//! - IPv4 routes: `VROUTER_FIB_ROUTES`, else 1M routes in dpdk-test-fib's
//!   default depth distribution (every depth /1../32: 2^d routes for short
//!   depths, the rest split evenly, evenly spread random prefixes, one /0),
//!   in its insertion order (by depth).
//! - IPv4 lookups: `VROUTER_FIB_IPS`, else 10M addresses, each a random
//!   address inside a randomly chosen route (test-fib's recipe, shuffled).
//! - IPv6: `VROUTER_FIB6_ROUTES` / `VROUTER_FIB6_IPS`, else a BGP-like table of
//!   200k prefixes (allocations /29–/32 in the RIR blocks, more-specifics /33–/48
//!   inside them, about half /48) and 10M addresses inside random routes.
//! - `VROUTER_FIB_DUMP_DIR=DIR` writes the generated sets there
//!   (`routes4.txt ips4.txt routes6.txt ips6.txt`) in test-fib's format, to run
//!   `dpdk-test-fib -f ... -t ...` on the same data.
//!
//! Next hops 0 in a dump (NO_ROUTE here) are installed as 1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use vrouter_buf::cycles;
use vrouter_fib::{
    BATCH, Fib4, Fib4Config, Fib6, Fib6Config, MAX_NH, parse_addr_dump, parse_route_dump,
};

const ROUTES4: usize = 1_000_000;
const ROUTES6: usize = 200_000;
const LOOKUPS: usize = 10_000_000;

fn env_file(var: &str) -> Option<String> {
    let path = std::env::var(var).ok()?;
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}")))
}

fn nh(raw: u64) -> u32 {
    u32::try_from(raw)
        .ok()
        .filter(|&n| (1..=MAX_NH).contains(&n))
        .unwrap_or(1)
}

/// dpdk-test-fib's default distribution (`complete_distrib` without `-d`):
/// routes per depth 0..=32 for `n` routes.
fn dpdk_depths(n: usize, max_depth: u32) -> Vec<usize> {
    let mut per = vec![0usize; max_depth as usize + 1];
    let mut placed = 0usize;
    for d in 0..=max_depth {
        let left = (n - placed) / (max_depth as usize + 1 - d as usize);
        per[d as usize] = left.min(1usize.checked_shl(d.min(63)).unwrap_or(usize::MAX));
        placed += per[d as usize];
    }
    per
}

/// IPv4 routes `(prefix, len, nh)` in dpdk-test-fib's recipe and order.
fn gen_routes4(rng: &mut SmallRng, n: usize) -> Vec<(u32, u8, u32)> {
    let per = dpdk_depths(n, 32);
    let mut v = Vec::with_capacity(n);
    if per[0] > 0 {
        v.push((0, 0, rng.gen_range(1..1 << 21)));
    }
    for d in 1..=32u32 {
        let count = per[d as usize];
        if count == 0 {
            continue;
        }
        let step = (1u64 << d) as f64 / count as f64;
        let mut edge = 0f64;
        for _ in 0..count {
            let (lo, hi) = (edge as u64, (edge + step) as u64);
            let r = if hi > lo { rng.gen_range(lo..hi) } else { lo };
            v.push(((r << (32 - d)) as u32, d as u8, rng.gen_range(1..1 << 21)));
            edge += step;
        }
    }
    v
}

/// A BGP-like IPv4 table (length mix of a full Internet table: mostly /24,
/// about 1% longer than /24), used only to report memory.
fn gen_bgp_like4(rng: &mut SmallRng, n: usize) -> Vec<(u32, u8, u32)> {
    let mix: [(u8, u32); 12] = [
        (24, 580),
        (22, 110),
        (23, 100),
        (21, 50),
        (20, 45),
        (19, 35),
        (16, 25),
        (18, 20),
        (17, 10),
        (25, 5),
        (28, 5),
        (32, 15),
    ];
    let total: u32 = mix.iter().map(|m| m.1).sum();
    let mut seen = HashSet::new();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let mut pick = rng.gen_range(0..total);
        let l = mix
            .iter()
            .find(|m| {
                if pick < m.1 {
                    true
                } else {
                    pick -= m.1;
                    false
                }
            })
            .map_or(24, |m| m.0);
        let p = rng.r#gen::<u32>() & (u32::MAX << (32 - u32::from(l)));
        if seen.insert((p, l)) {
            v.push((p, l, rng.gen_range(1..64)));
        }
    }
    v
}

/// A BGP-like IPv6 table: allocations inside the RIR blocks, more-specifics inside them.
fn gen_routes6(rng: &mut SmallRng, n: usize) -> Vec<(u128, u8, u32)> {
    let blocks: [(u128, u8); 6] = [
        (0x2001u128 << 112, 16),
        (0x2400u128 << 112, 12),
        (0x2600u128 << 112, 12),
        (0x2800u128 << 112, 12),
        (0x2a00u128 << 112, 12),
        (0x2c00u128 << 112, 12),
    ];
    let mask = |l: u8| {
        if l == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(l))
        }
    };
    let mut seen = HashSet::new();
    let mut v = Vec::with_capacity(n);
    let mut push = |p: u128, l: u8, v: &mut Vec<(u128, u8, u32)>, rng: &mut SmallRng| {
        if seen.insert((p, l)) {
            v.push((p, l, rng.gen_range(1..1 << 21)));
        }
    };
    let allocs_n = n / 5;
    while v.len() < allocs_n {
        let (b, bl) = blocks[rng.gen_range(0..blocks.len())];
        let l = *[32u8, 32, 32, 32, 32, 32, 32, 29, 29, 30, 31]
            .choose(rng)
            .unwrap_or(&32);
        let p = (b | (rng.r#gen::<u128>() & !mask(bl))) & mask(l);
        push(p, l, &mut v, rng);
    }
    let allocs: Vec<(u128, u8)> = v.iter().map(|&(p, l, _)| (p, l)).collect();
    while v.len() < n {
        let (a, al) = allocs[rng.gen_range(0..allocs.len())];
        let l = match rng.gen_range(0..100) {
            0..55 => 48,
            55..65 => 44,
            65..75 => 40,
            75..80 => 36,
            _ => rng.gen_range(al + 1..48),
        };
        let p = (a | (rng.r#gen::<u128>() & !mask(al))) & mask(l);
        push(p, l, &mut v, rng);
    }
    v
}

/// `n` addresses, each random inside a random route.
fn gen_lookups<K: Copy>(
    rng: &mut SmallRng,
    routes: &[(K, u8, u32)],
    n: usize,
    inside: impl Fn(K, u8, u128) -> K,
) -> Vec<K> {
    (0..n)
        .map(|_| {
            let (p, l, _) = routes[rng.gen_range(0..routes.len())];
            inside(p, l, rng.r#gen())
        })
        .collect()
}

struct Data {
    routes4: Vec<(u32, u8, u32)>,
    ips4: Vec<u32>,
    routes6: Vec<(u128, u8, u32)>,
    ips6: Vec<u128>,
}

fn load() -> Data {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let routes4 = match env_file("VROUTER_FIB_ROUTES") {
        Some(t) => parse_route_dump(&t)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.prefix {
                IpAddr::V4(a) => Some((u32::from(a), r.len, nh(r.nh))),
                IpAddr::V6(_) => None,
            })
            .collect(),
        None => gen_routes4(&mut rng, ROUTES4),
    };
    let ips4 = match env_file("VROUTER_FIB_IPS") {
        Some(t) => parse_addr_dump(&t)
            .unwrap()
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(u32::from(a)),
                IpAddr::V6(_) => None,
            })
            .collect(),
        None => gen_lookups(&mut rng, &routes4, LOOKUPS, |p, l, r| {
            p | ((r as u32) & u32::MAX.checked_shr(u32::from(l)).unwrap_or(0))
        }),
    };
    let routes6 = match env_file("VROUTER_FIB6_ROUTES") {
        Some(t) => parse_route_dump(&t)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.prefix {
                IpAddr::V6(a) => Some((u128::from(a), r.len, nh(r.nh))),
                IpAddr::V4(_) => None,
            })
            .collect(),
        None => gen_routes6(&mut rng, ROUTES6),
    };
    let ips6 = match env_file("VROUTER_FIB6_IPS") {
        Some(t) => parse_addr_dump(&t)
            .unwrap()
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(u128::from(a)),
                IpAddr::V4(_) => None,
            })
            .collect(),
        None => gen_lookups(&mut rng, &routes6, LOOKUPS, |p, l, r| {
            p | (r & u128::MAX.checked_shr(u32::from(l)).unwrap_or(0))
        }),
    };
    let d = Data {
        routes4,
        ips4,
        routes6,
        ips6,
    };
    if let Ok(dir) = std::env::var("VROUTER_FIB_DUMP_DIR") {
        dump(&dir, &d);
    }
    d
}

/// Writes the sets in dpdk-test-fib's `-f` / `-t` format.
fn dump(dir: &str, d: &Data) {
    let mut s = String::new();
    let write = |name: &str, s: &mut String| {
        std::fs::write(format!("{dir}/{name}"), s.as_bytes()).unwrap();
        s.clear();
    };
    for &(p, l, n) in &d.routes4 {
        writeln!(s, "{}/{l} {n}", Ipv4Addr::from(p)).unwrap();
    }
    write("routes4.txt", &mut s);
    for &a in &d.ips4 {
        writeln!(s, "{}", Ipv4Addr::from(a)).unwrap();
    }
    write("ips4.txt", &mut s);
    for &(p, l, n) in &d.routes6 {
        writeln!(s, "{}/{l} {n}", Ipv6Addr::from(p)).unwrap();
    }
    write("routes6.txt", &mut s);
    for &a in &d.ips6 {
        writeln!(s, "{}", Ipv6Addr::from(a)).unwrap();
    }
    write("ips6.txt", &mut s);
}

fn build4(routes: &[(u32, u8, u32)]) -> Fib4 {
    let mut fib = Fib4::new(Fib4Config {
        max_groups: 1 << 20,
    })
    .unwrap();
    for &(p, l, n) in routes {
        fib.insert(Ipv4Addr::from(p), l, n).unwrap();
    }
    fib
}

fn build6(routes: &[(u128, u8, u32)]) -> Fib6 {
    let mut fib = Fib6::new(Fib6Config {
        root_bits: 16,
        max_groups: 1 << 20,
    })
    .unwrap();
    for &(p, l, n) in routes {
        fib.insert(Ipv6Addr::from(p), l, n).unwrap();
    }
    fib
}

/// TSC ticks per nanosecond, measured against the monotonic clock.
fn tsc_ghz() -> f64 {
    let (t0, c0) = (Instant::now(), cycles());
    std::thread::sleep(Duration::from_millis(200));
    (cycles() - c0) as f64 / t0.elapsed().as_nanos() as f64
}

/// One pass over `ips` in bursts, TSC-timed per burst like dpdk-test-fib.
fn tsc_pass<A>(ips: &[A], burst: usize, f: impl Fn(&[A], &mut [u32])) -> f64 {
    let mut out = vec![0u32; burst];
    let mut acc = 0u64;
    let mut n = 0usize;
    for chunk in ips.chunks_exact(burst) {
        let c0 = cycles();
        f(chunk, &mut out);
        acc += cycles() - c0;
        n += burst;
        black_box(&out);
    }
    acc as f64 / n as f64
}

fn report(name: &str, fib_mib: f64, ghz: f64, per: &[(usize, f64)]) {
    for &(burst, c) in per {
        eprintln!(
            "{name}: {c:.1} TSC cycles/lookup ({:.2} ns) in bursts of {burst}; table {fib_mib:.1} MiB",
            c / ghz
        );
    }
}

fn benches(c: &mut Criterion) {
    let d = load();
    let ghz = tsc_ghz();
    eprintln!(
        "TSC {ghz:.3} GHz; IPv4 {} routes, {} lookups; IPv6 {} routes, {} lookups",
        d.routes4.len(),
        d.ips4.len(),
        d.routes6.len(),
        d.ips6.len()
    );

    // Memory of a BGP-like 1M-route IPv4 table (the design's 128 MiB budget).
    let bgp = build4(&gen_bgp_like4(&mut SmallRng::seed_from_u64(24), ROUTES4));
    eprintln!(
        "fib4 BGP-like: {} routes, {:?}, {:.1} MiB in all ({:.1} MiB table)",
        bgp.len(),
        bgp.group_stats(),
        bgp.memory_bytes() as f64 / (1 << 20) as f64,
        bgp.table().memory_bytes() as f64 / (1 << 20) as f64
    );
    drop(bgp);

    // IPv4 lookups.
    let fib4 = build4(&d.routes4);
    let t4 = fib4.table().clone();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    eprintln!(
        "fib4: {} routes, {:?}, {:.1} MiB in all ({:.1} MiB table)",
        fib4.len(),
        fib4.group_stats(),
        mib(fib4.memory_bytes()),
        mib(t4.memory_bytes())
    );
    let tsc: Vec<(usize, f64)> = [64, BATCH]
        .iter()
        .map(|&b| (b, tsc_pass(&d.ips4, b, |a, o| t4.lookup_batch(a, o))))
        .collect();
    report("fib4 lookup_batch", mib(t4.memory_bytes()), ghz, &tsc);
    let single = tsc_pass(&d.ips4, 64, |a, o| {
        for (a, o) in a.iter().zip(o.iter_mut()) {
            *o = t4.lookup(*a);
        }
    });
    report(
        "fib4 lookup (single, loop)",
        mib(t4.memory_bytes()),
        ghz,
        &[(64, single)],
    );

    let mut g = c.benchmark_group("fib4");
    g.throughput(Throughput::Elements(BATCH as u64));
    let runs = d.ips4.len() / BATCH;
    let mut out = vec![0u32; BATCH];
    let mut i = 0;
    g.bench_function("lookup_batch_256", |b| {
        b.iter(|| {
            i = (i + 1) % runs;
            t4.lookup_batch(&d.ips4[i * BATCH..(i + 1) * BATCH], &mut out);
            black_box(&out);
        })
    });
    g.bench_function("lookup", |b| {
        b.iter(|| {
            i = (i + 1) % runs;
            for (a, o) in d.ips4[i * BATCH..(i + 1) * BATCH]
                .iter()
                .zip(out.iter_mut())
            {
                *o = t4.lookup(*a);
            }
            black_box(&out);
        })
    });
    drop(fib4);
    drop(t4);

    // IPv4 control plane: whole-table insert and delete.
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(d.routes4.len() as u64));
    g.bench_function("insert_1M", |b| {
        b.iter_batched(
            || {
                Fib4::new(Fib4Config {
                    max_groups: 1 << 20,
                })
                .unwrap()
            },
            |mut fib| {
                for &(p, l, n) in &d.routes4 {
                    fib.insert(Ipv4Addr::from(p), l, n).unwrap();
                }
                fib
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("delete_1M", |b| {
        b.iter_batched(
            || build4(&d.routes4),
            |mut fib| {
                for &(p, l, _) in &d.routes4 {
                    fib.remove(Ipv4Addr::from(p), l).unwrap();
                }
                fib
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // IPv6.
    let fib6 = build6(&d.routes6);
    let t6 = fib6.table().clone();
    eprintln!(
        "fib6: {} routes, {:?}, {:.1} MiB in all ({:.1} MiB table)",
        fib6.len(),
        fib6.group_stats(),
        mib(fib6.memory_bytes()),
        mib(t6.memory_bytes())
    );
    let tsc: Vec<(usize, f64)> = [64, BATCH]
        .iter()
        .map(|&b| (b, tsc_pass(&d.ips6, b, |a, o| t6.lookup_batch(a, o))))
        .collect();
    report("fib6 lookup_batch", mib(t6.memory_bytes()), ghz, &tsc);
    let single = tsc_pass(&d.ips6, 64, |a, o| {
        for (a, o) in a.iter().zip(o.iter_mut()) {
            *o = t6.lookup(*a);
        }
    });
    report(
        "fib6 lookup (single, loop)",
        mib(t6.memory_bytes()),
        ghz,
        &[(64, single)],
    );
    // The root-width choice: the same routes and lookups with DPDK's 24-bit root.
    {
        let mut wide = Fib6::new(Fib6Config {
            root_bits: 24,
            max_groups: 1 << 20,
        })
        .unwrap();
        for &(p, l, n) in &d.routes6 {
            wide.insert(Ipv6Addr::from(p), l, n).unwrap();
        }
        let tw = wide.table().clone();
        let c = tsc_pass(&d.ips6, BATCH, |a, o| tw.lookup_batch(a, o));
        report(
            "fib6 lookup_batch, root_bits 24",
            mib(tw.memory_bytes()),
            ghz,
            &[(BATCH, c)],
        );
    }
    let mut g = c.benchmark_group("fib6");
    g.throughput(Throughput::Elements(BATCH as u64));
    let runs = d.ips6.len() / BATCH;
    g.bench_function("lookup_batch_256", |b| {
        b.iter(|| {
            i = (i + 1) % runs;
            t6.lookup_batch(&d.ips6[i * BATCH..(i + 1) * BATCH], &mut out);
            black_box(&out);
        })
    });
    g.bench_function("lookup", |b| {
        b.iter(|| {
            i = (i + 1) % runs;
            for (a, o) in d.ips6[i * BATCH..(i + 1) * BATCH]
                .iter()
                .zip(out.iter_mut())
            {
                *o = t6.lookup(*a);
            }
            black_box(&out);
        })
    });
    drop(fib6);
    drop(t6);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(d.routes6.len() as u64));
    g.bench_function("insert_200k", |b| {
        b.iter_batched(
            || {
                Fib6::new(Fib6Config {
                    root_bits: 16,
                    max_groups: 1 << 20,
                })
                .unwrap()
            },
            |mut fib| {
                for &(p, l, n) in &d.routes6 {
                    fib.insert(Ipv6Addr::from(p), l, n).unwrap();
                }
                fib
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(fib, benches);
criterion_main!(fib);
