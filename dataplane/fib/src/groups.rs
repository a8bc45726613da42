//! The group store: 256-entry groups (1 KiB each) in chunks that are allocated
//! on demand and never move, plus the writer's allocator with its
//! retire/reclaim protocol.
//!
//! [`GroupStore`] is shared with readers. Its chunk slots are `OnceLock`s sized
//! from the configured maximum up front, so growing the store never reallocates
//! anything a reader may be looking at. [`GroupAlloc`] is owned by the writer:
//! free list, fresh-group cursor, retired groups waiting for a grace period.
//!
//! This module must never hand out a retired group before the
//! [`RetireToken`] covering it has been passed to `reclaim`.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use vrouter_buf::HugeTable;

use crate::NO_ROUTE;

/// Bit 31 of an entry: the low 31 bits index a group.
pub(crate) const GROUP_FLAG: u32 = 1 << 31;
/// Entries per group (one per value of the next 8 address bits).
pub(crate) const GROUP_ENTRIES: usize = 256;
/// log2 of the groups per chunk.
const CHUNK_SHIFT: u32 = 11;
/// Groups per chunk (2 MiB of entries). Large chunks keep the slot array a
/// reader walks small (8 KiB for a million groups), so it stays in L1.
const CHUNK_GROUPS: usize = 1 << CHUNK_SHIFT;
const CHUNK_ENTRIES: usize = CHUNK_GROUPS * GROUP_ENTRIES;
/// The most groups a table may be configured with (16 GiB of groups).
pub(crate) const MAX_GROUPS_LIMIT: u32 = 1 << 24;

type Chunk = HugeTable<CHUNK_ENTRIES>;

/// Whether entry `e` links to a group.
#[inline(always)]
pub(crate) fn is_group(e: u32) -> bool {
    e & GROUP_FLAG != 0
}

/// Shared, append-only storage of groups.
#[derive(Debug)]
pub(crate) struct GroupStore {
    chunks: Box<[OnceLock<Chunk>]>,
    max_groups: u32,
}

impl GroupStore {
    /// A store for up to `max_groups` groups (`<= MAX_GROUPS_LIMIT`); no
    /// group memory is allocated yet.
    pub(crate) fn new(max_groups: u32) -> Self {
        let slots = (max_groups as usize).div_ceil(CHUNK_GROUPS);
        Self {
            chunks: (0..slots).map(|_| OnceLock::new()).collect(),
            max_groups,
        }
    }

    pub(crate) fn max_groups(&self) -> u32 {
        self.max_groups
    }

    /// Entry `byte` (low 8 bits used) of group `g`, if the group's chunk exists.
    #[inline(always)]
    pub(crate) fn slot(&self, g: u32, byte: usize) -> Option<&AtomicU32> {
        let chunk = self.chunks.get((g >> CHUNK_SHIFT) as usize)?.get()?;
        chunk.get((((g as usize) & (CHUNK_GROUPS - 1)) << 8) | (byte & 0xff))
    }

    /// Reader load of entry `byte` of group `g` (`NO_ROUTE` for a group that
    /// does not exist, which a consistent table never links to).
    #[inline(always)]
    pub(crate) fn load(&self, g: u32, byte: usize) -> u32 {
        self.slot(g, byte)
            .map_or(NO_ROUTE, |e| e.load(Ordering::Acquire))
    }

    /// All 256 entries of group `g`.
    pub(crate) fn group(&self, g: u32) -> &[AtomicU32] {
        let start = ((g as usize) & (CHUNK_GROUPS - 1)) << 8;
        self.chunks
            .get((g >> CHUNK_SHIFT) as usize)
            .and_then(OnceLock::get)
            .and_then(|c| c.get(start..start + GROUP_ENTRIES))
            .unwrap_or(&[])
    }

    /// Makes sure the chunk holding group `g` exists (writer only).
    fn ensure_chunk(&self, g: u32) -> bool {
        let Some(slot) = self.chunks.get((g >> CHUNK_SHIFT) as usize) else {
            return false;
        };
        if slot.get().is_none() {
            // Entries start as NO_ROUTE (0): the mapping comes zeroed.
            let Some(chunk) = Chunk::new() else {
                return false;
            };
            // Only the single writer initialises slots, so this cannot race.
            let _ = slot.set(chunk);
        }
        true
    }

    /// Bytes of group memory allocated so far (whole chunks) plus the slot array.
    pub(crate) fn memory_bytes(&self) -> usize {
        let chunks = self.chunks.iter().filter(|c| c.get().is_some()).count();
        chunks * CHUNK_ENTRIES * size_of::<AtomicU32>()
            + self.chunks.len() * size_of::<OnceLock<Chunk>>()
    }
}

/// Proof that the groups retired before it was issued may be reused once every
/// reader has passed a quiescent point. Issued by `retire_barrier`, consumed by
/// `reclaim` of the same FIB (a token of another FIB reclaims nothing).
#[must_use = "pass the token to reclaim() after the grace period, or retired groups are never reused"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetireToken {
    owner: u64,
    epoch: u64,
}

/// Group accounting of one FIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Groups linked from the table.
    pub in_use: usize,
    /// Groups unlinked but waiting for a grace period.
    pub retired: usize,
    /// Groups ready for reuse (free list plus never-used groups).
    pub available: usize,
    /// The configured maximum.
    pub max: u32,
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// The writer's allocator of group indices.
#[derive(Debug)]
pub(crate) struct GroupAlloc {
    /// Groups below this index have been handed out at least once.
    next_fresh: u32,
    max: u32,
    free: Vec<u32>,
    /// Retired since the last barrier.
    pending: Vec<u32>,
    /// Retired before barrier `epoch`, oldest first.
    waiting: VecDeque<(u64, Vec<u32>)>,
    epoch: u64,
    owner: u64,
    in_use: usize,
}

impl GroupAlloc {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            next_fresh: 0,
            max,
            free: Vec::new(),
            pending: Vec::new(),
            waiting: VecDeque::new(),
            epoch: 0,
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            in_use: 0,
        }
    }

    /// Groups that `alloc` can hand out now.
    pub(crate) fn available(&self) -> usize {
        self.free.len() + (self.max - self.next_fresh) as usize
    }

    /// A free group, its entries in an unspecified state (the caller fills it
    /// before linking it), or `None` when none is available.
    pub(crate) fn alloc(&mut self, store: &GroupStore) -> Option<u32> {
        let g = match self.free.pop() {
            Some(g) => g,
            None if self.next_fresh < self.max => {
                let g = self.next_fresh;
                if !store.ensure_chunk(g) {
                    return None;
                }
                self.next_fresh += 1;
                g
            }
            None => return None,
        };
        self.in_use += 1;
        Some(g)
    }

    /// Records that `g` was unlinked from the table; it is reused only after
    /// a barrier and a reclaim.
    pub(crate) fn retire(&mut self, g: u32) {
        self.in_use -= 1;
        self.pending.push(g);
    }

    /// Closes the current retire list; see `Fib4::retire_barrier`.
    pub(crate) fn barrier(&mut self) -> RetireToken {
        // Order the unlinking stores before whatever the engine does next to
        // learn that readers passed a quiescent point.
        std::sync::atomic::fence(Ordering::SeqCst);
        let epoch = self.epoch;
        self.epoch += 1;
        if !self.pending.is_empty() {
            self.waiting
                .push_back((epoch, std::mem::take(&mut self.pending)));
        }
        RetireToken {
            owner: self.owner,
            epoch,
        }
    }

    /// Makes the groups covered by `token` reusable; returns how many.
    pub(crate) fn reclaim(&mut self, token: RetireToken) -> usize {
        if token.owner != self.owner {
            return 0;
        }
        let mut n = 0;
        while let Some((epoch, _)) = self.waiting.front() {
            if *epoch > token.epoch {
                break;
            }
            if let Some((_, groups)) = self.waiting.pop_front() {
                n += groups.len();
                self.free.extend(groups);
            }
        }
        n
    }

    /// Makes every retired group reusable at once (no reader can exist).
    pub(crate) fn reclaim_all(&mut self) -> usize {
        let t = self.barrier();
        self.reclaim(t)
    }

    pub(crate) fn stats(&self) -> GroupStats {
        GroupStats {
            in_use: self.in_use,
            retired: self.pending.len() + self.waiting.iter().map(|(_, v)| v.len()).sum::<usize>(),
            available: self.available(),
            max: self.max,
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        (self.free.capacity()
            + self.pending.capacity()
            + self
                .waiting
                .iter()
                .map(|(_, v)| v.capacity())
                .sum::<usize>())
            * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_groups_come_back_only_after_reclaim() {
        let store = GroupStore::new(2);
        let mut a = GroupAlloc::new(2);
        let g0 = a.alloc(&store).unwrap();
        let g1 = a.alloc(&store).unwrap();
        assert_ne!(g0, g1);
        assert_eq!(a.alloc(&store), None);
        a.retire(g0);
        assert_eq!(a.alloc(&store), None, "retired is not free");
        let t = a.barrier();
        a.retire(g1);
        assert_eq!(a.alloc(&store), None);
        assert_eq!(a.reclaim(t), 1);
        assert_eq!(a.alloc(&store), Some(g0));
        assert_eq!(a.alloc(&store), None, "g1 was retired after the barrier");
        let foreign = GroupAlloc::new(2).barrier();
        let t2 = a.barrier();
        assert_eq!(a.reclaim(foreign), 0);
        assert_eq!(a.reclaim(t2), 1);
        assert_eq!(
            a.stats(),
            GroupStats {
                in_use: 1,
                retired: 0,
                available: 1,
                max: 2
            }
        );
        assert!(store.slot(g1, 255).is_some());
        assert!(store.slot(CHUNK_GROUPS as u32, 0).is_none());
    }
}
