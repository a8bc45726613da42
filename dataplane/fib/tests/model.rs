//! Property tests: random interleavings of inserts, deletes and reclaims on
//! [`Fib4`] and [`Fib6`], checked after every step against a naive model (a
//! list of routes scanned for the longest match), with single and batch
//! lookups of addresses at, around and inside the routes' edges.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrouter_fib::{Fib4, Fib4Config, Fib6, Fib6Config, FibError, NO_ROUTE};

/// The reference: `(network, len, nh)`, scanned for the longest match.
#[derive(Default)]
struct Model<K> {
    routes: Vec<(K, u8, u32)>,
}

macro_rules! model_impl {
    ($k:ty) => {
        impl Model<$k> {
            fn mask(len: u8) -> $k {
                if len == 0 {
                    0
                } else {
                    <$k>::MAX << (<$k>::BITS - u32::from(len))
                }
            }
            fn lookup(&self, a: $k) -> u32 {
                self.routes
                    .iter()
                    .filter(|&&(p, l, _)| a & Self::mask(l) == p)
                    .max_by_key(|&&(_, l, _)| l)
                    .map_or(NO_ROUTE, |&(_, _, nh)| nh)
            }
            fn insert(&mut self, p: $k, l: u8, nh: u32) -> Option<u32> {
                match self.routes.iter_mut().find(|r| r.0 == p && r.1 == l) {
                    Some(r) => Some(std::mem::replace(&mut r.2, nh)),
                    None => {
                        self.routes.push((p, l, nh));
                        None
                    }
                }
            }
            fn remove(&mut self, p: $k, l: u8) -> Option<u32> {
                let i = self.routes.iter().position(|r| r.0 == p && r.1 == l)?;
                Some(self.routes.swap_remove(i).2)
            }
            /// Addresses worth probing: every route's first and last address
            /// and their neighbours, plus the extra ones.
            fn probes(&self, extra: &[$k]) -> Vec<$k> {
                let mut v: Vec<$k> = extra.to_vec();
                for &(p, l, _) in &self.routes {
                    let last = p | !Self::mask(l);
                    v.extend([
                        p,
                        last,
                        p.wrapping_sub(1),
                        last.wrapping_add(1),
                        p | ((last - p) / 2),
                    ]);
                }
                v
            }
        }
    };
}
model_impl!(u32);
model_impl!(u128);

#[derive(Debug, Clone)]
enum Op<K> {
    Insert(K, u8, u32),
    Remove(K, u8),
    /// Remove the i-th route of the model (so deletes hit existing routes).
    RemoveNth(usize),
    Reclaim,
}

/// Prefixes near one of three bases, so that they overlap and share groups.
fn v4_op() -> impl Strategy<Value = Op<u32>> {
    let base = prop_oneof![Just(0xc612_0000u32), Just(0x0a00_0000), Just(0xffff_ff00)];
    let addr = (base, any::<u32>(), 0u32..=32)
        .prop_map(|(b, r, span)| b ^ (r & u32::MAX.checked_shr(32 - span).unwrap_or(0)));
    // Short prefixes rewrite up to 2^24 entries: keep them rare (debug builds).
    let len = prop_oneof![1 => 0u8..=32, 4 => 16u8..=32, 4 => 23u8..=26];
    prop_oneof![
        5 => (addr.clone(), len.clone(), 1u32..6).prop_map(|(a, l, nh)| Op::Insert(a, l, nh)),
        2 => (addr, len).prop_map(|(a, l)| Op::Remove(a, l)),
        3 => any::<usize>().prop_map(Op::RemoveNth),
        1 => Just(Op::Reclaim),
    ]
}

fn v6_op() -> impl Strategy<Value = Op<u128>> {
    let base = prop_oneof![
        Just(0x2001_0db8_0000_0000_0000_0000_0000_0000u128),
        Just(0x2001_0db8_0001_0000_0000_0000_0000_0000),
        Just(0xfe80_0000_0000_0000_0000_0000_0000_0000),
    ];
    // Perturb a few bits at one chosen depth only: parents stay shared.
    let addr =
        (base, any::<u8>(), 0u32..128).prop_map(|(b, r, pos)| b ^ (u128::from(r) << pos.min(120)));
    let len = prop_oneof![1 => 0u8..=128, 3 => 16u8..=64, 2 => 120u8..=128];
    prop_oneof![
        5 => (addr.clone(), len.clone(), 1u32..6).prop_map(|(a, l, nh)| Op::Insert(a, l, nh)),
        2 => (addr, len).prop_map(|(a, l)| Op::Remove(a, l)),
        3 => any::<usize>().prop_map(Op::RemoveNth),
        1 => Just(Op::Reclaim),
    ]
}

thread_local! {
    // tbl24 is 64 MiB: build it once per thread and empty it between cases.
    static FIB4: RefCell<Fib4> = RefCell::new(Fib4::new(Fib4Config { max_groups: 4096 }).unwrap());
}

fn run_v4(ops: &[Op<u32>], extra: &[u32]) {
    FIB4.with_borrow_mut(|fib| {
        let mut model = Model::<u32>::default();
        for op in ops {
            match *op {
                Op::Insert(a, l, nh) => {
                    let p = a & Model::<u32>::mask(l);
                    if a != p {
                        assert!(matches!(
                            fib.insert(Ipv4Addr::from(a), l, nh),
                            Err(FibError::HostBits { .. })
                        ));
                    }
                    assert_eq!(
                        fib.insert(Ipv4Addr::from(p), l, nh).unwrap(),
                        model.insert(p, l, nh)
                    );
                }
                Op::Remove(a, l) => {
                    let p = a & Model::<u32>::mask(l);
                    assert_eq!(
                        fib.remove(Ipv4Addr::from(p), l).unwrap(),
                        model.remove(p, l)
                    );
                }
                Op::RemoveNth(i) if !model.routes.is_empty() => {
                    let (p, l, _) = model.routes[i % model.routes.len()];
                    assert_eq!(
                        fib.remove(Ipv4Addr::from(p), l).unwrap(),
                        model.remove(p, l)
                    );
                }
                Op::RemoveNth(_) => {}
                Op::Reclaim => assert!(fib.reclaim_unshared()),
            }
            let probes = model.probes(extra);
            let mut out = vec![0; probes.len()];
            fib.table().lookup_batch(&probes, &mut out);
            for (&a, &got) in probes.iter().zip(&out) {
                let want = model.lookup(a);
                assert_eq!(
                    fib.table().lookup(a),
                    want,
                    "lookup {} after {op:?}",
                    Ipv4Addr::from(a)
                );
                assert_eq!(got, want, "batch lookup {} after {op:?}", Ipv4Addr::from(a));
            }
            assert_eq!(fib.len(), model.routes.len());
        }
        let mut listed: Vec<_> = fib.iter().map(|(p, l, nh)| (u32::from(p), l, nh)).collect();
        let mut routes = model.routes.clone();
        listed.sort_unstable();
        routes.sort_unstable();
        assert_eq!(listed, routes);
        // Leave the shared FIB empty, with every group back.
        for (p, l, _) in routes {
            fib.remove(Ipv4Addr::from(p), l).unwrap();
        }
        assert!(fib.reclaim_unshared());
        let s = fib.group_stats();
        assert_eq!((s.in_use, s.retired), (0, 0));
        assert_eq!(fib.lookup(Ipv4Addr::new(198, 18, 0, 1)), NO_ROUTE);
    });
}

fn run_v6(ops: &[Op<u128>], extra: &[u128], root_bits: u8) {
    let mut fib = Fib6::new(Fib6Config {
        root_bits,
        max_groups: 1 << 16,
    })
    .unwrap();
    let mut model = Model::<u128>::default();
    for op in ops {
        match *op {
            Op::Insert(a, l, nh) => {
                let p = a & Model::<u128>::mask(l);
                assert_eq!(
                    fib.insert(Ipv6Addr::from(p), l, nh).unwrap(),
                    model.insert(p, l, nh)
                );
            }
            Op::Remove(a, l) => {
                let p = a & Model::<u128>::mask(l);
                assert_eq!(
                    fib.remove(Ipv6Addr::from(p), l).unwrap(),
                    model.remove(p, l)
                );
            }
            Op::RemoveNth(i) if !model.routes.is_empty() => {
                let (p, l, _) = model.routes[i % model.routes.len()];
                assert_eq!(
                    fib.remove(Ipv6Addr::from(p), l).unwrap(),
                    model.remove(p, l)
                );
            }
            Op::RemoveNth(_) => {}
            Op::Reclaim => assert!(fib.reclaim_unshared()),
        }
        let probes = model.probes(extra);
        let mut out = vec![0; probes.len()];
        fib.table().lookup_batch(&probes, &mut out);
        for (&a, &got) in probes.iter().zip(&out) {
            let want = model.lookup(a);
            assert_eq!(
                fib.table().lookup(a),
                want,
                "lookup {} after {op:?}",
                Ipv6Addr::from(a)
            );
            assert_eq!(got, want, "batch lookup {} after {op:?}", Ipv6Addr::from(a));
        }
    }
    for (p, l, _) in model.routes.clone() {
        fib.remove(Ipv6Addr::from(p), l).unwrap();
    }
    let s = fib.group_stats();
    assert_eq!(s.in_use, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn v4_matches_model(ops in proptest::collection::vec(v4_op(), 1..60),
                        extra in proptest::collection::vec(any::<u32>(), 0..8)) {
        run_v4(&ops, &extra);
    }

    #[test]
    fn v6_matches_model(ops in proptest::collection::vec(v6_op(), 1..60),
                        extra in proptest::collection::vec(any::<u128>(), 0..8),
                        root_bits in prop_oneof![2 => Just(8u8), 6 => Just(16), 1 => Just(24)]) {
        run_v6(&ops, &extra, root_bits);
    }
}

/// Exhaustion is all-or-nothing: a refused change leaves routes and lookups as
/// they were, for inserts and for removes that would need to split a group.
#[test]
fn exhaustion_changes_nothing() {
    let mut fib = Fib4::new(Fib4Config { max_groups: 2 }).unwrap();
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    fib.insert(a("10.0.0.0"), 8, 1).unwrap();
    fib.insert(a("10.0.0.0"), 24, 2).unwrap();
    fib.insert(a("10.0.0.0"), 25, 2).unwrap(); // same nh as the /24: no group
    fib.insert(a("10.0.1.0"), 25, 3).unwrap(); // group 1
    fib.insert(a("10.0.2.0"), 25, 3).unwrap(); // group 2
    assert_eq!(fib.group_stats().available, 0);
    let before: Vec<u32> = (0..1024u32)
        .map(|i| fib.lookup(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    // Removing the /24 would leave 10.0.0.0/25 → 2 next to 10.0.0.128/25 → 1.
    let err = fib.remove(a("10.0.0.0"), 24).unwrap_err();
    assert!(
        matches!(
            err,
            FibError::GroupsExhausted {
                needed: 1,
                available: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fib.get(a("10.0.0.0"), 24), Some(2));
    let err = fib.insert(a("10.0.3.0"), 26, 4).unwrap_err();
    assert!(matches!(err, FibError::GroupsExhausted { .. }), "{err}");
    let after: Vec<u32> = (0..1024u32)
        .map(|i| fib.lookup(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(fib.len(), 5);
}
