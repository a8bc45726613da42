//! Ports: where packets enter and leave a worker.
//!
//! A port moves frames between the outside (a ring, a file, a kernel socket,
//! a NIC) and the worker's frame pool. It never parses packets and never
//! touches tables; the pipeline never touches port internals. Each port keeps
//! its own counters in a shared [`PortStats`] that other threads read while
//! the worker runs.
//!
//! Ports here: [`memory`] (tests and benches), [`pcap`] (offline runs on
//! captures) and [`af_packet`] (any Linux interface). `sys` holds the
//! checked socket wrappers the kernel ports share.

pub mod af_packet;
pub mod af_xdp;
pub mod csum;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod memory;
pub mod pcap;
pub mod sys;
pub mod tap;
mod xdp_ffi;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vrouter_buf::{FramePool, PacketBuf};
use vrouter_wire::MacAddr;

use crate::pkt::Pkt;

/// Errors creating or running a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A file the port reads or writes failed.
    #[error("port {port}: {path}: {source}")]
    File {
        port: String,
        path: String,
        source: std::io::Error,
    },
    /// A capture could not be parsed or written.
    #[error("port {port}: {path}: {reason}")]
    Pcap {
        port: String,
        path: String,
        reason: String,
    },
    /// A system call setting up a kernel port failed.
    #[error("port {port}: {what}: {source}")]
    Sys {
        port: String,
        what: String,
        source: std::io::Error,
    },
}

/// Counters of one port, shared with readers on other threads.
#[derive(Debug, Default)]
pub struct PortStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames the port could not take in (too big, no buffer).
    pub rx_dropped: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames the port could not send (ring full, write error).
    pub tx_dropped: AtomicU64,
    /// Failed transmit kicks or rejected descriptors.
    pub tx_errors: AtomicU64,
    /// Frames the port had no room for in its TX ring.
    pub tx_ring_full: AtomicU64,
    /// Times the kernel found the fill ring empty (AF_XDP).
    pub rx_fill_empty: AtomicU64,
    /// Malformed receive descriptors.
    pub rx_errors: AtomicU64,
}

/// A plain copy of [`PortStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
    pub tx_ring_full: u64,
    pub rx_fill_empty: u64,
    pub rx_errors: u64,
}

impl PortStats {
    /// Adds to a counter. Ports are the only writers of their stats.
    #[inline(always)]
    pub fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> PortCounters {
        let g = |c: &AtomicU64| c.load(Relaxed);
        PortCounters {
            rx_packets: g(&self.rx_packets),
            rx_bytes: g(&self.rx_bytes),
            rx_dropped: g(&self.rx_dropped),
            tx_packets: g(&self.tx_packets),
            tx_bytes: g(&self.tx_bytes),
            tx_dropped: g(&self.tx_dropped),
            tx_errors: g(&self.tx_errors),
            tx_ring_full: g(&self.tx_ring_full),
            rx_fill_empty: g(&self.rx_fill_empty),
            rx_errors: g(&self.rx_errors),
        }
    }
}

/// What the ports of one worker share while they attach to its pool.
#[derive(Default)]
pub struct AttachCtx {
    /// The worker's first AF_XDP socket, which registered the pool as UMEM.
    pub umem_fd: Option<i32>,
    /// The worker's DPDK mempool, built on part of its pool.
    #[cfg(feature = "dpdk")]
    pub dpdk: Option<dpdk::DpdkPool>,
}

/// A port as a worker drives it.
pub trait Port: Send {
    /// The port's configured name.
    fn name(&self) -> &str;

    /// Index of the port in the configuration (stamped on received packets).
    fn index(&self) -> u16;

    /// The port's MAC address.
    fn mac(&self) -> MacAddr;

    /// Finishes set-up once the worker's pool exists (AF_XDP registers it
    /// as UMEM, DPDK builds a mempool on part of it; `ctx` carries what the
    /// worker's ports share).
    fn attach(&mut self, _pool: &mut FramePool, _ctx: &mut AttachCtx) -> Result<(), PortError> {
        Ok(())
    }

    /// Called once on the worker thread that polls the port, before its
    /// first poll (DPDK registers the thread as an EAL lcore there, so the
    /// port's mempool cache is used).
    fn thread_start(&mut self) {}

    /// Receives up to `max` packets, appending them to `out`.
    /// Returns how many were appended.
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize;

    /// Transmits every buffer in `bufs` (emptying it). Buffers the port cannot
    /// send go back to `pool` and are counted as `tx_dropped`.
    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>);

    /// The port's shared counters.
    fn stats(&self) -> &Arc<PortStats>;

    /// True once an offline port has delivered all its input.
    fn rx_done(&self) -> bool {
        false
    }

    /// Flushes buffered output (files); called on shutdown.
    fn flush(&mut self) -> Result<(), PortError> {
        Ok(())
    }

    /// The kernel objects a new vrouterd adopts to take this port over
    /// without a gap (AF_XDP: the socket and its XSKMAP). `None`: the port
    /// is closed by the old vrouterd and opened again by the new one.
    fn takeover_fds(&self) -> Option<(RawFd, RawFd)> {
        None
    }

    /// With `true`, dropping the port closes only this process's
    /// descriptors and leaves the kernel objects (map entry, program) alone:
    /// the port was handed over, or is adopted and the takeover has not
    /// reached the switch-over yet (the old vrouterd still uses them).
    fn set_keep_on_drop(&mut self, _keep: bool) {}
}

/// The MAC a port gets when none is configured: locally administered,
/// derived from the port index so runs are reproducible.
pub fn default_mac(index: u16) -> MacAddr {
    let [hi, lo] = index.to_be_bytes();
    MacAddr([0x02, 0x76, 0x72, 0x00, hi, lo])
}
