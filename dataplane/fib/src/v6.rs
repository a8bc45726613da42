//! IPv6 FIB: a multibit trie in the layout of DPDK's `rte_fib6` "trie" — a
//! direct root table on the first `root_bits` address bits, then 256-entry
//! groups, one per further 8 bits, allocated only where a longer route needs
//! them.
//!
//! The root is 16 bits wide by default: 256 KiB that stays in L2, against
//! 64 MiB for a 24-bit root (DPDK's choice), for one more level on routes
//! longer than /16 — a cheap one, since the groups for bits 16..24 number a
//! few hundred (one per populated /16) and stay cached. Measured on the bench's
//! 200k-prefix BGP-like table (`benches/fib.rs`): 196k groups, 192 MiB of
//! table with a 16-bit root against 256 MiB with a 24-bit root, and batch
//! lookups within measurement noise of each other. Groups are shared by every
//! route below them, so tables whose prefixes cluster need far fewer groups
//! than routes × levels; that synthetic table scatters its /48s and is close
//! to the worst case.
//!
//! [`Fib6Table`] is the read side, [`Fib6`] the single writer owning the RIB;
//! the update and retire/reclaim rules are those of the crate docs. The lookup
//! path must never allocate, lock or panic.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use vrouter_buf::prefetch;

use crate::engine::{Core, Exhausted, Tables};
use crate::groups::{GROUP_FLAG, GroupStats, GroupStore, MAX_GROUPS_LIMIT, is_group};
use crate::key::Key;
use crate::{BATCH, FibError, MAX_NH, NO_ROUTE, RetireToken};

/// Configuration of a [`Fib6`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fib6Config {
    /// Width of the root table in bits: 8, 16 (default) or 24.
    pub root_bits: u8,
    /// The most 256-entry groups (1 KiB each), in `1..=16_777_216`. Memory
    /// grows on demand up to this ceiling.
    pub max_groups: u32,
}

impl Default for Fib6Config {
    /// A 16-bit root and a 256 MiB ceiling for groups.
    fn default() -> Self {
        Self {
            root_bits: 16,
            max_groups: 1 << 18,
        }
    }
}

/// The read side of an IPv6 FIB, shared with workers as `Arc<Fib6Table>`.
#[derive(Debug)]
pub struct Fib6Table {
    root: Box<[AtomicU32]>,
    /// `128 - root_bits`: the shift that yields the root index.
    root_shift: u32,
    groups: GroupStore,
}

impl Fib6Table {
    /// The next hop for `addr` (the address as a big-endian integer, i.e.
    /// `u128::from(Ipv6Addr)`), or [`NO_ROUTE`].
    #[inline]
    pub fn lookup(&self, addr: u128) -> u32 {
        let mut e = self
            .root
            .get((addr >> self.root_shift) as usize)
            .map_or(NO_ROUTE, |e| e.load(Ordering::Acquire));
        let mut shift = self.root_shift;
        while is_group(e) && shift >= 8 {
            shift -= 8;
            e = self.groups.load(e & !GROUP_FLAG, (addr >> shift) as usize);
        }
        e
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below
    /// `min(addrs.len(), out.len())`.
    ///
    /// Works in runs of up to [`BATCH`] addresses, level-synchronously: all
    /// addresses of a run read one level per round, and each round prefetches
    /// the entries the next round reads, so the latency of one level is hidden
    /// behind the work on the other addresses.
    pub fn lookup_batch(&self, addrs: &[u128], out: &mut [u32]) {
        for (a, o) in addrs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            self.lookup_run(a, o);
        }
    }

    #[inline]
    fn lookup_run(&self, addrs: &[u128], out: &mut [u32]) {
        let shift0 = self.root_shift;
        for &a in addrs {
            if let Some(e) = self.root.get((a >> shift0) as usize) {
                prefetch(e);
            }
        }
        // The lookups that still follow a group: (index, entry to read next),
        // the entry already prefetched.
        let mut active: [(usize, Option<&AtomicU32>); BATCH] = [(0, None); BATCH];
        let mut n = 0;
        let mut next = shift0.checked_sub(8);
        for (i, (&a, o)) in addrs.iter().zip(out.iter_mut()).enumerate() {
            let e = self
                .root
                .get((a >> shift0) as usize)
                .map_or(NO_ROUTE, |e| e.load(Ordering::Acquire));
            *o = e;
            if is_group(e) {
                n = self.follow(e, a, next, i, o, &mut active, n);
            }
        }
        while n > 0 {
            next = next.and_then(|s| s.checked_sub(8));
            let mut kept = 0;
            for k in 0..n {
                let Some(&(i, slot)) = active.get(k) else {
                    break;
                };
                let (Some(&a), Some(o)) = (addrs.get(i), out.get_mut(i)) else {
                    continue;
                };
                let e = slot.map_or(NO_ROUTE, |s| s.load(Ordering::Acquire));
                *o = e;
                if is_group(e) {
                    kept = self.follow(e, a, next, i, o, &mut active, kept);
                }
            }
            n = kept;
        }
    }

    /// Queues lookup `i`, whose entry `e` links a group, to read that group's
    /// entry for `addr` (8 bits at `shift`) in the next round, prefetching it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn follow<'a>(
        &'a self,
        e: u32,
        addr: u128,
        shift: Option<u32>,
        i: usize,
        o: &mut u32,
        active: &mut [(usize, Option<&'a AtomicU32>)],
        n: usize,
    ) -> usize {
        let Some(shift) = shift else {
            // A group below the last level: impossible in a consistent table;
            // answer "no route" rather than read past the address.
            *o = NO_ROUTE;
            return n;
        };
        let slot = self.groups.slot(e & !GROUP_FLAG, (addr >> shift) as usize);
        if let Some(s) = slot {
            prefetch(s);
        }
        match active.get_mut(n) {
            Some(a) => {
                *a = (i, slot);
                n + 1
            }
            None => n,
        }
    }

    /// Bytes of table memory: the root plus the group chunks allocated so far.
    pub fn memory_bytes(&self) -> usize {
        self.root.len() * size_of::<AtomicU32>() + self.groups.memory_bytes()
    }
}

/// The writer of an IPv6 FIB: owns the RIB and updates the shared
/// [`Fib6Table`] in place. There is one per table; changes need `&mut self`.
#[derive(Debug)]
pub struct Fib6 {
    table: Arc<Fib6Table>,
    core: Core<u128>,
}

impl Fib6 {
    /// An empty FIB (every lookup returns [`NO_ROUTE`]).
    pub fn new(config: Fib6Config) -> Result<Self, FibError> {
        if !matches!(config.root_bits, 8 | 16 | 24) {
            return Err(FibError::Config("root_bits must be 8, 16 or 24"));
        }
        if config.max_groups == 0 || config.max_groups > MAX_GROUPS_LIMIT {
            return Err(FibError::Config("max_groups must be in 1..=16777216"));
        }
        let root = (0..1usize << config.root_bits)
            .map(|_| AtomicU32::new(NO_ROUTE))
            .collect();
        let table = Fib6Table {
            root,
            root_shift: 128 - u32::from(config.root_bits),
            groups: GroupStore::new(config.max_groups),
        };
        Ok(Self {
            table: Arc::new(table),
            core: Core::new(config.root_bits, config.max_groups),
        })
    }

    /// The read side; clone the `Arc` for each worker.
    pub fn table(&self) -> &Arc<Fib6Table> {
        &self.table
    }

    /// Same as [`Fib6Table::lookup`], for the control thread.
    pub fn lookup(&self, addr: Ipv6Addr) -> u32 {
        self.table.lookup(u128::from(addr))
    }

    fn check(prefix: Ipv6Addr, len: u8) -> Result<u128, FibError> {
        if len > 128 {
            return Err(FibError::PrefixLength { len, max: 128 });
        }
        let key = u128::from(prefix);
        let network = key & <u128 as Key>::mask(len);
        if network != key {
            return Err(FibError::HostBits {
                prefix: IpAddr::V6(prefix),
                len,
                network: IpAddr::V6(Ipv6Addr::from(network)),
            });
        }
        Ok(key)
    }

    fn exhausted(&self, prefix: Ipv6Addr, len: u8, e: Exhausted) -> FibError {
        FibError::GroupsExhausted {
            prefix: IpAddr::V6(prefix),
            len,
            needed: e.needed,
            available: e.available,
            max: self.table.groups.max_groups(),
        }
    }

    /// Installs `prefix/len → nh`, replacing any route for the same prefix;
    /// returns the next hop it replaced.
    ///
    /// Refuses `len > 128`, host bits set, `nh` outside `1..=MAX_NH`, and a
    /// change that needs more groups than are free; a refused change leaves
    /// the FIB as it was.
    pub fn insert(&mut self, prefix: Ipv6Addr, len: u8, nh: u32) -> Result<Option<u32>, FibError> {
        let key = Self::check(prefix, len)?;
        if nh == NO_ROUTE || nh > MAX_NH {
            return Err(FibError::NextHop { nh });
        }
        let t = Tables {
            root: &self.table.root,
            store: &self.table.groups,
        };
        self.core
            .insert(t, key, len, nh)
            .map_err(|e| self.exhausted(prefix, len, e))
    }

    /// Removes `prefix/len`; its addresses fall back to the covering shorter
    /// route. Returns the removed next hop, `None` if there was no such route.
    ///
    /// Like [`crate::Fib4::remove`], can fail with
    /// [`FibError::GroupsExhausted`] when a collapsed group must split again.
    pub fn remove(&mut self, prefix: Ipv6Addr, len: u8) -> Result<Option<u32>, FibError> {
        let key = Self::check(prefix, len)?;
        let t = Tables {
            root: &self.table.root,
            store: &self.table.groups,
        };
        self.core
            .remove(t, key, len)
            .map_err(|e| self.exhausted(prefix, len, e))
    }

    /// The next hop of exactly `prefix/len` (`None` if absent or invalid).
    pub fn get(&self, prefix: Ipv6Addr, len: u8) -> Option<u32> {
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
    pub fn iter(&self) -> impl Iterator<Item = (Ipv6Addr, u8, u32)> + '_ {
        self.core
            .rib
            .iter()
            .map(|(k, l, nh)| (Ipv6Addr::from(k), l, nh))
    }

    /// Bytes used: the shared table plus the writer's RIB and bookkeeping.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.core.rib.memory_bytes() + self.core.alloc.memory_bytes()
    }

    /// Group accounting (in use, retired, available).
    pub fn group_stats(&self) -> GroupStats {
        self.core.alloc.stats()
    }

    /// See [`crate::Fib4::retire_barrier`].
    pub fn retire_barrier(&mut self) -> RetireToken {
        self.core.alloc.barrier()
    }

    /// See [`crate::Fib4::reclaim`].
    pub fn reclaim(&mut self, token: RetireToken) -> usize {
        self.core.alloc.reclaim(token)
    }

    /// See [`crate::Fib4::reclaim_unshared`].
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

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn fib(root_bits: u8) -> Fib6 {
        Fib6::new(Fib6Config {
            root_bits,
            max_groups: 1024,
        })
        .unwrap()
    }

    fn at(f: &Fib6, s: &str) -> u32 {
        let a = u128::from(ip(s));
        let single = f.table().lookup(a);
        let mut out = [0u32; 1];
        f.table().lookup_batch(&[a], &mut out);
        assert_eq!(single, out[0], "batch and single lookup disagree for {s}");
        assert_eq!(single, f.core.rib.lpm(a), "table and RIB disagree for {s}");
        single
    }

    #[test]
    fn default_host_and_nested_routes() {
        for bits in [8, 16, 24] {
            let mut f = fib(bits);
            assert_eq!(at(&f, "2001:db8::1"), NO_ROUTE);
            f.insert(ip("::"), 0, 1).unwrap();
            f.insert(ip("2001:db8::"), 32, 2).unwrap();
            f.insert(ip("2001:db8:0:1::"), 64, 3).unwrap();
            f.insert(ip("2001:db8:0:1::1"), 128, 4).unwrap();
            f.insert(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 128, 5)
                .unwrap();
            f.insert(ip("2001:db8:8000::"), 33, 6).unwrap();
            assert_eq!(at(&f, "::1"), 1);
            assert_eq!(at(&f, "2001:db8::1"), 2);
            assert_eq!(at(&f, "2001:db8:0:1::"), 3);
            assert_eq!(at(&f, "2001:db8:0:1::1"), 4);
            assert_eq!(at(&f, "2001:db8:0:1::2"), 3);
            assert_eq!(at(&f, "2001:db8:7fff::"), 2);
            assert_eq!(at(&f, "2001:db8:8000::"), 6);
            assert_eq!(at(&f, "2001:db9::"), 1);
            assert_eq!(at(&f, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 5);
            assert_eq!(at(&f, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 1);
            assert_eq!(f.remove(ip("2001:db8::"), 32).unwrap(), Some(2));
            assert_eq!(at(&f, "2001:db8::1"), 1);
            assert_eq!(at(&f, "2001:db8:0:1::1"), 4);
            for (p, l, _) in f.iter().collect::<Vec<_>>() {
                f.remove(p, l).unwrap();
            }
            assert_eq!(at(&f, "2001:db8:0:1::1"), NO_ROUTE);
            assert_eq!(f.group_stats().in_use, 0, "root_bits {bits}");
        }
    }

    #[test]
    fn deep_route_collapses_whole_chain() {
        let mut f = fib(16);
        f.insert(ip("2001:db8::"), 32, 1).unwrap();
        f.insert(ip("2001:db8::1"), 128, 2).unwrap();
        // 16-bit root, then groups for bits 16..24, 24..32, ..., 120..128.
        assert_eq!(f.group_stats().in_use, 14);
        f.insert(ip("2001:db8::1"), 128, 1).unwrap();
        // The deepest group became uniform, then each parent in turn.
        assert_eq!(f.group_stats().in_use, 2);
        assert_eq!(f.group_stats().retired, 12);
        assert_eq!(at(&f, "2001:db8::1"), 1);
        f.insert(ip("2001:db8::"), 32, 3).unwrap();
        // The /128 with next hop 1 now differs from its /32 again.
        assert_eq!(at(&f, "2001:db8::1"), 1);
        assert_eq!(at(&f, "2001:db8::2"), 3);
    }

    #[test]
    fn errors() {
        let mut f = fib(16);
        assert_eq!(
            f.insert(ip("::"), 129, 1),
            Err(FibError::PrefixLength { len: 129, max: 128 })
        );
        assert!(matches!(
            f.insert(ip("2001:db8::1"), 64, 1),
            Err(FibError::HostBits { .. })
        ));
        assert_eq!(
            f.insert(ip("2001:db8::"), 32, 0),
            Err(FibError::NextHop { nh: 0 })
        );
        assert!(
            Fib6::new(Fib6Config {
                root_bits: 12,
                max_groups: 1
            })
            .is_err()
        );
        let mut small = Fib6::new(Fib6Config {
            root_bits: 16,
            max_groups: 3,
        })
        .unwrap();
        let err = small.insert(ip("2001:db8::"), 48, 1).unwrap_err();
        assert!(
            matches!(
                err,
                FibError::GroupsExhausted {
                    needed: 4,
                    available: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(small.is_empty());
        assert_eq!(small.group_stats().in_use, 0);
        small.insert(ip("2001:db8::"), 40, 1).unwrap();
        assert_eq!(small.group_stats().in_use, 3);
        assert_eq!(small.lookup(ip("2001:db8::1")), 1);
    }
}
