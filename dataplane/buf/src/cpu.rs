//! CPU hints used by the hot path: cache prefetch and the time-stamp counter.

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
