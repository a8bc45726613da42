//! Concurrency: reader threads look up addresses in a loop (single and batch
//! lookups) while the writer inserts and deletes thousands of routes, splits
//! and collapses the groups under the readers' /24s, and reclaims retired
//! groups after a grace period the readers report, so that groups are reused
//! while readers run.
//!
//! Stable addresses must always return their one next hop; changing
//! addresses must only ever return a next hop that is legal for them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vrouter_fib::{Fib4, Fib4Config, Fib6, Fib6Config, NO_ROUTE};

const READERS: usize = 2;
/// Writer operations per test (more where the build is optimised).
const STEPS4: u32 = if cfg!(debug_assertions) {
    20_000
} else {
    60_000
};

/// A probe: the address and the next hops it may legally return.
#[derive(Clone)]
struct Probe<A> {
    addr: A,
    legal: Vec<u32>,
}

/// Readers' quiescent-state counters, read by the writer to end a grace period.
struct Quiescence {
    counters: Vec<AtomicU64>,
}

impl Quiescence {
    fn new(n: usize) -> Self {
        Self {
            counters: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    /// Waits until every reader has passed a quiescent point after this call.
    fn wait_grace(&self, stop: &AtomicBool) {
        let seen: Vec<u64> = self
            .counters
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect();
        for (c, s) in self.counters.iter().zip(seen) {
            while c.load(Ordering::SeqCst) == s && !stop.load(Ordering::SeqCst) {
                thread::yield_now();
            }
        }
    }
}

fn reader<A: Copy + Send>(
    probes: &[Probe<A>],
    lookup: impl Fn(A) -> u32,
    batch: impl Fn(&[A], &mut [u32]),
    q: &AtomicU64,
    stop: &AtomicBool,
) -> u64 {
    let addrs: Vec<A> = probes.iter().map(|p| p.addr).collect();
    let mut out = vec![0u32; addrs.len()];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        batch(&addrs, &mut out);
        for (p, &got) in probes.iter().zip(&out) {
            assert!(
                p.legal.contains(&got),
                "batch lookup returned {got}, legal {:?}",
                p.legal
            );
            let single = lookup(p.addr);
            assert!(
                p.legal.contains(&single),
                "lookup returned {single}, legal {:?}",
                p.legal
            );
        }
        n += 2 * addrs.len() as u64;
        // Quiescent point: no lookup of this thread is in flight.
        q.fetch_add(1, Ordering::SeqCst);
    }
    n
}

#[test]
fn v4_readers_see_old_or_new_never_garbage() {
    let mut fib = Fib4::new(Fib4Config { max_groups: 2048 }).unwrap();
    let ip = |a: u32| Ipv4Addr::from(a);
    // Stable routes under which the writer churns.
    let base = 0xc612_0000u32; // 198.18.0.0
    fib.insert(ip(base), 16, 100).unwrap();
    for k in 0..16u32 {
        fib.insert(ip(base | (k << 8)), 24, 200 + k).unwrap();
        fib.insert(ip(base | (k << 8) | 0x40), 27, 300 + k).unwrap(); // .64/27
    }
    let mut probes = Vec::new();
    for k in 0..16u32 {
        let net = base | (k << 8);
        // .70 lies in the stable /27; .10 in the /24 part the writer never covers.
        probes.push(Probe {
            addr: net | 70,
            legal: vec![300 + k],
        });
        probes.push(Probe {
            addr: net | 10,
            legal: vec![200 + k],
        });
        // .129 and .200 lie under churned /25, /26 and /32 routes.
        probes.push(Probe {
            addr: net | 129,
            legal: vec![200 + k, 1, 2, 3],
        });
        probes.push(Probe {
            addr: net | 200,
            legal: vec![200 + k, 1, 2, 3],
        });
    }
    // Other /24s of the /16, split and collapsed by the churn.
    for k in 16..32u32 {
        probes.push(Probe {
            addr: base | (k << 8) | 5,
            legal: vec![100, 1, 2, 3],
        });
    }
    let churn = |rng: &mut SmallRng| -> (u32, u8) {
        let k = rng.gen_range(0..32u32);
        let net = base | (k << 8);
        match rng.gen_range(0..4) {
            0 => (net | 0x80, 25),
            1 => (net | 0xc0, 26),
            2 => (net | rng.gen_range(128..256u32), 32),
            _ => (net | (rng.gen_range(0..8u32) << 5), 27).max((net | 0x80, 27)),
        }
    };

    let table = Arc::clone(fib.table());
    let stop = Arc::new(AtomicBool::new(false));
    let q = Arc::new(Quiescence::new(READERS));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (table, stop, q, probes) = (
                Arc::clone(&table),
                Arc::clone(&stop),
                Arc::clone(&q),
                probes.clone(),
            );
            thread::spawn(move || {
                reader(
                    &probes,
                    |a| table.lookup(a),
                    |a, o| table.lookup_batch(a, o),
                    &q.counters[r],
                    &stop,
                )
            })
        })
        .collect();

    let mut rng = SmallRng::seed_from_u64(7);
    let mut installed: Vec<(u32, u8)> = Vec::new();
    let mut reclaimed = 0;
    for step in 0..STEPS4 {
        if rng.gen_bool(0.55) || installed.is_empty() {
            let (p, l) = churn(&mut rng);
            // Routes elsewhere too, so groups are allocated and freed all over.
            let (p, l) = if rng.gen_bool(0.3) {
                (0x0a00_0000 | (rng.gen_range(0..4096u32) << 4), 28)
            } else {
                (p, l)
            };
            if fib.insert(ip(p), l, rng.gen_range(1..4)).unwrap().is_none() {
                installed.push((p, l));
            }
        } else {
            let i = rng.gen_range(0..installed.len());
            let (p, l) = installed.swap_remove(i);
            assert!(fib.remove(ip(p), l).unwrap().is_some());
        }
        if step % 64 == 0 {
            let token = fib.retire_barrier();
            q.wait_grace(&stop);
            reclaimed += fib.reclaim(token);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let lookups: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(lookups > 0);
    assert!(
        reclaimed > 100,
        "groups were reused while readers ran ({reclaimed})"
    );
    // The writer's view agrees with its RIB at the end.
    for p in &probes {
        let want = fib.lookup(ip(p.addr));
        assert!(p.legal.contains(&want));
    }
    assert_ne!(fib.lookup(ip(base | 70)), NO_ROUTE);
}

#[test]
fn v6_readers_see_old_or_new_never_garbage() {
    let mut fib = Fib6::new(Fib6Config {
        root_bits: 16,
        max_groups: 1 << 14,
    })
    .unwrap();
    let ip = Ipv6Addr::from;
    let base = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
    fib.insert(ip(base), 32, 100).unwrap();
    let mut probes = Vec::new();
    for k in 0..8u128 {
        let net = base | (k << 80); // 2001:db8:k::/48
        fib.insert(ip(net), 48, 200 + k as u32).unwrap();
        fib.insert(ip(net | 0x1234), 128, 300 + k as u32).unwrap();
        probes.push(Probe {
            addr: net | 0x1234,
            legal: vec![300 + k as u32],
        });
        probes.push(Probe {
            addr: net | 0x1,
            legal: vec![200 + k as u32],
        });
        probes.push(Probe {
            addr: net | (0xffu128 << 64) | 7,
            legal: vec![200 + k as u32, 1, 2, 3],
        });
    }
    let mut rng = SmallRng::seed_from_u64(9);
    let churn = |rng: &mut SmallRng| -> (u128, u8) {
        let net = base | (rng.gen_range(0..8u128) << 80) | (0xffu128 << 64);
        match rng.gen_range(0..3) {
            0 => (net, 64),
            1 => (net | rng.gen_range(0..256u128), 128),
            _ => (net | (rng.gen_range(0..16u128) << 56), 72),
        }
    };
    let table = Arc::clone(fib.table());
    let stop = Arc::new(AtomicBool::new(false));
    let q = Arc::new(Quiescence::new(READERS));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (table, stop, q, probes) = (
                Arc::clone(&table),
                Arc::clone(&stop),
                Arc::clone(&q),
                probes.clone(),
            );
            thread::spawn(move || {
                reader(
                    &probes,
                    |a| table.lookup(a),
                    |a, o| table.lookup_batch(a, o),
                    &q.counters[r],
                    &stop,
                )
            })
        })
        .collect();
    let mut installed: Vec<(u128, u8)> = Vec::new();
    let mut reclaimed = 0;
    for step in 0..STEPS4 / 2 {
        if rng.gen_bool(0.55) || installed.is_empty() {
            let (p, l) = churn(&mut rng);
            if fib.insert(ip(p), l, rng.gen_range(1..4)).unwrap().is_none() {
                installed.push((p, l));
            }
        } else {
            let (p, l) = installed.swap_remove(rng.gen_range(0..installed.len()));
            assert!(fib.remove(ip(p), l).unwrap().is_some());
        }
        if step % 64 == 0 {
            let token = fib.retire_barrier();
            q.wait_grace(&stop);
            reclaimed += fib.reclaim(token);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let lookups: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(lookups > 0);
    assert!(
        reclaimed > 100,
        "groups were reused while readers ran ({reclaimed})"
    );
}
