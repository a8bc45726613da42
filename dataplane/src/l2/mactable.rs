//! The MAC table of one bridge domain: lock-free lookups and learning from
//! every worker, management (static entries, aging, flush) from the control
//! thread.
//!
//! Layout: buckets of eight 8-byte slots, one cache line each. A slot holds
//! the whole entry in one atomic word — `mac << 16 | static << 15 | dst` —
//! so readers need no sequence lock: a load sees either the old or the new
//! entry. Zero is the empty slot (a zero MAC is never learned or configured).
//! A parallel array holds each slot's last-seen second for aging; it is a
//! hint, written by workers only when the second changes, so a busy MAC does
//! not dirty a shared cache line per packet.
//!
//! Workers insert with compare-and-swap. The entry count is reserved with
//! `fetch_add` before an insert, so the MAC limit is exact even with several
//! workers learning at once. The table never resizes: its capacity follows
//! from the domain's MAC limit (load factor at most 1/2), and a bucket that
//! is full anyway refuses to learn (`l2-table-full`).
//!
//! Must never: allocate, block or spin unboundedly on the worker side.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

const WAYS: usize = 8;
const STATIC: u64 = 1 << 15;
const DST_MASK: u64 = 0x7fff;

/// Largest destination index an entry can hold.
pub const MAX_DST: u16 = DST_MASK as u16;

#[repr(C, align(64))]
#[derive(Default)]
struct Bucket([AtomicU64; WAYS]);

/// What `learn` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Known on this destination; age refreshed.
    Hit,
    /// New entry.
    Learned,
    /// Known on another destination; moved here.
    Moved { from: u16 },
    /// A static entry for this MAC points elsewhere: not moved.
    StaticConflict { owner: u16 },
    /// The domain is at its MAC limit.
    Limit,
    /// The bucket is full.
    Full,
}

/// One entry as seen by the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    pub mac: u64,
    pub dst: u16,
    pub is_static: bool,
    /// Second (on the caller's clock) the entry was last seen.
    pub last_seen: u32,
}

/// A bridge domain's MAC table.
pub struct MacTable {
    buckets: Box<[Bucket]>,
    ages: Box<[AtomicU32]>,
    shift: u32,
    count: AtomicU32,
    limit: u32,
}

impl std::fmt::Debug for MacTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacTable")
            .field("buckets", &self.buckets.len())
            .field("count", &self.len())
            .field("limit", &self.limit)
            .finish()
    }
}

#[inline(always)]
fn pack(mac: u64, dst: u16, is_static: bool) -> u64 {
    (mac << 16) | (dst as u64 & DST_MASK) | if is_static { STATIC } else { 0 }
}

impl MacTable {
    /// A table for at most `limit` entries (learned and static).
    pub fn new(limit: u32) -> Self {
        let slots = (limit.max(1) as usize * 2)
            .next_power_of_two()
            .max(2 * WAYS);
        let nb = slots / WAYS;
        MacTable {
            buckets: (0..nb).map(|_| Bucket::default()).collect(),
            ages: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            shift: 64 - nb.trailing_zeros(),
            count: AtomicU32::new(0),
            limit,
        }
    }

    /// The MAC limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.count.load(Relaxed) as usize
    }

    /// True if the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory used by the table in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>() + self.ages.len() * 4
    }

    #[inline(always)]
    fn bucket_index(&self, mac: u64) -> usize {
        // Multiply-shift: the top bits of the product depend on all MAC bits,
        // so MACs that share an OUI still spread. `shift` < 64 always.
        (mac.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Prefetches the bucket `mac` lives in.
    #[inline(always)]
    pub fn prefetch(&self, mac: u64) {
        if let Some(b) = self.buckets.get(self.bucket_index(mac)) {
            vrouter_buf::prefetch(b);
        }
    }

    #[inline(always)]
    fn find(&self, mac: u64) -> Option<(usize, u64)> {
        let bi = self.bucket_index(mac);
        let b = self.buckets.get(bi)?;
        for (w, s) in b.0.iter().enumerate() {
            let v = s.load(Relaxed);
            if v >> 16 == mac && v != 0 {
                return Some((bi * WAYS + w, v));
            }
        }
        None
    }

    /// Destination of `mac`, if known.
    #[inline(always)]
    pub fn lookup(&self, mac: u64) -> Option<u16> {
        self.find(mac).map(|(_, v)| (v & DST_MASK) as u16)
    }

    /// Full entry of `mac`, if known.
    pub fn get(&self, mac: u64) -> Option<MacEntry> {
        self.find(mac).map(|(slot, v)| self.entry(slot, v))
    }

    fn entry(&self, slot: usize, v: u64) -> MacEntry {
        MacEntry {
            mac: v >> 16,
            dst: (v & DST_MASK) as u16,
            is_static: v & STATIC != 0,
            last_seen: self.ages.get(slot).map_or(0, |a| a.load(Relaxed)),
        }
    }

    #[inline(always)]
    fn touch(&self, slot: usize, now: u32) {
        if let Some(a) = self.ages.get(slot)
            && a.load(Relaxed) != now
        {
            a.store(now, Relaxed);
        }
    }

    /// Worker side: records that `mac` was seen behind `dst` at second `now`.
    #[inline]
    pub fn learn(&self, mac: u64, dst: u16, now: u32) -> Learn {
        // Two attempts: a lost CAS race means another worker changed the
        // bucket; the second scan sees its result.
        for _ in 0..2 {
            let bi = self.bucket_index(mac);
            let Some(b) = self.buckets.get(bi) else {
                return Learn::Full;
            };
            let mut empty = None;
            for (w, s) in b.0.iter().enumerate() {
                let v = s.load(Relaxed);
                if v == 0 {
                    empty.get_or_insert(w);
                    continue;
                }
                if v >> 16 != mac {
                    continue;
                }
                let owner = (v & DST_MASK) as u16;
                if owner == dst {
                    self.touch(bi * WAYS + w, now);
                    return Learn::Hit;
                }
                if v & STATIC != 0 {
                    return Learn::StaticConflict { owner };
                }
                if s.compare_exchange(v, pack(mac, dst, false), Relaxed, Relaxed)
                    .is_ok()
                {
                    self.touch(bi * WAYS + w, now);
                    return Learn::Moved { from: owner };
                }
                return Learn::Hit;
            }
            let Some(w) = empty else { return Learn::Full };
            if self.count.fetch_add(1, Relaxed) >= self.limit {
                self.count.fetch_sub(1, Relaxed);
                return Learn::Limit;
            }
            if let Some(a) = self.ages.get(bi * WAYS + w) {
                a.store(now, Relaxed);
            }
            if b.0[w]
                .compare_exchange(0, pack(mac, dst, false), Relaxed, Relaxed)
                .is_ok()
            {
                return Learn::Learned;
            }
            self.count.fetch_sub(1, Relaxed);
        }
        Learn::Hit
    }

    /// Control side: installs or replaces a static entry. Static entries win
    /// over learned ones and never age. Fails only if the limit or the bucket
    /// is full.
    pub fn set_static(&self, mac: u64, dst: u16) -> Result<(), Learn> {
        let new = pack(mac, dst, true);
        if let Some((slot, old)) = self.find(mac) {
            let b = &self.buckets[slot / WAYS].0[slot % WAYS];
            // A worker may move a learned entry meanwhile; retry until we win.
            let mut cur = old;
            while let Err(v) = b.compare_exchange(cur, new, Relaxed, Relaxed) {
                if v >> 16 != mac {
                    return self.set_static(mac, dst);
                }
                cur = v;
            }
            return Ok(());
        }
        if self.count.fetch_add(1, Relaxed) >= self.limit {
            self.count.fetch_sub(1, Relaxed);
            return Err(Learn::Limit);
        }
        let bi = self.bucket_index(mac);
        for s in self.buckets[bi].0.iter() {
            if s.compare_exchange(0, new, Relaxed, Relaxed).is_ok() {
                return Ok(());
            }
        }
        self.count.fetch_sub(1, Relaxed);
        // A worker may have learned it in the meantime.
        if self.find(mac).is_some() {
            return self.set_static(mac, dst);
        }
        Err(Learn::Full)
    }

    /// Control side: removes `mac`; returns the removed entry.
    pub fn remove(&self, mac: u64) -> Option<MacEntry> {
        let (slot, v) = self.find(mac)?;
        let b = &self.buckets[slot / WAYS].0[slot % WAYS];
        b.compare_exchange(v, 0, Relaxed, Relaxed).ok()?;
        self.count.fetch_sub(1, Relaxed);
        Some(self.entry(slot, v))
    }

    /// Control side: removes learned entries matching `pred`; calls `removed`
    /// for each. Static entries stay.
    pub fn retain_learned(
        &self,
        mut keep: impl FnMut(&MacEntry) -> bool,
        mut removed: impl FnMut(MacEntry),
    ) {
        for (bi, b) in self.buckets.iter().enumerate() {
            for (w, s) in b.0.iter().enumerate() {
                let v = s.load(Relaxed);
                if v == 0 || v & STATIC != 0 {
                    continue;
                }
                let e = self.entry(bi * WAYS + w, v);
                if !keep(&e) && s.compare_exchange(v, 0, Relaxed, Relaxed).is_ok() {
                    self.count.fetch_sub(1, Relaxed);
                    removed(e);
                }
            }
        }
    }

    /// Control side: ages out learned entries not seen for `max_age` seconds.
    pub fn age(&self, now: u32, max_age: u32, removed: impl FnMut(MacEntry)) {
        self.retain_learned(|e| now.wrapping_sub(e.last_seen) < max_age, removed);
    }

    /// All entries (a snapshot; concurrent learning may add more).
    pub fn entries(&self) -> Vec<MacEntry> {
        let mut out = Vec::with_capacity(self.len());
        for (bi, b) in self.buckets.iter().enumerate() {
            for (w, s) in b.0.iter().enumerate() {
                let v = s.load(Relaxed);
                if v != 0 {
                    out.push(self.entry(bi * WAYS + w, v));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    const A: u64 = 0x02_00_00_00_00_0a;
    const B: u64 = 0x02_00_00_00_00_0b;

    #[test]
    fn learn_lookup_refresh() {
        let t = MacTable::new(16);
        assert_eq!(t.lookup(A), None);
        assert_eq!(t.learn(A, 1, 10), Learn::Learned);
        assert_eq!(t.lookup(A), Some(1));
        assert_eq!(t.learn(A, 1, 12), Learn::Hit);
        assert_eq!(t.get(A).unwrap().last_seen, 12);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn station_move() {
        let t = MacTable::new(16);
        t.learn(A, 1, 0);
        assert_eq!(t.learn(A, 2, 1), Learn::Moved { from: 1 });
        assert_eq!(t.lookup(A), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn static_wins_over_learned() {
        let t = MacTable::new(16);
        t.learn(A, 1, 0);
        t.set_static(A, 3).unwrap();
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(t.learn(A, 1, 5), Learn::StaticConflict { owner: 3 });
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(t.learn(A, 3, 5), Learn::Hit);
        // Static entries never age and survive a learned flush.
        t.age(1000, 10, |_| panic!("static entry aged"));
        t.retain_learned(|_| false, |_| panic!("static entry flushed"));
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn aging_removes_only_stale() {
        let t = MacTable::new(16);
        t.learn(A, 1, 100);
        t.learn(B, 2, 150);
        let mut gone = vec![];
        t.age(200, 60, |e| gone.push(e.mac));
        assert_eq!(gone, vec![A]);
        assert_eq!(t.lookup(A), None);
        assert_eq!(t.lookup(B), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn limit_stops_learning() {
        let t = MacTable::new(4);
        for m in 1..=4u64 {
            assert_eq!(t.learn(0x0200_0000_0000 | m, 1, 0), Learn::Learned);
        }
        assert_eq!(t.learn(0x0200_0000_0099, 1, 0), Learn::Limit);
        assert_eq!(t.len(), 4);
        assert_eq!(t.set_static(0x0200_0000_0098, 1), Err(Learn::Limit));
        // Known MACs still refresh and move at the limit.
        assert_eq!(t.learn(0x0200_0000_0001, 2, 0), Learn::Moved { from: 1 });
        t.remove(0x0200_0000_0001).unwrap();
        assert_eq!(t.learn(0x0200_0000_0099, 1, 0), Learn::Learned);
    }

    #[test]
    fn matches_a_model_under_random_ops() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let t = MacTable::new(512);
        let mut model: HashMap<u64, (u16, bool)> = HashMap::new();
        for step in 0..20_000u32 {
            let mac = 0x0200_0000_0000 | rng.gen_range(1..600u64);
            let dst = rng.gen_range(0..8u16);
            match rng.gen_range(0..10) {
                0 => {
                    if t.set_static(mac, dst).is_ok() {
                        model.insert(mac, (dst, true));
                    }
                }
                1 => {
                    assert_eq!(t.remove(mac).is_some(), model.remove(&mac).is_some());
                }
                _ => match t.learn(mac, dst, step) {
                    Learn::Learned | Learn::Moved { .. } => {
                        model.insert(mac, (dst, false));
                    }
                    Learn::Hit => assert_eq!(model[&mac].0, dst),
                    Learn::StaticConflict { owner } => assert_eq!(model[&mac], (owner, true)),
                    Learn::Limit => assert!(model.len() >= 512),
                    Learn::Full => {}
                },
            }
            assert_eq!(t.len(), model.len(), "step {step}");
        }
        for (mac, (dst, st)) in &model {
            let e = t.get(*mac).unwrap();
            assert_eq!((e.dst, e.is_static), (*dst, *st));
        }
    }

    #[test]
    fn concurrent_learning_respects_limit() {
        let t = Arc::new(MacTable::new(1000));
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for m in 0..5000u64 {
                        t.learn(0x0200_0000_0000 | (m * 7 + w) % 3000 + 1, w as u16, 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.len() <= 1000);
        assert_eq!(t.entries().len(), t.len());
        let mut macs: Vec<u64> = t.entries().iter().map(|e| e.mac).collect();
        macs.sort_unstable();
        macs.dedup();
        assert_eq!(macs.len(), t.len(), "no MAC twice");
    }
}
