//! The generic table writer shared by IPv4 and IPv6: given a route change, it
//! decides which table entries to touch and touches them in an order that is
//! safe for concurrent readers.
//!
//! Table geometry: a root table indexed by the first `root_bits` address bits,
//! then group levels of 8 bits each (IPv4: 24 + 8, IPv6: 16 + 14 × 8). An
//! insert of `p/len → nh` writes `nh` into the *holes* of `p/len`: the address
//! ranges of the prefix not covered by a longer route. A remove writes the next
//! hop of the covering shorter route into the same holes. Within a hole:
//!
//! * an entry fully inside the hole becomes the next hop (a group it linked is
//!   retired with all its descendants);
//! * an entry only partly inside is split: a new group is filled with the
//!   entry's old value, the part is written inside it, and only then is the
//!   entry pointed at it (`Release`); an existing group is written into;
//! * a group whose 256 entries end up equal collapses: its parent entry takes
//!   the common value and the group is retired.
//!
//! Before writing anything, the writer checks that the free groups suffice,
//! so a refused change leaves table and RIB untouched.
//!
//! It owns the RIB and the group allocator; it never reads on behalf of the
//! data path and never frees a group directly.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::groups::{GROUP_FLAG, GroupAlloc, GroupStore, is_group};
use crate::key::Key;
use crate::rib::Rib;

/// The tables a writer works on: the root table and the group store.
#[derive(Clone, Copy)]
pub(crate) struct Tables<'a> {
    pub(crate) root: &'a [AtomicU32],
    pub(crate) store: &'a GroupStore,
}

/// One table of the trie: the root or a group.
#[derive(Clone, Copy)]
enum Tbl {
    Root,
    Group(u32),
}

impl Tables<'_> {
    fn slot(&self, tbl: Tbl, i: usize) -> Option<&AtomicU32> {
        match tbl {
            Tbl::Root => self.root.get(i),
            Tbl::Group(g) => self.store.slot(g, i),
        }
    }
}

/// The change needs `needed` groups but only `available` are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) needed: usize,
    pub(crate) available: usize,
}

/// Writer state: the RIB, the group allocator and scratch space.
#[derive(Debug)]
pub(crate) struct Core<K> {
    pub(crate) rib: Rib<K>,
    pub(crate) alloc: GroupAlloc,
    root_bits: u8,
    /// Number of group levels below the root.
    levels: u8,
    subs: Vec<(K, u8)>,
    holes: Vec<(K, K)>,
}

impl<K: Key> Core<K> {
    /// A writer for a trie with a `root_bits`-wide root and 8-bit groups below
    /// (`K::BITS - root_bits` must be a multiple of 8).
    pub(crate) fn new(root_bits: u8, max_groups: u32) -> Self {
        Self {
            rib: Rib::new(),
            alloc: GroupAlloc::new(max_groups),
            root_bits,
            levels: (K::BITS - root_bits) / 8,
            subs: Vec::new(),
            holes: Vec::new(),
        }
    }

    /// Prefix depth of the block a level-`level` table covers, and of its entries.
    #[inline]
    fn geometry(&self, level: u8) -> (u8, u8) {
        if level == 0 {
            (0, self.root_bits)
        } else {
            (self.root_bits + 8 * (level - 1), self.root_bits + 8 * level)
        }
    }

    /// Inserts or replaces `key/len → nh`; returns the previous next hop.
    pub(crate) fn insert(
        &mut self,
        t: Tables<'_>,
        key: K,
        len: u8,
        nh: u32,
    ) -> Result<Option<u32>, Exhausted> {
        if self.rib.get(key, len) == Some(nh) {
            return Ok(Some(nh));
        }
        self.apply(t, key, len, nh)?;
        Ok(self.rib.insert(key, len, nh))
    }

    /// Removes `key/len`; returns its next hop if it existed.
    pub(crate) fn remove(
        &mut self,
        t: Tables<'_>,
        key: K,
        len: u8,
    ) -> Result<Option<u32>, Exhausted> {
        if self.rib.get(key, len).is_none() {
            return Ok(None);
        }
        let parent = self.rib.parent_nh(key, len);
        self.apply(t, key, len, parent)?;
        Ok(self.rib.remove(key, len))
    }

    /// Writes `nh` into the holes of `key/len`.
    fn apply(&mut self, t: Tables<'_>, key: K, len: u8, nh: u32) -> Result<(), Exhausted> {
        self.compute_holes(key, len);
        let holes = std::mem::take(&mut self.holes);
        let result = self.apply_holes(t, &holes, nh);
        self.holes = holes;
        result
    }

    fn apply_holes(&mut self, t: Tables<'_>, holes: &[(K, K)], nh: u32) -> Result<(), Exhausted> {
        let available = self.alloc.available();
        // Each hole splits at most two chains of entries, one group per level.
        let bound = holes.len() * 2 * usize::from(self.levels);
        if bound > available {
            let needed: usize = holes
                .iter()
                .map(|&(lo, hi)| self.count(t, 0, Tbl::Root, lo, hi, nh))
                .sum();
            if needed > available {
                return Err(Exhausted { needed, available });
            }
        }
        for &(lo, hi) in holes {
            // Cannot fail after the check above; if it did, report it rather
            // than pretend the change was applied.
            self.write(t, 0, Tbl::Root, lo, hi, nh)?;
        }
        Ok(())
    }

    /// Fills `self.holes` with the ranges of `key/len` not covered by a longer route.
    fn compute_holes(&mut self, key: K, len: u8) {
        self.subs.clear();
        self.holes.clear();
        self.rib.maximal_subroutes(key, len, &mut self.subs);
        let end = key.last(len);
        let mut cur = Some(key);
        for &(k, l) in &self.subs {
            if let (Some(c), Some(before)) = (cur, k.checked_dec())
                && k > c
            {
                self.holes.push((c, before));
            }
            cur = k.last(l).checked_inc();
        }
        if let Some(c) = cur
            && c <= end
        {
            self.holes.push((c, end));
        }
    }

    /// Entry range `[lo_i, hi_i]` of the level-`level` table block containing `[lo, hi]`,
    /// the entry shift and the block base.
    #[inline]
    fn span(&self, level: u8, lo: K, hi: K) -> (usize, usize, u32, K, u8) {
        let (bd, ed) = self.geometry(level);
        let shift = u32::from(K::BITS - ed);
        let idx_mask = (1usize << (ed - bd)) - 1;
        let lo_i = (lo >> shift).low_usize() & idx_mask;
        let hi_i = (hi >> shift).low_usize() & idx_mask;
        (lo_i, hi_i, shift, lo & K::mask(bd), ed)
    }

    /// Writes `nh` for every address of `[lo, hi]` (inside one block of `tbl`).
    fn write(
        &mut self,
        t: Tables<'_>,
        level: u8,
        tbl: Tbl,
        lo: K,
        hi: K,
        nh: u32,
    ) -> Result<(), Exhausted> {
        let (lo_i, hi_i, shift, base, ed) = self.span(level, lo, hi);
        for i in lo_i..=hi_i {
            let Some(slot) = t.slot(tbl, i) else { continue };
            let old = slot.load(Ordering::Relaxed);
            // Entries strictly between the first and the last are covered.
            let inner = i != lo_i && i != hi_i;
            let start = if inner {
                lo
            } else {
                base | (K::from_usize(i) << shift)
            };
            let end = if inner { hi } else { start.last(ed) };
            if lo <= start && end <= hi {
                if old != nh {
                    publish(slot, nh);
                    if is_group(old) {
                        self.retire_tree(t, old & !GROUP_FLAG);
                    }
                }
                continue;
            }
            let (clo, chi) = (lo.max(start), hi.min(end));
            if is_group(old) {
                let g = old & !GROUP_FLAG;
                self.write(t, level + 1, Tbl::Group(g), clo, chi, nh)?;
                if let Some(v) = uniform(t.store.group(g)) {
                    publish(slot, v);
                    self.alloc.retire(g);
                }
            } else if old != nh {
                let available = self.alloc.available();
                let g = self.alloc.alloc(t.store).ok_or(Exhausted {
                    needed: 1,
                    available,
                })?;
                for e in t.store.group(g) {
                    e.store(old, Ordering::Relaxed);
                }
                self.write(t, level + 1, Tbl::Group(g), clo, chi, nh)?;
                // Publish only the complete group.
                publish(slot, GROUP_FLAG | g);
            }
        }
        Ok(())
    }

    /// Groups `write` would allocate for the same arguments (read-only).
    fn count(&self, t: Tables<'_>, level: u8, tbl: Tbl, lo: K, hi: K, nh: u32) -> usize {
        let (lo_i, hi_i, shift, base, ed) = self.span(level, lo, hi);
        let mut n = 0;
        // Only the first and the last entry can be partly covered.
        for i in [lo_i, hi_i]
            .into_iter()
            .take(if lo_i == hi_i { 1 } else { 2 })
        {
            let start = base | (K::from_usize(i) << shift);
            let end = start.last(ed);
            if lo <= start && end <= hi {
                continue;
            }
            let (clo, chi) = (lo.max(start), hi.min(end));
            let old = t.slot(tbl, i).map_or(0, |s| s.load(Ordering::Relaxed));
            if is_group(old) {
                n += self.count(t, level + 1, Tbl::Group(old & !GROUP_FLAG), clo, chi, nh);
            } else if old != nh {
                n += 1 + self.count_fresh(level + 1, clo, chi);
            }
        }
        n
    }

    /// Groups needed to write `[lo, hi]` into a new, uniform level-`level` group.
    fn count_fresh(&self, level: u8, lo: K, hi: K) -> usize {
        if level > self.levels {
            return 0;
        }
        let (lo_i, hi_i, shift, base, ed) = self.span(level, lo, hi);
        let mut n = 0;
        for i in [lo_i, hi_i]
            .into_iter()
            .take(if lo_i == hi_i { 1 } else { 2 })
        {
            let start = base | (K::from_usize(i) << shift);
            let end = start.last(ed);
            if !(lo <= start && end <= hi) {
                n += 1 + self.count_fresh(level + 1, lo.max(start), hi.min(end));
            }
        }
        n
    }

    /// Retires group `g` and every group below it.
    fn retire_tree(&mut self, t: Tables<'_>, g: u32) {
        let children: Vec<u32> = t
            .store
            .group(g)
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .filter(|&e| is_group(e))
            .collect();
        for c in children {
            self.retire_tree(t, c & !GROUP_FLAG);
        }
        self.alloc.retire(g);
    }
}

/// Stores `v` into a table slot readers may see (`Release`: everything the
/// writer stored before, such as a new group's entries, is visible first).
#[inline]
fn publish(slot: &AtomicU32, v: u32) {
    slot.store(v, Ordering::Release);
    #[cfg(test)]
    tests::after_publish();
}

/// The common value of a group whose entries are all the same next hop.
fn uniform(group: &[AtomicU32]) -> Option<u32> {
    let (first, last) = (
        group.first()?.load(Ordering::Relaxed),
        group.last()?.load(Ordering::Relaxed),
    );
    if first != last || is_group(first) {
        return None;
    }
    group
        .iter()
        .all(|e| e.load(Ordering::Relaxed) == first)
        .then_some(first)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Every intermediate state of a change is checked: a hook runs lookups
    //! after each store the writer makes to a slot readers may see, and every
    //! answer must be the address's next hop before or after the change.

    use std::cell::RefCell;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use crate::{Fib4, Fib4Config, Fib6, Fib6Config};

    type Hook = Box<dyn FnMut()>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    pub(crate) fn after_publish() {
        HOOK.with_borrow_mut(|h| {
            if let Some(h) = h.as_mut() {
                h();
            }
        });
    }

    /// Runs `ops` changes through `change`, checking with `lookup` after each
    /// published store that every probe answers its old or its new next hop.
    fn check_every_state<A: Copy + 'static>(
        probes: Vec<A>,
        lookup: impl Fn(A) -> u32 + Clone + 'static,
        ops: usize,
        mut change: impl FnMut(usize),
    ) {
        let seen: std::rc::Rc<RefCell<Vec<Vec<u32>>>> = std::rc::Rc::default();
        let (p2, l2, s2) = (probes.clone(), lookup.clone(), seen.clone());
        HOOK.with_borrow_mut(|h| {
            *h = Some(Box::new(move || {
                let mut s = s2.borrow_mut();
                for (i, &a) in p2.iter().enumerate() {
                    s[i].push(l2(a));
                }
            }))
        });
        for op in 0..ops {
            let before: Vec<u32> = probes.iter().map(|&a| lookup(a)).collect();
            *seen.borrow_mut() = vec![Vec::new(); probes.len()];
            change(op);
            let after: Vec<u32> = probes.iter().map(|&a| lookup(a)).collect();
            for (i, s) in seen.borrow().iter().enumerate() {
                for &v in s {
                    assert!(
                        v == before[i] || v == after[i],
                        "op {op} probe {i}: saw {v}, old {}, new {}",
                        before[i],
                        after[i]
                    );
                }
            }
        }
        HOOK.with_borrow_mut(|h| *h = None);
    }

    #[test]
    fn v4_every_intermediate_state_is_old_or_new() {
        let mut fib = Fib4::new(Fib4Config { max_groups: 256 }).unwrap();
        let table = fib.table().clone();
        let base = 0xc612_0000u32;
        let mut probes = Vec::new();
        for k in 0..4u32 {
            for h in [0u32, 1, 63, 64, 100, 127, 128, 129, 191, 192, 200, 255] {
                probes.push(base | (k << 8) | h);
            }
        }
        let mut rng = SmallRng::seed_from_u64(1);
        let mut routes: Vec<(u32, u8)> = Vec::new();
        check_every_state(
            probes,
            move |a| table.lookup(a),
            1200,
            |op| {
                if op % 50 == 0 {
                    // The hook's lookups run between stores, never across a reclaim.
                    let t = fib.retire_barrier();
                    fib.reclaim(t);
                }
                if rng.gen_bool(0.5) || routes.is_empty() {
                    let len = rng.gen_range(20..=32u8);
                    let p = (base | rng.gen_range(0..1024u32)) & (u32::MAX << (32 - len));
                    fib.insert(Ipv4Addr::from(p), len, rng.gen_range(1..4))
                        .unwrap();
                    routes.push((p, len));
                } else {
                    let (p, l) = routes.swap_remove(rng.gen_range(0..routes.len()));
                    fib.remove(Ipv4Addr::from(p), l).unwrap();
                }
            },
        );
    }

    #[test]
    fn v6_every_intermediate_state_is_old_or_new() {
        let mut fib = Fib6::new(Fib6Config {
            root_bits: 16,
            max_groups: 4096,
        })
        .unwrap();
        let table = fib.table().clone();
        let base = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128;
        let probes: Vec<u128> = (0..48)
            .map(|i| base | ((i as u128 % 4) << 88) | ((i as u128 * 0x9e37_79b9) << 40) | i as u128)
            .collect();
        let mut rng = SmallRng::seed_from_u64(2);
        let mut routes: Vec<(u128, u8)> = Vec::new();
        let p2 = probes.clone();
        check_every_state(
            probes,
            move |a| table.lookup(a),
            800,
            |op| {
                if op % 50 == 0 {
                    // The hook's lookups run between stores, never across a reclaim.
                    let t = fib.retire_barrier();
                    fib.reclaim(t);
                }
                if rng.gen_bool(0.5) || routes.is_empty() {
                    let len = rng.gen_range(24..=128u8);
                    let a = p2[rng.gen_range(0..p2.len())] ^ (1u128 << rng.gen_range(0..128));
                    let p = a & (u128::MAX << (128 - u32::from(len)));
                    fib.insert(Ipv6Addr::from(p), len, rng.gen_range(1..4))
                        .unwrap();
                    routes.push((p, len));
                } else {
                    let (p, l) = routes.swap_remove(rng.gen_range(0..routes.len()));
                    fib.remove(Ipv6Addr::from(p), l).unwrap();
                }
            },
        );
    }
}
