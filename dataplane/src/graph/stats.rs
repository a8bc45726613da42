//! Per-worker statistics, readable by other threads while the worker runs.
//!
//! Each worker owns one `WorkerStats` and is its only writer, so an add is a
//! relaxed load and store (no locked instruction); readers on other threads
//! sum the blocks of all workers. Nothing here allocates after `new`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Counter, NodeId};

/// Interfaces a worker keeps counters for; higher indices share the last slot.
pub const MAX_IFACES: usize = 4096;

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Stat(AtomicU64);

impl Stat {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge. Only the owning worker may call this.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Calls, packets and CPU cycles of one node (`show runtime`).
#[derive(Debug, Default)]
pub struct NodeStat {
    calls: Stat,
    packets: Stat,
    cycles: Stat,
}

impl NodeStat {
    /// Records one call over `packets` packets that took `cycles`.
    #[inline(always)]
    pub fn record(&self, packets: u64, cycles: u64) {
        self.calls.add(1);
        self.packets.add(packets);
        self.cycles.add(cycles);
    }
}

/// A plain copy of a node's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NodeCounters {
    pub calls: u64,
    pub packets: u64,
    pub cycles: u64,
}

/// Per-interface packet and byte counters of one worker.
#[derive(Debug, Default)]
pub struct IfaceStat {
    pub rx_packets: Stat,
    pub rx_bytes: Stat,
    pub tx_packets: Stat,
    pub tx_bytes: Stat,
    pub drops: Stat,
}

/// Accumulates one interface's packets and bytes over a vector, so a node
/// touches the shared counters once per run of packets rather than per packet.
#[derive(Debug)]
pub struct IfaceAcc {
    iface: u16,
    packets: u64,
    bytes: u64,
}

impl Default for IfaceAcc {
    fn default() -> Self {
        IfaceAcc {
            iface: u16::MAX,
            packets: 0,
            bytes: 0,
        }
    }
}

impl IfaceAcc {
    /// Counts one packet of `bytes` on `iface` (rx or tx per `rx`).
    #[inline(always)]
    pub fn add(&mut self, stats: &WorkerStats, rx: bool, iface: u16, bytes: usize) {
        if iface != self.iface {
            self.flush(stats, rx);
            self.iface = iface;
        }
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    /// Writes what was accumulated to the shared counters.
    #[inline]
    pub fn flush(&mut self, stats: &WorkerStats, rx: bool) {
        if self.packets > 0 {
            let s = stats.iface(self.iface);
            if rx {
                s.rx_packets.add(self.packets);
                s.rx_bytes.add(self.bytes);
            } else {
                s.tx_packets.add(self.packets);
                s.tx_bytes.add(self.bytes);
            }
            self.packets = 0;
            self.bytes = 0;
        }
    }
}

/// A plain copy of an interface's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IfaceCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: u64,
}

impl std::ops::AddAssign for IfaceCounters {
    fn add_assign(&mut self, o: Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.drops += o.drops;
    }
}

/// All counters of one worker.
#[derive(Debug)]
pub struct WorkerStats {
    counters: Box<[Stat]>,
    nodes: Box<[NodeStat]>,
    ifaces: Box<[IfaceStat]>,
    /// Polls that found packets / polls that found none (OVS pmd-stats style).
    pub busy_polls: Stat,
    pub idle_polls: Stat,
    /// Cycles spent in polls that found packets / found none.
    pub busy_cycles: Stat,
    pub idle_cycles: Stat,
    /// Gauges, set once per poll loop: frames in the worker's pool, and
    /// those free in it (not in a port ring, the arena, a TX batch or the
    /// glean queue). Idle, `frames_available` returns to its start value;
    /// lower means frames leaked.
    pub frames: Stat,
    pub frames_available: Stat,
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerStats {
    /// A zeroed block.
    pub fn new() -> Self {
        WorkerStats {
            counters: (0..Counter::COUNT).map(|_| Stat::default()).collect(),
            nodes: (0..NodeId::COUNT).map(|_| NodeStat::default()).collect(),
            ifaces: (0..MAX_IFACES).map(|_| IfaceStat::default()).collect(),
            busy_polls: Stat::default(),
            idle_polls: Stat::default(),
            busy_cycles: Stat::default(),
            idle_cycles: Stat::default(),
            frames: Stat::default(),
            frames_available: Stat::default(),
        }
    }

    /// Adds `n` to a named counter.
    #[inline(always)]
    pub fn count(&self, c: Counter, n: u64) {
        if let Some(s) = self.counters.get(c as usize) {
            s.add(n);
        }
    }

    /// A named counter's value.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(c as usize).map_or(0, Stat::get)
    }

    /// The stats of a node.
    #[inline(always)]
    pub fn node(&self, n: NodeId) -> &NodeStat {
        &self.nodes[n as usize]
    }

    /// A copy of a node's figures.
    pub fn node_counters(&self, n: NodeId) -> NodeCounters {
        let s = self.node(n);
        NodeCounters {
            calls: s.calls.get(),
            packets: s.packets.get(),
            cycles: s.cycles.get(),
        }
    }

    /// The counters of interface `i` (indices past the table share the last slot).
    #[inline(always)]
    pub fn iface(&self, i: u16) -> &IfaceStat {
        let i = (i as usize).min(MAX_IFACES - 1);
        &self.ifaces[i]
    }

    /// A copy of an interface's figures.
    pub fn iface_counters(&self, i: u16) -> IfaceCounters {
        let s = self.iface(i);
        IfaceCounters {
            rx_packets: s.rx_packets.get(),
            rx_bytes: s.rx_bytes.get(),
            tx_packets: s.tx_packets.get(),
            tx_bytes: s.tx_bytes.get(),
            drops: s.drops.get(),
        }
    }
}
