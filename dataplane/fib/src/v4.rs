//! IPv4 FIB: DIR-24-8.
//!
//! [`Fib4Table`] is what workers read: `tbl24`, 2^24 entries indexed by the
//! top 24 address bits (64 MiB, allocated up front), and 256-entry tbl8 groups
//! for the /24s that hold a route longer than /24, allocated in 2 MiB chunks
//! on demand. A lookup is one load, or two when the tbl24 entry links a group.
//!
//! [`Fib4`] is the single writer: it owns the RIB, validates every change,
//! writes exactly the entries whose longest match changes, and retires groups
//! it unlinks (see the crate docs for the retire/reclaim protocol).
//!
//! The lookup path must never allocate, lock or panic; the writer must never
//! be shared between threads without `&mut` exclusion.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use vrouter_buf::{HugeTable, prefetch};

use crate::engine::{Core, Exhausted, Tables};
use crate::groups::{GROUP_FLAG, GroupStats, GroupStore, MAX_GROUPS_LIMIT, is_group};
use crate::key::Key;
use crate::{BATCH, FibError, MAX_NH, NO_ROUTE, RetireToken};

/// Entries in tbl24.
pub const TBL24_ENTRIES: usize = 1 << 24;

/// Configuration of a [`Fib4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fib4Config {
    /// The most tbl8 groups (1 KiB each) the table may hold, in
    /// `1..=16_777_216`. Memory grows on demand up to this ceiling.
    pub max_groups: u32,
}

impl Default for Fib4Config {
    /// 65 536 groups: a 64 MiB ceiling for routes longer than /24 (a
    /// BGP-like table of 1M routes needs a few thousand).
    fn default() -> Self {
        Self {
            max_groups: 1 << 16,
        }
    }
}

/// The read side of an IPv4 FIB, shared with workers as `Arc<Fib4Table>`.
#[derive(Debug)]
pub struct Fib4Table {
    tbl24: HugeTable<TBL24_ENTRIES>,
    groups: GroupStore,
}

impl Fib4Table {
    fn new(max_groups: u32) -> Result<Self, FibError> {
        // Entries start as NO_ROUTE, which is 0: the mapping comes zeroed.
        const _: () = assert!(NO_ROUTE == 0);
        let tbl24 = HugeTable::new().ok_or(FibError::Config("tbl24 allocation"))?;
        Ok(Self {
            tbl24,
            groups: GroupStore::new(max_groups),
        })
    }

    /// The next hop for `addr` (host byte order), or [`NO_ROUTE`].
    #[inline]
    pub fn lookup(&self, addr: u32) -> u32 {
        let e = self.tbl24[(addr >> 8) as usize].load(Ordering::Acquire);
        if is_group(e) {
            self.groups.load(e & !GROUP_FLAG, addr as usize)
        } else {
            e
        }
    }

    /// Looks up `addrs[i]` (host byte order) into `out[i]` for every `i` below
    /// `min(addrs.len(), out.len())`.
    ///
    /// Hides memory latency by working in runs of up to [`BATCH`] addresses:
    /// a first pass prefetches every tbl24 entry, a second reads them and
    /// prefetches the tbl8 entries they link, a third resolves those.
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [u32]) {
        for (a, o) in addrs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            self.lookup_run(a, o);
        }
    }

    #[inline]
    fn lookup_run(&self, addrs: &[u32], out: &mut [u32]) {
        for &a in addrs {
            prefetch(&self.tbl24[(a >> 8) as usize]);
        }
        // Second pass: tbl24 entries; a group link is left in `out` and its
        // tbl8 entry prefetched. Third pass: resolve the links (no side
        // array: re-deriving the slot is cheaper than initialising one).
        let mut groups = false;
        for (&a, o) in addrs.iter().zip(out.iter_mut()) {
            let e = self.tbl24[(a >> 8) as usize].load(Ordering::Acquire);
            *o = e;
            if is_group(e) {
                groups = true;
                if let Some(s) = self.groups.slot(e & !GROUP_FLAG, a as usize) {
                    prefetch(s);
                }
            }
        }
        if groups {
            for (&a, o) in addrs.iter().zip(out.iter_mut()) {
                if is_group(*o) {
                    *o = self
                        .groups
                        .slot(*o & !GROUP_FLAG, a as usize)
                        .map_or(NO_ROUTE, |s| s.load(Ordering::Acquire));
                }
            }
        }
    }

    /// Bytes of table memory: tbl24 plus the group chunks allocated so far.
    pub fn memory_bytes(&self) -> usize {
        TBL24_ENTRIES * size_of::<AtomicU32>() + self.groups.memory_bytes()
    }
}

/// The writer of an IPv4 FIB: owns the RIB and updates the shared
/// [`Fib4Table`] in place. There is one per table; it is `Send` but changes
/// need `&mut self`.
#[derive(Debug)]
pub struct Fib4 {
    table: Arc<Fib4Table>,
    core: Core<u32>,
}

impl Fib4 {
    /// An empty FIB (every lookup returns [`NO_ROUTE`]).
    ///
    /// Allocates and touches tbl24 (64 MiB) now; groups come later.
    pub fn new(config: Fib4Config) -> Result<Self, FibError> {
        if config.max_groups == 0 || config.max_groups > MAX_GROUPS_LIMIT {
            return Err(FibError::Config("max_groups must be in 1..=16777216"));
        }
        Ok(Self {
            table: Arc::new(Fib4Table::new(config.max_groups)?),
            core: Core::new(24, config.max_groups),
        })
    }

    /// The read side; clone the `Arc` for each worker.
    pub fn table(&self) -> &Arc<Fib4Table> {
        &self.table
    }

    /// Same as [`Fib4Table::lookup`], for the control thread.
    pub fn lookup(&self, addr: Ipv4Addr) -> u32 {
        self.table.lookup(u32::from(addr))
    }

    fn check(prefix: Ipv4Addr, len: u8) -> Result<u32, FibError> {
        if len > 32 {
            return Err(FibError::PrefixLength { len, max: 32 });
        }
        let key = u32::from(prefix);
        let network = key & <u32 as Key>::mask(len);
        if network != key {
            return Err(FibError::HostBits {
                prefix: IpAddr::V4(prefix),
                len,
                network: IpAddr::V4(Ipv4Addr::from(network)),
            });
        }
        Ok(key)
    }

    fn exhausted(&self, prefix: Ipv4Addr, len: u8, e: Exhausted) -> FibError {
        FibError::GroupsExhausted {
            prefix: IpAddr::V4(prefix),
            len,
            needed: e.needed,
            available: e.available,
            max: self.table.groups.max_groups(),
        }
    }

    /// Installs `prefix/len → nh`, replacing any route for the same prefix;
    /// returns the next hop it replaced.
    ///
    /// Refuses `len > 32`, host bits set, `nh` outside `1..=MAX_NH`, and a
    /// change that needs more tbl8 groups than are free; a refused change
    /// leaves the FIB as it was.
    pub fn insert(&mut self, prefix: Ipv4Addr, len: u8, nh: u32) -> Result<Option<u32>, FibError> {
        let key = Self::check(prefix, len)?;
        if nh == NO_ROUTE || nh > MAX_NH {
            return Err(FibError::NextHop { nh });
        }
        let t = Tables {
            root: self.table.tbl24.as_slice(),
            store: &self.table.groups,
        };
        self.core
            .insert(t, key, len, nh)
            .map_err(|e| self.exhausted(prefix, len, e))
    }

    /// Removes `prefix/len`; its addresses fall back to the covering shorter
    /// route. Returns the removed next hop, `None` if there was no such route.
    ///
    /// Can fail with [`FibError::GroupsExhausted`]: when the removed route had
    /// the same next hop as its neighbours its /24 may have been collapsed,
    /// and falling back to a different covering route splits it again.
    pub fn remove(&mut self, prefix: Ipv4Addr, len: u8) -> Result<Option<u32>, FibError> {
        let key = Self::check(prefix, len)?;
        let t = Tables {
            root: self.table.tbl24.as_slice(),
            store: &self.table.groups,
        };
        self.core
            .remove(t, key, len)
            .map_err(|e| self.exhausted(prefix, len, e))
    }

    /// The next hop of exactly `prefix/len` (`None` if absent or invalid).
    pub fn get(&self, prefix: Ipv4Addr, len: u8) -> Option<u32> {
        let key = Self::check(prefix, len).ok()?;
        self.core.rib.get(key, len)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.core.rib.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The routes `(prefix, len, nh)` in address order, a covering route
    /// before the routes it covers.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, u8, u32)> + '_ {
        self.core
            .rib
            .iter()
            .map(|(k, l, nh)| (Ipv4Addr::from(k), l, nh))
    }

    /// Bytes used: the shared table plus the writer's RIB and bookkeeping.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.core.rib.memory_bytes() + self.core.alloc.memory_bytes()
    }

    /// Group accounting (in use, retired, available).
    pub fn group_stats(&self) -> GroupStats {
        self.core.alloc.stats()
    }

    /// Closes the list of groups retired so far and returns the token that
    /// reclaims them. Call it, wait until every reader has passed a quiescent
    /// point *after* this call, then pass the token to [`Fib4::reclaim`].
    pub fn retire_barrier(&mut self) -> RetireToken {
        self.core.alloc.barrier()
    }

    /// Makes the groups retired before `token` was issued reusable; returns
    /// how many. A token from another FIB reclaims nothing.
    pub fn reclaim(&mut self, token: RetireToken) -> usize {
        self.core.alloc.reclaim(token)
    }

    /// Reclaims every retired group at once if no reader can exist, i.e. the
    /// table's `Arc` is not shared; returns whether it did.
    pub fn reclaim_unshared(&mut self) -> bool {
        if Arc::strong_count(&self.table) == 1 && Arc::weak_count(&self.table) == 0 {
            self.core.alloc.reclaim_all();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn fib() -> Fib4 {
        Fib4::new(Fib4Config { max_groups: 64 }).unwrap()
    }

    fn at(f: &Fib4, s: &str) -> u32 {
        let a = u32::from(ip(s));
        let single = f.table().lookup(a);
        let mut out = [0u32; 1];
        f.table().lookup_batch(&[a], &mut out);
        assert_eq!(single, out[0], "batch and single lookup disagree for {s}");
        assert_eq!(single, f.core.rib.lpm(a), "table and RIB disagree for {s}");
        single
    }

    #[test]
    fn empty_and_default_route() {
        let mut f = fib();
        assert_eq!(at(&f, "1.2.3.4"), NO_ROUTE);
        assert_eq!(f.insert(ip("0.0.0.0"), 0, 9).unwrap(), None);
        assert_eq!(at(&f, "1.2.3.4"), 9);
        assert_eq!(at(&f, "255.255.255.255"), 9);
        assert_eq!(f.insert(ip("0.0.0.0"), 0, 8).unwrap(), Some(9));
        assert_eq!(at(&f, "0.0.0.0"), 8);
        assert_eq!(f.remove(ip("0.0.0.0"), 0).unwrap(), Some(8));
        assert_eq!(at(&f, "1.2.3.4"), NO_ROUTE);
        assert!(f.is_empty());
    }

    #[test]
    fn host_routes_and_boundaries() {
        let mut f = fib();
        f.insert(ip("198.18.0.0"), 24, 1).unwrap();
        f.insert(ip("198.18.0.128"), 25, 2).unwrap();
        f.insert(ip("198.18.0.255"), 32, 3).unwrap();
        f.insert(ip("255.255.255.255"), 32, 4).unwrap();
        f.insert(ip("0.0.0.0"), 32, 5).unwrap();
        assert_eq!(at(&f, "198.18.0.0"), 1);
        assert_eq!(at(&f, "198.18.0.127"), 1);
        assert_eq!(at(&f, "198.18.0.128"), 2);
        assert_eq!(at(&f, "198.18.0.254"), 2);
        assert_eq!(at(&f, "198.18.0.255"), 3);
        assert_eq!(at(&f, "198.18.1.0"), NO_ROUTE);
        assert_eq!(at(&f, "198.17.255.255"), NO_ROUTE);
        assert_eq!(at(&f, "255.255.255.255"), 4);
        assert_eq!(at(&f, "255.255.255.254"), NO_ROUTE);
        assert_eq!(at(&f, "0.0.0.0"), 5);
        assert_eq!(at(&f, "0.0.0.1"), NO_ROUTE);
        assert_eq!(f.group_stats().in_use, 3);
    }

    #[test]
    fn overlapping_prefixes_in_every_order() {
        // Kept short of /8 so the 720 orders stay fast in debug builds.
        let routes = [
            ("10.0.0.0", 12, 1),
            ("10.0.0.0", 15, 6),
            ("10.1.0.0", 16, 2),
            ("10.1.2.0", 24, 3),
            ("10.1.2.64", 26, 4),
            ("10.1.2.64", 32, 5),
        ];
        let probes = [
            "10.2.0.1",
            "10.0.0.1",
            "10.1.0.1",
            "10.1.2.1",
            "10.1.2.64",
            "10.1.2.65",
            "10.1.2.128",
            "11.0.0.0",
        ];
        let mut expect = None;
        // All 720 permutations of insertion order, and removal in reverse.
        let mut idx: Vec<usize> = (0..routes.len()).collect();
        // One table for all orders (tbl24 is slow to build in debug builds);
        // every order ends with the table empty again.
        let mut f = fib();
        permute(&mut idx, 0, &mut |order| {
            for &i in order {
                let (p, l, nh) = routes[i];
                f.insert(ip(p), l, nh).unwrap();
            }
            let got: Vec<u32> = probes.iter().map(|p| at(&f, p)).collect();
            assert_eq!(got, *expect.get_or_insert_with(|| got.clone()));
            for &i in order.iter().rev() {
                let (p, l, nh) = routes[i];
                assert_eq!(f.remove(ip(p), l).unwrap(), Some(nh));
                for p in probes {
                    at(&f, p);
                }
            }
            assert_eq!(f.group_stats().in_use, 0);
            assert!(f.reclaim_unshared());
        });
        assert_eq!(expect.unwrap(), vec![1, 6, 2, 3, 5, 4, 3, 0]);
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    #[test]
    fn delete_restores_covering_route() {
        let mut f = fib();
        f.insert(ip("10.0.0.0"), 8, 1).unwrap();
        f.insert(ip("10.0.0.0"), 16, 2).unwrap();
        f.insert(ip("10.0.0.0"), 30, 3).unwrap();
        assert_eq!(at(&f, "10.0.0.1"), 3);
        f.remove(ip("10.0.0.0"), 30).unwrap();
        assert_eq!(at(&f, "10.0.0.1"), 2);
        f.remove(ip("10.0.0.0"), 16).unwrap();
        assert_eq!(at(&f, "10.0.0.1"), 1);
        assert_eq!(f.remove(ip("10.0.0.0"), 16).unwrap(), None);
        assert_eq!(f.get(ip("10.0.0.0"), 8), Some(1));
    }

    #[test]
    fn group_collapse_and_reuse_only_after_reclaim() {
        let mut f = Fib4::new(Fib4Config { max_groups: 1 }).unwrap();
        let readers = Arc::clone(f.table());
        f.insert(ip("198.18.0.0"), 24, 1).unwrap();
        f.insert(ip("198.18.0.0"), 25, 2).unwrap();
        assert_eq!(f.group_stats().in_use, 1);
        // Same next hop as the /24 on both halves: the group collapses.
        f.insert(ip("198.18.0.128"), 25, 2).unwrap();
        f.insert(ip("198.18.0.0"), 24, 2).unwrap();
        assert_eq!(
            f.group_stats(),
            GroupStats {
                in_use: 0,
                retired: 1,
                available: 0,
                max: 1
            }
        );
        assert_eq!(at(&f, "198.18.0.1"), 2);
        // Splitting another /24 needs a group: none until reclaimed.
        let err = f.insert(ip("198.18.1.0"), 25, 3).unwrap_err();
        assert!(
            matches!(
                err,
                FibError::GroupsExhausted {
                    needed: 1,
                    available: 0,
                    max: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            f.get(ip("198.18.1.0"), 25),
            None,
            "a refused insert changes nothing"
        );
        assert_eq!(at(&f, "198.18.1.1"), NO_ROUTE);
        assert!(!f.reclaim_unshared(), "a reader holds the table");
        let t = f.retire_barrier();
        assert_eq!(f.reclaim(t), 1);
        f.insert(ip("198.18.1.0"), 25, 3).unwrap();
        assert_eq!(at(&f, "198.18.1.1"), 3);
        // Removing a /25 whose twin has the same next hop as the /24 that is
        // then removed: the collapsed /24 must split again on fallback.
        f.remove(ip("198.18.1.0"), 25).unwrap();
        let t = f.retire_barrier();
        assert_eq!(f.reclaim(t), 1);
        f.insert(ip("198.18.0.0"), 16, 7).unwrap();
        f.remove(ip("198.18.0.0"), 24).unwrap();
        assert_eq!(at(&f, "198.18.0.1"), 2);
        assert_eq!(at(&f, "198.18.0.200"), 2);
        f.remove(ip("198.18.0.0"), 25).unwrap();
        assert_eq!(at(&f, "198.18.0.1"), 7);
        assert_eq!(at(&f, "198.18.0.200"), 2);
        drop(readers);
        assert!(f.reclaim_unshared());
    }

    #[test]
    fn errors() {
        let mut f = fib();
        assert_eq!(
            f.insert(ip("10.0.0.0"), 33, 1),
            Err(FibError::PrefixLength { len: 33, max: 32 })
        );
        assert_eq!(
            f.insert(ip("10.0.0.1"), 24, 1),
            Err(FibError::HostBits {
                prefix: IpAddr::V4(ip("10.0.0.1")),
                len: 24,
                network: IpAddr::V4(ip("10.0.0.0"))
            })
        );
        assert_eq!(
            f.insert(ip("10.0.0.0"), 24, 0),
            Err(FibError::NextHop { nh: 0 })
        );
        assert_eq!(
            f.insert(ip("10.0.0.0"), 24, MAX_NH + 1),
            Err(FibError::NextHop { nh: MAX_NH + 1 })
        );
        assert_eq!(f.insert(ip("10.0.0.0"), 24, MAX_NH), Ok(None));
        assert_eq!(at(&f, "10.0.0.7"), MAX_NH);
        assert_eq!(
            f.remove(ip("10.0.0.1"), 24).map_err(|e| e.to_string()),
            Err("prefix 10.0.0.1/24 has host bits set (the network is 10.0.0.0/24)".into())
        );
        assert!(Fib4::new(Fib4Config { max_groups: 0 }).is_err());
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![(ip("10.0.0.0"), 24, MAX_NH)]
        );
        assert!(f.memory_bytes() >= TBL24_ENTRIES * 4);
    }
}
