//! The MAC table of one bridge domain: lock-free lookups and learning from
//! every worker, management (static entries, aging, flush) from the control
//! thread.
//!
//! Layout: buckets of one cache line each — seven 8-byte slots and seven
//! one-byte age stamps — so a lookup, a learn and the age refresh touch one
//! line. A slot holds the whole entry in one atomic word —
//! `mac << 16 | static << 15 | dst` — so readers need no sequence lock: a
//! load sees either the old or the new entry. Zero is the empty slot (a zero
//! MAC is never learned or configured).
//!
//! Age stamps count in units of `unit` seconds (a 64th of the domain's MAC
//! age, at least one second), modulo 256; a worker rewrites a stamp only
//! when the unit changes, so a busy MAC does not dirty the line per packet.
//! The control thread's aging scan (every second) removes entries older than
//! the age, long before a stamp could wrap.
//!
//! Workers insert with compare-and-swap. The entry count is reserved with
//! `fetch_add` before an insert, so the MAC limit is exact even with several
//! workers learning at once. The table never resizes: its capacity follows
//! from the domain's MAC limit (load factor at most about 1/2), and a bucket
//! that is full anyway refuses to learn (`l2-table-full`).
//!
//! Must never: allocate, block or spin unboundedly on the worker side.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

const WAYS: usize = 7;
const STATIC: u64 = 1 << 15;
const DST_MASK: u64 = 0x7fff;

/// Largest destination index an entry can hold.
pub const MAX_DST: u16 = DST_MASK as u16;

#[repr(C, align(64))]
#[derive(Default)]
struct Bucket {
    slots: [AtomicU64; WAYS],
    ages: [AtomicU8; 8],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

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
    /// Seconds since the entry was last seen (to within one age unit), as of
    /// the `now` passed to the call that returned it.
    pub age: u32,
}

/// A bridge domain's MAC table.
pub struct MacTable {
    buckets: Box<[Bucket]>,
    mask: usize,
    count: AtomicU32,
    limit: u32,
    unit: u32,
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
    /// A table for at most `limit` entries (learned and static), whose
    /// learned entries age out after `max_age` seconds (0: never).
    pub fn new(limit: u32, max_age: u32) -> Self {
        let nb = (limit.max(1) as usize * 2)
            .div_ceil(WAYS)
            .next_power_of_two()
            .max(2);
        MacTable {
            buckets: (0..nb).map(|_| Bucket::default()).collect(),
            mask: nb - 1,
            count: AtomicU32::new(0),
            limit,
            unit: max_age.div_ceil(64).max(1),
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
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    #[inline(always)]
    fn bucket(&self, mac: u64) -> &Bucket {
        &self.buckets[self.index(mac)]
    }

    /// The bucket index of `mac` (for the `*_at` fast paths of a vector that
    /// computes it once per frame).
    #[inline(always)]
    pub fn index(&self, mac: u64) -> usize {
        // Multiply-shift: the top bits of the product depend on all MAC bits,
        // so MACs that share an OUI still spread.
        let h = (mac.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize;
        h & self.mask
    }

    /// Prefetches bucket `idx` (from [`MacTable::index`]).
    #[inline(always)]
    pub fn prefetch_at(&self, idx: usize) {
        vrouter_buf::prefetch_slice(&self.buckets, idx);
    }

    /// [`MacTable::lookup`] of `mac` in bucket `idx` = `index(mac)`.
    #[inline(always)]
    pub fn lookup_at(&self, idx: usize, mac: u64) -> Option<u16> {
        let b = self.buckets.get(idx)?;
        if mac == 0 {
            return None;
        }
        for s in &b.slots {
            let v = s.load(Relaxed);
            if v >> 16 == mac {
                return Some((v & DST_MASK) as u16);
            }
        }
        None
    }

    /// [`MacTable::learn`] of `mac` in bucket `idx` = `index(mac)`: the
    /// common case (known on `dst`) inline, everything else out of line.
    #[inline(always)]
    pub fn learn_at(&self, idx: usize, mac: u64, dst: u16, stamp: u8) -> Learn {
        if let Some(b) = self.buckets.get(idx)
            && mac != 0
        {
            for (s, a) in b.slots.iter().zip(&b.ages) {
                let v = s.load(Relaxed);
                if v >> 16 == mac {
                    if (v & DST_MASK) as u16 == dst {
                        if a.load(Relaxed) != stamp {
                            a.store(stamp, Relaxed);
                        }
                        return Learn::Hit;
                    }
                    break;
                }
            }
        }
        self.learn_cold(mac, dst, stamp)
    }

    #[inline(never)]
    fn learn_cold(&self, mac: u64, dst: u16, stamp: u8) -> Learn {
        self.learn(mac, dst, stamp)
    }

    /// The age stamp for second `now` (computed once per vector by callers of
    /// [`MacTable::learn`]).
    #[inline(always)]
    pub fn stamp(&self, now: u32) -> u8 {
        (now / self.unit) as u8
    }

    /// Prefetches the bucket `mac` lives in.
    #[inline(always)]
    pub fn prefetch(&self, mac: u64) {
        vrouter_buf::prefetch(self.bucket(mac));
    }

    /// Destination of `mac`, if known.
    #[inline(always)]
    pub fn lookup(&self, mac: u64) -> Option<u16> {
        if mac == 0 {
            return None;
        }
        let b = self.bucket(mac);
        for s in &b.slots {
            let v = s.load(Relaxed);
            if v >> 16 == mac {
                return Some((v & DST_MASK) as u16);
            }
        }
        None
    }

    fn find(&self, mac: u64) -> Option<(&Bucket, usize, u64)> {
        let b = self.bucket(mac);
        b.slots.iter().enumerate().find_map(|(w, s)| {
            let v = s.load(Relaxed);
            (v != 0 && v >> 16 == mac).then_some((b, w, v))
        })
    }

    /// Full entry of `mac`, if known, with its age as of `now`.
    pub fn get(&self, mac: u64, now: u32) -> Option<MacEntry> {
        self.find(mac).map(|(b, w, v)| self.entry(b, w, v, now))
    }

    fn entry(&self, b: &Bucket, w: usize, v: u64, now: u32) -> MacEntry {
        let units = self.stamp(now).wrapping_sub(b.ages[w].load(Relaxed));
        MacEntry {
            mac: v >> 16,
            dst: (v & DST_MASK) as u16,
            is_static: v & STATIC != 0,
            age: u32::from(units) * self.unit,
        }
    }

    /// Worker side: records that `mac` was seen behind `dst`; `stamp` is
    /// [`MacTable::stamp`] of the current second. A zero MAC is never learned.
    #[inline]
    pub fn learn(&self, mac: u64, dst: u16, stamp: u8) -> Learn {
        if mac == 0 {
            return Learn::Full;
        }
        let b = self.bucket(mac);
        // Two attempts: a lost CAS race means another worker changed the
        // bucket; the second scan sees its result.
        for _ in 0..2 {
            let mut empty = WAYS;
            for (w, s) in b.slots.iter().enumerate() {
                let v = s.load(Relaxed);
                if v >> 16 == mac {
                    let owner = (v & DST_MASK) as u16;
                    if owner == dst {
                        if b.ages[w].load(Relaxed) != stamp {
                            b.ages[w].store(stamp, Relaxed);
                        }
                        return Learn::Hit;
                    }
                    if v & STATIC != 0 {
                        return Learn::StaticConflict { owner };
                    }
                    if s.compare_exchange(v, pack(mac, dst, false), Relaxed, Relaxed)
                        .is_ok()
                    {
                        b.ages[w].store(stamp, Relaxed);
                        return Learn::Moved { from: owner };
                    }
                    return Learn::Hit;
                }
                if v == 0 && empty == WAYS {
                    empty = w;
                }
            }
            if empty == WAYS {
                return Learn::Full;
            }
            if self.count.fetch_add(1, Relaxed) >= self.limit {
                self.count.fetch_sub(1, Relaxed);
                return Learn::Limit;
            }
            b.ages[empty].store(stamp, Relaxed);
            if b.slots[empty]
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
        for _ in 0..16 {
            if let Some((b, w, old)) = self.find(mac) {
                if b.slots[w]
                    .compare_exchange(old, new, Relaxed, Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if self.count.fetch_add(1, Relaxed) >= self.limit {
                self.count.fetch_sub(1, Relaxed);
                return Err(Learn::Limit);
            }
            let b = self.bucket(mac);
            if b.slots
                .iter()
                .any(|s| s.compare_exchange(0, new, Relaxed, Relaxed).is_ok())
            {
                return Ok(());
            }
            self.count.fetch_sub(1, Relaxed);
            if self.find(mac).is_none() {
                return Err(Learn::Full);
            }
        }
        Err(Learn::Full)
    }

    /// Control side: removes `mac`; returns the removed entry.
    pub fn remove(&self, mac: u64) -> Option<MacEntry> {
        let (b, w, v) = self.find(mac)?;
        b.slots[w].compare_exchange(v, 0, Relaxed, Relaxed).ok()?;
        self.count.fetch_sub(1, Relaxed);
        Some(self.entry(b, w, v, 0))
    }

    /// Control side: removes learned entries for which `keep` is false and
    /// calls `removed` for each. Static entries stay. Ages are as of `now`.
    pub fn retain_learned(
        &self,
        now: u32,
        mut keep: impl FnMut(&MacEntry) -> bool,
        mut removed: impl FnMut(MacEntry),
    ) {
        for b in self.buckets.iter() {
            for (w, s) in b.slots.iter().enumerate() {
                let v = s.load(Relaxed);
                if v == 0 || v & STATIC != 0 {
                    continue;
                }
                let e = self.entry(b, w, v, now);
                if !keep(&e) && s.compare_exchange(v, 0, Relaxed, Relaxed).is_ok() {
                    self.count.fetch_sub(1, Relaxed);
                    removed(e);
                }
            }
        }
    }

    /// Control side: ages out learned entries not seen for `max_age` seconds.
    pub fn age(&self, now: u32, max_age: u32, removed: impl FnMut(MacEntry)) {
        self.retain_learned(now, |e| e.age < max_age, removed);
    }

    /// All entries (a snapshot; concurrent learning may add more).
    pub fn entries(&self, now: u32) -> Vec<MacEntry> {
        let mut out = Vec::with_capacity(self.len());
        for b in self.buckets.iter() {
            for (w, s) in b.slots.iter().enumerate() {
                let v = s.load(Relaxed);
                if v != 0 {
                    out.push(self.entry(b, w, v, now));
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
        let t = MacTable::new(16, 300);
        assert_eq!(t.lookup(A), None);
        assert_eq!(t.learn(A, 1, t.stamp(10)), Learn::Learned);
        assert_eq!(t.lookup(A), Some(1));
        assert_eq!(t.learn(A, 1, t.stamp(12)), Learn::Hit);
        assert!(t.get(A, 20).unwrap().age <= 10);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn station_move() {
        let t = MacTable::new(16, 300);
        t.learn(A, 1, t.stamp(0));
        assert_eq!(t.learn(A, 2, t.stamp(1)), Learn::Moved { from: 1 });
        assert_eq!(t.lookup(A), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn static_wins_over_learned() {
        let t = MacTable::new(16, 300);
        t.learn(A, 1, t.stamp(0));
        t.set_static(A, 3).unwrap();
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(
            t.learn(A, 1, t.stamp(5)),
            Learn::StaticConflict { owner: 3 }
        );
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(t.learn(A, 3, t.stamp(5)), Learn::Hit);
        // Static entries never age and survive a learned flush.
        t.age(1000, 10, |_| panic!("static entry aged"));
        t.retain_learned(0, |_| false, |_| panic!("static entry flushed"));
        assert_eq!(t.lookup(A), Some(3));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn aging_removes_only_stale() {
        let t = MacTable::new(16, 300);
        t.learn(A, 1, t.stamp(100));
        t.learn(B, 2, t.stamp(150));
        let mut gone = vec![];
        t.age(200, 60, |e| gone.push(e.mac));
        assert_eq!(gone, vec![A]);
        assert_eq!(t.lookup(A), None);
        assert_eq!(t.lookup(B), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn limit_stops_learning() {
        let t = MacTable::new(4, 300);
        for m in 1..=4u64 {
            assert_eq!(t.learn(0x0200_0000_0000 | m, 1, t.stamp(0)), Learn::Learned);
        }
        assert_eq!(t.learn(0x0200_0000_0099, 1, t.stamp(0)), Learn::Limit);
        assert_eq!(t.len(), 4);
        assert_eq!(t.set_static(0x0200_0000_0098, 1), Err(Learn::Limit));
        // Known MACs still refresh and move at the limit.
        assert_eq!(
            t.learn(0x0200_0000_0001, 2, t.stamp(0)),
            Learn::Moved { from: 1 }
        );
        t.remove(0x0200_0000_0001).unwrap();
        assert_eq!(t.learn(0x0200_0000_0099, 1, t.stamp(0)), Learn::Learned);
    }

    #[test]
    fn matches_a_model_under_random_ops() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let t = MacTable::new(512, 300);
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
                _ => match t.learn(mac, dst, t.stamp(step)) {
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
            let e = t.get(*mac, 0).unwrap();
            assert_eq!((e.dst, e.is_static), (*dst, *st));
        }
    }

    #[test]
    fn concurrent_learning_respects_limit() {
        let t = Arc::new(MacTable::new(1000, 300));
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for m in 0..5000u64 {
                        t.learn(
                            0x0200_0000_0000 | ((m * 7 + w) % 3000 + 1),
                            w as u16,
                            t.stamp(0),
                        );
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.len() <= 1000);
        assert_eq!(t.entries(0).len(), t.len());
        let mut macs: Vec<u64> = t.entries(0).iter().map(|e| e.mac).collect();
        macs.sort_unstable();
        macs.dedup();
        assert_eq!(macs.len(), t.len(), "no MAC twice");
    }
}
