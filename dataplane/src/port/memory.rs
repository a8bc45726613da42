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
    /// Frames stored back to back, each padded to a multiple of 64 bytes.
    Replay {
        data: Vec<u8>,
        frames: Vec<(usize, usize, usize)>,
        next: usize,
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
        let mut data = Vec::new();
        let mut index_ = Vec::with_capacity(frames.len());
        for f in frames.iter().filter(|f| f.len() <= MAX_PACKET) {
            let padded = f.len().div_ceil(64).max(1) * 64;
            index_.push((data.len(), padded, f.len()));
            data.extend_from_slice(f);
            data.resize(data.len() + padded - f.len(), 0);
        }
        MemoryPort {
            index,
            name: name.to_string(),
            mac,
            rx: Rx::Replay {
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
            Rx::Replay { data, frames, next } => {
                if frames.is_empty() {
                    return 0;
                }
                let (mut n, mut bytes) = (0u64, 0u64);
                for _ in 0..max {
                    let Some(&(off, padded, len)) = frames.get(*next) else {
                        break;
                    };
                    let Some(mut buf) = pool.alloc() else {
                        PortStats::add(&self.stats.rx_dropped, 1);
                        break;
                    };
                    match data
                        .get(off..off + padded)
                        .map(|src| buf.write_padded(src, len))
                    {
                        Some(Ok(())) => {
                            n += 1;
                            bytes += len as u64;
                            out.push(Pkt::new(buf, self.index));
                        }
                        _ => {
                            pool.free(buf);
                            PortStats::add(&self.stats.rx_dropped, 1);
                        }
                    }
                    *next += 1;
                    if *next == frames.len() {
                        *next = 0;
                    }
                }
                PortStats::add(&self.stats.rx_packets, n);
                PortStats::add(&self.stats.rx_bytes, bytes);
            }
        }
        out.len() - start
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let mut bytes = 0u64;
        let n = bufs.len() as u64;
        if let Some(cap) = &self.tx
            && let Ok(mut cap) = cap.lock()
        {
            cap.extend(bufs.iter().map(|b| b.data().to_vec()));
        }
        for b in bufs.drain(..) {
            bytes += b.len() as u64;
            pool.free(b);
        }
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
