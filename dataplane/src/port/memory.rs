//! An in-memory port for tests and benches.
//!
//! RX comes either from a queue the test fills (`MemoryPort::queue`) or from
//! a fixed list of frames replayed forever (`MemoryPort::replay`, for benches:
//! each received packet is a fresh copy of the next template frame, as a NIC
//! would DMA it). TX either captures copies of the frames (tests) or counts
//! and frees them (benches). The queue mode takes a mutex once per burst; it
//! is a test port, not a production path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vrouter_buf::{FramePool, MAX_PACKET, PacketBuf};
use vrouter_wire::MacAddr;

use super::{Port, PortStats};
use crate::pkt::Pkt;

/// Frames queued for RX by a test.
pub type RxQueue = Arc<Mutex<VecDeque<Vec<u8>>>>;
/// Frames captured on TX for a test.
pub type TxCapture = Arc<Mutex<Vec<Vec<u8>>>>;

enum Rx {
    Queue(RxQueue),
    /// Frames stored back to back in 64-byte chunks, each padded to a whole
    /// number of chunks; `frames` holds (first chunk, chunks, length).
    Replay {
        data: Vec<[u8; 64]>,
        frames: Vec<(u32, u32, u32)>,
        next: usize,
        /// Every frame fits one chunk: frame k is `data[k]`, its length
        /// `lens[k]` (the fast path of small-frame benches).
        small: bool,
        lens: Vec<u16>,
    },
}

/// See the module doc.
pub struct MemoryPort {
    index: u16,
    name: String,
    mac: MacAddr,
    rx: Rx,
    tx: Option<TxCapture>,
    stats: Arc<PortStats>,
}

impl MemoryPort {
    /// A port whose RX is a queue and whose TX is captured; returns the port
    /// and both handles.
    pub fn queue(index: u16, name: &str, mac: MacAddr) -> (Self, RxQueue, TxCapture) {
        let rx = RxQueue::default();
        let tx = TxCapture::default();
        let port = MemoryPort {
            index,
            name: name.to_string(),
            mac,
            rx: Rx::Queue(rx.clone()),
            tx: Some(tx.clone()),
            stats: Arc::default(),
        };
        (port, rx, tx)
    }

    /// A port that replays `frames` forever and discards what it transmits.
    pub fn replay(index: u16, name: &str, mac: MacAddr, frames: Vec<Vec<u8>>) -> Self {
        let mut data: Vec<[u8; 64]> = Vec::new();
        let mut index_ = Vec::with_capacity(frames.len());
        for f in frames.iter().filter(|f| f.len() <= MAX_PACKET) {
            let chunks = f.len().div_ceil(64).max(1);
            index_.push((data.len() as u32, chunks as u32, f.len() as u32));
            for c in 0..chunks {
                let mut chunk = [0u8; 64];
                let part = f.get(c * 64..).unwrap_or(&[]);
                let k = part.len().min(64);
                chunk[..k].copy_from_slice(&part[..k]);
                data.push(chunk);
            }
        }
        MemoryPort {
            index,
            name: name.to_string(),
            mac,
            rx: Rx::Replay {
                small: index_.iter().all(|&(_, chunks, _)| chunks == 1),
                lens: index_.iter().map(|&(_, _, len)| len as u16).collect(),
                data,
                frames: index_,
                next: 0,
            },
            tx: None,
            stats: Arc::default(),
        }
    }

    fn take(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, frame: &[u8]) -> bool {
        if frame.len() > MAX_PACKET {
            PortStats::add(&self.stats.rx_dropped, 1);
            return true;
        }
        let Some(mut buf) = pool.alloc() else {
            PortStats::add(&self.stats.rx_dropped, 1);
            return false;
        };
        // Cannot fail: the length was checked against MAX_PACKET above.
        let _ = buf.write(frame);
        PortStats::add(&self.stats.rx_packets, 1);
        PortStats::add(&self.stats.rx_bytes, frame.len() as u64);
        out.push(Pkt::new(buf, self.index));
        true
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize {
        let start = out.len();
        match &mut self.rx {
            Rx::Queue(q) => {
                let frames: Vec<Vec<u8>> = {
                    let Ok(mut q) = q.lock() else { return 0 };
                    let n = max.min(q.len());
                    q.drain(..n).collect()
                };
                for f in &frames {
                    if !self.take(pool, out, f) {
                        break;
                    }
                }
            }
            Rx::Replay {
                data,
                frames,
                next,
                small,
                lens,
            } => {
                let meta = Pkt::new_meta(self.index);
                let start_len = out.len();
                out.reserve(max);
                let spare = out.spare_capacity_mut();
                let max = max.min(spare.len());
                let (mut k, mut nx, mut bytes) = (0usize, *next, 0u64);
                let nframes = lens.len().min(data.len());
                while *small && k < max {
                    let (Some(chunk), Some(&len), Some(slot)) =
                        (data.get(nx), lens.get(nx), spare.get_mut(k))
                    else {
                        break;
                    };
                    let Some(buf) = pool.alloc_copy64(chunk, len) else {
                        PortStats::add(&self.stats.rx_dropped, 1);
                        break;
                    };
                    bytes += u64::from(len);
                    slot.write(Pkt { buf, meta });
                    k += 1;
                    nx += 1;
                    if nx >= nframes {
                        nx = 0;
                    }
                }
                while !*small && k < max {
                    let Some(&(first, chunks, len)) = frames.get(nx) else {
                        break;
                    };
                    let src = data
                        .get(first as usize..(first + chunks) as usize)
                        .unwrap_or(&[]);
                    let Some(buf) = pool.alloc_copy(src, len as usize) else {
                        PortStats::add(&self.stats.rx_dropped, 1);
                        break;
                    };
                    bytes += u64::from(len);
                    if let Some(slot) = spare.get_mut(k) {
                        slot.write(Pkt { buf, meta });
                    }
                    k += 1;
                    nx += 1;
                    if nx == frames.len() {
                        nx = 0;
                    }
                }
                *next = nx;
                // SAFETY: the loop initialised exactly the first `k` spare
                // slots (k <= spare.len(), every iteration that raised `k`
                // wrote slot k - 1 ... k's predecessor), so the first
                // `start_len + k` elements are initialised.
                unsafe { out.set_len(start_len + k) };
                PortStats::add(&self.stats.rx_packets, k as u64);
                PortStats::add(&self.stats.rx_bytes, bytes);
            }
        }
        out.len() - start
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let n = bufs.len() as u64;
        if let Some(cap) = &self.tx
            && let Ok(mut cap) = cap.lock()
        {
            cap.extend(bufs.iter().map(|b| b.data().to_vec()));
        }
        let bytes = pool.free_all(bufs);
        PortStats::add(&self.stats.tx_packets, n);
        PortStats::add(&self.stats.tx_bytes, bytes);
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }

    fn rx_done(&self) -> bool {
        match &self.rx {
            Rx::Queue(q) => q.lock().map(|q| q.is_empty()).unwrap_or(true),
            Rx::Replay { .. } => false,
        }
    }
}
