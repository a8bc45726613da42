//! CPU hints used by the hot path: cache prefetch, the time-stamp counter,
//! and an 8-lane compare for hash-table tags.

/// Hints the CPU to bring the cache line holding `*r` into L1.
///
/// A prefetch never faults and never changes program state; it only costs an
/// issue slot. Use it one or more packets ahead of the access it hides.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it cannot fault, even on an invalid
    // address, and has no architectural side effect. `r` is a valid reference
    // anyway. SSE is part of the x86-64 baseline, so the target feature the
    // intrinsic requires is always present.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Prefetches element `i` of `s` if it exists; out-of-range indices are ignored.
#[inline(always)]
pub fn prefetch_slice<T>(s: &[T], i: usize) {
    if let Some(r) = s.get(i) {
        prefetch(r);
    }
}

/// The lanes of `v` equal to `x`: bit `2 * i` set for each matching lane
/// `i` (on x86-64 one SSE2 compare of the 8 lanes; hash tables compare a
/// bucket's tags with it).
#[inline(always)]
pub fn eq_mask_u16x8(v: &[u16; 8], x: u16) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{
            _mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi16,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline, so the intrinsics'
        // target feature is always present; `v` is 16 readable bytes and
        // `_mm_loadu_si128` needs no alignment.
        let m = unsafe {
            let a = _mm_loadu_si128(v.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi16(a, _mm_set1_epi16(x as i16)))
        };
        m as u32 & 0x5555
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0;
        for (i, &t) in v.iter().enumerate() {
            m |= u32::from(t == x) << (2 * i);
        }
        m
    }
}

/// A cheap, monotonic-enough cycle counter for per-node accounting
/// (`show runtime`). Not a clock: use it only for differences on one thread.
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter; it has no memory effects
        // and is available on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::time::Instant;
        thread_local!(static T0: Instant = Instant::now());
        T0.with(|t| t.elapsed().as_nanos() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_mask_marks_every_matching_lane() {
        let v = [0, 7, 9, 7, 0, 1, 7, 0xffff];
        assert_eq!(eq_mask_u16x8(&v, 7), 1 << 2 | 1 << 6 | 1 << 12);
        assert_eq!(eq_mask_u16x8(&v, 0xffff), 1 << 14);
        assert_eq!(eq_mask_u16x8(&v, 0), 1 | 1 << 8);
        assert_eq!(eq_mask_u16x8(&v, 3), 0);
        assert_eq!(eq_mask_u16x8(&[5; 8], 5), 0x5555);
    }
}
