//! Large zeroed tables of `AtomicU32` on transparent huge pages.
//!
//! Lookup tables that are read at random (a FIB's 64 MiB tbl24, its group
//! chunks) miss the TLB on almost every access when they sit on 4 KiB pages.
//! [`HugeTable`] maps them 2 MiB-aligned and asks the kernel for transparent
//! huge pages (`MADV_HUGEPAGE`, which works in THP's default `madvise` mode)
//! before the first touch, so the kernel backs them with 2 MiB pages where it
//! can. Where it cannot (THP disabled, fragmented memory), the table works
//! the same on small pages.
//!
//! This module owns the mapping; it must never hand out a mutable view (all
//! access goes through the atomics), and never remaps a live table.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

/// The huge page size the mapping is aligned to.
const HUGE: usize = 2 << 20;

/// A zero-initialised `[AtomicU32; N]` in its own anonymous mapping,
/// 2 MiB-aligned and advised for transparent huge pages. Dereferences to the
/// array; unmapped on drop.
pub struct HugeTable<const N: usize> {
    table: NonNull<[AtomicU32; N]>,
    map: NonNull<libc::c_void>,
    map_len: usize,
}

// SAFETY: the table is only ever accessed through shared references to
// atomics, which are Sync; the mapping is owned by this value alone and
// unmapped once, in Drop.
unsafe impl<const N: usize> Send for HugeTable<N> {}
// SAFETY: as above: `&HugeTable` only yields `&[AtomicU32; N]`.
unsafe impl<const N: usize> Sync for HugeTable<N> {}

impl<const N: usize> HugeTable<N> {
    /// Maps a table of `N` zeroed entries, or `None` if the kernel refuses
    /// the mapping.
    pub fn new() -> Option<Self> {
        let bytes = N.checked_mul(size_of::<AtomicU32>())?.max(1);
        let map_len = bytes.checked_add(HUGE)?;
        // SAFETY: a fresh anonymous private mapping at an address the kernel
        // chooses; it overlaps no Rust object and is checked for failure.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let map = NonNull::new(map)?;
        // The first 2 MiB boundary inside the mapping; the mapping is page
        // aligned, so at most HUGE - 4096 bytes are skipped and `bytes` (and
        // its page round-up) still fit.
        let skip = (map.as_ptr() as usize).next_multiple_of(HUGE) - map.as_ptr() as usize;
        // SAFETY: `skip < HUGE`, so the pointer stays inside the mapping.
        let start = unsafe { map.as_ptr().cast::<u8>().add(skip) };
        // SAFETY: `start..start + bytes` lies inside the mapping created
        // above; MADV_HUGEPAGE is a hint and changes no contents. Its failure
        // (THP compiled out or disabled) is harmless, so the result is ignored.
        unsafe {
            libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE);
        }
        Some(Self {
            table: NonNull::new(start.cast())?,
            map,
            map_len,
        })
    }

    /// Bytes of the table (not of the mapping's alignment slack, which is
    /// never touched).
    pub const fn bytes() -> usize {
        N * size_of::<AtomicU32>()
    }
}

impl<const N: usize> std::ops::Deref for HugeTable<N> {
    type Target = [AtomicU32; N];

    fn deref(&self) -> &[AtomicU32; N] {
        // SAFETY: `table` points to N * 4 bytes inside the live mapping,
        // 2 MiB-aligned (so aligned for AtomicU32), zero-filled by the kernel
        // (zero is a valid AtomicU32), and only ever accessed through shared
        // references to atomics.
        unsafe { self.table.as_ref() }
    }
}

impl<const N: usize> Drop for HugeTable<N> {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly the mapping created in `new`;
        // no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr(), self.map_len);
        }
    }
}

/// `n` copies of `v` in a heap allocation whose 2 MiB-aligned interior is
/// advised for transparent huge pages before it is first written, so that
/// the kernel backs large tables read at random (a conntrack table) with
/// 2 MiB pages where it can. Small slices are plain allocations.
pub fn huge_slice<T: Clone>(n: usize, v: T) -> Box<[T]> {
    let mut vec: Vec<T> = Vec::with_capacity(n);
    let bytes = n.saturating_mul(size_of::<T>());
    let start = vec.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = start.saturating_add(bytes);
    if bytes >= 2 * HUGE && aligned < end {
        // SAFETY: `aligned..end` lies inside the allocation just reserved
        // (nothing references it yet) and is page aligned; MADV_HUGEPAGE is
        // a hint that changes no contents. Its failure (THP disabled) is
        // harmless, so the result is ignored.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    vec.resize(n, v);
    vec.into_boxed_slice()
}

impl<const N: usize> std::fmt::Debug for HugeTable<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeTable<{N}>")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn huge_slice_holds_its_values() {
        let s = huge_slice(3 << 20, 7u16);
        assert_eq!(s.len(), 3 << 20);
        assert!(s.iter().all(|&v| v == 7));
        assert_eq!(huge_slice(3, 1u8).as_ref(), &[1, 1, 1]);
    }

    #[test]
    fn zeroed_aligned_and_writable() {
        let t = HugeTable::<{ 1 << 20 }>::new().expect("mmap");
        assert_eq!(t.as_ptr() as usize % HUGE, 0);
        assert!(
            t.iter()
                .step_by(4099)
                .all(|e| e.load(Ordering::Relaxed) == 0)
        );
        t[12345].store(7, Ordering::Relaxed);
        t[(1 << 20) - 1].store(9, Ordering::Relaxed);
        assert_eq!(t[12345].load(Ordering::Relaxed), 7);
        assert_eq!(t[(1 << 20) - 1].load(Ordering::Relaxed), 9);
        assert_eq!(HugeTable::<{ 1 << 20 }>::bytes(), 4 << 20);
    }
}
