//! Receive-side accounting by the sequence numbers and timestamps the
//! generator stamps into its payloads.
//!
//! A sequence number is `trial << 48 | n`: frames of another trial (late
//! frames of the previous RFC 2544 trial) are counted apart. Within a trial,
//! a sliding bitmap of the last [`WINDOW`] sequence numbers finds duplicates;
//! a frame older than the highest seen so far is reordered; one older than
//! the window is counted as reordered and `late` (it cannot be checked for
//! duplication). Latency is receive time minus the stamp's time
//! (CLOCK_REALTIME, so generator and receiver may be two processes on one
//! host), in an HDR histogram (3 significant digits, 1 ns to 60 s).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Sequence numbers remembered for duplicate detection.
pub const WINDOW: u64 = 1 << 22;
const SEQ_MASK: u64 = (1 << 48) - 1;

/// Counters of one receiver (or one trial).
pub struct RxStats {
    trial: u64,
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub late: u64,
    /// Our frames of another trial.
    pub stale: u64,
    /// Frames that carry no stamp of ours.
    pub other: u64,
    pub bytes: u64,
    max: Option<u64>,
    bits: Vec<u64>,
    pub hist: Histogram<u64>,
}

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

/// A plain summary of [`RxStats`].
#[derive(Debug, Clone, Serialize)]
pub struct RxSummary {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub late: u64,
    pub stale: u64,
    pub other: u64,
    pub bytes: u64,
    /// Highest sequence number seen + 1 (what a receiver alone can tell
    /// was sent, tail losses excepted).
    pub expected_by_seq: u64,
    pub latency: Option<Latency>,
}

impl RxStats {
    /// Empty counters for trial 0.
    pub fn new() -> RxStats {
        RxStats {
            trial: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            late: 0,
            stale: 0,
            other: 0,
            bytes: 0,
            max: None,
            bits: vec![0; (WINDOW / 64) as usize],
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
        }
    }

    /// Clears everything and counts trial `trial` from now on.
    pub fn reset(&mut self, trial: u64) {
        self.trial = trial;
        self.received = 0;
        self.duplicates = 0;
        self.reordered = 0;
        self.late = 0;
        self.stale = 0;
        self.other = 0;
        self.bytes = 0;
        self.max = None;
        self.bits.fill(0);
        self.hist.reset();
    }

    #[inline(always)]
    fn bit(&mut self, n: u64) -> (usize, u64) {
        let i = n % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Counts a frame of `len` bytes that is not ours.
    #[inline]
    pub fn other(&mut self) {
        self.other += 1;
    }

    /// Counts a frame with stamp (`seq`, `ts`) received at `now` (ns).
    #[inline]
    pub fn record(&mut self, seq: u64, ts: u64, now: u64, len: usize) {
        if seq >> 48 != self.trial {
            self.stale += 1;
            return;
        }
        let n = seq & SEQ_MASK;
        self.received += 1;
        self.bytes += len as u64;
        self.hist.saturating_record(now.saturating_sub(ts).max(1));
        match self.max {
            None => {
                self.max = Some(n);
            }
            Some(m) if n > m => {
                // Forget the slots the window slides over.
                if n - m >= WINDOW {
                    self.bits.fill(0);
                } else {
                    for k in m + 1..=n {
                        let (w, b) = self.bit(k);
                        self.bits[w] &= !b;
                    }
                }
                self.max = Some(n);
            }
            Some(m) => {
                self.reordered += 1;
                if m - n >= WINDOW {
                    self.late += 1;
                    return;
                }
                let (w, b) = self.bit(n);
                if self.bits[w] & b != 0 {
                    self.duplicates += 1;
                    self.reordered -= 1;
                }
                self.bits[w] |= b;
                return;
            }
        }
        let (w, b) = self.bit(n);
        self.bits[w] |= b;
    }

    /// Frames received once.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    /// A summary.
    pub fn summary(&self) -> RxSummary {
        let h = &self.hist;
        RxSummary {
            received: self.received,
            unique: self.unique(),
            duplicates: self.duplicates,
            reordered: self.reordered,
            late: self.late,
            stale: self.stale,
            other: self.other,
            bytes: self.bytes,
            expected_by_seq: self.max.map_or(0, |m| m + 1),
            latency: (!h.is_empty()).then(|| Latency {
                min_ns: h.min(),
                p50_ns: h.value_at_quantile(0.5),
                p99_ns: h.value_at_quantile(0.99),
                p999_ns: h.value_at_quantile(0.999),
                max_ns: h.max(),
                mean_ns: h.mean(),
            }),
        }
    }
}

impl Default for RxStats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_reorder_duplicates() {
        let mut s = RxStats::new();
        for n in [0u64, 1, 2, 4, 3, 3, 5, 7, 7] {
            s.record(n, 100, 150, 60);
        }
        let m = s.summary();
        assert_eq!(m.received, 9);
        assert_eq!(m.unique, 7);
        assert_eq!(m.duplicates, 2);
        assert_eq!(m.reordered, 1);
        assert_eq!(m.expected_by_seq, 8);
        assert_eq!(m.latency.unwrap().p50_ns, 50);
        // Another trial's frames are stale.
        s.reset(1);
        s.record(5, 0, 1, 60);
        s.record(1 << 48 | 9, 0, 1, 60);
        assert_eq!((s.stale, s.received), (1, 1));
    }

    #[test]
    fn window_slides() {
        let mut s = RxStats::new();
        s.record(1, 0, 1, 60);
        s.record(WINDOW * 3, 0, 1, 60);
        s.record(WINDOW * 3 + 1, 0, 1, 60);
        s.record(2, 0, 1, 60);
        assert_eq!((s.late, s.duplicates), (1, 0));
        s.record(WINDOW * 3 + 1, 0, 1, 60);
        assert_eq!(s.duplicates, 1);
    }
}
